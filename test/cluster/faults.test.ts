// Real worker processes (worker_entry.ts, stub host) against a real Redis: 100 prompts from two
// front ends through 3 workers complete exactly once, in queue order per front end; a worker
// killed with SIGKILL mid-job loses the job to another worker, which completes it (one history
// entry); a job that kills every worker that takes it fails after maxStalledCount with the
// reason; model affinity sends a job to the idle worker that holds its models; a worker whose
// lock was taken away (frozen past it) stops and records nothing.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrontEnd, spawnWorker, waitFor, type WorkerProc } from './helpers.ts';
import { RedisServer } from './redis_harness.ts';
import { stubPrompt } from './stub_host.ts';

let redis: RedisServer;
let a: FrontEnd;
let b: FrontEnd;
let dir: string;
let log: string;
const workers: WorkerProc[] = [];
let nextWorker = 0;

// Short locks so a dead worker's job moves on in ~2-4 s. A long affinity grace: under CI load the
// holder may need more than the default 300 ms to fetch (only the affinity test's jobs name models).
const ENV = { CLUSTER_PREFIX: 'ft', LOCK_MS: 2000, STALLED_MS: 1000, MAX_STALLED: 1, GRACE_MS: 3000 };

function spawn(extra: Record<string, string | number> = {}): WorkerProc {
  const w = spawnWorker(redis.url, `w${++nextWorker}`, { ...ENV, STUB_LOG: log, ...extra });
  workers.push(w);
  return w;
}

/** STUB_LOG lines for a prompt: [event, pid]. */
function runsOf(id: string): Array<[string, number]> {
  return fs
    .readFileSync(log, 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((p) => p[1] === id)
    .map((p) => [p[0], Number(p[2])]);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-faults-'));
  log = path.join(dir, 'runs.log');
  fs.writeFileSync(log, '');
  redis = await RedisServer.start();
  a = await FrontEnd.open(redis.url, 'ft');
  b = await FrontEnd.open(redis.url, 'ft');
  await Promise.all([a.listen(), b.listen()]);
  await Promise.all([spawn(), spawn(), spawn()].map((w) => w.ready));
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await a?.close();
  await b?.close();
  await redis?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('3 worker processes', () => {
  it('complete 100 prompts from two front ends exactly once, in queue order per front end', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      for (const [fe, name] of [
        [a, 'a'],
        [b, 'b'],
      ] as const) {
        const id = `${name}${i}`;
        ids.push(id);
        await fe.submit(id, stubPrompt({ ms: 20 }), { clientId: `client-${name}` });
      }
    }
    await waitFor('100 history entries', async () => (await a.history.size()) === 100, 50_000, 200);
    // (each worker completes its job just after writing the entry)
    await waitFor('queue empty', async () => (await a.jobs.remaining()) === 0, 10_000);
    const ha = await a.history.list();
    expect(await b.history.list()).toEqual(ha);
    expect(Object.keys(ha).sort()).toEqual([...ids].sort());
    const lines = fs
      .readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' '));
    for (const id of ids) expect(runsOf(id).map((r) => r[0])).toEqual(['start', 'done']);
    // Start order per front end: any inversion is between jobs taken at the same moment by
    // different workers (fewer positions apart than there are workers).
    for (const name of ['a', 'b']) {
      const started = lines.filter((l) => l[0] === 'start' && l[1].startsWith(name)).map((l) => Number(l[1].slice(1)));
      started.forEach((n, pos) => expect(Math.abs(n - pos)).toBeLessThan(3));
    }
    // Every client heard each of its jobs end exactly once, through either front end (`executing
    // null` follows the history entry: wait for them, then for any extra one).
    const allEnds = (fe: FrontEnd) => fe.messages.filter((m) => m.kind === 'event' && m.type === 'executing' && m.data.node === null);
    await waitFor('100 ends at both front ends', () => allEnds(a).length >= 100 && allEnds(b).length >= 100);
    await new Promise((r) => setTimeout(r, 500));
    for (const fe of [a, b]) {
      const ends = allEnds(fe);
      expect(ends).toHaveLength(100);
      expect(new Set(ends.map((m) => m.promptId)).size).toBe(100);
    }
    expect(new Set(lines.map((l) => l[2])).size).toBe(3);
  });

  it('a worker killed with SIGKILL mid-job: another worker completes the job, one history entry', async () => {
    await a.submit('victim', stubPrompt({ ms: 4000, steps: 40 }), { clientId: 'cv' });
    const r = await waitFor('victim running', async () => (await a.jobs.running()).find((x) => x.job.promptId === 'victim' && x.node === '1'));
    const w = workers.find((x) => x.id === r.workerId)!;
    const t0 = Date.now();
    w.kill9();
    await w.exited;
    const e = await waitFor('victim in history', () => a.history.get('victim'), 30_000, 100);
    const took = Date.now() - t0;
    expect(e.status.status_str).toBe('success');
    const runs = runsOf('victim');
    expect(runs.map((x) => x[0])).toEqual(['start', 'start', 'done']);
    expect(runs[0][1]).toBe(w.proc.pid);
    expect(runs[2][1]).not.toBe(w.proc.pid);
    expect(Object.keys(await a.history.list()).filter((k) => k === 'victim')).toHaveLength(1);
    // lock 2 s + up to two stalled checks + the 4 s job again
    expect(took).toBeLessThan(15_000);
    const ends = () => a.messages.filter((m) => m.promptId === 'victim' && m.kind === 'event' && m.type === 'executing' && m.data.node === null);
    await waitFor('executing null for victim', () => ends().length > 0);
    await new Promise((r) => setTimeout(r, 500));
    expect(ends()).toHaveLength(1);
    await spawn().ready;
  });

  it('a job that kills every worker fails after maxStalledCount with the reason, once', async () => {
    await b.submit('killer', stubPrompt({ kill: true }), { clientId: 'ck' });
    const e = await waitFor('killer in history', () => b.history.get('killer'), 40_000, 100);
    expect(e.status.status_str).toBe('error');
    const [type, data] = e.status.messages[0] as [string, Record<string, unknown>];
    expect(type).toBe('execution_error');
    expect(data.exception_type).toBe('WorkerLost');
    expect(String(data.exception_message)).toMatch(
      /^the job's worker died 2 times \(last: worker w\d+ on .+, pid \d+, in node 1 \(Stub\)\); it is not retried again \(max stalled count 1\)$/,
    );
    expect(runsOf('killer').map((x) => x[0])).toEqual(['start', 'start']);
    await waitFor('the error event', () =>
      a.messages.some((m) => m.promptId === 'killer' && m.kind === 'event' && m.type === 'executing' && m.data.node === null),
    );
    const msgs = a.messages.filter((m) => m.promptId === 'killer' && m.kind === 'event').map((m) => (m.kind === 'event' ? m.type : ''));
    expect(msgs.filter((t) => t === 'execution_error')).toHaveLength(1);
    expect(await a.jobs.remaining()).toBe(0);
    expect(await a.jobs.state('killer')).toBe('in history');
    // The survivor still works.
    await a.submit('after', stubPrompt({ ms: 10 }));
    expect((await waitFor('after', () => a.history.get('after'))).status.status_str).toBe('success');
  });

  it('prefers the idle worker that holds the job models', async () => {
    // Two fresh workers beside the survivor; three idle workers, none holding anything yet.
    await Promise.all([spawn().ready, spawn().ready]);
    const withModels = (ms: number) => stubPrompt({ ms }, { '9': { class_type: 'SanaDiT', inputs: { ckpt_name: 'sana/affinity' } } });
    await a.submit('load', withModels(50));
    await waitFor('load done', () => a.history.has('load'));
    const holder = runsOf('load')[0][1];
    await waitFor('holder advertises the model', async () =>
      (await a.registry.list()).some((w) => w.pid === holder && w.state === 'idle' && w.loadedModels.includes('checkpoint:sana/affinity')),
    );
    for (let i = 0; i < 5; i++) {
      await a.submit(`aff${i}`, withModels(50));
      await waitFor(`aff${i} done`, () => a.history.has(`aff${i}`));
      expect(runsOf(`aff${i}`)[0][1]).toBe(holder);
    }
  });

  it('a worker whose lock was taken away stops, records nothing, and the job still ends once', async () => {
    await a.submit('stolen', stubPrompt({ ms: 3000, steps: 30 }), { clientId: 'cs' });
    const r = await waitFor('stolen running', async () => (await a.jobs.running()).find((x) => x.job.promptId === 'stolen' && x.node === '1'));
    // As if this worker had frozen past its lock: the lock is gone, the stalled check re-queues it.
    await a.redis.del(a.keys.lock('stolen'));
    const e = await waitFor('stolen in history', () => a.history.get('stolen'), 30_000, 100);
    expect(e.status.status_str).toBe('success');
    const runs = runsOf('stolen').map((x) => x[0]);
    expect(runs.filter((x) => x === 'start')).toHaveLength(2);
    expect(runs.filter((x) => x === 'done')).toHaveLength(1);
    expect(runs).toContain('interrupted');
    const w = workers.find((x) => x.id === r.workerId)!;
    await waitFor('the lost-lock log', () => w.stderr().includes('job stolen: lock lost'));
    // `executing null` goes out after the history entry: wait for it, then for any second one.
    const ends = () => a.messages.filter((m) => m.promptId === 'stolen' && m.kind === 'event' && m.type === 'executing' && m.data.node === null);
    await waitFor('executing null for stolen', () => ends().length > 0);
    await new Promise((r) => setTimeout(r, 500));
    expect(ends()).toHaveLength(1);
  });
});
