// The whole cluster as a user runs it: two `sana-graph serve --redis` front ends and three
// `sana-graph worker --redis` workers (real processes, ProcessRunner, the tiny models), sharing
// one output/input/temp tree, over a private redis-server with appendonly. One file, one
// cluster: the tests run in order and each leaves the cluster running for the next.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@stable-canvas/comfyui-client';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePng } from '../../nodes/image/png.ts';
import { connectWs, postJson } from '../server/helpers.ts';
import { FrontEnd, waitFor } from './helpers.ts';
import { freePort, RedisServer } from './redis_harness.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const WORKFLOW = JSON.parse(fs.readFileSync(path.join(ROOT, 'workflows/sana_default.api.json'), 'utf8')) as Record<string, { inputs: Record<string, unknown> }>;

/**
 * The shipped workflow made fast (every node kept): no instruction prefix, `size`², `steps`
 * sampler steps, PAG off unless asked (scale 0 = no extra pass), `seed`. The defaults take
 * ~0.15 s on a warm worker here (the text encoder's output is cached: only the seed changes);
 * the long jobs (interrupt, kill -9) use more steps with PAG on.
 */
function prompt(seed: number, steps = 1, size = 64, pag = 0): Record<string, unknown> {
  const p = structuredClone(WORKFLOW);
  p['2'].inputs.complex_human_instruction = false;
  p['3'].inputs.scale = pag;
  p['4'].inputs.width = size;
  p['4'].inputs.height = size;
  p['5'].inputs.steps = steps;
  p['5'].inputs.seed = seed;
  return p;
}

interface Proc {
  name: string;
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<unknown>;
}

const procs = new Set<Proc>();
let redis: RedisServer;
let dir: string;
let observer: FrontEnd;
const d = (n: string) => path.join(dir, n);
const shared = () => ['--models-dir', path.join(ROOT, 'models'), '--output-dir', d('output'), '--input-dir', d('input'), '--temp-dir', d('temp')];

function launch(name: string, args: string[], readyText: string): Promise<Proc> {
  const child = spawn(process.execPath, ['bin/sana-graph.js', ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c) => (err += c));
  const exited = new Promise((r) => child.once('exit', r));
  const p: Proc = { name, child, stderr: () => err, exited };
  procs.add(p);
  void exited.then(() => procs.delete(p));
  return waitFor(
    `${name} to start`,
    () => (child.exitCode !== null ? Promise.reject(new Error(`${name} exited: ${err}`)) : err.includes(readyText) && p),
    90_000,
    100,
  );
}

async function stop(p: Proc, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  const t = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  await p.exited;
  clearTimeout(t);
}

interface Front extends Proc {
  url: string;
  port: number;
}

async function frontEnd(name: string, port: number): Promise<Front> {
  const args = ['serve', '--redis', redis.url, '--listen', '127.0.0.1', '--port', String(port), '--user-dir', d(`user-${name}`), ...shared()];
  const p = await launch(`front end ${name}`, args, 'serving on');
  return Object.assign(p, { url: `http://127.0.0.1:${port}`, port });
}

const worker = (id: string) => launch(`worker ${id}`, ['worker', '--redis', redis.url, '--worker-id', id, ...shared()], `${id} taking jobs from`);

async function queuePrompt(fe: Front, body: Record<string, unknown>): Promise<{ prompt_id: string; number: number }> {
  const res = await postJson(`${fe.url}/prompt`, body);
  const json = (await res.json()) as { prompt_id: string; number: number };
  if (res.status !== 200) throw new Error(`POST /prompt to ${fe.name}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function getJson<T = Record<string, unknown>>(url: string): Promise<T> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

type History = Record<string, { status: { status_str: string; messages: Array<[string, Record<string, unknown>]> }; outputs: Record<string, unknown> }>;

let A: Front;
let B: Front;
let workers: Proc[];
/** Queue notices in arrival order: 'started' gives the order jobs were taken, and by whom. */
const started: string[] = [];
const startedBy: Array<{ promptId: string; workerId: string | undefined }> = [];

beforeAll(async () => {
  redis = await RedisServer.start({ appendonly: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-fronts-'));
  [A, B, ...workers] = await Promise.all([frontEnd('A', await freePort()), frontEnd('B', await freePort()), worker('w1'), worker('w2'), worker('w3')]);
  observer = await FrontEnd.open(redis.url);
  await observer.subscribe({
    queue: (n) => {
      if (n.reason !== 'started' || !n.promptId) return;
      started.push(n.promptId);
      startedBy.push({ promptId: n.promptId, workerId: n.workerId });
    },
  });
}, 120_000);

afterAll(async () => {
  await observer?.close();
  await Promise.all([...procs].map((p) => stop(p)));
  await redis?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}, 60_000);

const savedImages = () => fs.readdirSync(d('output')).filter((f) => f.endsWith('.png'));

describe('two front ends, three workers', () => {
  it(
    '100 prompts through both front ends: each runs once, in queue order; both serve the same history; a client on B follows its A prompts',
    { timeout: 300_000 },
    async () => {
      const ws = await connectWs(B.url, 'client-A');
      const ids: Array<{ id: string; number: number; via: Front }> = [];
      for (let i = 0; i < 100; i++) {
        const via = i % 2 === 0 ? A : B;
        const r = await queuePrompt(via, { prompt: prompt(1000 + i), client_id: via === A ? 'client-A' : 'client-B' });
        ids.push({ id: r.prompt_id, number: r.number, via });
      }
      // The numbers are one global sequence across the front ends.
      expect(ids.map((x) => x.number)).toEqual([...ids.map((x) => x.number)].sort((a, b) => a - b));
      expect(new Set(ids.map((x) => x.number)).size).toBe(100);

      const history = await waitFor(
        'every prompt in history',
        async () => {
          const h = await getJson<History>(`${A.url}/history`);
          return Object.keys(h).length >= 100 && h;
        },
        280_000,
        500,
      );
      expect(Object.keys(history).sort()).toEqual(ids.map((x) => x.id).sort());
      for (const { id } of ids) expect(history[id].status.status_str).toBe('success');
      // Exactly once: one SaveImage file per prompt, no second run anywhere.
      expect(savedImages()).toHaveLength(100);
      // Both front ends answer the same history and queue (Redis is the only state).
      expect(await (await fetch(`${B.url}/history`)).text()).toBe(await (await fetch(`${A.url}/history`)).text());
      expect(await getJson(`${B.url}/queue`)).toEqual({ queue_running: [], queue_pending: [] });

      // Queue order: jobs are taken in number order. Three workers take at nearly the same moment,
      // so the 'started' notices of neighbours may swap, but never across more than the workers.
      const pos = new Map(started.map((id, i) => [id, i]));
      for (const via of [A, B]) {
        const mine = ids.filter((x) => x.via === via);
        for (let i = 0; i < mine.length; i++) {
          for (let j = i + 2; j < mine.length; j++) expect(pos.get(mine[i].id)!).toBeLessThan(pos.get(mine[j].id)!);
        }
      }

      // The client on B heard every one of its A prompts (and nothing of client-B's).
      const aIds = new Set(ids.filter((x) => x.via === A).map((x) => x.id));
      const heard = (type: string) => new Set(ws.messages.filter((m) => m.type === type).map((m) => String(m.data.prompt_id)));
      for (const t of ['execution_start', 'progress', 'executed', 'execution_success']) expect(heard(t)).toEqual(aIds);
      expect(ws.binary.length).toBeGreaterThanOrEqual(aIds.size); // step previews
      const ends = () => ws.messages.filter((m) => m.type === 'executing' && m.data.node === null).map((m) => String(m.data.prompt_id));
      // `executing null` follows the history entry: the last ones may still be on their way.
      await waitFor('every end heard on B', () => [...aIds].every((id) => ends().includes(id)));
      expect(new Set(ends())).toEqual(aIds);
      expect(ws.messages.some((m) => m.type === 'status')).toBe(true);
      // …and /view on B serves the image of a prompt queued through A.
      const executed = ws.messages.find((m) => m.type === 'executed')!;
      const img = (executed.data.output as { images: Array<{ filename: string; subfolder: string; type: string }> }).images[0];
      const view = await fetch(`${B.url}/view?${new URLSearchParams({ filename: img.filename, subfolder: img.subfolder, type: img.type })}`);
      expect(view.status).toBe(200);
      expect(
        Buffer.from(await view.arrayBuffer())
          .subarray(1, 4)
          .toString(),
      ).toBe('PNG');
      // /system_stats lists the workers, their devices and the models they hold.
      const stats = await getJson<{ devices: unknown[]; cluster: { workers: Array<{ id: string; loaded_models: string[] }> } }>(`${B.url}/system_stats`);
      expect(stats.cluster.workers.map((w) => w.id)).toEqual(['w1', 'w2', 'w3']);
      expect(stats.devices.length).toBeGreaterThanOrEqual(3);
      expect(stats.cluster.workers.some((w) => w.loaded_models.includes('checkpoint:sana/Sana_Tiny_diffusers'))).toBe(true);
      // /api/jobs is built from the same queue and history.
      const jobs = await getJson<{ pagination: { total: number } }>(`${A.url}/api/jobs?status=completed&limit=1`);
      expect(jobs.pagination.total).toBe(100);
      ws.close();
    },
  );

  it('/interrupt through A stops a job queued through B, wherever it runs; the client hears it', { timeout: 60_000 }, async () => {
    const ws = await connectWs(A.url, 'client-int');
    const { prompt_id: id } = await queuePrompt(B, { prompt: prompt(7, 40, 128, 2), client_id: 'client-int' });
    await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === id && m.data.node === '5', 40_000);
    const q = await getJson<{ queue_running: unknown[][] }>(`${A.url}/queue`);
    expect(q.queue_running.map((i) => i[1])).toEqual([id]);
    expect((await postJson(`${A.url}/interrupt`, { prompt_id: id })).status).toBe(200);
    const m = await ws.waitFor((x) => x.type === 'execution_interrupted' && x.data.prompt_id === id, 20_000);
    expect(m.data.node_id).toBe('5');
    const h = await waitFor('the interrupted entry', async () => (await getJson<History>(`${B.url}/history/${id}`))[id]);
    expect(h.status.status_str).toBe('error');
    expect(h.status.messages.map((x) => x[0])).toContain('execution_interrupted');
    ws.close();
  });

  it('kill -9 of the worker running a job: the job completes on another, one history entry', { timeout: 90_000 }, async () => {
    const before = savedImages().length;
    const ws = await connectWs(A.url, 'client-kill');
    // ~0.5 s per 40 steps on a warm worker here: 160 leave the kill a margin of seconds.
    const { prompt_id: id } = await queuePrompt(A, { prompt: prompt(99, 160, 128, 2), client_id: 'client-kill' });
    await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === id && m.data.node === '5', 40_000);
    // The runner named by its own 'started' notice (sent before the job runs), not by the
    // registry: that is a heartbeat (1 s) plus the front end's cache (0.5 s) old, long enough for
    // a short sampler to have moved on or the job to have ended before it shows up.
    const runs = () => startedBy.filter((s) => s.promptId === id);
    const runnerId = (await waitFor(`the 'started' notice of ${id}`, () => runs().at(-1), 5000)).workerId;
    const victim = workers.find((w) => w.name === `worker ${runnerId}`);
    expect(victim, `'started' notices for ${id}: ${JSON.stringify(runs())}`).toBeDefined();
    const runsAtKill = runs().length;
    victim!.child.kill('SIGKILL');
    await victim!.exited;
    // The premise: the job was still running when its worker died (nothing can write its entry
    // now until the dead worker's lock expires, seconds later).
    expect(await getJson<History>(`${B.url}/history/${id}`), 'the job ended before the kill: make it longer').toEqual({});
    const entry = await waitFor('the history entry', async () => (await getJson<History>(`${B.url}/history/${id}`))[id], 60_000, 250);
    expect(entry.status.status_str).toBe('success');
    expect(savedImages().length).toBe(before + 1);
    // It ran again, on another worker (more than once only if a lock renewal was late).
    expect(runs().length).toBeGreaterThan(runsAtKill);
    for (const r of runs().slice(runsAtKill)) expect(r.workerId).not.toBe(runnerId);
    // The dead worker's heartbeat expires (5 s after its last beat) and it leaves the list.
    await waitFor('the dead worker to leave /system_stats', async () => {
      const s = await getJson<{ cluster: { workers: Array<{ id: string }> } }>(`${A.url}/system_stats`);
      return !s.cluster.workers.some((w) => w.id === runnerId);
    });
    workers = workers.filter((w) => w !== victim);
    ws.close();
  });

  it('kill -9 of a front end: the other keeps serving; a restarted one sees the queue and history', { timeout: 90_000 }, async () => {
    const queued: string[] = [];
    for (let i = 0; i < 6; i++) queued.push((await queuePrompt(A, { prompt: prompt(500 + i, 2) })).prompt_id);
    A.child.kill('SIGKILL');
    await A.exited;
    // B serves while A is gone, and queues more.
    const more = await queuePrompt(B, { prompt: prompt(600) });
    const pendingOnB = (await getJson<{ queue_running: unknown[][]; queue_pending: unknown[][] }>(`${B.url}/queue`)).queue_pending.map((i) => i[1]);
    expect(pendingOnB).toContain(more.prompt_id);
    A = await frontEnd('A', A.port);
    // The restarted front end sees every job queued through the killed one or through B: each is
    // running, pending or done (queue read first, so a job finishing in between is in history).
    const all = [...queued, more.prompt_id];
    const qa = await getJson<{ queue_running: unknown[][]; queue_pending: unknown[][] }>(`${A.url}/queue`);
    const ha = await getJson<History>(`${A.url}/history`);
    const seen = new Set([...qa.queue_running, ...qa.queue_pending].map((i) => String(i[1])));
    for (const id of all) expect(seen.has(id) || id in ha).toBe(true);
    const h = await waitFor(
      'the jobs queued through the killed front end',
      async () => {
        const hist = await getJson<History>(`${A.url}/history`);
        return all.every((id) => hist[id]) && hist;
      },
      60_000,
      250,
    );
    for (const id of all) expect(h[id].status.status_str).toBe('success');
    expect(Object.keys(h)).toHaveLength(100 + 1 + 1 + all.length);
    expect(await (await fetch(`${B.url}/history`)).text()).toBe(await (await fetch(`${A.url}/history`)).text());
  });

  it('Redis restarted during a run: /prompt answers 503 meanwhile, every job completes once', { timeout: 90_000 }, async () => {
    // Counted before queueing: the first jobs may be done before the last is queued.
    const before = savedImages().length;
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push((await queuePrompt(i % 2 ? A : B, { prompt: prompt(700 + i, 3, 128, 2) })).prompt_id);
    await waitFor('a job running', () => started.some((s) => ids.includes(s)));
    await redis.stop();
    await waitFor('front end A to notice', () => A.stderr().includes('reconnecting'), 10_000, 20);
    const down = await postJson(`${A.url}/prompt`, { prompt: prompt(800) });
    expect(down.status).toBe(503);
    const body = (await down.json()) as { error: { type: string; message: string } };
    expect(body.error.type).toBe('backend_unavailable');
    expect(body.error.message).toContain(redis.url.replace('redis://', ''));
    // What needs no Redis still answers.
    expect((await fetch(`${A.url}/object_info/SaveImage`)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1000));
    await redis.restart();
    await waitFor('front end A to reconnect', () => /reconnecting[\s\S]*ready/.test(A.stderr()), 30_000, 100);
    const after = await waitFor(
      'the jobs queued before the restart',
      async () => {
        const res = await fetch(`${B.url}/history`);
        if (res.status !== 200) return undefined;
        const hist = (await res.json()) as History;
        return ids.every((id) => hist[id]) && hist;
      },
      70_000,
      500,
    );
    for (const id of ids) expect(after[id].status.status_str).toBe('success');
    expect(savedImages().length).toBe(before + ids.length);
    // And the cluster takes new work again.
    const { prompt_id: id } = await queuePrompt(A, { prompt: prompt(801) });
    await waitFor('a prompt after the restart', async () => (await getJson<History>(`${B.url}/history/${id}`))[id], 30_000, 250);
  });

  it('ComfyUI clients, unchanged, get the shipped default workflow image through either front end', { timeout: 180_000 }, async () => {
    const checkPng = (png: Buffer, who: string) => {
      const img = decodePng(png);
      expect([img.width, img.height], who).toEqual([256, 256]);
    };
    // ComfyUI's websockets_api_example.py flow (Debian's python3-websocket, installed by the test set-up).
    const PYTHON = '/usr/bin/python3';
    if (process.env.CI === 'true' || fs.existsSync('/usr/lib/python3/dist-packages/websocket')) {
      const promptFile = d('py_default.json');
      const outDir = d('py_default_out');
      fs.mkdirSync(outDir, { recursive: true });
      fs.writeFileSync(promptFile, JSON.stringify(WORKFLOW));
      const script = path.join(ROOT, 'test/server/clients/ws_api_client.py');
      const { stdout } = await promisify(execFile)(PYTHON, [script, `127.0.0.1:${A.port}`, promptFile, outDir], { timeout: 150_000 });
      const res = JSON.parse(stdout.trim().split('\n').at(-1)!) as { images: string[]; status: string };
      expect(res.status).toBe('success');
      expect(res.images).toHaveLength(1);
      checkPng(fs.readFileSync(res.images[0]!), 'python websocket-client via A');
    }
    // @stable-canvas/comfyui-client resolves on the prompt's first `executed` message.
    const canvas = new Client({ api_host: B.url.replace(/^http:\/\//, ''), clientId: 'stable-canvas-cluster', WebSocket });
    await canvas.connect();
    try {
      const out = await canvas.enqueue(WORKFLOW, { disable_random_seed: true, timeout_ms: 150_000 });
      const saved = out.images.filter((i) => i.type === 'url');
      expect(saved).toHaveLength(1);
      checkPng(Buffer.from(await (await fetch(saved[0]!.data as string)).arrayBuffer()), '@stable-canvas/comfyui-client via B');
    } finally {
      canvas.close();
    }
  });

  it('serve --redis exits with code 3 when Redis is unreachable at start', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const child = spawn(process.execPath, ['bin/sana-graph.js', 'serve', '--redis', `redis://127.0.0.1:${port}`, '--port', '0', ...shared()], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    const code = await new Promise((r) => child.once('exit', r));
    expect(code, err).toBe(3);
    expect(err).toContain(`cannot reach Redis at redis://127.0.0.1:${port}/0`);
  });
});
