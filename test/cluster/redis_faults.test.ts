// Redis itself failing: unreachable at start (a clear error naming the URL, exit code 3 from the
// CLI), restarted during a run (appendonly on): connections report reconnecting, then ready;
// worker processes carry on and every job completes exactly once; front ends keep receiving.
// And lost under a front end's requests: a request waiting on Redis answers 503 while Redis is
// still down (fail fast, not at the reconnect), and a /prompt cut between its claim and its
// BullMQ add says truthfully whether it was queued; every accepted job runs exactly once.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkRedis, connect, parseRedisUrl, RedisUnavailableError, RedisUrlError, statusLine, type RedisStatus } from '../../cluster/connection.ts';
import { PromptIdPendingError, STALE_CLAIM_S } from '../../cluster/jobs.ts';
import { ClusterWorker } from '../../cluster/worker.ts';
import { postJson, startTestServer, type TestServer } from '../server/helpers.ts';
import { FrontEnd, spawnWorker, waitFor, type WorkerProc } from './helpers.ts';
import { freePort, RedisServer } from './redis_harness.ts';
import { StubHost, stubPrompt } from './stub_host.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const cleanup: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('Redis URLs', () => {
  it('parses host, port, db and password, and hides the password', () => {
    expect(parseRedisUrl('redis://example.org')).toMatchObject({ host: 'example.org', port: 6379, db: 0, tls: false, display: 'redis://example.org:6379/0' });
    expect(parseRedisUrl('rediss://u:p%40ss@10.0.0.1:7000/3')).toMatchObject({
      host: '10.0.0.1',
      port: 7000,
      db: 3,
      username: 'u',
      password: 'p@ss',
      tls: true,
      display: 'rediss://u:***@10.0.0.1:7000/3',
    });
    expect(parseRedisUrl('redis://:pw@[::1]:6380')).toMatchObject({ host: '::1', port: 6380, password: 'pw', display: 'redis://:***@[::1]:6380/0' });
    for (const bad of ['localhost:6379', 'http://h', 'redis://h/x', 'redis://']) expect(() => parseRedisUrl(bad)).toThrow(RedisUrlError);
    expect(statusLine('redis://h:1/0', { state: 'reconnecting', attempt: 3, delayMs: 400, error: 'ECONNREFUSED' })).toBe(
      'redis redis://h:1/0: reconnecting (attempt 3, next try in 400 ms: ECONNREFUSED)',
    );
  });
});

describe('Redis unreachable at start', () => {
  it('fails fast with RedisUnavailableError naming the URL; the worker starts nothing; the CLI exits 3', async () => {
    const port = await freePort();
    const t0 = Date.now();
    await expect(checkRedis(parseRedisUrl(`redis://127.0.0.1:${port}/1`))).rejects.toThrow(
      new RedisUnavailableError(`redis://127.0.0.1:${port}/1`, `connect ECONNREFUSED 127.0.0.1:${port}`),
    );
    expect(Date.now() - t0).toBeLessThan(3000);
    let created = 0;
    const w = new ClusterWorker({ redis: `redis://127.0.0.1:${port}`, createHost: () => (created++, new StubHost()), log: () => undefined });
    await expect(w.start()).rejects.toBeInstanceOf(RedisUnavailableError);
    expect(created).toBe(0);
    const r = spawnSync(process.execPath, ['bin/sana-graph.js', 'worker', '--redis', `redis://127.0.0.1:${port}/2`], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(3);
    expect(r.stderr).toContain(`sana-graph: cannot reach Redis at redis://127.0.0.1:${port}/2: connect ECONNREFUSED`);
  });
});

describe('Redis restarted during a run', () => {
  it('reconnects with back-off, reports it, and every job completes exactly once', async () => {
    const redis = await RedisServer.start({ appendonly: true });
    cleanup.push(() => redis.close());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-restart-'));
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const log = path.join(dir, 'runs.log');
    fs.writeFileSync(log, '');
    const statuses: RedisStatus[] = [];
    const watched = connect(parseRedisUrl(redis.url), { onStatus: (s) => statuses.push(s) });
    cleanup.push(() => watched.disconnect());
    const fe = await FrontEnd.open(redis.url, 'rr');
    cleanup.push(() => fe.close());
    await fe.listen();
    const workers: WorkerProc[] = [1, 2].map((i) => spawnWorker(redis.url, `r${i}`, { CLUSTER_PREFIX: 'rr', STUB_LOG: log }));
    cleanup.push(() => Promise.all(workers.map((w) => w.stop())).then(() => undefined));
    await Promise.all(workers.map((w) => w.ready));
    const ids = Array.from({ length: 20 }, (_, i) => `j${i}`);
    for (const id of ids) await fe.submit(id, stubPrompt({ ms: 150 }), { clientId: 'c' });
    await waitFor('a few done', async () => (await fe.history.size()) >= 4);
    await redis.restart(700);
    await waitFor('all 20 in history', async () => (await fe.history.size()) === 20, 40_000, 200);
    const lines = fs
      .readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' '));
    for (const id of ids) {
      // A job running at the restart may be started again only if its lock expired: it was not.
      expect(lines.filter((l) => l[1] === id && l[0] === 'done')).toHaveLength(1);
    }
    expect(Object.keys(await fe.history.list()).sort()).toEqual([...ids].sort());
    const kinds = statuses.map((s) => s.state);
    expect(kinds.indexOf('reconnecting')).toBeGreaterThan(kinds.indexOf('ready'));
    expect(kinds.lastIndexOf('ready')).toBeGreaterThan(kinds.indexOf('reconnecting'));
    const rec = statuses.find((s) => s.state === 'reconnecting') as Extract<RedisStatus, { state: 'reconnecting' }>;
    expect(rec.attempt).toBe(1);
    expect(rec.delayMs).toBe(100);
    for (const w of workers) expect(w.stderr()).toMatch(/redis \{"state":"reconnecting","attempt":1,"delayMs":100/);
    // The front end's subscription came back: it heard the jobs that ended after the restart.
    await waitFor('the last end event', () =>
      fe.messages.some((m) => m.kind === 'event' && m.type === 'executing' && m.data.node === null && m.promptId === ids.at(-1)),
    );
  });
});

/** One RESP command (ioredis always sends arrays of bulk strings) at the head of `b`, if complete. */
function parseCommand(b: Buffer): { args: string[]; length: number } | undefined {
  let pos = 0;
  const line = (): string | undefined => {
    const nl = b.indexOf('\r\n', pos);
    if (nl < 0) return undefined;
    const text = b.toString('latin1', pos + 1, nl);
    pos = nl + 2;
    return text;
  };
  if (b.length === 0) return undefined;
  if (b[0] !== 0x2a) throw new Error(`not a RESP array: ${JSON.stringify(b.subarray(0, 20).toString('latin1'))}`);
  const n = line();
  if (n === undefined) return undefined;
  const args: string[] = [];
  for (let i = 0; i < Number(n); i++) {
    const len = line();
    if (len === undefined) return undefined;
    if (pos + Number(len) + 2 > b.length) return undefined;
    args.push(b.toString('latin1', pos, pos + Number(len)));
    pos += Number(len) + 2;
  }
  return { args, length: pos };
}

interface CutRule {
  match: (args: string[]) => boolean;
  /** 'before': the command never reaches Redis. `ran`: it is forwarded, its reply swallowed,
   *  and the connection cut once `ran()` sees its effect in Redis. 'hold': the connection stays
   *  up but the command and what follows wait until `release()` (a Redis that does not answer). */
  when: 'before' | 'hold' | { ran: () => Promise<boolean> };
  done: (release: () => void) => void;
  fail: (e: Error) => void;
}

/**
 * A TCP proxy in front of Redis that cuts one connection at a chosen command — the moment a
 * front end loses Redis between sending a write and hearing its answer, made repeatable.
 * Everything else passes through; new connections (the client's reconnect) work as before.
 */
class CutProxy {
  private rule: CutRule | undefined;
  private readonly sockets = new Set<net.Socket>();
  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(target: number): Promise<CutProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = new CutProxy(server, (server.address() as net.AddressInfo).port);
    server.on('connection', (c) => proxy.relay(c, target));
    return proxy;
  }

  /** Resolves once a connection sent a matching command and was cut (or held) as `when` says;
   *  with 'hold', to the function that lets it through. */
  cut(match: CutRule['match'], when: CutRule['when']): Promise<() => void> {
    return new Promise((done, fail) => (this.rule = { match, when, done, fail }));
  }

  private relay(client: net.Socket, target: number): void {
    const upstream = net.connect(target, '127.0.0.1');
    const both = [client, upstream];
    for (const s of both) this.sockets.add(s);
    const kill = () => {
      for (const s of both) {
        s.destroy();
        this.sockets.delete(s);
      }
    };
    for (const s of both) s.on('error', kill).on('close', kill);
    let held = false;
    let holding: Buffer[] | undefined;
    upstream.on('data', (d) => held || client.write(d));
    let pending = Buffer.alloc(0);
    client.on('data', (d) => {
      if (held) return;
      if (holding) return void holding.push(d);
      pending = Buffer.concat([pending, d]);
      for (let cmd = parseCommand(pending); cmd; cmd = parseCommand(pending)) {
        const bytes = pending.subarray(0, cmd.length);
        pending = pending.subarray(cmd.length);
        const rule = this.rule;
        if (!rule?.match(cmd.args)) {
          upstream.write(bytes);
          continue;
        }
        this.rule = undefined;
        if (rule.when === 'hold') {
          holding = [bytes, pending];
          pending = Buffer.alloc(0);
          rule.done(() => {
            for (const b of holding!) upstream.write(b);
            holding = undefined;
          });
          return;
        }
        held = true;
        if (rule.when === 'before') {
          kill();
          rule.done(() => undefined);
          return;
        }
        upstream.write(bytes);
        waitFor('Redis to run the command before the cut', rule.when.ran, 10_000, 10).then(() => {
          kill();
          rule.done(() => undefined);
        }, rule.fail);
        return;
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

/** TestImage -> PreviewImage for the front end's validation; `ms` is what the stub host reads. */
function stubJob(seed: number, ms = 50): Record<string, unknown> {
  return {
    '1': { class_type: 'TestImage', inputs: { width: 8, height: 8, seed, ms } },
    '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
  };
}

type ErrorBody = { error: { type: string; message: string; extra_info: { prompt_id?: string; queued?: false | 'unknown' } } };

/** The runs the stub workers logged: "<event> <prompt id> <pid>" lines. */
function runs(log: string, event: string, id: string): number {
  return fs
    .readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(`${event} ${id} `)).length;
}

describe('Redis lost under a front end request', () => {
  let dir: string;
  let log: string;
  let redis: RedisServer;
  let observer: FrontEnd;
  const prefix = 'cut';

  async function cluster(): Promise<void> {
    redis = await RedisServer.start({ appendonly: true });
    cleanup.push(() => redis.close());
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-cut-'));
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    log = path.join(dir, 'runs.log');
    fs.writeFileSync(log, '');
    const worker = spawnWorker(redis.url, 'cw1', { CLUSTER_PREFIX: prefix, STUB_LOG: log });
    cleanup.push(() => worker.stop());
    await worker.ready;
    observer = await FrontEnd.open(redis.url, prefix);
    cleanup.push(() => observer.close());
  }

  async function frontEnd(redisUrl: string): Promise<TestServer & { statusLines: string[] }> {
    const statusLines: string[] = [];
    const server = await startTestServer({ redis: redisUrl, redisPrefix: prefix }, path.join(dir, `fe-${statusLines.length}-${Date.now()}`), {
      onRedisStatus: (line) => statusLines.push(line),
    });
    cleanup.push(() => server.close());
    return Object.assign(server, { statusLines });
  }

  const inHistory = (id: string) => waitFor(`${id} in history`, async () => (await observer.history.get(id)) ?? false, 30_000, 50);

  it('requests waiting on a frozen Redis answer 503 when it dies, before it is back; accepted jobs then run exactly once', { timeout: 120_000 }, async () => {
    await cluster();
    const fe = await frontEnd(redis.url);
    const accepted: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await postJson(`${fe.url}/prompt`, { prompt: stubJob(i, 300), prompt_id: `ok${i}` });
      expect(res.status).toBe(200);
      accepted.push(`ok${i}`);
    }
    // Frozen, Redis holds every command sent to it: these requests wait on it mid-way.
    process.kill(redis.pid!, 'SIGSTOP');
    const hang = AbortSignal.timeout(60_000);
    const post = (p: string, body: unknown) =>
      fetch(`${fe.url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: hang });
    const waiting = [
      post('/prompt', { prompt: stubJob(10), prompt_id: 'lost1' }),
      post('/prompt', { prompt: stubJob(11), prompt_id: 'lost2', front: true }),
      post('/queue', { delete: ['ok3'] }),
      post('/interrupt', {}),
      post('/history', { delete: ['nothing'] }),
    ];
    let answered = 0;
    for (const w of waiting) void w.then(() => answered++);
    await new Promise((r) => setTimeout(r, 300));
    const answeredWhileFrozen = answered;
    await redis.kill();
    const replies = await Promise.all(waiting);
    // Every one answered while Redis was still down, and by the drop (the fail-fast connection),
    // not by the request timeout: the message says the connection was lost.
    expect(answeredWhileFrozen).toBe(0);
    const bodies: ErrorBody[] = [];
    for (const res of replies) {
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      const body = (await res.json()) as ErrorBody;
      bodies.push(body);
      expect(body.error.type).toBe('backend_unavailable');
      expect(body.error.message).toContain(`the cluster's Redis at ${redis.url}/0 was lost during the request`);
    }
    // Cut before their queue write: they say so, with the id.
    expect(bodies[0].error.extra_info).toEqual({ prompt_id: 'lost1', queued: false });
    expect(bodies[1].error.extra_info).toEqual({ prompt_id: 'lost2', queued: false });
    // While it is down, new requests answer at once too; what needs no Redis still works.
    const down = await postJson(`${fe.url}/prompt`, { prompt: stubJob(12), prompt_id: 'lost3' });
    expect(down.status).toBe(503);
    expect(((await down.json()) as ErrorBody).error.extra_info).toEqual({ prompt_id: 'lost3', queued: false });
    expect((await fetch(`${fe.url}/object_info/TestImage`)).status).toBe(200);

    await redis.restart();
    for (const id of accepted) await inHistory(id);
    await waitFor('the front end to be back', () => fe.statusLines.some((l) => l.endsWith(': ready')) && fe.state.backend.remainingNow() === 0, 20_000);
    const after = await postJson(`${fe.url}/prompt`, { prompt: stubJob(13), prompt_id: 'after' });
    expect(after.status).toBe(200);
    await inHistory('after');
    for (const id of [...accepted, 'after']) expect(runs(log, 'done', id), id).toBe(1);
    for (const id of ['lost1', 'lost2', 'lost3']) {
      expect(runs(log, 'start', id), id).toBe(0);
      expect(await observer.jobs.state(id)).toBeUndefined();
    }
  });

  it(
    'a /prompt cut between its claim and its BullMQ add says whether it was queued; once settled, the same prompt_id queues it exactly once',
    { timeout: 120_000 },
    async () => {
      const proxy = await CutProxy.start(redis.port);
      cleanup.push(() => proxy.close());
      const fe = await frontEnd(`redis://127.0.0.1:${proxy.port}`);
      const k = observer.keys;
      const submit = async (id: string, seed: number) => {
        const res = await postJson(`${fe.url}/prompt`, { prompt: stubJob(seed), prompt_id: id });
        return { status: res.status, body: (await res.json()) as ErrorBody & { prompt_id?: string } };
      };
      const claimOf = (id: string) => observer.redis.hget(k.ids, id);
      // The claim is a script (ClusterJobs: HSETNX stamped with Redis's clock) on the ids hash.
      const isClaim = (id: string) => (a: string[]) => /^eval(sha)?$/i.test(a[0]) && a[3] === k.ids && a[4] === id;
      const isAdd = (id: string) => (a: string[]) => /^eval(sha)?$/i.test(a[0]) && a.some((x) => x.includes('promptId') && x.includes(id));
      // Loads BullMQ's scripts into this Redis (restarted above), so the add is one EVALSHA.
      expect((await submit('warm', 1)).status).toBe(200);
      await inHistory('warm');

      // 1. The claim ran, its answer was lost: nothing was queued, and the claim is freed.
      const claimCut = proxy.cut(isClaim('c1'), { ran: async () => (await claimOf('c1')) !== null });
      const r1 = await submit('c1', 2);
      await claimCut;
      expect(r1.status).toBe(503);
      expect(r1.body.error.extra_info).toEqual({ prompt_id: 'c1', queued: false });
      expect(r1.body.error.message).toContain('it was not queued');
      await waitFor('the cut claim of c1 to be freed', async () => (await claimOf('c1')) === null);

      // 2. The add never reached Redis, but the front end cannot know: "unknown"; settled as not queued.
      const addLost = proxy.cut(isAdd('c2'), 'before');
      const r2 = await submit('c2', 3);
      await addLost;
      expect(r2.status).toBe(503);
      expect(r2.body.error.extra_info).toEqual({ prompt_id: 'c2', queued: 'unknown' });
      expect(r2.body.error.message).toContain('may or may not be queued');
      expect(r2.body.error.message).toContain('/history/c2');
      await waitFor('the cut claim of c2 to be freed', async () => (await claimOf('c2')) === null);

      // 3. The add ran, its answer was lost: "unknown" again; it was queued and runs.
      const addRan = proxy.cut(isAdd('c3'), {
        ran: async () => (await observer.redis.exists(observer.jobs.queue.toKey('c3'))) === 1 || (await observer.history.has('c3')),
      });
      const r3 = await submit('c3', 4);
      await addRan;
      expect(r3.status).toBe(503);
      expect(r3.body.error.extra_info).toEqual({ prompt_id: 'c3', queued: 'unknown' });
      await inHistory('c3');

      // 4. Redis stops answering without the connection dropping: the request gives up after its
      // bounded wait, before the claim's answer came; the claim, run later, sends no add.
      const held = proxy.cut(isClaim('c4'), 'hold');
      const r4 = submit('c4', 5);
      const release = await held;
      const r4done = await r4;
      expect(r4done.status).toBe(503);
      expect(r4done.body.error.extra_info).toEqual({ prompt_id: 'c4', queued: false });
      expect(r4done.body.error.message).toContain('no answer within');
      release();
      await waitFor('the late claim of c4 to be made and freed', async () => (await claimOf('c4')) === null && (await observer.jobs.state('c4')) === undefined);

      // Resubmitted with the same prompt_id, as the message advises: those that were not queued
      // are queued now; the one that was is refused. Each runs exactly once.
      for (const [id, seed] of [
        ['c1', 2],
        ['c2', 3],
        ['c4', 5],
      ] as const) {
        const again = await submit(id, seed);
        expect(again.status, JSON.stringify(again.body)).toBe(200);
        await inHistory(id);
      }
      const again3 = await submit('c3', 4);
      expect(again3.status).toBe(400);
      expect(again3.body.error.type).toBe('prompt_id_in_use');
      for (const id of ['c1', 'c2', 'c3', 'c4']) expect(runs(log, 'start', id), id).toBe(1);
    },
  );

  it('a claim without a job is "being queued" while fresh, and an orphan once stale: freed and the id queued', async () => {
    const k = observer.keys;
    // A request between its claim and its add (or cut there, not settled yet): not an answer yet.
    // Claims carry Redis's clock, in seconds.
    const now = Number((await observer.redis.time())[0]);
    await observer.redis.hset(k.ids, 'fresh', `other:1:${now - STALE_CLAIM_S + 5}`);
    await expect(observer.submit('fresh', stubPrompt())).rejects.toBeInstanceOf(PromptIdPendingError);
    expect(await observer.redis.hget(k.ids, 'fresh')).toMatch(/^other:1:/);
    // Left by a front end that died before settling its cut add: reclaimed, queued, run once.
    await observer.redis.hset(k.ids, 'orphan', `other:2:${now - STALE_CLAIM_S - 5}`);
    await observer.submit('orphan', stubPrompt());
    await inHistory('orphan');
    expect(runs(log, 'start', 'orphan')).toBe(1);
  });
});
