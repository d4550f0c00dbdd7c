// The real thing through Redis: `sana-graph worker --redis` (ProcessRunner, the tiny models)
// runs the shipped workflows/sana_default.api.json queued by a front end that validated it; the
// front end hears progress and gets the history entry, and the PNG is in the output folder that
// every front end would serve /view from (SharedDirStore).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { modelKeys } from '../../cluster/models.ts';
import { SharedDirStore } from '../../cluster/output_store.ts';
import { loadMainEngine } from '../../host/registry.ts';
import { FrontEnd, makeJob, waitFor } from './helpers.ts';
import { RedisServer } from './redis_harness.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
let redis: RedisServer;
let fe: FrontEnd;
let dir: string;
let worker: ChildProcess | undefined;
let stderr = '';

beforeAll(async () => {
  redis = await RedisServer.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-real-'));
  fe = await FrontEnd.open(redis.url);
  await fe.listen();
});
afterAll(async () => {
  if (worker && worker.exitCode === null) {
    const gone = new Promise((r) => worker!.once('exit', r));
    worker.kill('SIGTERM');
    await gone;
  }
  await fe?.close();
  await redis?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

it('a worker process runs the shipped default workflow on the tiny model', { timeout: 240_000 }, async () => {
  const d = (n: string) => path.join(dir, n);
  worker = spawn(
    process.execPath,
    [
      'bin/sana-graph.js',
      'worker',
      '--redis',
      redis.url,
      '--worker-id',
      'real',
      '--models-dir',
      path.join(ROOT, 'models'),
      '--output-dir',
      d('output'),
      '--input-dir',
      d('input'),
      '--temp-dir',
      d('temp'),
    ],
    {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'pipe'],
    },
  );
  worker.stderr!.on('data', (c) => (stderr += c));
  await waitFor('the worker to take jobs', () => stderr.includes('real taking jobs from'), 60_000, 100);

  const engine = await loadMainEngine({
    extraNodeModules: [],
    maxPromptNodes: 5000,
    folders: { output: d('output'), input: d('input'), temp: d('temp'), models: path.join(ROOT, 'models') },
  });
  const raw = JSON.parse(fs.readFileSync(path.join(ROOT, 'workflows/sana_default.api.json'), 'utf8')) as Record<string, unknown>;
  const v = engine.validate(raw);
  if (!v.ok) throw new Error(JSON.stringify(v.error));
  const job = makeJob('real-1', v.prompt, 'client-real');
  job.outputs = v.outputs;
  job.number = await fe.jobs.nextNumber(undefined, false);
  await fe.jobs.add(job, { models: modelKeys(v.prompt) });
  await fe.events.publishQueue({ reason: 'added', promptId: job.promptId });

  const w = await waitFor('the worker in the registry', async () => (await fe.registry.list()).find((x) => x.id === 'real'));
  expect(w.devices.length).toBeGreaterThan(0);
  const entry = await waitFor('the history entry', () => fe.history.get('real-1'), 200_000, 250);
  expect(entry.status.status_str).toBe('success');
  const images = (entry.outputs['8'] as { images: Array<{ filename: string; subfolder: string; type: string }> }).images;
  expect(images).toHaveLength(1);
  const store = new SharedDirStore({ output: d('output'), input: d('input'), temp: d('temp') });
  const file = await store.resolve('output', images[0].subfolder, images[0].filename);
  expect(file!.size).toBeGreaterThan(1000);
  expect(fs.readFileSync(file!.localPath!).subarray(1, 4).toString()).toBe('PNG');
  // The history entry is written before the client's "done" (`executing` with node null) is
  // published, so the messages can still be arriving when the entry is seen.
  await waitFor('the done message', () =>
    fe.messages.some((m) => m.promptId === 'real-1' && m.kind === 'event' && m.type === 'executing' && (m.data as { node?: unknown }).node === null),
  );
  const mine = fe.messages.filter((m) => m.promptId === 'real-1');
  expect(mine.every((m) => m.clientId === 'client-real')).toBe(true);
  const types = mine.map((m) => (m.kind === 'event' ? m.type : 'preview'));
  expect(types[0]).toBe('execution_start');
  expect(types).toContain('progress');
  expect(types).toContain('executed');
  expect(types.at(-1)).toBe('executing');
  // The worker now advertises the workflow's models (affinity).
  const after = await waitFor('loaded models', async () => (await fe.registry.list()).find((x) => x.id === 'real' && x.loadedModels.length > 0));
  expect(after.loadedModels).toEqual(modelKeys(v.prompt));
  expect(after.executorPid).toBeGreaterThan(0);
});
