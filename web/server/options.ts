// Server options: what `sana-graph serve` flags and `startServer()` accept, with ComfyUI's
// defaults (127.0.0.1:8188, 100 MB uploads) and the folders of the current directory.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export type CacheMode = 'classic' | 'lru' | 'none';

export interface ServerOptions {
  /** Address to listen on (default 127.0.0.1). */
  listen?: string;
  /** Port (default 8188; 0 picks a free one). */
  port?: number;
  outputDir?: string;
  inputDir?: string;
  tempDir?: string;
  modelsDir?: string;
  /** Where history (and other per-user state) lives. */
  userDir?: string;
  cache?: CacheMode;
  /** Entries kept by the LRU cache (`--cache lru`). */
  cacheSize?: number;
  /** Replaces the loopback origin check with CORS headers for this origin ("*" when true). */
  enableCorsHeader?: string | boolean;
  /** History entries kept on disk (default 1000). */
  maxHistory?: number;
  /** Upload / request body limit in bytes (default 100 MiB, ComfyUI's --max-upload-size). */
  maxUploadBytes?: number;
  /** JSON body limit in bytes (default 32 MiB). */
  maxJsonBytes?: number;
  /** Most nodes a prompt may have (default 5000). */
  maxPromptNodes?: number;
  /** Pending jobs allowed at once (default 1000). */
  maxQueue?: number;
  /** Static files served at / (default web/editor/dist). */
  staticDir?: string;
  /**
   * Another frontend's built files (e.g. ComfyUI_frontend's dist) served at / instead of
   * `staticDir`; '' (the default) keeps our editor. ComfyUI's --front-end-root.
   */
  frontEndRoot?: string;
  /** ComfyUI's --multi-user: the Comfy-User header picks the user whose settings and files are used. */
  multiUser?: boolean;
  /**
   * Extra node modules (paths or file URLs) loaded next to the product nodes, in the server and
   * in the worker. Each exports `registerNodes(registry)`. For tests; also SANA_GRAPH_EXTRA_NODES.
   */
  extraNodeModules?: string[];
  /** Keep-alive period while a job runs, ms (default 3000; a silent client hears from us within 1.25x that). */
  keepAliveMs?: number;
  /**
   * Bytes a WebSocket client may leave unread before it is closed (1008; default 64 MiB). Past
   * a sixteenth of it (at most 4 MiB) the client counts as slow: previews are dropped for it
   * and progress messages merged.
   */
  wsMaxBufferedBytes?: number;
  /** Log requests (default false). */
  logger?: boolean;
  /**
   * `redis://HOST:PORT[/DB]`: run as a front end of a cluster (web/server/cluster_backend.ts):
   * queue, history and events in Redis, jobs run by `sana-graph worker` processes. Unset: the
   * single-process server.
   */
  redis?: string;
  /** Key prefix of the cluster in Redis (default `sana`; the workers' --prefix). */
  redisPrefix?: string;
  /**
   * Where /view and uploads find the images (cluster/output_store.ts): `shared-dir` (default) the
   * output/input/temp folders, which a cluster's machines share (a network filesystem); `redis`
   * the cluster's Redis (needs `redis`), for machines that share no filesystem.
   */
  store?: StoreKind;
  /** `store: 'redis'`: the largest file it keeps, bytes (default 64 MiB). */
  storeMaxFileBytes?: number;
  /** `store: 'redis'`: time to live of uploaded (and output) files, seconds; 0 (default) keeps them. */
  storeTtlSeconds?: number;
}

export type StoreKind = 'shared-dir' | 'redis';

export interface ResolvedOptions extends Required<Omit<ServerOptions, 'enableCorsHeader' | 'redis' | 'redisPrefix'>> {
  corsOrigin: string | undefined;
  redis: string | undefined;
  redisPrefix: string | undefined;
}

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function resolveOptions(o: ServerOptions): ResolvedOptions {
  const envExtra = (process.env.SANA_GRAPH_EXTRA_NODES ?? '').split(',').filter((s) => s.trim() !== '');
  const cors = o.enableCorsHeader;
  return {
    listen: o.listen ?? '127.0.0.1',
    port: o.port ?? 8188,
    outputDir: path.resolve(o.outputDir ?? 'output'),
    inputDir: path.resolve(o.inputDir ?? 'input'),
    tempDir: path.resolve(o.tempDir ?? 'temp'),
    modelsDir: path.resolve(o.modelsDir ?? process.env.SANA_MODELS_DIR ?? path.join(REPO_ROOT, 'models')),
    userDir: path.resolve(o.userDir ?? 'user'),
    cache: o.cache ?? 'classic',
    cacheSize: o.cacheSize ?? 64,
    corsOrigin: cors === undefined || cors === false ? undefined : cors === true || cors === '' ? '*' : cors,
    maxHistory: o.maxHistory ?? 1000,
    maxUploadBytes: o.maxUploadBytes ?? 100 * 1024 * 1024,
    maxJsonBytes: o.maxJsonBytes ?? 32 * 1024 * 1024,
    maxPromptNodes: o.maxPromptNodes ?? 5000,
    maxQueue: o.maxQueue ?? 1000,
    staticDir: path.resolve(o.staticDir ?? path.join(REPO_ROOT, 'web', 'editor', 'dist')),
    frontEndRoot: o.frontEndRoot ? path.resolve(o.frontEndRoot) : '',
    multiUser: o.multiUser ?? false,
    extraNodeModules: [...new Set([...(o.extraNodeModules ?? []), ...envExtra].map((m) => (m.startsWith('file:') ? m : pathToFileURL(path.resolve(m)).href)))],
    keepAliveMs: o.keepAliveMs ?? 3000,
    wsMaxBufferedBytes: o.wsMaxBufferedBytes ?? 64 * 1024 * 1024,
    logger: o.logger ?? false,
    redis: o.redis,
    redisPrefix: o.redisPrefix,
    store: o.store ?? 'shared-dir',
    storeMaxFileBytes: o.storeMaxFileBytes ?? 64 * 1024 * 1024,
    storeTtlSeconds: o.storeTtlSeconds ?? 0,
  };
}
