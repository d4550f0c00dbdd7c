// sana-graph: `serve` (the ComfyUI-compatible server), `run <file>` (a workflow, headless) and
// `convert <ui.json>` (UI workflow -> API prompt on stdout). Started by bin/sana-graph.js.
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { parseArgs, parseSet, UsageError, WorkflowInputError, type FlagSpec } from './args.ts';
import type { CacheMode, StoreKind } from '../web/server/options.ts';

// The engine, nodes and server are imported only by the command that needs them, so usage
// errors and --help answer at once.

const USAGE = `usage:
  sana-graph serve [--listen [ADDR]] [--port N] [--output-dir D] [--input-dir D] [--temp-dir D]
                   [--models-dir D] [--user-dir D] [--cache classic|lru|none] [--cache-size N]
                   [--enable-cors-header [ORIGIN]] [--max-upload-size MB] [--max-history N] [--verbose]
                   [--front-end-root DIR] [--multi-user] [--threads N]
                   [--redis redis://HOST:PORT[/DB] [--redis-prefix P]
                    [--store shared-dir|redis] [--store-max-file-mb MB] [--store-ttl-hours H]]
  sana-graph run <workflow.json|image.png> [--output-dir D] [--input-dir D] [--temp-dir D]
                   [--models-dir D] [--set <node>.<input>=<value> ...] [--json] [--quiet] [--profile]
                   [--threads N]
  sana-graph convert <ui-workflow.json|image.png>
  sana-graph worker --redis redis://HOST:PORT[/DB] [--worker-id ID] [--redis-prefix P] [--output-dir D]
                   [--input-dir D] [--temp-dir D] [--models-dir D] [--cache classic|lru|none]
                   [--cache-size N] [--max-history N] [--threads N]
                   [--store shared-dir|redis] [--store-max-file-mb MB] [--store-ttl-hours H]

  run: <node> is a node id, its title, or a class type used once; <value> is JSON when it
       parses (42, true, "text") and a plain string otherwise. Prints the saved image paths;
       exit code 0 ok, 1 node error, 2 invalid workflow, 130 interrupted.
  serve --redis: a front end of a cluster (README.md, "Scale out with Redis"): the queue, history
       and events live in Redis and \`sana-graph worker\` processes run the prompts. Images: with
       --store shared-dir (default) --output-dir, --input-dir and --temp-dir must be the folders
       the workers use (a shared mount); with --store redis they live in Redis (give every front
       end and worker the same --store flags). Exit code 3 when Redis is unreachable at start;
       while it is down later, /prompt answers 503.
  worker: runs prompts queued through Redis (cluster/README.md); exit code 3 when Redis is
       unreachable at start.`;

/** Where a cluster keeps its images (cluster/output_store.ts): serve --redis and worker. */
const STORE_FLAGS: Record<string, FlagSpec> = {
  store: { kind: 'string', choices: ['shared-dir', 'redis'] },
  'store-max-file-mb': { kind: 'number' },
  'store-ttl-hours': { kind: 'number' },
};

/** --store and its limits, checked: redis needs --redis; the limits need --store redis. */
function storeFlags(flags: Record<string, unknown>, redis: string | undefined) {
  const store = str(flags.store) as StoreKind | undefined;
  const maxMb = num(flags['store-max-file-mb']);
  const ttlHours = num(flags['store-ttl-hours']);
  if (store === 'redis' && redis === undefined) throw new UsageError("--store redis keeps the images in the cluster's Redis: it needs --redis");
  if ((maxMb !== undefined || ttlHours !== undefined) && store !== 'redis')
    throw new UsageError('--store-max-file-mb and --store-ttl-hours need --store redis');
  if (maxMb !== undefined && !(maxMb > 0 && maxMb <= 512))
    throw new UsageError(`--store-max-file-mb must be more than 0 and at most 512 (Redis's largest value), got ${maxMb}`);
  if (ttlHours !== undefined && !(ttlHours >= 0 && Number.isFinite(ttlHours)))
    throw new UsageError(`--store-ttl-hours must be 0 (keep) or more, got ${ttlHours}`);
  return {
    store,
    storeMaxFileBytes: maxMb === undefined ? undefined : Math.max(1, Math.round(maxMb * 1024 * 1024)),
    storeTtlSeconds: ttlHours === undefined ? undefined : Math.round(ttlHours * 3600),
  };
}

const SERVE_FLAGS: Record<string, FlagSpec> = {
  listen: { kind: 'optional-string', implicit: '0.0.0.0' },
  port: { kind: 'number' },
  'output-dir': { kind: 'string' },
  'input-dir': { kind: 'string' },
  'temp-dir': { kind: 'string' },
  'models-dir': { kind: 'string' },
  'user-dir': { kind: 'string' },
  cache: { kind: 'string', choices: ['classic', 'lru', 'none'] },
  'cache-size': { kind: 'number' },
  'enable-cors-header': { kind: 'optional-string', implicit: '*' },
  'max-upload-size': { kind: 'number' },
  'max-history': { kind: 'number' },
  verbose: { kind: 'boolean' },
  threads: { kind: 'number' },
  'front-end-root': { kind: 'string' },
  'multi-user': { kind: 'boolean' },
  redis: { kind: 'string' },
  'redis-prefix': { kind: 'string' },
  ...STORE_FLAGS,
};

const RUN_FLAGS: Record<string, FlagSpec> = {
  'output-dir': { kind: 'string' },
  'input-dir': { kind: 'string' },
  'temp-dir': { kind: 'string' },
  'models-dir': { kind: 'string' },
  set: { kind: 'list' },
  json: { kind: 'boolean' },
  quiet: { kind: 'boolean' },
  profile: { kind: 'boolean' },
  threads: { kind: 'number' },
};

const WORKER_FLAGS: Record<string, FlagSpec> = {
  redis: { kind: 'string' },
  'worker-id': { kind: 'string' },
  'redis-prefix': { kind: 'string' },
  'output-dir': { kind: 'string' },
  'input-dir': { kind: 'string' },
  'temp-dir': { kind: 'string' },
  'models-dir': { kind: 'string' },
  cache: { kind: 'string', choices: ['classic', 'lru', 'none'] },
  'cache-size': { kind: 'number' },
  'max-history': { kind: 'number' },
  threads: { kind: 'number' },
  ...STORE_FLAGS,
};

/** Test hook shared with the server: extra node modules from SANA_GRAPH_EXTRA_NODES. */
function extraNodeModules(): string[] {
  return (process.env.SANA_GRAPH_EXTRA_NODES ?? '')
    .split(',')
    .filter((s) => s.trim() !== '')
    .map((m) => (m.startsWith('file:') ? m : pathToFileURL(path.resolve(m)).href));
}

/** --threads N: the CPU thread count of every native op (oneDNN and our kernels), through the
 *  execution child's environment (SANA_THREADS, read when the addon loads). */
function applyThreadsFlag(v: unknown): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 4096) throw new UsageError('--threads needs a whole number from 1 to 4096');
  process.env.SANA_THREADS = String(v);
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
/** The four folder flags every command that runs prompts takes. */
const folderFlags = (flags: Record<string, unknown>) => ({
  outputDir: str(flags['output-dir']),
  inputDir: str(flags['input-dir']),
  tempDir: str(flags['temp-dir']),
  modelsDir: str(flags['models-dir']),
});
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

async function serve(argv: string[]): Promise<number> {
  const { positional, flags } = parseArgs(argv, SERVE_FLAGS);
  if (positional.length) throw new UsageError(`serve takes no positional arguments (got ${positional.join(' ')})`);
  const port = num(flags.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new UsageError(`--port must be 0-65535, got ${port}`);
  applyThreadsFlag(flags.threads);
  const redis = str(flags.redis);
  if (flags['redis-prefix'] !== undefined && redis === undefined) throw new UsageError('--redis-prefix needs --redis');
  const store = storeFlags(flags, redis);
  const { startServer } = await import('../web/server/index.ts');
  let display = '';
  if (redis !== undefined) {
    const { parseRedisUrl, RedisUrlError } = await import('../cluster/connection.ts');
    try {
      display = parseRedisUrl(redis).display;
    } catch (e) {
      if (e instanceof RedisUrlError) throw new UsageError(e.message);
      throw e;
    }
  }
  const opts = {
    listen: str(flags.listen),
    port,
    ...folderFlags(flags),
    userDir: str(flags['user-dir']),
    cache: str(flags.cache) as CacheMode | undefined,
    cacheSize: num(flags['cache-size']),
    enableCorsHeader: str(flags['enable-cors-header']),
    maxUploadBytes: num(flags['max-upload-size']) !== undefined ? Math.round(num(flags['max-upload-size'])! * 1024 * 1024) : undefined,
    maxHistory: num(flags['max-history']),
    logger: flags.verbose === true,
    frontEndRoot: str(flags['front-end-root']),
    multiUser: flags['multi-user'] === true,
    redis,
    redisPrefix: str(flags['redis-prefix']),
    ...store,
  };
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(opts, { onRedisStatus: (line) => process.stderr.write(`sana-graph: ${line}\n`) });
  } catch (e) {
    const { RedisUnavailableError } = await import('../cluster/connection.ts');
    if (e instanceof RedisUnavailableError) {
      process.stderr.write(`sana-graph: ${e.message}\n`);
      return (await import('./worker.ts')).EXIT_REDIS_UNAVAILABLE;
    }
    throw e;
  }
  const mode = redis !== undefined ? `, cluster front end over ${display}, images in ${store.store === 'redis' ? 'Redis' : 'the shared folders'}` : '';
  process.stderr.write(`sana-graph: serving on ${server.url} (editor at ${server.url}/${mode})\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  process.stderr.write('sana-graph: shutting down\n');
  await server.close();
  return 0;
}

async function run(argv: string[]): Promise<number> {
  const { positional, flags } = parseArgs(argv, RUN_FLAGS);
  if (positional.length !== 1) throw new UsageError('run needs exactly one workflow file');
  const sets = Array.isArray(flags.set) ? flags.set.map(parseSet) : [];
  // The execution child inherits the environment: its worker prints the op profile per node.
  if (flags.profile === true) process.env.SANA_PROFILE = '1';
  applyThreadsFlag(flags.threads);
  const { runWorkflow } = await import('./run.ts');
  return runWorkflow({
    file: positional[0],
    ...folderFlags(flags),
    sets,
    json: flags.json === true,
    quiet: flags.quiet === true,
    extraNodeModules: extraNodeModules(),
    stdout: (s) => process.stdout.write(s),
    stderr: { write: (s) => process.stderr.write(s), isTTY: process.stderr.isTTY === true, columns: process.stderr.columns },
  });
}

async function convert(argv: string[]): Promise<number> {
  const { positional } = parseArgs(argv, {});
  if (positional.length !== 1) throw new UsageError('convert needs exactly one workflow file');
  const { loadWorkflowFile } = await import('./run.ts');
  const { buildRegistry } = await import('../host/registry.ts');
  const registry = await buildRegistry(extraNodeModules());
  const loaded = loadWorkflowFile(positional[0], registry);
  for (const w of loaded.warnings) process.stderr.write(`warning: ${w}\n`);
  process.stdout.write(JSON.stringify(loaded.prompt, null, 2) + '\n');
  return 0;
}

async function worker(argv: string[]): Promise<number> {
  const { positional, flags } = parseArgs(argv, WORKER_FLAGS);
  if (positional.length) throw new UsageError(`worker takes no positional arguments (got ${positional.join(' ')})`);
  const redis = str(flags.redis);
  if (!redis) throw new UsageError('worker needs --redis redis://HOST:PORT[/DB]');
  applyThreadsFlag(flags.threads);
  const store = storeFlags(flags, redis);
  const { runWorker, EXIT_REDIS_UNAVAILABLE } = await import('./worker.ts');
  const { RedisUnavailableError, RedisUrlError } = await import('../cluster/connection.ts');
  try {
    return await runWorker({
      redis,
      workerId: str(flags['worker-id']),
      prefix: str(flags['redis-prefix']),
      ...folderFlags(flags),
      cache: str(flags.cache) as CacheMode | undefined,
      cacheSize: num(flags['cache-size']),
      maxHistory: num(flags['max-history']),
      ...store,
      extraNodeModules: extraNodeModules(),
      stderr: (s) => process.stderr.write(s),
    });
  } catch (e) {
    if (e instanceof RedisUrlError) throw new UsageError(e.message);
    if (e instanceof RedisUnavailableError) {
      process.stderr.write(`sana-graph: ${e.message}\n`);
      return EXIT_REDIS_UNAVAILABLE;
    }
    throw e;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve':
        return await serve(rest);
      case 'run':
        return await run(rest);
      case 'convert':
        return await convert(rest);
      case 'worker':
        return await worker(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE + '\n');
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`sana-graph: ${e.message}\n\n${USAGE}\n`);
      return 2;
    }
    if (e instanceof WorkflowInputError) {
      process.stderr.write(`sana-graph: ${e.message}\n`);
      return 2;
    }
    const err = e as Error;
    process.stderr.write(`sana-graph: ${err.message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
