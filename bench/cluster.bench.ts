// The Redis cluster path (cluster/): what queueing through Redis costs per job, and how
// throughput scales with worker processes. Stub execution host (test/cluster/stub_host.ts) in
// worker processes (test/cluster/worker_entry.ts) on a private redis-server, all on this machine.
//   overhead: one job at a time, submit (INCR + claim + BullMQ add + notice) -> a worker process
//     takes it -> no-op job -> history -> completion -> the `executing null` message back at the
//     front end; median, minus the median of calling the stub host directly.
//   throughput: 60 jobs of 100 ms queued at once, 1 / 2 / 3 worker processes; jobs/s and the
//     efficiency against the ideal (workers x 10 jobs/s).
//   npm run bench -- cluster
import { FrontEnd, spawnWorker, waitFor, type WorkerProc } from '../test/cluster/helpers.ts';
import { RedisServer } from '../test/cluster/redis_harness.ts';
import { StubHost, stubPrompt } from '../test/cluster/stub_host.ts';
import type { BenchRow } from './types.ts';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

const OVERHEAD_JOBS = 200;
const WARMUP = 20;
const TP_JOBS = 60;
const TP_JOB_MS = 100;

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
  return rows;
}
