// startServer(): the ComfyUI-compatible HTTP + WebSocket server (see README.md here).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp, isCrossOriginOnLoopback } from './app.ts';
import { loadMainEngine } from '../../host/registry.ts';
import { logRingFor, teeLogger } from './logs.ts';
import { resolveOptions, type ServerOptions } from './options.ts';
import { ServerState } from './state.ts';
import type { ExecutionHost } from '../../host/types.ts';
import type { Backend } from './backend.ts';
import { EmbeddedBackend, type BackendContext } from './embedded_backend.ts';
import type { OutputStore } from '../../cluster/output_store.ts';

export type { ServerOptions } from './options.ts';

export interface RunningServer {
  /** http://host:port */
  url: string;
  port: number;
  state: ServerState;
  /** The fastify app (tests send requests through app.inject()). */
  app: FastifyInstance;
  close(): Promise<void>;
}

/** Native device facts for /system_stats, when the addon is built; undefined otherwise. */
async function nativeDevices(): Promise<unknown[] | undefined> {
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native/index.ts');
  if (!fs.existsSync(file)) return undefined;
  const native = (await import(pathToFileURL(file).href)) as { devices?: () => Array<{ name: string; available: boolean; info: Record<string, unknown> }> };
  if (typeof native.devices !== 'function') return undefined;
  // cuda-emu is a test device (host emulation of the CUDA kernels), not something to run on.
  return native
    .devices()
    .filter((d) => d.available && d.name !== 'cuda-emu')
    .map((d, index) => {
      const num = (k: string) => (typeof d.info[k] === 'number' ? (d.info[k] as number) : 0);
      const isCpu = d.name === 'cpu';
      const label = String((isCpu ? d.info.cpu : d.info.gpu) ?? '');
      return {
        name: isCpu ? `cpu${label ? ` ${label}` : ''}` : `cuda:0 ${label}`.trim(),
        type: isCpu ? 'cpu' : 'cuda',
        index,
        // ComfyUI reports system RAM for a CPU device.
        vram_total: isCpu ? os.totalmem() : num('totalMemory'),
        vram_free: isCpu ? os.freemem() : num('freeMemory'),
        torch_vram_total: 0,
        torch_vram_free: 0,
        info: d.info,
      };
    });
}

/**
 * Deletes the previous run's previews at start-up (they are throw-away, as in ComfyUI). Unlike
 * ComfyUI, which wipes the whole temp folder, only PreviewImage files and our own leftover
 * temporary files go, so a --temp-dir pointing at a shared folder loses nothing else.
 */
function cleanTemp(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const e of fs.readdirSync(dir)) {
    if (/^ComfyUI_temp_[a-z]{5}_\d{5,}_\.png$/.test(e) || /^\..+\.tmp$/.test(e)) fs.rmSync(path.join(dir, e), { force: true });
  }
}

/** What startServer can be given instead of building it: the execution host (tests pass a stub). */
export interface ServerDeps {
  host?: ExecutionHost;
  /** With `redis`: the Redis connection's status lines (reconnecting, ready), e.g. for stderr. */
  onRedisStatus?: (line: string) => void;
  /** The output store, instead of the one `store` names (tests: a store without local files). */
  files?: OutputStore;
}

export async function startServer(opts: ServerOptions = {}, deps: ServerDeps = {}): Promise<RunningServer> {
  const options = resolveOptions(opts);
  if (options.frontEndRoot && !fs.existsSync(path.join(options.frontEndRoot, 'index.html'))) {
    throw new Error(`--front-end-root ${options.frontEndRoot} has no index.html (point it at a built frontend, e.g. ComfyUI_frontend's dist/)`);
  }
  if (options.store === 'redis' && options.redis === undefined) {
    throw new Error('store "redis" keeps the images in the cluster\'s Redis: it needs --redis redis://HOST:PORT[/DB]');
  }
  for (const d of [options.outputDir, options.inputDir, options.userDir]) fs.mkdirSync(d, { recursive: true });
  // A cluster's temp folder is shared with workers whose jobs' previews are still being viewed:
  // a front end (re)starting must not delete them.
  if (options.redis === undefined) cleanTemp(options.tempDir);
  else fs.mkdirSync(options.tempDir, { recursive: true });
  // The main thread lists input images and models for /object_info and validation; input images
  // in a store are listed from the state's copy of its listing (read before each validation).
  const folders = { output: options.outputDir, input: options.inputDir, temp: options.tempDir, models: options.modelsDir };
  const listed: { by?: ServerState } = {};
  const storeHoldsInputs = deps.files ? !deps.files.inPlace : options.store === 'redis';
  const inputFiles = storeHoldsInputs ? () => listed.by?.inputFilesNow() ?? [] : undefined;
  const engine = await loadMainEngine({ ...options, folders, inputFiles });
  // RedisUnavailableError here: `serve` exits with code 3. Nothing after this can fail before
  // the state exists, which closes the connection if listening fails.
  let createBackend: (ctx: BackendContext) => Backend;
  if (options.redis !== undefined) {
    const { openCluster } = await import('./cluster_backend.ts');
    createBackend = await openCluster(options, deps.onRedisStatus);
  } else {
    createBackend = (ctx) => new EmbeddedBackend(options, ctx, nativeDevices, deps.host);
  }
  let files = deps.files;
  if (!files && options.store === 'redis') {
    const { RedisStore } = await import('../../cluster/redis_store.ts');
    const { parseRedisUrl } = await import('../../cluster/connection.ts');
    const { ClusterKeys } = await import('../../cluster/keys.ts');
    files = RedisStore.open(
      parseRedisUrl(options.redis!),
      new ClusterKeys(options.redisPrefix),
      { maxFileBytes: options.storeMaxFileBytes, ttlSeconds: options.storeTtlSeconds, failFast: true },
      'sana-front-files',
    );
  }
  const state = new ServerState(options, engine, createBackend, files);
  listed.by = state;
  const app = buildApp(state);
  // Recorded for ComfyUI's /internal/logs and its frontend's terminal panel.
  state.log = teeLogger(app.log, logRingFor(state));

  app.server.on('upgrade', (req, socket, head) => {
    const url = (req.url ?? '').split('?')[0];
    if ((url !== '/ws' && url !== '/api/ws') || (options.corsOrigin === undefined && isCrossOriginOnLoopback(req.headers))) {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    state.hub.handleUpgrade(req, socket, head);
  });

  try {
    await app.listen({ host: options.listen, port: options.port });
  } catch (e) {
    await state.close().catch(() => undefined);
    throw e;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : options.port;
  await state.startBackground();
  const host = options.listen.includes(':') ? `[${options.listen}]` : options.listen === '0.0.0.0' ? '127.0.0.1' : options.listen;
  return {
    url: `http://${host}:${port}`,
    port,
    state,
    app,
    async close() {
      await state.close();
      await app.close();
    },
  };
}
