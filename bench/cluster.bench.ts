// The Redis cluster path (cluster/): what queueing through Redis costs per job, and how
// throughput scales with worker processes. Stub execution host (test/cluster/stub_host.ts) in
// worker processes (test/cluster/worker_entry.ts) on a private redis-server, all on this machine.
//   overhead: one job at a time, submit (INCR + claim + BullMQ add + notice) -> a worker process
//     takes it -> no-op job -> history -> completion -> the `executing null` message back at the
//     front end; median, minus the median of calling the stub host directly.
//   throughput: 60 jobs of 100 ms queued at once, 1 / 2 / 3 worker processes; jobs/s and the
//     efficiency against the ideal (workers x 10 jobs/s).
//   over HTTP: what a user sees. The same trivial workflow (TestImage 8x8 -> PreviewImage, the
//     test nodes) posted to a real `sana-graph serve` and to a real `serve --redis` front end with
//     one real `worker --redis` (all separate processes, each running jobs in its execution child),
//     each job timed from POST /prompt to the WebSocket's `executing {node: null}` for it;
//     sequential jobs, the two sides interleaved in rounds so load changes hit both alike.
//   npm run bench -- cluster
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { FrontEnd, spawnWorker, waitFor, type WorkerProc } from '../test/cluster/helpers.ts';
import { freePort, RedisServer } from '../test/cluster/redis_harness.ts';
import { StubHost, stubPrompt } from '../test/cluster/stub_host.ts';
import type { BenchRow } from './types.ts';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

const OVERHEAD_JOBS = 200;
const WARMUP = 20;
const TP_JOBS = 60;
const TP_JOB_MS = 100;
const HTTP_JOBS = 50;
const HTTP_WARMUP = 10;
const HTTP_ROUND = 10;

const ROOT = path.resolve(import.meta.dirname, '..');
const TEST_NODES = new URL('../test/server/fixtures/test_nodes.ts', import.meta.url).href;

interface Proc {
  child: ChildProcess;
  stop(): Promise<void>;
}

/** A `sana-graph` process, resolved once its stderr says `ready`. */
async function launch(args: string[], ready: string): Promise<Proc> {
  const child = spawn(process.execPath, ['bin/sana-graph.js', ...args], {
    cwd: ROOT,
    env: { ...process.env, SANA_GRAPH_EXTRA_NODES: TEST_NODES },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (c) => (err += c));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const proc: Proc = {
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
  await waitFor(
    `sana-graph ${args[0]} to start`,
    () => (child.exitCode !== null ? Promise.reject(new Error(`sana-graph ${args.join(' ')} exited: ${err}`)) : err.includes(ready)),
    120_000,
    100,
  );
  return proc;
}

/** One HTTP+WS side: posts a prompt and resolves at its `executing {node: null}`. */
class Side {
  /** When each prompt's end message came: it may come before the POST's answer (the id is
   *  the server's, as for the ComfyUI frontend, so it is known only from that answer). */
  private readonly ended = new Map<string, number>();
  private readonly waiters = new Map<string, (at: number) => void>();
  private constructor(
    readonly url: string,
    private readonly ws: WebSocket,
  ) {
    ws.on('message', (data, binary) => {
      if (binary) return;
      const m = JSON.parse(String(data)) as { type: string; data: { node?: unknown; prompt_id?: string } };
      if (m.type !== 'executing' || m.data.node !== null || !m.data.prompt_id) return;
      const at = performance.now();
      const w = this.waiters.get(m.data.prompt_id);
      if (w) w(at);
      else this.ended.set(m.data.prompt_id, at);
    });
  }

  static async open(port: number): Promise<Side> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?clientId=bench`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new Side(`http://127.0.0.1:${port}`, ws);
  }

  /** ms from POST /prompt to the job's end message. */
  async job(seed: number): Promise<number> {
    // A seed per job: the cache must not answer for the executor.
    const prompt = {
      '1': { class_type: 'TestImage', inputs: { width: 8, height: 8, seed } },
      '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
    };
    const t = performance.now();
    const res = await fetch(`${this.url}/prompt`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, client_id: 'bench' }),
    });
    if (res.status !== 200) throw new Error(`POST /prompt to ${this.url}: ${res.status} ${await res.text()}`);
    const id = ((await res.json()) as { prompt_id: string }).prompt_id;
    const at = this.ended.get(id) ?? (await new Promise<number>((r) => this.waiters.set(id, r)));
    this.ended.delete(id);
    this.waiters.delete(id);
    return at - t;
  }

  close(): void {
    this.ws.close();
  }
}

/** The embedded server against a front end + worker over Redis, through HTTP and WebSocket. */
async function httpRows(): Promise<BenchRow[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-cluster-http-'));
  // One folder tree for all three processes, as a cluster's shared mount would be.
  const folders = ['output', 'input', 'temp', 'models'].flatMap((f) => [`--${f}-dir`, path.join(dir, f)]);
  const serve = (port: number, user: string) => ['serve', '--listen', '127.0.0.1', '--port', String(port), '--user-dir', path.join(dir, user), ...folders];
  fs.mkdirSync(path.join(dir, 'models'), { recursive: true });
  const procs: Proc[] = [];
  const sides: Side[] = [];
  const redis = await RedisServer.start();
  const load = os.loadavg()[0];
  try {
    const [embPort, fePort] = [await freePort(), await freePort()];
    const started = await Promise.all([
      launch(serve(embPort, 'user-embedded'), 'serving on'),
      launch([...serve(fePort, 'user-front'), '--redis', redis.url, '--redis-prefix', 'hb'], 'serving on'),
      launch(['worker', '--redis', redis.url, '--redis-prefix', 'hb', '--worker-id', 'hb1', ...folders], 'taking jobs from'),
    ]);
    procs.push(...started);
    const embedded = await Side.open(embPort);
    const cluster = await Side.open(fePort);
    sides.push(embedded, cluster);
    const times = { embedded: [] as number[], cluster: [] as number[] };
    let seed = 0;
    for (let i = 0; i < HTTP_WARMUP; i++) {
      await embedded.job(seed++);
      await cluster.job(seed++);
    }
    for (let r = 0; r < HTTP_JOBS / HTTP_ROUND; r++) {
      for (let i = 0; i < HTTP_ROUND; i++) times.embedded.push(await embedded.job(seed++));
      for (let i = 0; i < HTTP_ROUND; i++) times.cluster.push(await cluster.job(seed++));
    }
    return [
      {
        name: 'cluster over HTTP: trivial workflow, POST /prompt -> WS executing null',
        metrics: {
          embedded_ms: median(times.embedded),
          embedded_p90_ms: pct(times.embedded, 0.9),
          redis_ms: median(times.cluster),
          redis_p90_ms: pct(times.cluster, 0.9),
          overhead_ms: median(times.cluster) - median(times.embedded),
          overhead_p90_ms: pct(times.cluster, 0.9) - pct(times.embedded, 0.9),
        },
        notes:
          `TestImage 8x8 -> PreviewImage; ${HTTP_JOBS} sequential jobs per side after ${HTTP_WARMUP} warm-up, interleaved in rounds of ${HTTP_ROUND}; ` +
          `sana-graph serve vs serve --redis + 1 worker --redis (processes, private redis-server); load ${load.toFixed(2)} at start`,
      },
    ];
  } finally {
    for (const s of sides) s.close();
    await Promise.all(procs.map((p) => p.stop()));
    await redis.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export default async function (): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const redis = await RedisServer.start();
  const workers: WorkerProc[] = [];
  let fe: FrontEnd | undefined;
  try {
    // Direct: the stub host alone (what the embedded server's runner call costs with this host).
    const host = new StubHost(undefined);
    const direct: number[] = [];
    const noop = { '1': { class_type: 'Stub', inputs: {} } };
    for (let i = 0; i < OVERHEAD_JOBS + WARMUP; i++) {
      const t = performance.now();
      await host.run(
        { number: i, promptId: `d${i}`, prompt: noop, extraData: {}, outputs: ['1'], sensitive: {}, clientId: 'c' },
        { event: () => undefined, preview: () => undefined },
      );
      if (i >= WARMUP) direct.push(performance.now() - t);
    }

    fe = await FrontEnd.open(redis.url, 'bench');
    await fe.listen();
    const ended = new Map<string, () => void>();
    const onEnd = (id: string) => new Promise<void>((r) => ended.set(id, r));
    const poll = setInterval(() => {
      for (const m of fe!.messages.splice(0)) {
        if (m.kind === 'event' && m.type === 'executing' && m.data.node === null) ended.get(m.promptId)?.();
      }
    }, 0);
    try {
      const w1 = spawnWorker(redis.url, 'b1', { CLUSTER_PREFIX: 'bench' });
      workers.push(w1);
      await w1.ready;
      const viaRedis: number[] = [];
      for (let i = 0; i < OVERHEAD_JOBS + WARMUP; i++) {
        const id = `o${i}`;
        const done = onEnd(id);
        const t = performance.now();
        await fe.submit(id, stubPrompt(), { clientId: 'c' });
        await done;
        if (i >= WARMUP) viaRedis.push(performance.now() - t);
      }
      rows.push({
        name: 'cluster: one no-op job, front end -> Redis -> worker process -> back',
        metrics: { direct_ms: median(direct), redis_ms: median(viaRedis), overhead_ms: median(viaRedis) - median(direct), redis_p90_ms: pct(viaRedis, 0.9) },
        notes: `median of ${OVERHEAD_JOBS} sequential jobs after ${WARMUP} warm-up; submit to the client's executing-null message`,
      });

      for (const n of [1, 2, 3]) {
        while (workers.length < n) {
          const w = spawnWorker(redis.url, `b${workers.length + 1}`, { CLUSTER_PREFIX: 'bench' });
          workers.push(w);
          await w.ready;
        }
        await fe.history.clear();
        const t = performance.now();
        for (let i = 0; i < TP_JOBS; i++) await fe.submit(`t${n}-${i}`, stubPrompt({ ms: TP_JOB_MS }));
        await waitFor('throughput batch', async () => (await fe!.history.size()) === TP_JOBS, 120_000, 20);
        const s = (performance.now() - t) / 1000;
        const jps = TP_JOBS / s;
        rows.push({
          name: `cluster: throughput, ${n} worker process${n > 1 ? 'es' : ''}`,
          metrics: { jobs_per_s: jps, efficiency: jps / (n * (1000 / TP_JOB_MS)), seconds: s },
          units: { jobs_per_s: 'jobs/s', efficiency: '× ideal' },
          notes: `${TP_JOBS} jobs of ${TP_JOB_MS} ms queued at once (stub host)`,
        });
      }
    } finally {
      clearInterval(poll);
    }
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await fe?.close();
    await redis.close();
  }
  rows.push(...(await httpRows()));
  return rows;
}
