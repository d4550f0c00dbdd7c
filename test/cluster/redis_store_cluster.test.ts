// `--store redis` as users run it: a `sana-graph serve --redis --store redis` front end and a
// `sana-graph worker --redis --store redis` worker, real processes, each with its OWN
// output/input/temp folders (nothing shared but Redis). An image uploaded through the front end
// is read by the worker's LoadImage; the SaveImage and PreviewImage files the worker writes are
// served by the front end's /view, byte-equal; a file replaced under the same name reaches the
// worker; hostile names and the per-file limit are refused with clear errors; a missing input is
// the executor's usual "value not in list" error.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePng, encodePng } from '../../nodes/image/png.ts';
import { connectWs, postJson } from '../server/helpers.ts';
import { FrontEnd, makeJob, waitFor } from './helpers.ts';
import { freePort, RedisServer } from './redis_harness.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

interface Proc {
  name: string;
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<unknown>;
}

const procs: Proc[] = [];
let redis: RedisServer;
let dir: string;
let url: string;
let worker: Proc;
let cluster: FrontEnd;

/** One machine's folders: the front end and the worker each get their own. */
const folders = (who: string) => ['output', 'input', 'temp'].map((k) => path.join(dir, who, k));
const flags = (who: string) => {
  const [output, input, temp] = folders(who);
  return ['--output-dir', output, '--input-dir', input, '--temp-dir', temp, '--models-dir', path.join(ROOT, 'models')];
};
const pngsUnder = (d: string): string[] =>
  fs.existsSync(d) ? (fs.readdirSync(d, { recursive: true }) as string[]).filter((f) => f.endsWith('.png') && !path.basename(f).startsWith('.')) : [];

function launch(name: string, args: string[], readyText: string): Promise<Proc> {
  const child = spawn(process.execPath, ['bin/sana-graph.js', ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c) => (err += c));
  const p: Proc = { name, child, stderr: () => err, exited: new Promise((r) => child.once('exit', r)) };
  procs.push(p);
  return waitFor(
    `${name} to start`,
    () => (child.exitCode !== null ? Promise.reject(new Error(`${name} exited: ${err}`)) : err.includes(readyText) && p),
    90_000,
    100,
  );
}

function multipart(parts: Array<{ name: string; value: string | Buffer; filename?: string }>) {
  const boundary = '----clusterStore' + Math.random().toString(16).slice(2);
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disp = `form-data; name="${p.name}"${p.filename !== undefined ? `; filename="${p.filename}"` : ''}`;
    chunks.push(
      Buffer.from(`--${boundary}\r\nContent-Disposition: ${disp}\r\n\r\n`),
      Buffer.isBuffer(p.value) ? p.value : Buffer.from(p.value),
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

const upload = (parts: Parameters<typeof multipart>[0]) => fetch(`${url}/upload/image`, { method: 'POST', ...multipart(parts) });
const view = async (q: Record<string, string>) => {
  const r = await fetch(`${url}/view?${new URLSearchParams(q)}`);
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
};

/** A 16x16 opaque image whose pixels depend on `seed`. */
function picture(seed: number): { png: Buffer; rgb: number[] } {
  const data = new Uint8Array(16 * 16 * 4);
  const rgb: number[] = [];
  for (let p = 0; p < 256; p++) {
    for (let c = 0; c < 3; c++) {
      data[p * 4 + c] = (p * (7 + c) + seed * 31) & 255;
      rgb.push(data[p * 4 + c]);
    }
    data[p * 4 + 3] = 255;
  }
  return { png: encodePng({ width: 16, height: 16, channels: 4, data }), rgb };
}

const loadAndSave = (image: string) => ({
  '1': { class_type: 'LoadImage', inputs: { image } },
  '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'loaded/rg' } },
  '3': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
});

type Ref = { filename: string; subfolder: string; type: string };
type Entry = { status: { status_str: string; messages: Array<[string, Record<string, unknown>]> }; outputs: Record<string, { images: Ref[] }> };

async function historyOf(id: string): Promise<Entry> {
  return waitFor(`history of ${id}`, async () => ((await (await fetch(`${url}/history/${id}`)).json()) as Record<string, Entry>)[id], 60_000, 100);
}

beforeAll(async () => {
  redis = await RedisServer.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-store-'));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const serveArgs = ['serve', '--redis', redis.url, '--store', 'redis', '--store-max-file-mb', '0.05', '--listen', '127.0.0.1', '--port', String(port)];
  [, worker] = await Promise.all([
    launch('front end', [...serveArgs, '--user-dir', path.join(dir, 'front', 'user'), ...flags('front')], 'serving on'),
    launch('worker', ['worker', '--redis', redis.url, '--store', 'redis', '--worker-id', 'w1', ...flags('worker')], 'w1 taking jobs from'),
  ]);
  cluster = await FrontEnd.open(redis.url);
}, 120_000);

afterAll(async () => {
  await cluster?.close();
  for (const p of procs) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
    const t = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
    await p.exited;
    clearTimeout(t);
  }
  await redis?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('front end and worker with separate folders, images in Redis', () => {
  it('an upload feeds the worker; /view on the front end serves the PNGs the worker wrote, byte-equal', { timeout: 90_000 }, async () => {
    const first = picture(1);
    const up = await upload([{ name: 'image', value: first.png, filename: 'in.png' }]);
    expect([up.status, await up.json()]).toEqual([200, { name: 'in.png', subfolder: '', type: 'input' }]);
    expect(fs.readdirSync(folders('front')[1])).toEqual([]);
    const info = (await (await fetch(`${url}/object_info/LoadImage`)).json()) as { LoadImage: { input: { required: { image: [string[]] } } } };
    expect(info.LoadImage.input.required.image[0]).toEqual(['in.png']);

    const ws = await connectWs(url, 'store-client');
    const res = await postJson(`${url}/prompt`, { prompt: loadAndSave('in.png'), client_id: 'store-client' });
    expect(res.status).toBe(200);
    const { prompt_id: id } = (await res.json()) as { prompt_id: string };
    // As soon as the client hears `executed`, the image is there to fetch.
    const executed = await ws.waitFor((m) => m.type === 'executed' && m.data.node === '2' && m.data.prompt_id === id, 60_000);
    const announced = (executed.data.output as { images: Ref[] }).images[0];
    expect((await view({ filename: announced.filename, subfolder: announced.subfolder, type: announced.type })).status).toBe(200);

    const entry = await historyOf(id);
    expect(entry.status.status_str).toBe('success');
    const saved = entry.outputs['2'].images[0];
    expect(saved).toEqual(announced);
    expect(saved.subfolder).toBe('loaded');
    const served = await view({ filename: saved.filename, subfolder: saved.subfolder, type: 'output' });
    expect(served.status).toBe(200);
    const written = fs.readFileSync(path.join(folders('worker')[0], 'loaded', saved.filename));
    expect(served.body.equals(written)).toBe(true);
    expect(Array.from(decodePng(served.body).data)).toEqual(first.rgb);
    // PreviewImage's temp file too.
    const preview = entry.outputs['3'].images[0];
    expect(preview.type).toBe('temp');
    const servedPreview = await view({ filename: preview.filename, subfolder: preview.subfolder, type: 'temp' });
    expect(servedPreview.body.equals(fs.readFileSync(path.join(folders('worker')[2], preview.filename)))).toBe(true);
    // The worker read its own copy of the upload; the front end's folders hold no image at all.
    expect(fs.readFileSync(path.join(folders('worker')[1], 'in.png')).equals(first.png)).toBe(true);
    for (const d of folders('front')) expect(pngsUnder(d)).toEqual([]);
    ws.close();
  });

  it('a file replaced under the same name (overwrite) reaches the worker: same name, same bytes everywhere', { timeout: 60_000 }, async () => {
    const second = picture(2);
    const up = await upload([
      { name: 'image', value: second.png, filename: 'in.png' },
      { name: 'overwrite', value: 'true' },
    ]);
    expect((await up.json()).name).toBe('in.png');
    const res = await postJson(`${url}/prompt`, { prompt: loadAndSave('in.png') });
    const entry = await historyOf(((await res.json()) as { prompt_id: string }).prompt_id);
    expect(entry.status.status_str).toBe('success');
    const saved = entry.outputs['2'].images[0];
    const served = await view({ filename: saved.filename, subfolder: saved.subfolder, type: 'output' });
    expect(Array.from(decodePng(served.body).data)).toEqual(second.rgb);
    expect(fs.readFileSync(path.join(folders('worker')[1], 'in.png')).equals(second.png)).toBe(true);
    // Without overwrite, different bytes under a taken name get a new name, as ComfyUI does.
    const renamed = await upload([{ name: 'image', value: picture(3).png, filename: 'in.png' }]);
    expect((await renamed.json()).name).toBe('in (1).png');
  });

  it('hostile names are refused by the front end and nothing reaches the store', { timeout: 30_000 }, async () => {
    expect((await view({ filename: '../secret.png' })).status).toBe(400);
    expect((await view({ filename: 'a.png', subfolder: '..' })).status).toBe(403);
    expect((await view({ filename: 'a.png', subfolder: '/etc' })).status).toBe(403);
    for (const parts of [
      [{ name: 'image', value: picture(4).png, filename: '../evil.png' }],
      [
        { name: 'image', value: picture(4).png, filename: 'ok.png' },
        { name: 'subfolder', value: '../..' },
      ],
    ]) {
      const r = await upload(parts);
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/^invalid upload path: unsafe path/);
    }
    const prompt = await postJson(`${url}/prompt`, { prompt: loadAndSave('../../etc/passwd') });
    expect(prompt.status).toBe(400);
    expect(((await prompt.json()) as { node_errors: Record<string, { errors: Array<{ type: string }> }> }).node_errors['1'].errors[0].type).toBe(
      'value_not_in_list',
    );
    const names = (await cluster.redis.keys('sana:cluster:file:*')).map((k) => k.slice('sana:cluster:file:'.length));
    expect(names.some((n) => n.includes('..') || n.includes('evil') || n.includes('ok.png'))).toBe(false);
  });

  it('an upload over --store-max-file-mb is a 413 that names the file and the limit', { timeout: 30_000 }, async () => {
    const r = await upload([{ name: 'image', value: Buffer.alloc(60 * 1024, 7), filename: 'huge.png' }]);
    expect(r.status).toBe(413);
    expect(((await r.json()) as { error: { type: string; message: string } }).error).toEqual({
      type: 'file_too_large',
      message: 'input/huge.png is 61440 bytes; the redis store keeps files of at most 52429 bytes (--store-max-file-mb)',
      details: '',
      extra_info: {},
    });
    expect(await cluster.redis.exists('sana:cluster:file:input:huge.png')).toBe(0);
  });

  it("an input missing from the store is the usual 'not in list' error on the worker", { timeout: 60_000 }, async () => {
    // Queued past the front end's validation (which would refuse the name), as a stale prompt would be.
    const job = makeJob('missing-input', loadAndSave('gone.png'));
    job.outputs = ['2', '3'];
    job.number = await cluster.jobs.nextNumber(undefined, false);
    await cluster.jobs.add(job, { models: [] });
    await cluster.events.publishQueue({ reason: 'added', promptId: job.promptId });
    const entry = await historyOf('missing-input');
    expect(entry.status.status_str).toBe('error');
    const err = entry.status.messages.find(([t]) => t === 'execution_error')![1];
    // The worker's executor checks LoadImage's choice against its folder, as a single server does
    // when a file disappeared after the prompt was queued.
    expect(err.exception_type).toBe('PromptValidationError');
    expect(String(err.exception_message)).toMatch(/Value not in list: image: 'gone\.png' not in \[/);
    expect(worker.stderr()).not.toMatch(/cannot copy/);
  });

  it('store flags: usage errors (exit code 2) that say what is wrong', { timeout: 60_000 }, async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile(process.execPath, ['bin/sana-graph.js', ...args], { cwd: ROOT }, (err, _out, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
        ),
      );
    const cases: Array<[string[], string]> = [
      [['serve', '--store', 'redis'], "--store redis keeps the images in the cluster's Redis: it needs --redis"],
      [['worker', '--redis', redis.url, '--store-max-file-mb', '5'], '--store-max-file-mb and --store-ttl-hours need --store redis'],
      [['serve', '--redis', redis.url, '--store', 'redis', '--store-max-file-mb', '0'], '--store-max-file-mb must be more than 0 and at most 512'],
      [['worker', '--redis', redis.url, '--store', 'redis', '--store-ttl-hours', '-1'], '--store-ttl-hours must be 0 (keep) or more, got -1'],
      [['serve', '--store', 's3'], 'option --store must be one of shared-dir, redis; got "s3"'],
    ];
    for (const [args, message] of cases) {
      const r = await run(args);
      expect([r.code, r.stderr.split('\n')[0]], args.join(' ')).toEqual([2, expect.stringContaining(message)]);
    }
  });
});
