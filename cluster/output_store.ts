// Where images live: the server's /view and uploads go through an OutputStore, never the folders
// directly, so that a cluster can keep them somewhere every machine reaches. Two implement it:
//   SharedDirStore  (default) the output/input/temp folders themselves — one machine, or the same
//                   folders mounted on every machine (NFS, a shared volume). Nodes already read
//                   and write there, so nothing is copied.
//   RedisStore      (redis_store.ts, `--store redis`) the bytes in the cluster's Redis, for
//                   clusters without a shared filesystem: workers copy a job's inputs in and its
//                   outputs out (file_sync.ts).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { createFileAtomic, relativeSegments, resolveInside, UnsafePathError, writeFileAtomic } from '../nodes/image/paths.ts';

/** ComfyUI's folder types (/view?type=, /upload/image type=). */
export type FolderType = 'output' | 'input' | 'temp';

export const FOLDER_TYPES: readonly FolderType[] = ['output', 'input', 'temp'];

export interface StoredFile {
  size: number;
  /** Last modification, epoch ms. */
  mtimeMs: number;
  /** SHA-256 (hex) of the content, when the store keeps it (Redis does; a directory does not). */
  sha256?: string;
  /** The whole content. */
  read(): Promise<Buffer>;
  open(): Readable;
  /** The file on this machine, when the store is a directory (lets the server stream it). */
  localPath?: string;
}

/** What create() found: its write happened, or a file of that name exists (its SHA-256, when it
 *  is a file; undefined for a folder of that name). */
export type CreateResult = { created: true } | { created: false; sha256: string | undefined };

export interface OutputStore {
  readonly kind: 'shared-dir' | 'redis';
  /** True when the store is the very folders the nodes read and write: nothing to copy in or out. */
  readonly inPlace: boolean;
  /** Largest file write()/create() accept, bytes (Infinity: no limit of its own). */
  readonly maxFileBytes: number;
  /** Throws UnsafePathError unless `subfolder` (and `filename` inside it) stays inside the folder. */
  check(type: FolderType, subfolder: string, filename?: string): void;
  /** Writes a file atomically (no reader sees a partial file), replacing one of that name. */
  write(type: FolderType, subfolder: string, filename: string, data: Uint8Array): Promise<void>;
  /** Writes a file atomically unless the name is taken (atomic too: of two writers, one wins). */
  create(type: FolderType, subfolder: string, filename: string, data: Uint8Array): Promise<CreateResult>;
  /** A file; undefined when it does not exist. Throws UnsafePathError for hostile names. */
  resolve(type: FolderType, subfolder: string, filename: string): Promise<StoredFile | undefined>;
  /** File names (relative to `subfolder`, "/"-separated) under it, hidden names skipped, sorted. */
  list(type: FolderType, subfolder?: string): Promise<string[]>;
  close?(): Promise<void>;
}

/** A file over the store's per-file limit: 413 `file_too_large`, naming the file and the limit. */
export class FileTooLargeError extends Error {
  override name = 'FileTooLargeError';
  readonly statusCode = 413;
  readonly code = 'file_too_large';
  constructor(
    readonly file: string,
    readonly size: number,
    readonly limit: number,
    readonly store: string,
  ) {
    super(`${file} is ${mib(size)}; the ${store} store keeps files of at most ${mib(limit)} (--store-max-file-mb)`);
  }
}

/** The store has no room left (Redis at `maxmemory` with `noeviction`): 507 `store_full`. */
export class StoreFullError extends Error {
  override name = 'StoreFullError';
  readonly statusCode = 507;
  readonly code = 'store_full';
}

function mib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB` : `${bytes} bytes`;
}

export const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** "sub/dir" + "a.png" -> "sub/dir/a.png" (segments checked: no "..", absolute, NUL, backslash). */
export function storedRel(subfolder: string, filename: string): string {
  return [...relativeSegments(subfolder), ...relativeSegments(filename)].join('/');
}

/** A path failure that is not an UnsafePathError (ENOTDIR, ELOOP from realpath), as one, keeping
 *  its message: whatever cannot be resolved inside the folder is refused the same way. */
function asUnsafe(e: unknown, rel: string): UnsafePathError {
  if (e instanceof UnsafePathError) return e;
  const u = new UnsafePathError(rel, 'cannot be resolved');
  u.message = (e as Error).message;
  return u;
}

export class SharedDirStore implements OutputStore {
  readonly kind = 'shared-dir' as const;
  readonly inPlace = true;
  readonly maxFileBytes = Infinity;

  constructor(readonly dirs: Record<FolderType, string>) {}

  /** The absolute path of (subfolder[, filename]) inside the folder; UnsafePathError otherwise. */
  private inside(type: FolderType, subfolder: string, filename?: string): string {
    try {
      return filename === undefined ? resolveInside(this.dirs[type], [subfolder], true) : resolveInside(this.dirs[type], [subfolder, filename]);
    } catch (e) {
      throw asUnsafe(e, filename === undefined ? subfolder : `${subfolder}/${filename}`);
    }
  }

  check(type: FolderType, subfolder: string, filename?: string): void {
    this.inside(type, subfolder);
    if (filename !== undefined) this.inside(type, subfolder, filename);
  }

  /** The destination, its folder created; checked again after creating it, since a folder of
   *  the path may have been swapped for a symlink meanwhile. */
  private async destination(type: FolderType, subfolder: string, filename: string): Promise<string> {
    this.check(type, subfolder, filename);
    await fs.promises.mkdir(path.dirname(this.inside(type, subfolder, filename)), { recursive: true });
    return this.inside(type, subfolder, filename);
  }

  async write(type: FolderType, subfolder: string, filename: string, data: Uint8Array): Promise<void> {
    writeFileAtomic(await this.destination(type, subfolder, filename), data);
  }

  async create(type: FolderType, subfolder: string, filename: string, data: Uint8Array): Promise<CreateResult> {
    const dest = await this.destination(type, subfolder, filename);
    if (createFileAtomic(dest, data)) return { created: true };
    return { created: false, sha256: fs.statSync(dest).isFile() ? sha256Hex(fs.readFileSync(dest)) : undefined };
  }

  async resolve(type: FolderType, subfolder: string, filename: string): Promise<StoredFile | undefined> {
    this.inside(type, subfolder);
    const file = this.inside(type, subfolder, filename);
    const st = await fs.promises.stat(file).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    return {
      size: st.size,
      mtimeMs: st.mtimeMs,
      localPath: file,
      read: () => fs.promises.readFile(file),
      open: () => fs.createReadStream(file),
    };
  }

  async list(type: FolderType, subfolder = ''): Promise<string[]> {
    const root = resolveInside(this.dirs[type], [subfolder], true);
    const entries = await fs.promises.readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
    return entries
      .filter((e) => e.isFile() && !e.name.startsWith('.'))
      .map((e) => path.relative(root, path.join(e.parentPath, e.name)).split(path.sep).join('/'))
      .sort();
  }
}

/** ComfyUI's upload names: the name itself, then "stem (1).ext" … "stem (9999).ext". */
export function* uploadNames(filename: string): Generator<string> {
  const ext = path.extname(filename);
  const stem = filename.slice(0, filename.length - ext.length);
  yield filename;
  for (let i = 1; i < 10_000; i++) yield `${stem} (${i})${ext}`;
}

/**
 * ComfyUI's rule for an upload without `overwrite`, against any store: the first name of
 * `names` that is free is written; a name already holding the same bytes is a duplicate upload
 * and is answered as it is. Returns the final name, undefined when no name is free.
 */
export async function storeNoClobber(
  store: OutputStore,
  type: FolderType,
  subfolder: string,
  data: Uint8Array,
  names: Iterable<string>,
): Promise<string | undefined> {
  const mine = sha256Hex(data);
  for (const name of names) {
    const r = await store.create(type, subfolder, name, data);
    if (r.created || r.sha256 === mine) return name;
  }
  return undefined;
}
