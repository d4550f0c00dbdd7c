// Crash isolation: a node that kills its process natively (SIGSEGV, abort, SIGKILL as the OOM
// killer sends) ends only the execution child process. The server (this very test process) must
// keep answering, record the job as an error, tell the client, restart the child and go on.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connectWs, imagePrompt, postJson, startTestServer, until, type TestServer, type WsRecorder } from './helpers.ts';

let s: TestServer;
let ws: WsRecorder;
const CID = 'crash-test-client';

beforeAll(async () => {
  s = await startTestServer();
  ws = await connectWs(s.url, CID);
}, 60_000);
afterAll(async () => {
  ws?.close();
  await s?.close();
  if (s) fs.rmSync(s.dirs.root, { recursive: true, force: true });
});

type Entry = {
  status: { status_str: string; completed: boolean; messages: [string, Record<string, unknown>][] };
  outputs: Record<string, { images?: unknown[] }>;
};

async function queuePrompt(prompt: Record<string, unknown>): Promise<string> {
  const r = await postJson(`${s.url}/prompt`, { prompt, client_id: CID });
  expect(r.status).toBe(200);
  return ((await r.json()) as { prompt_id: string }).prompt_id;
}

async function historyOf(id: string): Promise<Entry | undefined> {
  const h = (await (await fetch(`${s.url}/history/${id}`)).json()) as Record<string, Entry>;
  return h[id];
}

const doneMarker = (id: string) => (m: { type: string; data: Record<string, unknown> }) =>
  m.type === 'executing' && m.data.node === null && m.data.prompt_id === id;

/** TestImage -> TestCrash -> SaveImage. */
function crashPrompt(how: string, seed: number): Record<string, unknown> {
  const p = imagePrompt({ seed });
  p['4'] = { class_type: 'TestCrash', inputs: { images: ['1', 0], how } };
  (p['9'] as { inputs: Record<string, unknown> }).inputs.images = ['4', 0];
  return p;
}

describe('native crash in a node', () => {
  test.each([
    ['SIGSEGV', /signal SIGSEGV/],
    ['abort', /signal SIGABRT/],
    ['SIGKILL', /signal SIGKILL/],
  ])(
    '%s: the job is an execution_error, the server stays up and the next job runs',
    async (how, signal) => {
      await until(() => s.state.embedded.runner.pid, 60_000, 'the execution process');
      const pidBefore = s.state.embedded.runner.pid;
      const restartsBefore = s.state.embedded.runner.restarts;
      const seed = 200 + ['SIGSEGV', 'abort', 'SIGKILL'].indexOf(how) * 2;
      const id = await queuePrompt(crashPrompt(how, seed));
      const next = await queuePrompt(imagePrompt({ seed: seed + 1 }));

      await ws.waitFor(doneMarker(id), 60_000);
      const mine = ws.messages.filter((m) => m.data.prompt_id === id);
      const err = mine.find((m) => m.type === 'execution_error')!.data;
      expect(err).toMatchObject({ prompt_id: id, exception_type: 'WorkerCrashed', node_id: '4', node_type: 'TestCrash', executed: ['1'] });
      expect(String(err.exception_message)).toMatch(signal);
      // The client's last word about the job is `executing` null, after the error.
      const types = mine.map((m) => (m.type === 'executing' ? `executing:${String(m.data.node)}` : m.type));
      expect(types.slice(-2)).toEqual(['execution_error', 'executing:null']);

      // The server is the process running this test: it answers, and its queue and history are intact.
      expect((await fetch(`${s.url}/system_stats`)).status).toBe(200);
      const h = (await historyOf(id))!;
      expect(h.status).toMatchObject({ status_str: 'error', completed: false });
      const last = h.status.messages.at(-1)!;
      expect(last[0]).toBe('execution_error');
      expect(last[1]).toMatchObject({ exception_type: 'WorkerCrashed', node_id: '4' });
      expect(String(last[1].exception_message)).toMatch(signal);

      await ws.waitFor(doneMarker(next), 60_000);
      const ok = (await historyOf(next))!;
      expect(ok.status.status_str).toBe('success');
      expect(ok.outputs['9']?.images).toHaveLength(1);
      expect(s.state.embedded.runner.restarts).toBe(restartsBefore + 1);
      expect(s.state.embedded.runner.pid).toBeDefined();
      expect(s.state.embedded.runner.pid).not.toBe(pidBefore);
    },
    120_000,
  );

  test('crashes in a row: every job is reported, the queue drains, and interrupts still reach a blocking node', async () => {
    const crashes = [await queuePrompt(crashPrompt('SIGSEGV', 300)), await queuePrompt(crashPrompt('abort', 301))];
    const slow = await queuePrompt(imagePrompt({ seed: 302, slowMs: 60_000, steps: 600 }));
    for (const id of crashes) {
      await ws.waitFor(doneMarker(id), 60_000);
      expect((await historyOf(id))!.status.messages.at(-1)![1]).toMatchObject({ exception_type: 'WorkerCrashed' });
    }
    // A node busy-waiting in the child's worker thread: the interrupt goes over IPC to the relay
    // thread, which flags the worker through shared memory.
    await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === slow, 60_000);
    const t0 = Date.now();
    expect((await postJson(`${s.url}/interrupt`, { prompt_id: slow })).status).toBe(200);
    await ws.waitFor(doneMarker(slow), 30_000);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect((await historyOf(slow))!.status.messages.at(-1)![0]).toBe('execution_interrupted');
    const q = (await (await fetch(`${s.url}/queue`)).json()) as { queue_running: unknown[]; queue_pending: unknown[] };
    expect(q).toEqual({ queue_running: [], queue_pending: [] });
  }, 180_000);
});

describe('shutdown', () => {
  test('close() ends the execution process, even while a node blocks it', async () => {
    const other = await startTestServer();
    try {
      const pid = await until(() => other.state.embedded.runner.pid, 60_000, 'the execution process');
      const r = await postJson(`${other.url}/prompt`, { prompt: imagePrompt({ seed: 400, slowMs: 60_000, steps: 1 }) });
      expect(r.status).toBe(200);
      await until(() => other.state.embedded.runner.currentNode?.node === '5', 60_000, 'the blocking node');
      await other.close();
      expect(() => process.kill(pid, 0)).toThrow();
    } finally {
      fs.rmSync(other.dirs.root, { recursive: true, force: true });
    }
  }, 120_000);
});
