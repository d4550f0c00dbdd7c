// Queue and execution behaviour against a real server: ordering (front / number), delete and
// clear of pending jobs, interrupts, responsiveness while a node blocks the worker, keep-alive,
// preview frames, node errors, worker crashes, cache reuse, and history after a restart.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { HistoryStore } from '../../web/server/history.ts';
import { QueueStore, type Job } from '../../web/server/queue.ts';
import { connectWs, imagePrompt, postJson, startTestServer, TEST_NODES, until, type TestServer, type WsRecorder } from './helpers.ts';

let s: TestServer;
let ws: WsRecorder;
const CID = 'queue-test-client';

beforeAll(async () => {
  s = await startTestServer({ keepAliveMs: 600 });
  ws = await connectWs(s.url, CID);
});
afterAll(async () => {
  ws?.close();
  await s?.close();
  if (s) fs.rmSync(s.dirs.root, { recursive: true, force: true });
});

type Entry = { status: { status_str: string; completed: boolean; messages: [string, Record<string, unknown>][] }; outputs: Record<string, unknown> };

async function queuePrompt(prompt: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await postJson(`${s.url}/prompt`, { prompt, client_id: CID, ...extra });
  expect(r.status).toBe(200);
  return ((await r.json()) as { prompt_id: string }).prompt_id;
}

async function historyOf(id: string): Promise<Entry | undefined> {
  const h = (await (await fetch(`${s.url}/history/${id}`)).json()) as Record<string, Entry>;
  return h[id];
}

const queue = async () => (await (await fetch(`${s.url}/queue`)).json()) as { queue_running: [number, string][]; queue_pending: [number, string][] };
const doneMarker = (id: string) => (m: { type: string; data: Record<string, unknown> }) =>
  m.type === 'executing' && m.data.node === null && m.data.prompt_id === id;

describe('execution', () => {
  test('WS: status with sid on connect, then the job messages in ComfyUI order, ending with executing null', async () => {
    expect(ws.messages[0]).toEqual({ type: 'status', data: { status: { exec_info: { queue_remaining: expect.any(Number) } }, sid: CID } });
    const id = await queuePrompt(imagePrompt({ seed: 101, slowMs: 200, steps: 4 }));
    await ws.waitFor(doneMarker(id));
    const mine = ws.messages.filter((m) => m.data.prompt_id === id || m.type === 'status');
    const seq = mine.filter((m) => m.type !== 'progress_state').map((m) => (m.type === 'executing' ? `executing:${m.data.node}` : m.type));
    const from = seq.indexOf('execution_start');
    expect(seq.slice(from)).toEqual([
      'execution_start',
      'execution_cached',
      'executing:1',
      'executing:5',
      'progress',
      'progress',
      'progress',
      'progress',
      'executing:9',
      'executed',
      'execution_success',
      'status',
      'executing:null',
    ]);
    const progress = mine.filter((m) => m.type === 'progress').map((m) => m.data);
    expect(progress[3]).toEqual({ value: 4, max: 4, prompt_id: id, node: '5' });
    const executed = mine.find((m) => m.type === 'executed')!.data;
    expect(executed).toMatchObject({
      node: '9',
      display_node: '9',
      prompt_id: id,
      output: { images: [{ filename: expect.any(String), subfolder: '', type: 'output' }] },
    });
    // The end marker comes after history is written and the job left the queue.
    expect(await historyOf(id)).toBeDefined();
  });

  test('re-queuing the identical prompt runs nothing: everything cached, executed replayed', async () => {
    const p = imagePrompt({ seed: 102 });
    const first = await queuePrompt(p);
    await ws.waitFor(doneMarker(first));
    const second = await queuePrompt(p);
    await ws.waitFor(doneMarker(second));
    const cached = ws.messages.find((m) => m.type === 'execution_cached' && m.data.prompt_id === second)!;
    expect((cached.data.nodes as string[]).sort()).toEqual(['1', '9']);
    expect(ws.messages.some((m) => m.type === 'executing' && m.data.prompt_id === second && m.data.node !== null)).toBe(false);
    expect(ws.messages.some((m) => m.type === 'executed' && m.data.prompt_id === second)).toBe(true);
    expect((await historyOf(second))!.outputs['9']).toEqual((await historyOf(first))!.outputs['9']);
  });

  test('a failing node -> execution_error to the client and an error history entry; the server goes on', async () => {
    const p = imagePrompt({ seed: 103 });
    p['4'] = { class_type: 'TestFail', inputs: { images: ['1', 0], message: 'kaput' } };
    (p['9'] as { inputs: Record<string, unknown> }).inputs.images = ['4', 0];
    const id = await queuePrompt(p);
    await ws.waitFor(doneMarker(id));
    const err = ws.messages.find((m) => m.type === 'execution_error' && m.data.prompt_id === id)!.data;
    expect(err).toMatchObject({
      node_id: '4',
      node_type: 'TestFail',
      exception_message: 'TestFail: kaput',
      executed: ['1'],
      traceback: expect.any(Array),
      current_inputs: expect.any(Object),
    });
    const h = (await historyOf(id))!;
    expect(h.status.status_str).toBe('error');
    expect(h.status.completed).toBe(false);
    expect(h.status.messages.at(-1)![0]).toBe('execution_error');
    const ok = await queuePrompt(imagePrompt({ seed: 104 }));
    await ws.waitFor(doneMarker(ok));
    expect((await historyOf(ok))!.status.status_str).toBe('success');
  });

  test('a worker thread that dies mid-job is restarted inside the execution process; the job is an error in history', async () => {
    const pid = s.state.embedded.runner.pid;
    const p = imagePrompt({ seed: 105 });
    p['4'] = { class_type: 'TestExit', inputs: { images: ['1', 0], code: 7 } };
    (p['9'] as { inputs: Record<string, unknown> }).inputs.images = ['4', 0];
    const id = await queuePrompt(p);
    const next = await queuePrompt(imagePrompt({ seed: 106 }));
    await ws.waitFor(doneMarker(id));
    const err = ws.messages.find((m) => m.type === 'execution_error' && m.data.prompt_id === id)!.data;
    expect(err).toMatchObject({ exception_type: 'WorkerCrashed', node_id: '4', node_type: 'TestExit' });
    expect(String(err.exception_message)).toMatch(/exit code 7/);
    expect((await historyOf(id))!.status.status_str).toBe('error');
    await ws.waitFor(doneMarker(next));
    expect((await historyOf(next))!.status.status_str).toBe('success');
    // A worker-thread death is handled inside the child process, which survives it.
    expect(s.state.embedded.runner.pid).toBe(pid);
  });
});

describe('worker start failure', () => {
  test('a worker that cannot start fails each job with WorkerStartError; the server stays up', async () => {
    const broken = await startTestServer({ extraNodeModules: [TEST_NODES, new URL('./fixtures/worker_fail_nodes.ts', import.meta.url).href] });
    try {
      const c = await connectWs(broken.url, 'broken-client');
      const r = await postJson(`${broken.url}/prompt`, { prompt: imagePrompt({ seed: 901 }), client_id: 'broken-client' });
      expect(r.status).toBe(200);
      const { prompt_id } = (await r.json()) as { prompt_id: string };
      await c.waitFor(doneMarker(prompt_id), 60_000);
      const err = c.messages.find((m) => m.type === 'execution_error' && m.data.prompt_id === prompt_id)!.data;
      expect(err.exception_type).toBe('WorkerStartError');
      expect(String(err.exception_message)).toContain('refusing to load in the worker');
      const h = (await (await fetch(`${broken.url}/history/${prompt_id}`)).json()) as Record<string, Entry>;
      expect(h[prompt_id].status.status_str).toBe('error');
      expect((await fetch(`${broken.url}/system_stats`)).status).toBe(200);
      c.close();
    } finally {
      await broken.close();
      fs.rmSync(broken.dirs.root, { recursive: true, force: true });
    }
  });
});

describe('queue rules', () => {
  test('front, explicit number, delete and clear of pending jobs; the running job stays', async () => {
    const blocker = await queuePrompt(imagePrompt({ seed: 201, slowMs: 2500, steps: 25 }));
    await until(async () => (await queue()).queue_running[0]?.[1] === blocker, 10_000, 'blocker running');
    const a = await queuePrompt(imagePrompt({ seed: 202 }));
    const b = await queuePrompt(imagePrompt({ seed: 203 }));
    const f = await queuePrompt(imagePrompt({ seed: 204 }), { front: true });
    const n = await queuePrompt(imagePrompt({ seed: 205 }), { number: -1e9 });
    const d = await queuePrompt(imagePrompt({ seed: 206 }));
    let q = await queue();
    expect(q.queue_running.map((i) => i[1])).toEqual([blocker]);
    expect([...q.queue_pending].sort((x, y) => x[0] - y[0]).map((i) => i[1])).toEqual([n, f, a, b, d]);
    expect((await postJson(`${s.url}/queue`, { delete: [b, blocker] })).status).toBe(200);
    q = await queue();
    expect(q.queue_pending.map((i) => i[1])).not.toContain(b);
    expect(q.queue_running.map((i) => i[1])).toEqual([blocker]);
    expect((await postJson(`${s.url}/api/queue`, { clear: true })).status).toBe(200);
    q = await queue();
    expect(q.queue_pending).toEqual([]);
    const prompt = await (await fetch(`${s.url}/prompt`)).json();
    expect(prompt).toEqual({ exec_info: { queue_remaining: 1 } });
    // Re-queue two and check the execution order: front first.
    const late = await queuePrompt(imagePrompt({ seed: 207 }));
    const early = await queuePrompt(imagePrompt({ seed: 208 }), { front: true });
    await ws.waitFor(doneMarker(late), 30_000);
    const starts = ws.messages.filter((m) => m.type === 'execution_start').map((m) => m.data.prompt_id);
    expect(starts.indexOf(early)).toBeLessThan(starts.indexOf(late));
    expect(starts).not.toContain(a);
    expect(starts).not.toContain(d);
    expect(await historyOf(b)).toBeUndefined();
  });

  test('HTTP and WS stay responsive while a node blocks the worker; keep-alive every < 5 s', async () => {
    const id = await queuePrompt(imagePrompt({ seed: 301, slowMs: 4000, steps: 1 }));
    await ws.waitFor((m) => m.type === 'executing' && m.data.node === '5' && m.data.prompt_id === id);
    const t0 = Date.now();
    const seenFrom = ws.messages.length;
    const times: number[] = [];
    while (Date.now() - t0 < 2500) {
      const r0 = Date.now();
      const r = await fetch(`${s.url}/queue`);
      expect(r.status).toBe(200);
      times.push(Date.now() - r0);
      await new Promise((r) => setTimeout(r, 100));
    }
    // A main thread blocked by the node would answer only after the 4 s step.
    expect(Math.max(...times)).toBeLessThan(1500);
    // A second client can connect while the node runs.
    const other = await connectWs(s.url, 'late-client');
    other.close();
    // No progress is reported during the single 4 s step, yet status keep-alives arrive.
    const during = ws.messages.slice(seenFrom).filter((m) => m.type === 'status');
    expect(during.length).toBeGreaterThanOrEqual(2);
    await ws.waitFor(doneMarker(id));
  });

  test('a prompt is listed in /queue until its history entry exists', async () => {
    const id = await queuePrompt(imagePrompt({ seed: 401, slowMs: 300, steps: 3 }));
    for (;;) {
      const q = await queue();
      const listed = [...q.queue_running, ...q.queue_pending].some((i) => i[1] === id);
      const inHistory = (await historyOf(id)) !== undefined;
      if (!listed) {
        expect(inHistory).toBe(true);
        break;
      }
    }
  });
});

describe('interrupt', () => {
  test('targeted interrupt of another id is a no-op; of the running id stops it at the next step', async () => {
    const id = await queuePrompt(imagePrompt({ seed: 501, slowMs: 20_000, steps: 200 }));
    const after = await queuePrompt(imagePrompt({ seed: 502 }));
    await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === id);
    expect((await postJson(`${s.url}/interrupt`, { prompt_id: 'someone-else' })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect((await queue()).queue_running[0][1]).toBe(id);
    const t0 = Date.now();
    expect((await postJson(`${s.url}/api/interrupt`, { prompt_id: id })).status).toBe(200);
    await ws.waitFor(doneMarker(id));
    expect(Date.now() - t0).toBeLessThan(3000);
    const msg = ws.messages.find((m) => m.type === 'execution_interrupted' && m.data.prompt_id === id)!;
    expect(msg.data).toMatchObject({ node_id: '5', node_type: 'TestSlow', executed: ['1'] });
    const h = (await historyOf(id))!;
    expect(h.status).toMatchObject({ status_str: 'error', completed: false });
    expect(h.status.messages.at(-1)![0]).toBe('execution_interrupted');
    // Interrupt never drops pending work: the next job runs.
    await ws.waitFor(doneMarker(after));
    expect((await historyOf(after))!.status.status_str).toBe('success');
  });

  test('global interrupt with an empty body; an interrupt while idle does not affect the next job', async () => {
    const id = await queuePrompt(imagePrompt({ seed: 503, slowMs: 20_000, steps: 200 }));
    await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === id);
    expect((await fetch(`${s.url}/interrupt`, { method: 'POST' })).status).toBe(200);
    await ws.waitFor(doneMarker(id));
    expect((await historyOf(id))!.status.status_str).toBe('error');
    await fetch(`${s.url}/interrupt`, { method: 'POST' });
    const next = await queuePrompt(imagePrompt({ seed: 504, slowMs: 100, steps: 2 }));
    await ws.waitFor(doneMarker(next));
    expect((await historyOf(next))!.status.status_str).toBe('success');
  });
});

describe('previews', () => {
  test('binary frames: legacy type 1 by default, type 4 after feature_flags negotiation', async () => {
    const legacy = await connectWs(s.url, 'preview-legacy');
    const modern = await connectWs(s.url, 'preview-modern');
    modern.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    const flags = await modern.waitFor((m) => m.type === 'feature_flags');
    expect(flags.data).toMatchObject({ supports_preview_metadata: true });
    for (const [c, seed] of [
      [legacy, 601],
      [modern, 602],
    ] as const) {
      const r = await postJson(`${s.url}/prompt`, {
        prompt: imagePrompt({ seed, slowMs: 100, steps: 2, preview: true }),
        client_id: c === legacy ? 'preview-legacy' : 'preview-modern',
      });
      const { prompt_id } = (await r.json()) as { prompt_id: string };
      await c.waitFor(doneMarker(prompt_id));
    }
    expect(legacy.binary.length).toBe(2);
    const f = legacy.binary[0];
    expect([f.readUInt32BE(0), f.readUInt32BE(4)]).toEqual([1, 2]);
    expect(f.subarray(8, 12).toString('latin1')).toBe('\x89PNG');
    const m = modern.binary[0];
    expect(m.readUInt32BE(0)).toBe(4);
    const len = m.readUInt32BE(4);
    expect(JSON.parse(m.subarray(8, 8 + len).toString())).toMatchObject({ node_id: '5', image_type: 'image/png', prompt_id: expect.any(String) });
    expect(m.subarray(8 + len, 12 + len).toString('latin1')).toBe('\x89PNG');
    // Job events never reach other clients.
    expect(ws.binary.length).toBe(0);
    legacy.close();
    modern.close();
  });
});

describe('SaveImageWebsocket', () => {
  test('streams full-size PNG frames (type 1, format 2) between executing(node) and executing(null), every run', async () => {
    const c = await connectWs(s.url, 'ws-images');
    const prompt = {
      '1': { class_type: 'TestImage', inputs: { width: 5, height: 4, seed: 801 } },
      save_image_websocket_node: { class_type: 'SaveImageWebsocket', inputs: { images: ['1', 0] } },
    };
    for (let run = 1; run <= 2; run++) {
      const r = await postJson(`${s.url}/prompt`, { prompt, client_id: 'ws-images' });
      const { prompt_id } = (await r.json()) as { prompt_id: string };
      await c.waitFor(doneMarker(prompt_id));
      expect(c.binary.length).toBe(run);
      const f = c.binary[run - 1];
      expect([f.readUInt32BE(0), f.readUInt32BE(4)]).toEqual([1, 2]);
      const { decodePng } = await import('../../nodes/image/png.ts');
      expect(decodePng(f.subarray(8))).toMatchObject({ width: 5, height: 4 });
      expect((await historyOf(prompt_id))!.outputs).toEqual({});
    }
    const order = c.sequence.filter((t) => t.startsWith('executing') || t === 'binary');
    expect(order.slice(-3)).toEqual(['executing:save_image_websocket_node', 'binary', 'executing:null']);
    c.close();
  });
});

describe('restart', () => {
  test('history survives a restart with the same user dir', async () => {
    const id = await queuePrompt(imagePrompt({ seed: 701 }));
    await ws.waitFor(doneMarker(id));
    const before = await historyOf(id);
    const preview = await queuePrompt(imagePrompt({ seed: 702, save: 'PreviewImage' }));
    await ws.waitFor(doneMarker(preview));
    const previewFile = ((await historyOf(preview))!.outputs['9'] as { images: Array<{ filename: string; type: string }> }).images[0];
    expect(previewFile.type).toBe('temp');
    expect(fs.existsSync(`${s.dirs.temp}/${previewFile.filename}`)).toBe(true);
    fs.writeFileSync(`${s.dirs.temp}/keep-me.txt`, 'x');
    const s2root = s.dirs.root;
    const again = await startTestServer({}, s2root);
    try {
      const h = (await (await fetch(`${again.url}/history/${id}`)).json()) as Record<string, Entry>;
      expect(h[id]).toEqual(before);
      const all = (await (await fetch(`${again.url}/history`)).json()) as Record<string, Entry>;
      expect(Object.keys(all).length).toBeGreaterThan(5);
      // Old previews are cleared at start; other files in the temp folder stay.
      expect(fs.existsSync(`${s.dirs.temp}/${previewFile.filename}`)).toBe(false);
      expect(fs.existsSync(`${s.dirs.temp}/keep-me.txt`)).toBe(true);
    } finally {
      await again.close();
    }
  });
});

describe('the queue across restarts', { timeout: 180_000 }, () => {
  const BIN = new URL('../../bin/sana-graph.js', import.meta.url).pathname;
  const queueDir = (root: string) => path.join(root, 'user', 'queue');
  const post = async (url: string, prompt: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
    const r = await postJson(`${url}/prompt`, { prompt, client_id: 'restart-client', ...extra });
    expect(r.status).toBe(200);
    return ((await r.json()) as { prompt_id: string }).prompt_id;
  };
  const queueAt = async (url: string) =>
    (await (await fetch(`${url}/queue`)).json()) as { queue_running: [number, string][]; queue_pending: [number, string][] };
  const historyAt = async (url: string) => (await (await fetch(`${url}/history`)).json()) as Record<string, Entry>;
  const stoppedMessage = (e: Entry) => String(e.status.messages.find(([t]) => t === 'execution_error')?.[1].exception_message);

  /** After a restart: the stopped job is a failed entry, the pending ones ran in queue order, nothing is left on disk. */
  async function expectRecovered(url: string, root: string, stopped: string, inOrder: string[]) {
    const h = await until(
      async () => {
        const all = await historyAt(url);
        return inOrder.every((id) => all[id]) ? all : undefined;
      },
      60_000,
      'the restored jobs to finish',
    );
    expect(h[stopped].status).toMatchObject({ status_str: 'error', completed: false });
    expect(stoppedMessage(h[stopped])).toMatch(/server stopped during execution/);
    for (const id of inOrder) expect(h[id].status.status_str).toBe('success');
    const ids = Object.keys(h);
    expect(ids.filter((id) => id === stopped || inOrder.includes(id))).toEqual([stopped, ...inOrder]);
    await until(async () => (await queueAt(url)).queue_running.length === 0, 10_000, 'the queue to drain');
    expect(fs.readdirSync(queueDir(root)).filter((f) => f.endsWith('.json'))).toEqual([]);
  }

  test('pending jobs survive a shutdown and are re-queued in order; the job cut short becomes a failed entry', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-requeue-'));
    const a = await startTestServer({}, root);
    let stopped: string, p1: string, p2: string, front: string;
    try {
      stopped = await post(a.url, imagePrompt({ seed: 801, slowMs: 5000, steps: 50 }));
      await until(async () => (await queueAt(a.url)).queue_running[0]?.[1] === stopped, 10_000, 'the first job to run');
      p1 = await post(a.url, imagePrompt({ seed: 802 }));
      p2 = await post(a.url, imagePrompt({ seed: 803 }));
      front = await post(a.url, imagePrompt({ seed: 804 }), { front: true });
      const gone = await post(a.url, imagePrompt({ seed: 805 }));
      expect((await postJson(`${a.url}/queue`, { delete: [gone] })).status).toBe(200);
      expect(fs.readdirSync(queueDir(root)).sort()).toEqual(expect.arrayContaining(['running.json']));
      expect(fs.readdirSync(queueDir(root)).filter((f) => /^\d+\.json$/.test(f))).toHaveLength(3);
    } finally {
      await a.close();
    }
    const b = await startTestServer({}, root);
    try {
      await expectRecovered(b.url, root, stopped, [front, p1, p2]);
      // New jobs queue behind the restored ones' numbers, and no longer persist once done.
      const next = await post(b.url, imagePrompt({ seed: 806 }));
      await until(async () => (await historyAt(b.url))[next], 30_000, 'a new job');
    } finally {
      await b.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test('a job whose history entry was written before the server died keeps its success entry', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-finished-'));
    const a = await startTestServer({}, root);
    let id: string;
    try {
      id = await post(a.url, imagePrompt({ seed: 851 }));
      await until(async () => (await historyAt(a.url))[id], 30_000, 'the job');
    } finally {
      await a.close();
    }
    // As if killed between writing history and dropping running.json.
    const item = new HistoryStore(path.join(root, 'user'), 10).get(id)!.prompt;
    const store = new QueueStore(path.join(root, 'user'));
    const job: Job = { number: item[0], promptId: item[1], prompt: item[2], extraData: item[3], outputs: item[4], sensitive: {}, clientId: undefined };
    store.add(job);
    store.started(job);
    const b = await startTestServer({}, root);
    try {
      expect((await historyAt(b.url))[id].status.status_str).toBe('success');
      expect(fs.readdirSync(queueDir(root)).filter((f) => f.endsWith('.json'))).toEqual([]);
    } finally {
      await b.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test('after kill -9 of the server process, the running job is a failed entry and the pending ones run in order', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sana-kill9-'));
    const dir = (n: string) => path.join(root, n);
    fs.mkdirSync(dir('models'), { recursive: true });
    const child = spawn(
      process.execPath,
      [
        BIN,
        'serve',
        '--port',
        '0',
        '--output-dir',
        dir('output'),
        '--input-dir',
        dir('input'),
        '--temp-dir',
        dir('temp'),
        '--user-dir',
        dir('user'),
        '--models-dir',
        dir('models'),
      ],
      { env: { ...process.env, SANA_GRAPH_EXTRA_NODES: TEST_NODES }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let stopped: string, p1: string, p2: string;
    try {
      const url = await until(() => /serving on (http:\/\/\S+)/.exec(stderr)?.[1], 120_000, 'the server to start');
      stopped = await post(url, imagePrompt({ seed: 901, slowMs: 60_000, steps: 600 }));
      p1 = await post(url, imagePrompt({ seed: 902 }));
      p2 = await post(url, imagePrompt({ seed: 903 }));
      await until(async () => (await queueAt(url)).queue_running[0]?.[1] === stopped, 30_000, 'the first job to run');
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const b = await startTestServer({}, root);
    try {
      await expectRecovered(b.url, root, stopped, [p1, p2]);
    } finally {
      await b.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
