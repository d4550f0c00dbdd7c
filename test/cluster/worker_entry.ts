// A cluster worker process with the stub host, for the tests that need real processes (kill -9).
// Settings from the environment; prints "ready <id>" once it takes jobs; SIGTERM closes it.
import { ClusterWorker } from '../../cluster/worker.ts';
import { StubHost } from './stub_host.ts';

const env = process.env;
const num = (k: string): number | undefined => (env[k] !== undefined && env[k] !== '' ? Number(env[k]) : undefined);

const worker = new ClusterWorker({
  redis: env.REDIS_URL!,
  prefix: env.CLUSTER_PREFIX,
  workerId: env.WORKER_ID,
  createHost: () => new StubHost(),
  lockDurationMs: num('LOCK_MS'),
  stalledIntervalMs: num('STALLED_MS'),
  maxStalledCount: num('MAX_STALLED'),
  affinityGraceMs: num('GRACE_MS'),
  heartbeatMs: num('HEARTBEAT_MS'),
  registryTtlMs: num('REGISTRY_TTL_MS'),
  pollMs: num('POLL_MS'),
  log: (m) => process.stderr.write(`[${env.WORKER_ID}] ${m}\n`),
  onStatus: (s) => process.stderr.write(`[${env.WORKER_ID}] redis ${JSON.stringify(s)}\n`),
});
try {
  await worker.start();
} catch (e) {
  process.stderr.write(`${(e as Error).name}: ${(e as Error).message}\n`);
  process.exit(3);
}
process.stdout.write(`ready ${worker.id}\n`);
process.once('SIGTERM', () => {
  void worker.close().then(() => process.exit(0));
});
