// Shared helpers of the server tests: a real server on a free port with temp folders and the
// test-only nodes, a WebSocket client that records frames, and small prompt builders.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { startServer, type RunningServer, type ServerDeps, type ServerOptions } from '../../web/server/index.ts';
import { StubHost } from './stub_host.ts';

export const TEST_NODES = new URL('./fixtures/test_nodes.ts', import.meta.url).href;

export interface TestServer extends RunningServer {
  dirs: { root: string; output: string; input: string; temp: string; user: string; models: string };
}

export async function startTestServer(opts: ServerOptions = {}, root?: string, deps: ServerDeps = {}): Promise<TestServer> {
  const base = root ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sana-server-'));
  const dirs = {
    root: base,
    output: path.join(base, 'output'),
    input: path.join(base, 'input'),
    temp: path.join(base, 'temp'),
    user: path.join(base, 'user'),
    models: path.join(base, 'models'),
  };
  fs.mkdirSync(dirs.models, { recursive: true });
  const server = await startServer(
    {
      port: 0,
      outputDir: dirs.output,
      inputDir: dirs.input,
      tempDir: dirs.temp,
      userDir: dirs.user,
      modelsDir: dirs.models,
      extraNodeModules: [TEST_NODES],
      staticDir: path.join(base, 'static'),
      ...opts,
    },
    deps,
  );
  return Object.assign(server, { dirs });
}

export interface StubServer extends TestServer {
  host: StubHost;
}

/**
 * A server whose jobs run on a StubHost (no execution child): for tests of HTTP and WebSocket
 * behaviour. The main-thread registry still has the test nodes, so prompts validate as usual.
 */
export async function startStubServer(opts: ServerOptions = {}, root?: string, host = new StubHost()): Promise<StubServer> {
  return Object.assign(await startTestServer(opts, root, { host }), { host });
}

export interface WsRecorder {
  ws: WebSocket;
  messages: Array<{ type: string; data: Record<string, unknown> }>;
  binary: Buffer[];
  /** Every frame in arrival order: a message's type ("executing:<node>" for executing), or "binary". */
  sequence: string[];
  /** Resolves with the first message (already received or future) matching `pred`. */
  waitFor(pred: (m: { type: string; data: Record<string, unknown> }) => boolean, timeoutMs?: number): Promise<{ type: string; data: Record<string, unknown> }>;
  close(): void;
}

export async function connectWs(url: string, clientId: string, headers: Record<string, string> = {}): Promise<WsRecorder> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws?clientId=${encodeURIComponent(clientId)}`, { headers });
  const messages: WsRecorder['messages'] = [];
  const binary: Buffer[] = [];
  const sequence: string[] = [];
  const waiters: Array<{ pred: (m: WsRecorder['messages'][number]) => boolean; resolve: (m: WsRecorder['messages'][number]) => void }> = [];
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      binary.push(Buffer.from(data as Buffer));
      sequence.push('binary');
      return;
    }
    const m = JSON.parse(String(data)) as WsRecorder['messages'][number];
    messages.push(m);
    sequence.push(m.type === 'executing' ? `executing:${String(m.data.node)}` : m.type);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`ws upgrade refused: ${res.statusCode}`)));
  });
  return {
    ws,
    messages,
    binary,
    sequence,
    waitFor(pred, timeoutMs = 30_000) {
      const found = messages.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for a WS message; got ${messages.map((m) => m.type).join(',')}`)), timeoutMs);
        waiters.push({ pred, resolve: (m) => (clearTimeout(t), resolve(m)) });
      });
    },
    close: () => ws.close(),
  };
}

/** TestImage -> [TestSlow] -> SaveImage. */
export function imagePrompt(
  opts: { seed?: number; slowMs?: number; steps?: number; prefix?: string; preview?: boolean; save?: 'SaveImage' | 'PreviewImage' } = {},
): Record<string, unknown> {
  const prompt: Record<string, unknown> = {
    '1': { class_type: 'TestImage', inputs: { width: 8, height: 6, seed: opts.seed ?? 1 } },
    '9': {
      class_type: opts.save ?? 'SaveImage',
      inputs: { images: ['1', 0], ...(opts.save === 'PreviewImage' ? {} : { filename_prefix: opts.prefix ?? 'test' }) },
    },
  };
  if (opts.slowMs !== undefined) {
    prompt['5'] = { class_type: 'TestSlow', inputs: { images: ['1', 0], ms: opts.slowMs, steps: opts.steps ?? 10, preview: opts.preview ?? false } };
    (prompt['9'] as { inputs: Record<string, unknown> }).inputs.images = ['5', 0];
  }
  return prompt;
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Polls `fn` until it returns a truthy value. */
export async function until<T>(fn: () => T | Promise<T>, timeoutMs = 30_000, what = 'condition'): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Multipart bodies /upload/image must refuse with 400 (path escapes, a subfolder or type out of
 *  bounds, no file name, no image part), one per case; the folder and the store tests share them. */
export const HOSTILE_UPLOADS: Array<[Array<{ name: string; value: string; filename?: string }>]> = [
  [[{ name: 'image', value: 'x', filename: '../evil.png' }]],
  [[{ name: 'image', value: 'x', filename: '/etc/evil.png' }]],
  [[{ name: 'image', value: 'x', filename: 'a\\..\\evil.png' }]],
  [[{ name: 'image', value: 'x', filename: 'a/b.png' }]],
  [
    [
      { name: 'image', value: 'x', filename: 'ok.png' },
      { name: 'subfolder', value: '../..' },
    ],
  ],
  [
    [
      { name: 'image', value: 'x', filename: 'ok.png' },
      { name: 'subfolder', value: '/tmp' },
    ],
  ],
  [
    [
      { name: 'image', value: 'x', filename: 'ok.png' },
      { name: 'type', value: 'models' },
    ],
  ],
  [[{ name: 'image', value: 'x', filename: '' }]],
  [[{ name: 'other', value: 'x', filename: 'a.png' }]],
];
