// `--store redis`: the output store in the cluster's Redis, for machines that share no
// filesystem. Front ends serve /view from it and write uploads into it; workers copy a prompt's
// input files from it before the job and push the job's images into it before its history entry
// (file_sync.ts). Keys (under the cluster prefix, keys.ts):
//   P:cluster:file:<type>:<rel>        HASH {data, size, mtime, sha256}: one file
//   P:cluster:files:<type>             ZSET rel -> 0: the listing (lexicographic ranges)
//   P:cluster:files:<type>:expiry      ZSET rel -> expiry ms, for files written with a TTL
//   P:cluster:file-upload:<uuid>       HASH being written; renamed into place by the commit
// A write stages the whole file under an upload key, then one script renames it over the name
// (or, for create(), only if the name is free) and indexes it, so a reader sees the old file or
// the new one, never a part, and the file's bytes never pass through Lua.
import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type { Redis } from 'ioredis';
import { connect, type RedisTarget } from './connection.ts';
import type { ClusterKeys } from './keys.ts';
import {
  FileTooLargeError,
  sha256Hex,
  StoreFullError,
  storedRel,
  type CreateResult,
  type FolderType,
  type OutputStore,
  type StoredFile,
} from './output_store.ts';
import { LuaScript } from './script.ts';
import { UnsafePathError } from '../nodes/image/paths.ts';

/** The events that end a connection attempt, whatever its outcome. */
const ATTEMPT_OVER = ['ready', 'close', 'end', 'error'] as const;

export const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_TEMP_TTL_SECONDS = 24 * 3600;
/** Longest "/"-separated path of a stored file, in UTF-8 bytes (it is part of a key). */
export const MAX_REL_BYTES = 1024;
/** A staged upload outlives a writer that died mid-write by this much, then expires. */
const UPLOAD_TTL_MS = 10 * 60 * 1000;

export interface RedisStoreOptions {
  /** Largest file, bytes (default 64 MiB; `--store-max-file-mb`). */
  maxFileBytes?: number;
  /** Time to live of output and input files, seconds; 0 (default): kept until deleted. Each write
   *  starts it again. */
  ttlSeconds?: number;
  /** Time to live of temp files (PreviewImage), seconds (default 24 h, capped by ttlSeconds). */
  tempTtlSeconds?: number;
  /** A front end answers 503 at once while Redis is down, and after `timeoutMs` of no answer;
   *  a worker (false) waits for the reconnect, as its history write does. */
  failFast?: boolean;
  timeoutMs?: number;
  /** The Redis URL without its password, for messages. */
  display?: string;
}

/** Redis is unreachable: 503 `backend_unavailable` (errors.ts adds Retry-After). */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
  readonly statusCode = 503;
  readonly code = 'backend_unavailable';
}

/** A file listed a moment ago was replaced or expired before its bytes were read: a 404. */
export class FileGoneError extends Error {
  override name = 'FileGoneError';
  readonly statusCode = 404;
  readonly code = 'not_found';
}

// KEYS: upload, file, index, expiry. ARGV: rel, mode (write | create), ttl ms (0: none), now ms.
// Returns {1} written, {0, sha256} the name was taken (create), {-1} the staged upload expired.
const COMMIT = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
if ARGV[2] == 'create' then
  local sha = redis.call('HGET', KEYS[2], 'sha256')
  if sha then
    redis.call('DEL', KEYS[1])
    return {0, sha}
  end
end
redis.call('RENAME', KEYS[1], KEYS[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('ZADD', KEYS[4], tonumber(ARGV[4]) + ttl, ARGV[1])
else
  redis.call('PERSIST', KEYS[2])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return {1}
`);

// KEYS: index, expiry. ARGV: now ms, the file key prefix of the type. Drops the listing entries of
// files Redis has expired (at most 1000 a call); a file written again since keeps its entry.
const PRUNE = new LuaScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, rel in ipairs(due) do
  local key = ARGV[2] .. rel
  if redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', KEYS[1], rel)
    redis.call('ZREM', KEYS[2], rel)
  else
    local left = redis.call('PTTL', key)
    if left > 0 then redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + left, rel) else redis.call('ZREM', KEYS[2], rel) end
  end
end
return #due
`);

/** The byte after every UTF-8 byte: the upper end of a lexicographic prefix range. */
const HIGH = Buffer.from([0xff]);

export class RedisStore implements OutputStore {
  readonly kind = 'redis' as const;
  readonly inPlace = false;
  readonly maxFileBytes: number;
  private readonly ttlMs: Record<FolderType, number>;
  private readonly display: string;
  /** While the connection's first attempt is under way (not yet ready, refused or dropped): its
   *  outcome, which every call waits for (one set of listeners, however many calls). */
  private firstAttempt: Promise<void> | undefined;

  constructor(
    readonly redis: Redis,
    readonly keys: ClusterKeys,
    private readonly o: RedisStoreOptions = {},
    /** close() disconnects it (a connection opened for the store alone). */
    private readonly ownsConnection = false,
  ) {
    this.maxFileBytes = o.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    if (!(this.maxFileBytes >= 1)) throw new Error(`the Redis store's file limit must be at least 1 byte, got ${o.maxFileBytes}`);
    const ttl = o.ttlSeconds ?? 0;
    const tempTtl = o.tempTtlSeconds ?? DEFAULT_TEMP_TTL_SECONDS;
    if (!(ttl >= 0) || !(tempTtl > 0)) throw new Error(`the Redis store's retention must be >= 0 s (temp files > 0 s), got ${ttl} / ${tempTtl}`);
    const ms = (s: number) => Math.round(s * 1000);
    this.ttlMs = { output: ms(ttl), input: ms(ttl), temp: ms(ttl > 0 ? Math.min(ttl, tempTtl) : tempTtl) };
    this.display = o.display ?? 'redis';
    if (redis.status === 'connecting' || redis.status === 'connect') {
      this.firstAttempt = new Promise<void>((resolve) => {
        const over = () => {
          this.firstAttempt = undefined;
          for (const ev of ATTEMPT_OVER) redis.off(ev, over);
          resolve();
        };
        for (const ev of ATTEMPT_OVER) redis.once(ev, over);
      });
    }
  }

  /** A store on a connection of its own, so a large file never holds up the queue's commands
   *  (a worker's lock renewals, a front end's /queue) on the main connection. */
  static open(target: RedisTarget, keys: ClusterKeys, o: RedisStoreOptions, connectionName: string): RedisStore {
    return new RedisStore(connect(target, { connectionName }), keys, { ...o, display: o.display ?? target.display }, true);
  }

  /** The checked "/"-separated path of a file (or a folder, without filename). */
  private rel(subfolder: string, filename?: string): string {
    const rel = storedRel(subfolder, filename ?? '');
    if (filename !== undefined && storedRel('', filename) === '') throw new UnsafePathError(filename, 'is empty');
    if (Buffer.byteLength(rel) > MAX_REL_BYTES) throw new UnsafePathError(rel.slice(0, 64) + '…', `is longer than ${MAX_REL_BYTES} bytes`);
    return rel;
  }

  check(_type: FolderType, subfolder: string, filename?: string): void {
    this.rel(subfolder, filename);
  }

  /** Resolves when the connection's first attempt is over (ready, refused, dropped) or after `ms`. */
  private async firstConnect(attempt: Promise<void>, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([attempt, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** `extraMs`: more time for a large transfer (at 8 MB/s, well under any LAN). */
  private async guard<T>(fn: () => Promise<T>, extraMs = 0): Promise<T> {
    if (!this.o.failFast) return fn();
    // A store just opened (a front end just started) is not in an outage: wait for the first
    // attempt's outcome, which a refused connection gives at once; later drops fail fast.
    if (this.firstAttempt) await this.firstConnect(this.firstAttempt, this.o.timeoutMs ?? 5000);
    const status = this.redis.status;
    if (status !== 'ready') {
      throw new StoreUnavailableError(
        `the Redis output store at ${this.display} is unreachable (${status}); images and uploads are unavailable until it is back — retry shortly`,
      );
    }
    const ms = (this.o.timeoutMs ?? 5000) + Math.round(extraMs);
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new StoreUnavailableError(`the Redis output store at ${this.display} did not answer within ${ms} ms`)), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async put(type: FolderType, rel: string, data: Uint8Array, mode: 'write' | 'create'): Promise<CreateResult> {
    if (data.length > this.maxFileBytes) throw new FileTooLargeError(`${type}/${rel}`, data.length, this.maxFileBytes, 'redis');
    const sha = sha256Hex(data);
    const fileKey = this.keys.file(type, rel);
    return this.guard(async () => {
      if (mode === 'create') {
        // Most taken names are found here, without sending the bytes.
        const existing = await this.redis.hget(fileKey, 'sha256');
        if (existing !== null) return { created: false, sha256: existing };
      }
      const upload = this.keys.fileUpload(randomUUID());
      try {
        const staged = await this.redis
          .multi()
          .hset(upload, 'data', Buffer.from(data.buffer, data.byteOffset, data.length), 'size', data.length, 'mtime', Date.now(), 'sha256', sha)
          .pexpire(upload, UPLOAD_TTL_MS)
          .exec();
        const failed = staged?.find(([err]) => err !== null)?.[0];
        if (failed) throw failed;
        const r = (await COMMIT.run(
          this.redis,
          [upload, fileKey, this.keys.files(type), this.keys.filesExpiry(type)],
          [rel, mode, this.ttlMs[type], Date.now()],
        )) as [number, string?];
        if (r[0] === -1) throw new Error(`writing ${type}/${rel} to the Redis store took over ${UPLOAD_TTL_MS / 60000} minutes; its staged copy expired`);
        return r[0] === 1 ? { created: true } : { created: false, sha256: r[1] };
      } catch (e) {
        // A command refused inside MULTI comes back as EXECABORT, its reason in previousErrors.
        const causes = (e as { previousErrors?: Error[] }).previousErrors ?? [];
        const msg = [(e as Error).message, ...causes.map((c) => c.message)].join('; ');
        if (/\bOOM\b/.test(msg))
          throw new StoreFullError(`the Redis output store at ${this.display} is full (maxmemory reached), so ${type}/${rel} was not stored: ${msg}`);
        throw e;
      }
    }, data.length / 8000);
  }

  async write(type: FolderType, subfolder: string, filename: string, data: Uint8Array): Promise<void> {
    await this.put(type, this.rel(subfolder, filename), data, 'write');
  }

  async create(type: FolderType, subfolder: string, filename: string, data: Uint8Array): Promise<CreateResult> {
    return this.put(type, this.rel(subfolder, filename), data, 'create');
  }

  async resolve(type: FolderType, subfolder: string, filename: string): Promise<StoredFile | undefined> {
    const rel = this.rel(subfolder, filename);
    const key = this.keys.file(type, rel);
    const [size, mtime, sha] = await this.guard(() => this.redis.hmget(key, 'size', 'mtime', 'sha256'));
    if (size === null || sha === null) return undefined;
    const meta = { size: Number(size), mtimeMs: Number(mtime), sha256: sha };
    const read = async (): Promise<Buffer> => {
      const data = await this.guard(() => this.redis.hgetBuffer(key, 'data'));
      if (data === null) throw new FileGoneError(`${type}/${rel} was deleted or expired while it was being read`);
      return data;
    };
    return {
      ...meta,
      read,
      open: () => {
        // A stream over the bytes once they are here: Redis hands a value over whole.
        const out = new PassThrough();
        read().then(
          (d) => out.end(d),
          (e: Error) => out.destroy(e),
        );
        return out;
      },
    };
  }

  /** Drops the listing entries of expired files. */
  private async prune(type: FolderType): Promise<void> {
    for (let round = 0; round < 10; round++) {
      const n = (await PRUNE.run(this.redis, [this.keys.files(type), this.keys.filesExpiry(type)], [Date.now(), this.keys.file(type, '')])) as number;
      if (n < 1000) return;
    }
  }

  async list(type: FolderType, subfolder = ''): Promise<string[]> {
    const dir = this.rel(subfolder);
    return this.guard(async () => {
      await this.prune(type);
      const prefix = dir === '' ? '' : `${dir}/`;
      const members =
        prefix === ''
          ? await this.redis.zrangebylexBuffer(this.keys.files(type), '-', '+')
          : await this.redis.zrangebylexBuffer(this.keys.files(type), Buffer.from(`[${prefix}`), Buffer.concat([Buffer.from(`[${prefix}`), HIGH]));
      return members
        .map((m) => m.toString('utf8').slice(prefix.length))
        .filter((rel) => !rel.slice(rel.lastIndexOf('/') + 1).startsWith('.'))
        .sort();
    });
  }

  /** Up to `limit` names in `subfolder` starting with `namePrefix`, lexicographically last first
   *  (SaveImage's zero-padded counters: the highest counter first). */
  async lastNamesWithPrefix(type: FolderType, subfolder: string, namePrefix: string, limit: number): Promise<string[]> {
    const dir = this.rel(subfolder);
    const start = dir === '' ? namePrefix : `${dir}/${namePrefix}`;
    const members = await this.guard(() =>
      this.redis.zrevrangebylexBuffer(this.keys.files(type), Buffer.concat([Buffer.from(`[${start}`), HIGH]), Buffer.from(`[${start}`), 'LIMIT', 0, limit),
    );
    const cut = dir === '' ? 0 : dir.length + 1;
    return members.map((m) => m.toString('utf8').slice(cut)).filter((n) => !n.includes('/'));
  }

  async close(): Promise<void> {
    if (this.ownsConnection) this.redis.disconnect();
  }
}
