// Where images live in a cluster: workers write them, every front end serves /view and accepts
// uploads. The default is a shared directory (the same output/input/temp folders mounted on every
// machine: NFS, a volume), which is what the nodes already write to, so SharedDirStore only adds
// the /view and upload side. The interface is what an object store (S3...) would implement: the
// workers would then push files after a job, and front ends read them from the store.
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { resolveInside, writeFileAtomic } from '../nodes/image/paths.ts';

/** ComfyUI's folder types (/view?type=, /upload/image type=). */
export type FolderType = 'output' | 'input' | 'temp';

export interface StoredFile {
  size: number;
  /** Last modification, epoch ms. */
  mtimeMs: number;
  open(): Readable;
  /** The file on this machine, when the store is a directory (lets the server use sendFile). */
  localPath?: string;
}

export interface OutputStore {
  /** Writes a file atomically (no reader sees a partial file), creating its subfolder. */
  write(type: FolderType, subfolder: string, filename: string, data: Uint8Array): Promise<void>;
  /** A file for /view; undefined when it does not exist. Throws UnsafePathError for hostile names. */
  resolve(type: FolderType, subfolder: string, filename: string): Promise<StoredFile | undefined>;
  /** File names (relative to the folder, "/"-separated) under `subfolder`, sorted. */
  list(type: FolderType, subfolder?: string): Promise<string[]>;
}

export class SharedDirStore implements OutputStore {
  constructor(readonly dirs: Record<FolderType, string>) {}

  async write(type: FolderType, subfolder: string, filename: string, data: Uint8Array): Promise<void> {
    const dest = resolveInside(this.dirs[type], [subfolder, filename]);
    await fs.promises.mkdir(path.dirname(dest), { recursive: true });
    writeFileAtomic(dest, data);
  }

  async resolve(type: FolderType, subfolder: string, filename: string): Promise<StoredFile | undefined> {
    const file = resolveInside(this.dirs[type], [subfolder, filename]);
    const st = await fs.promises.stat(file).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    return { size: st.size, mtimeMs: st.mtimeMs, localPath: file, open: () => fs.createReadStream(file) };
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
