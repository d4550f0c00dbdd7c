// The distributed queue and history against a real Redis: ordering (100 jobs, front, delete,
// clear), prompt_id_in_use, exact 64-bit seeds, history idempotence / retention / listing parity
// with the single-process HistoryStore, the lock-guarded write, and a worker running the queue in
// order (in this process: ordering needs no kill -9).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PromptIdInUseError } from '../../cluster/jobs.ts';
import { QUEUE_NAME } from '../../cluster/keys.ts';
import { modelKeys } from '../../cluster/models.ts';
import { ClusterWorker } from '../../cluster/worker.ts';
import { HistoryStore, type HistoryEntry } from '../../web/server/history.ts';
import { FrontEnd, waitFor } from './helpers.ts';
import { RedisServer } from './redis_harness.ts';
import { StubHost, stubPrompt } from './stub_host.ts';

let redis: RedisServer;
let fe: FrontEnd;

beforeAll(async () => {
  redis = await RedisServer.start();
  fe = await FrontEnd.open(redis.url, 'jt', 5);
});
afterAll(async () => {
  await fe?.close();
  await redis?.close();
});

const ids = (items: Array<[number, string, ...unknown[]]>) => items.map((i) => i[1]);

describe('queue', () => {
  it('keeps 100 jobs in order, puts front jobs first, deletes and clears pending ones', async () => {
    for (let i = 0; i < 100; i++) await fe.submit(`p${i}`, stubPrompt());
    let snap = await fe.jobs.snapshot();
    expect(ids(snap.queue_pending)).toEqual(Array.from({ length: 100 }, (_, i) => `p${i}`));
    expect(snap.queue_pending.map((i) => i[0])).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    // ComfyUI: a front job gets -n; the later one runs first.
    const f1 = await fe.submit('f1', stubPrompt(), { front: true });
    const f2 = await fe.submit('f2', stubPrompt(), { front: true });
    expect([f1.number, f2.number]).toEqual([-101, -102]);
    snap = await fe.jobs.snapshot();
    expect(ids(snap.queue_pending).slice(0, 3)).toEqual(['f2', 'f1', 'p0']);
    expect(snap.queue_pending.map((i) => i[0])).toEqual([...snap.queue_pending.map((i) => i[0])].sort((a, b) => a - b));
    expect(await fe.jobs.delete(['p3', 'p50', 'nope', 'p3'])).toBe(2);
    expect(await fe.jobs.remaining()).toBe(100);
    expect(await fe.jobs.state('p50')).toBeUndefined();
    expect(await fe.jobs.state('p51')).toBe('queued');
    // A deleted id is free again.
    await fe.submit('p50', stubPrompt());
    expect(ids((await fe.jobs.snapshot()).queue_pending).at(-1)).toBe('p50');
    expect(await fe.jobs.clear()).toBe(101);
    expect(await fe.jobs.remaining()).toBe(0);
    expect((await fe.jobs.snapshot()).queue_pending).toEqual([]);
  });

  it('refuses a prompt id that is queued or in history (prompt_id_in_use), atomically', async () => {
    await fe.submit('dup', stubPrompt());
    const again = fe.submit('dup', stubPrompt());
    await expect(again).rejects.toBeInstanceOf(PromptIdInUseError);
    await expect(again).rejects.toMatchObject({ state: 'queued' });
    // Two front ends adding one id at once: exactly one wins.
    const racers = await Promise.allSettled([fe.submit('race', stubPrompt()), fe.submit('race', stubPrompt()), fe.submit('race', stubPrompt())]);
    expect(racers.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    await fe.history.add('old', entry('old'));
    await expect(fe.submit('old', stubPrompt())).rejects.toMatchObject({ state: 'in history' });
    await fe.jobs.clear();
    await fe.history.clear();
  });

  it('keeps 64-bit seeds and the job fields exact through Redis', async () => {
    const seed = 18446744073709551615n;
    await fe.submit('big', stubPrompt({ ms: 0 }, { '2': { class_type: 'Seed', inputs: { seed } } }), { clientId: 'c1' });
    const [job] = await fe.jobs.pending();
    expect((job.prompt['2'] as { inputs: { seed: bigint } }).inputs.seed).toBe(seed);
    expect(job.clientId).toBe('c1');
    expect(job.outputs).toEqual(['1']);
    await fe.jobs.clear();
  });

  it('reads model keys from the loader nodes', () => {
    const prompt = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '../../workflows/sana_lora.api.json'), 'utf8')) as Record<string, unknown>;
    expect(modelKeys(prompt)).toEqual([
      'checkpoint:sana/Sana_Tiny_diffusers',
      'lora:sana_tiny_lora.safetensors',
      'text_encoder:sana/Sana_Tiny_diffusers',
      'vae:sana/Sana_Tiny_diffusers',
    ]);
    expect(modelKeys({ a: { class_type: 'GemmaLoader', inputs: { model_name: 'g' } }, b: { class_type: 'SanaDiT', inputs: { ckpt_name: ['a', 0] } } })).toEqual(
      ['text_encoder:g'],
    );
  });

  it('names BullMQ lock keys as ClusterKeys.lock does', () => {
    expect(fe.jobs.queue.toKey('abc') + ':lock').toBe(fe.keys.lock('abc'));
    expect(fe.jobs.queue.name).toBe(QUEUE_NAME);
  });
});

function entry(id: string, n = 1): HistoryEntry {
  return {
    prompt: [n, id, { '1': { class_type: 'Stub', inputs: { seed: 2n ** 63n } } }, { create_time: n }, ['1']],
    outputs: { '1': { images: [{ filename: `${id}.png`, subfolder: '', type: 'output' }] } },
    status: { status_str: 'success', completed: true, messages: [['execution_start', { prompt_id: id }]] },
    meta: {},
  };
}

describe('history', () => {
  it('lists like HistoryStore, keeps the newest N, and the first write wins', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hist-'));
    const local = new HistoryStore(dir, 5);
    for (let i = 0; i < 8; i++) {
      expect(await fe.history.add(`h${i}`, entry(`h${i}`, i))).toBe('added');
      local.add(`h${i}`, entry(`h${i}`, i));
    }
    expect(await fe.history.size()).toBe(5);
    for (const [max, off] of [
      [undefined, undefined],
      [2, undefined],
      [10, undefined],
      [2, 1],
      [undefined, 3],
      [0, undefined],
      [3, 4],
      [1, 9],
    ] as const) {
      expect(await fe.history.list(max, off)).toEqual(local.list(max, off));
    }
    expect(await fe.history.add('h7', entry('h7', 99))).toBe('exists');
    expect((await fe.history.get('h7'))!.prompt[0]).toBe(7);
    expect(((await fe.history.get('h7'))!.prompt[2]['1'] as { inputs: { seed: bigint } }).inputs.seed).toBe(2n ** 63n);
    // Pruned entries free their prompt id.
    expect(await fe.jobs.state('h0')).toBeUndefined();
    expect(await fe.jobs.state('h3')).toBe('in history');
    await fe.history.delete(['h3', 'zz']);
    expect(await fe.history.has('h3')).toBe(false);
    expect(Object.keys(await fe.history.list())).toEqual(['h4', 'h5', 'h6', 'h7']);
    await fe.history.clear();
    expect(await fe.history.list()).toEqual({});
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes a guarded entry only for the holder of the job lock', async () => {
    await fe.redis.set(fe.keys.lock('g1'), 'tok-a', 'PX', 10_000);
    expect(await fe.history.add('g1', entry('g1'), { token: 'tok-b' })).toBe('lock-lost');
    expect(await fe.history.has('g1')).toBe(false);
    const e = entry('g1');
    expect(await fe.history.add('g1', e, { token: 'tok-a' })).toBe('added');
    // The identical write again is a replay (a reply lost in a reconnect), not a second entry.
    expect(await fe.history.add('g1', e, { token: 'tok-a' })).toBe('added');
    expect(await fe.history.add('g1', entry('g1', 2), { token: 'tok-a' })).toBe('exists');
    expect(await fe.history.size()).toBe(1);
    await fe.history.clear();
  });
});

describe('front ends', () => {
  it('hold no state: one that goes away loses nothing, another sees the same queue and history', async () => {
    const gone = await FrontEnd.open(redis.url, 'jt');
    await gone.submit('kept1', stubPrompt());
    await gone.submit('kept2', stubPrompt(), { front: true });
    await gone.history.add('hist1', entry('hist1'));
    gone.redis.disconnect(); // as if killed: nothing flushed, nothing said
    const fresh = await FrontEnd.open(redis.url, 'jt');
    try {
      expect(ids((await fresh.jobs.snapshot()).queue_pending)).toEqual(['kept2', 'kept1']);
      expect(await fresh.history.get('hist1')).toEqual(entry('hist1'));
      expect(await fresh.jobs.clear()).toBe(2);
      await fresh.history.clear();
    } finally {
      await fresh.close();
      await gone.close();
    }
  });
});

describe('a worker', () => {
  it('runs the queue in order, front jobs first, deleted ones never', async () => {
    const order: string[] = [];
    const host = new StubHost();
    const run = host.run.bind(host);
    host.run = (job, h) => {
      order.push(job.promptId);
      return run(job, h);
    };
    for (let i = 0; i < 30; i++) await fe.submit(`o${i}`, stubPrompt());
    await fe.submit('front', stubPrompt(), { front: true });
    await fe.jobs.delete(['o7']);
    const expected = ids((await fe.jobs.snapshot()).queue_pending);
    const w = new ClusterWorker({ redis: redis.url, prefix: 'jt', createHost: () => host, maxHistory: 100, log: () => undefined });
    await w.start();
    try {
      await waitFor('the queue to drain', async () => (await fe.jobs.remaining()) === 0 && order.length === 30);
      expect(order).toEqual(expected);
      expect(expected[0]).toBe('front');
      const hist = await fe.history.list();
      // Retention 5 on this front end's history object does not apply: the worker's is 100.
      expect(Object.keys(hist)).toEqual(expected);
      expect(hist['o3'].status.status_str).toBe('success');
      expect(w.counters.completed).toBe(30);
    } finally {
      await w.close();
    }
  });

  it('completes without running a job whose history entry an earlier attempt wrote', async () => {
    const ran: string[] = [];
    const host = new StubHost();
    const run = host.run.bind(host);
    host.run = (job, h) => {
      ran.push(job.promptId);
      return run(job, h);
    };
    await fe.submit('recorded', stubPrompt());
    // What a worker that died between its history write and the BullMQ completion leaves.
    expect(await fe.history.add('recorded', entry('recorded', 42))).toBe('added');
    const w = new ClusterWorker({ redis: redis.url, prefix: 'jt', createHost: () => host, maxHistory: 100, log: () => undefined });
    await w.start();
    try {
      await waitFor('the job completed', async () => (await fe.jobs.remaining()) === 0 && w.counters.alreadyRecorded === 1);
      expect(ran).toEqual([]);
      expect(await fe.jobs.running()).toEqual([]);
      expect((await fe.history.get('recorded'))!.prompt[0]).toBe(42); // the earlier attempt's entry stays
    } finally {
      await w.close();
    }
  });

  it('honours an interrupt that arrives while its fetch of the job is in flight', async () => {
    // BullMQ makes the job active (listed as running) before the fetch's reply reaches the
    // worker: an interrupt sent in that window must still stop the job.
    const w = new ClusterWorker({ redis: redis.url, prefix: 'jt', createHost: () => new StubHost(), maxHistory: 100, log: () => undefined });
    await w.start();
    try {
      const bull = (w as unknown as { bull: { getNextJob: (...a: unknown[]) => Promise<unknown> } }).bull;
      const fetch = bull.getNextJob.bind(bull);
      bull.getNextJob = async (...a: unknown[]) => {
        const job = (await fetch(...a)) as { id?: string } | undefined;
        if (job?.id === 'mid-fetch') {
          await fe.events.publishControl({ type: 'interrupt', promptId: 'mid-fetch' });
          await new Promise((r) => setTimeout(r, 300)); // the control message reaches the worker first
        }
        return job;
      };
      await fe.submit('mid-fetch', stubPrompt({ ms: 3000, steps: 30 }));
      const e = await waitFor('mid-fetch in history', () => fe.history.get('mid-fetch'), 10_000);
      expect(e.status.status_str).toBe('error');
      expect(e.status.messages.map((m) => m[0])).toContain('execution_interrupted');
    } finally {
      await w.close();
    }
  });
});
