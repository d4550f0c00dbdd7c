// `sana-graph worker --redis URL`: a cluster worker. Takes prompts queued by `serve --redis`
// front ends, runs them in its own execution process (its own model cache and devices), and
// reports through Redis (cluster/README.md). Exit codes: 0 after SIGINT/SIGTERM, 3 when Redis is
// unreachable at start, 2 usage errors (cli/main.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseRedisUrl, statusLine, type RedisStatus } from '../cluster/connection.ts';
import { ClusterWorker } from '../cluster/worker.ts';
import { processHost } from '../host/process.ts';
import { resolveOptions, type CacheMode, type StoreKind } from '../web/server/options.ts';

/** Redis was unreachable at start (the CLI's exit code for it). */
export const EXIT_REDIS_UNAVAILABLE = 3;

export interface WorkerCliOptions {
  redis: string;
  workerId?: string;
  prefix?: string;
  outputDir?: string;
  inputDir?: string;
  tempDir?: string;
  modelsDir?: string;
  cache?: CacheMode;
  cacheSize?: number;
  maxHistory?: number;
  /** `redis`: copy inputs in and outputs out through Redis (cluster/redis_store.ts). */
  store?: StoreKind;
  storeMaxFileBytes?: number;
  storeTtlSeconds?: number;
  extraNodeModules: string[];
  stderr: (s: string) => void;
}

/** This machine's devices for /system_stats (the native addon's, else the CPU). */
async function devices(): Promise<unknown[]> {
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../native/index.ts');
  const cpu = [{ name: 'cpu', type: 'cpu', index: 0, vram_total: os.totalmem(), vram_free: os.freemem() }];
  if (!fs.existsSync(file)) return cpu;
  try {
    const native = (await import(pathToFileURL(file).href)) as { devices?: () => Array<{ name: string; available: boolean; info: Record<string, unknown> }> };
    const list = native.devices?.().filter((d) => d.available && d.name !== 'cuda-emu') ?? [];
    return list.length > 0 ? list.map((d, index) => ({ name: d.name, type: d.name === 'cpu' ? 'cpu' : 'cuda', index, info: d.info })) : cpu;
  } catch {
    return cpu;
  }
}

/** Runs until SIGINT/SIGTERM (the running job is finished first; a second signal stops at once). */
export async function runWorker(o: WorkerCliOptions): Promise<number> {
  // The same folder defaults as `serve`, so a worker beside a front end shares its folders.
  const opts = resolveOptions({
    outputDir: o.outputDir,
    inputDir: o.inputDir,
    tempDir: o.tempDir,
    modelsDir: o.modelsDir,
    cache: o.cache,
    cacheSize: o.cacheSize,
    extraNodeModules: o.extraNodeModules,
    store: o.store,
    storeMaxFileBytes: o.storeMaxFileBytes,
    storeTtlSeconds: o.storeTtlSeconds,
  });
  for (const d of [opts.outputDir, opts.inputDir, opts.tempDir]) fs.mkdirSync(d, { recursive: true });
  const target = parseRedisUrl(o.redis).display;
  let last = '';
  const worker = new ClusterWorker({
    redis: o.redis,
    prefix: o.prefix,
    workerId: o.workerId,
    maxHistory: o.maxHistory,
    devices,
    redisStore:
      opts.store === 'redis'
        ? {
            folders: { output: opts.outputDir, input: opts.inputDir, temp: opts.tempDir },
            maxFileBytes: opts.storeMaxFileBytes,
            ttlSeconds: opts.storeTtlSeconds,
          }
        : undefined,
    createHost: () =>
      processHost(
        {
          folders: { output: opts.outputDir, input: opts.inputDir, temp: opts.tempDir, models: opts.modelsDir },
          cache: opts.cache,
          cacheSize: opts.cacheSize,
          extraNodeModules: opts.extraNodeModules,
        },
        (m: string) => o.stderr(`sana-graph worker: ${m}\n`),
      ),
    log: (m) => o.stderr(`sana-graph worker: ${m}\n`),
    onStatus: (s: RedisStatus) => {
      // 'connected' is followed by 'ready' at once; one line per real change.
      if (s.state === 'connected') return;
      const line = statusLine(target, s);
      if (line !== last) o.stderr(`sana-graph worker: ${line}\n`);
      last = line;
    },
  });
  await worker.start();
  const images = opts.store === 'redis' ? `images in Redis, working copies in ${opts.outputDir}` : `output ${opts.outputDir}`;
  o.stderr(`sana-graph worker: ${worker.id} taking jobs from ${target} (models ${opts.modelsDir}, ${images})\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  o.stderr('sana-graph worker: finishing the running job, then stopping (signal again to stop now)\n');
  const force = () => void worker.close(true);
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  await worker.close();
  return 0;
}
