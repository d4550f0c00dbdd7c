// What a worker copies when the output store is not its own folders (`--store redis`): before a
// job, the input files its prompt names, from the store into the worker's folders (the nodes read
// only local files); as the job reports images (`executed`) and before its history entry, those
// images from the worker's folders into the store, where every front end serves them.
//
// Names: the store is the one namespace. Two workers each count SaveImage's files in their own
// folder, so both may write "ComfyUI_00001_.png"; the second to reach the store gets the next
// free counter there, and the names the job reports (its `executed` messages and history) are
// the store's. The worker's folders are only a working copy.
import fs from 'node:fs';
import path from 'node:path';
import { resolveInside, writeFileAtomic } from '../nodes/image/paths.ts';
import { FileTooLargeError, sha256Hex, storeNoClobber, uploadNames, type FolderType, type OutputStore } from './output_store.ts';

export type LocalFolders = Record<FolderType, string>;

/**
 * Node inputs that name a file to read, by class: LoadImage's `image` ("x.png", "sub/x.png" in
 * the input folder, or ComfyUI's annotated "x.png [output]"), the only node here that reads the
 * input folder (nodes/image/load_image.ts).
 */
export const FILE_INPUTS: Readonly<Record<string, readonly string[]>> = { LoadImage: ['image'] };

export interface FileRef {
  type: FolderType;
  subfolder: string;
  filename: string;
}

const isType = (t: unknown): t is FolderType => t === 'output' || t === 'input' || t === 'temp';
const refKey = (r: FileRef) => `${r.type}\0${r.subfolder}\0${r.filename}`;

/** The files a prompt's nodes will read: constant inputs only (a linked value is unknown before the run). */
export function promptInputFiles(prompt: Record<string, unknown>, fileInputs: Readonly<Record<string, readonly string[]>> = FILE_INPUTS): FileRef[] {
  const out = new Map<string, FileRef>();
  for (const node of Object.values(prompt)) {
    if (typeof node !== 'object' || node === null) continue;
    const { class_type: cls, inputs } = node as { class_type?: unknown; inputs?: unknown };
    const names = typeof cls === 'string' ? fileInputs[cls] : undefined;
    if (!names || typeof inputs !== 'object' || inputs === null) continue;
    for (const input of names) {
      const v = (inputs as Record<string, unknown>)[input];
      if (typeof v !== 'string' || v === '') continue;
      const m = /^(.*) \[(input|output|temp)\]$/.exec(v);
      const ref: FileRef = { type: m ? (m[2] as FolderType) : 'input', subfolder: '', filename: m ? m[1] : v };
      out.set(refKey(ref), ref);
    }
  }
  return [...out.values()];
}

/** Every `{filename, subfolder, type}` an output value names (ComfyUI's ui results: images,
 *  and whatever else a node reports in that shape), output and temp files only. */
export function outputFiles(value: unknown): FileRef[] {
  const out = new Map<string, FileRef>();
  const walk = (v: unknown, depth: number) => {
    if (depth > 8 || typeof v !== 'object' || v === null) return;
    if (Array.isArray(v)) {
      for (const x of v) walk(x, depth + 1);
      return;
    }
    const o = v as Record<string, unknown>;
    if (typeof o.filename === 'string' && (o.type === 'output' || o.type === 'temp') && (o.subfolder === undefined || typeof o.subfolder === 'string')) {
      const ref: FileRef = { type: o.type, subfolder: (o.subfolder as string | undefined) ?? '', filename: o.filename };
      out.set(refKey(ref), ref);
      return;
    }
    for (const x of Object.values(o)) walk(x, depth + 1);
  };
  walk(value, 0);
  return [...out.values()];
}

/** `value` with the file names `renamed` maps (refKey -> the store's name) replaced; the rest shared. */
function renameFiles<T>(value: T, renamed: ReadonlyMap<string, string>, depth = 0): T {
  if (depth > 8 || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((x) => renameFiles(x, renamed, depth + 1)) as T;
  const o = value as Record<string, unknown>;
  if (typeof o.filename === 'string' && isType(o.type)) {
    const ref: FileRef = { type: o.type, subfolder: typeof o.subfolder === 'string' ? o.subfolder : '', filename: o.filename };
    const to = renamed.get(refKey(ref));
    return (to !== undefined && to !== o.filename ? { ...o, filename: to } : o) as T;
  }
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, renameFiles(x, renamed, depth + 1)])) as T;
}

/** SaveImage's and PreviewImage's names: `<prefix>_<counter, 5+ digits>_.<ext>`. */
const COUNTED = /^(.*_)(\d{5,})(_\.[A-Za-z0-9]+)$/;
/** Names this worker gave files (per type, subfolder, local name and content) remembered at most. */
const MAX_REMEMBERED = 10_000;

export class FileSync {
  /** Next counter to try per (type, subfolder, prefix, extension): after one collision, the
   *  worker starts where the store is instead of walking up from its own counter each time. */
  private readonly counters = new Map<string, number>();
  /** (type, subfolder, local name, sha256) -> the store's name, for files pushed again (cached
   *  outputs reported by a later job). */
  private readonly given = new Map<string, string>();

  constructor(
    readonly store: OutputStore,
    readonly folders: LocalFolders,
    private readonly log: (msg: string) => void,
  ) {}

  /**
   * Copies the files `refs` name from the store into the worker's folders, unless the local copy
   * has the same bytes. A name the store lacks, or a hostile one, is left alone: the node that
   * reads it fails with its usual error.
   */
  async pull(refs: readonly FileRef[], job: string): Promise<void> {
    for (const ref of refs) {
      let local: string;
      try {
        local = resolveInside(this.folders[ref.type], [ref.subfolder, ref.filename]);
      } catch {
        continue;
      }
      try {
        const file = await this.store.resolve(ref.type, ref.subfolder, ref.filename);
        if (!file) continue;
        if (file.sha256 !== undefined && sha256Hex(await fs.promises.readFile(local).catch(() => Buffer.alloc(0))) === file.sha256) continue;
        const data = await file.read();
        await fs.promises.mkdir(path.dirname(local), { recursive: true });
        // Checked again: a folder on the way may have been replaced by a symlink meanwhile.
        writeFileAtomic(resolveInside(this.folders[ref.type], [ref.subfolder, ref.filename]), data);
      } catch (e) {
        this.log(`job ${job}: cannot copy ${ref.type}/${ref.filename} from the ${this.store.kind} store: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Stores the output and temp files `value` names (each once per `done`, a job's map) and
   * returns `value` with the names the store gave them. A file that cannot be stored (missing,
   * over the size limit) is logged and keeps its name; /view will not find it.
   */
  async push<T>(value: T, done: Map<string, string>, job: string): Promise<T> {
    for (const ref of outputFiles(value)) {
      const key = refKey(ref);
      if (done.has(key)) continue;
      done.set(key, (await this.pushOne(ref, job)) ?? ref.filename);
    }
    return renameFiles(value, done);
  }

  private async pushOne(ref: FileRef, job: string): Promise<string | undefined> {
    const where = `${ref.type}/${ref.subfolder ? `${ref.subfolder}/` : ''}${ref.filename}`;
    let data: Buffer;
    try {
      data = await fs.promises.readFile(resolveInside(this.folders[ref.type], [ref.subfolder, ref.filename]));
    } catch (e) {
      this.log(`job ${job}: ${where} is not in this worker's folders (${(e as Error).message}); not stored`);
      return undefined;
    }
    try {
      const name = await this.storeOutput(ref, data);
      if (name === undefined) this.log(`job ${job}: no free name for ${where} in the ${this.store.kind} store; not stored`);
      return name;
    } catch (e) {
      const why = e instanceof FileTooLargeError ? `${e.message}; /view cannot serve it` : `cannot store ${where}: ${(e as Error).message}`;
      this.log(`job ${job}: ${why}`);
      return undefined;
    }
  }

  private async storeOutput(ref: FileRef, data: Buffer): Promise<string | undefined> {
    const { store } = this;
    const { type, subfolder, filename } = ref;
    const sha = sha256Hex(data);
    const givenKey = `${refKey(ref)}\0${sha}`;
    const before = this.given.get(givenKey);
    const same = async (name: string) => {
      const r = await store.create(type, subfolder, name, data);
      return r.created || r.sha256 === sha;
    };
    const remember = (name: string) => {
      if (this.given.size >= MAX_REMEMBERED) this.given.delete(this.given.keys().next().value!);
      this.given.set(givenKey, name);
      return name;
    };
    if (before !== undefined && (await same(before))) return before;
    if (await same(filename)) return remember(filename);
    const m = COUNTED.exec(filename);
    if (!m) {
      const names = uploadNames(filename);
      names.next();
      const name = await storeNoClobber(store, type, subfolder, data, names);
      return name === undefined ? undefined : remember(name);
    }
    const [, stem, digits, ext] = m;
    const counterKey = `${type}\0${subfolder}\0${stem}\0${ext}`;
    let n = Math.max(Number(digits) + 1, this.counters.get(counterKey) ?? 0, (await this.highestCounter(type, subfolder, stem, ext)) + 1);
    for (let tries = 0; tries < 1000; tries++, n++) {
      const name = `${stem}${String(n).padStart(5, '0')}${ext}`;
      if (await same(name)) {
        this.counters.set(counterKey, n + 1);
        return remember(name);
      }
    }
    return undefined;
  }

  /** The highest counter of `<stem>NNNNN<ext>` in the store, when it can say cheaply; else 0. */
  private async highestCounter(type: FolderType, subfolder: string, stem: string, ext: string): Promise<number> {
    const store = this.store as OutputStore & { lastNamesWithPrefix?: (t: FolderType, s: string, p: string, n: number) => Promise<string[]> };
    if (!store.lastNamesWithPrefix) return 0;
    let best = 0;
    for (const name of await store.lastNamesWithPrefix(type, subfolder, stem, 100)) {
      if (!name.startsWith(stem) || !name.endsWith(ext)) continue;
      const digits = name.slice(stem.length, name.length - ext.length);
      if (/^\d{5,}$/.test(digits)) best = Math.max(best, Number(digits));
    }
    return best;
  }
}
