// Safetensors checkpoints: memory-mapped reading of single files, sharded checkpoints
// (`*.safetensors.index.json`) and diffusers folders, with every header validated on open;
// and the writer. Format: u64 LE header length N, N bytes of JSON, then the data area.
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import type { Backend, DType, SafetensorsCheckpoint, SafetensorsEntry, Tensor } from './api.ts';
import { raw, DTYPE_CODE, type RawMapped } from './binding.ts';
import { NativeTensor, StorageRef } from './tensor.ts';

/** The safetensors format caps headers at 100 MB; larger is a corrupt or hostile file. */
export const MAX_HEADER_BYTES = 100_000_000;

// Element sizes of every dtype the format defines; the ones we load map to our dtypes.
const ST_SIZES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};
const ST_TO_DTYPE: Record<string, DType> = { F32: 'f32', F16: 'f16', BF16: 'bf16', I32: 'i32', I64: 'i64' };

interface FileEntry extends SafetensorsEntry {
  begin: number;
  end: number;
  numel: number;
}

/** One mapped file with its validated header. */
class ShardFile {
  readonly entries = new Map<string, FileEntry>();
  readonly metadata: Record<string, string> = {};
  readonly dataStart: number;
  constructor(
    readonly file: string,
    readonly mapped: RawMapped,
  ) {
    const size = mapped.size;
    const bad = (msg: string): Error => new Error(`safetensors ${file}: ${msg}`);
    if (size < 8) throw bad(`file is ${size} bytes, shorter than the 8-byte header length`);
    const n = mapped.bytes(0, 8).readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) throw bad(`header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    const hlen = Number(n);
    if (8 + hlen > size) throw bad(`header length ${hlen} runs past the end of the ${size}-byte file`);
    if (hlen < 2) throw bad(`header length ${hlen} cannot hold a JSON object`);
    this.dataStart = 8 + hlen;
    const dataLen = size - this.dataStart;
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(mapped.bytes(8, hlen)));
    } catch (e) {
      throw bad(`header is not valid UTF-8 JSON (${(e as Error).message})`);
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) throw bad('header is not a JSON object');
    for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad('__metadata__ is not an object');
        for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
          if (typeof s !== 'string') throw bad(`__metadata__.${k} is not a string`);
          this.metadata[k] = s;
        }
        continue;
      }
      const t = bad.bind(null);
      const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (e === null || typeof e !== 'object') throw t(`tensor '${name}': entry is not an object`);
      if (typeof e.dtype !== 'string' || !(e.dtype in ST_SIZES)) throw t(`tensor '${name}': unknown dtype ${JSON.stringify(e.dtype)}`);
      if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0))
        throw t(`tensor '${name}': shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
      const offs = e.data_offsets;
      if (!Array.isArray(offs) || offs.length !== 2 || offs.some((d) => !Number.isSafeInteger(d) || d < 0))
        throw t(`tensor '${name}': data_offsets ${JSON.stringify(offs)} is not [begin, end]`);
      const [begin, end] = offs as [number, number];
      if (begin > end || end > dataLen) throw t(`tensor '${name}': data_offsets [${begin}, ${end}] outside the ${dataLen}-byte data area`);
      const numel = (e.shape as number[]).reduce((a, b) => a * b, 1);
      if (!Number.isSafeInteger(numel * ST_SIZES[e.dtype])) throw t(`tensor '${name}': shape ${JSON.stringify(e.shape)} is too large`);
      if (numel * ST_SIZES[e.dtype] !== end - begin)
        throw t(`tensor '${name}': ${e.dtype} ${JSON.stringify(e.shape)} needs ${numel * ST_SIZES[e.dtype]} bytes but data_offsets span ${end - begin}`);
      this.entries.set(name, { name, dtype: e.dtype, shape: [...(e.shape as number[])], file, begin, end, numel });
    }
    const sorted = [...this.entries.values()].filter((x) => x.end > x.begin).sort((a, b) => a.begin - b.begin);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].begin < sorted[i - 1].end) throw bad(`tensors '${sorted[i - 1].name}' and '${sorted[i].name}' overlap in the data area`);
    }
  }
}

class Checkpoint implements SafetensorsCheckpoint {
  private readonly where = new Map<string, ShardFile>();
  private closed = false;
  readonly metadata: Record<string, string> = {};
  constructor(
    private readonly shards: ShardFile[],
    weightMap?: Record<string, string>,
    readonly source = '',
  ) {
    for (const s of shards) {
      Object.assign(this.metadata, s.metadata);
      for (const name of s.entries.keys()) {
        const prev = this.where.get(name);
        if (prev) throw new Error(`safetensors: tensor '${name}' is in both ${prev.file} and ${s.file}`);
        this.where.set(name, s);
      }
    }
    if (weightMap) {
      for (const [name, f] of Object.entries(weightMap)) {
        const s = this.where.get(name);
        if (!s) throw new Error(`safetensors index ${source}: '${name}' is mapped to ${f} but no shard holds it`);
        if (path.basename(s.file) !== path.basename(f)) throw new Error(`safetensors index ${source}: '${name}' is mapped to ${f} but found in ${s.file}`);
      }
    }
  }
  get files(): readonly string[] {
    return this.shards.map((s) => s.file);
  }
  keys(): string[] {
    return [...this.where.keys()];
  }
  has(name: string): boolean {
    return this.where.has(name);
  }
  entry(name: string): SafetensorsEntry {
    const e = this.lookup(name);
    return { name: e.name, dtype: e.dtype, shape: [...e.shape], file: e.file };
  }
  private lookup(name: string): FileEntry {
    if (this.closed) throw new Error(`safetensors ${this.source}: checkpoint was closed`);
    const s = this.where.get(name);
    if (!s) throw new Error(`safetensors ${this.source}: no tensor named '${name}'`);
    return s.entries.get(name)!;
  }
  load(name: string, backend: Backend, dtype?: DType): Tensor {
    const e = this.lookup(name);
    const src = ST_TO_DTYPE[e.dtype];
    if (!src) throw new Error(`safetensors ${e.file}: tensor '${name}' has dtype ${e.dtype}, which cannot be loaded (F32/F16/BF16/I32/I64 only)`);
    const dt = dtype ?? src;
    if (!(dt in DTYPE_CODE)) throw new Error(`safetensors: cannot convert '${name}' to unknown dtype ${String(dtype)}`);
    const shard = this.where.get(name)!;
    const storage = shard.mapped.load(backend.name, shard.dataStart + e.begin, e.numel, DTYPE_CODE[src], DTYPE_CODE[dt]);
    return new NativeTensor(new StorageRef(storage), 0, [...e.shape], dt, backend.name, false);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.shards) s.mapped.close();
  }
}

export interface OpenOptions {
  /** diffusers variant: picks `name.<variant>.safetensors` (or its sharded index) in a folder. */
  variant?: 'bf16' | 'fp16' | string;
}

function openFiles(files: string[], weightMap?: Record<string, string>, source = ''): Checkpoint {
  const r = raw();
  const shards: ShardFile[] = [];
  try {
    for (const f of files) {
      const m = r.openMapped(f);
      try {
        shards.push(new ShardFile(f, m));
      } catch (e) {
        m.close();
        throw e;
      }
    }
    return new Checkpoint(shards, weightMap, source);
  } catch (e) {
    for (const s of shards) s.mapped.close();
    throw e;
  }
}

function openIndex(indexPath: string): Checkpoint {
  let idx: unknown;
  try {
    idx = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new Error(`safetensors index ${indexPath}: ${(e as Error).message}`);
  }
  const wm = (idx as { weight_map?: unknown })?.weight_map;
  if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) throw new Error(`safetensors index ${indexPath}: no weight_map object`);
  const map = wm as Record<string, unknown>;
  const dir = path.dirname(indexPath);
  const files: string[] = [];
  for (const [name, f] of Object.entries(map)) {
    if (typeof f !== 'string' || f.includes('/') || f.includes('\\') || f === '..')
      throw new Error(`safetensors index ${indexPath}: '${name}' maps to an invalid file name ${JSON.stringify(f)}`);
    const full = path.join(dir, f);
    if (!files.includes(full)) files.push(full);
  }
  return openFiles(files, map as Record<string, string>, indexPath);
}

/** Picks the checkpoint file of a folder: index first, then a single file; variant when asked. */
export function resolveDir(dir: string, variant?: string): string {
  const names = fs.readdirSync(dir).sort();
  const isVariant = (n: string): boolean => /\.(bf16|fp16|fp32)(\.|-\d)/.test(n) || /\.index\.(bf16|fp16|fp32)\.json$/.test(n);
  let indexes: string[], singles: string[];
  if (variant) {
    indexes = names.filter((n) => n.endsWith(`.safetensors.index.${variant}.json`) || n.endsWith(`.${variant}.safetensors.index.json`));
    singles = names.filter((n) => n.endsWith(`.${variant}.safetensors`));
  } else {
    indexes = names.filter((n) => n.endsWith('.safetensors.index.json') && !isVariant(n));
    singles = names.filter((n) => n.endsWith('.safetensors') && !isVariant(n));
  }
  const what = variant ? `variant '${variant}' ` : '';
  if (indexes.length > 1) throw new Error(`safetensors ${dir}: several ${what}index files (${indexes.join(', ')}); pass one`);
  if (indexes.length === 1) return path.join(dir, indexes[0]);
  if (singles.length > 1) throw new Error(`safetensors ${dir}: several ${what}.safetensors files (${singles.join(', ')}) and no index; pass one`);
  if (singles.length === 1) return path.join(dir, singles[0]);
  throw new Error(`safetensors ${dir}: no ${what}.safetensors file or index in the folder`);
}

export function openSafetensors(p: string, opts: OpenOptions = {}): SafetensorsCheckpoint {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new Error(`safetensors ${p}: no such file or folder`);
  }
  const target = st.isDirectory() ? resolveDir(p, opts.variant) : p;
  if (target.endsWith('.json')) return openIndex(target);
  return openFiles([target], undefined, target);
}

// --- writer ------------------------------------------------------------------------------------

type WriteDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64';
export interface WriteTensor {
  dtype: WriteDType;
  shape: number[];
  data: Float32Array | Int32Array | BigInt64Array | Uint16Array;
}

function f32ToHalfBits(src: Float32Array, dt: 'F16' | 'BF16'): Uint16Array {
  // Reuse the addon's exact round-to-nearest-even conversion through a host round trip.
  const r = raw();
  const s = r.alloc('cpu', src.length * 4);
  try {
    r.write(s, 0, src, DTYPE_CODE.f32, DTYPE_CODE.f32, src.length);
    return new Uint16Array(r.read(s, 0, src.length, DTYPE_CODE.f32, dt === 'F16' ? DTYPE_CODE.f16 : DTYPE_CODE.bf16));
  } finally {
    s.free();
  }
}

export function writeSafetensors(file: string, tensors: Record<string, WriteTensor>, metadata?: Record<string, string>): void {
  if (os.endianness() !== 'LE') throw new Error('writeSafetensors: big-endian hosts are not supported');
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw new Error(`writeSafetensors: metadata '${k}' is not a string`);
    header.__metadata__ = metadata;
  }
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__') throw new Error('writeSafetensors: "__metadata__" is reserved');
    if (!(t.dtype in ST_TO_DTYPE)) throw new Error(`writeSafetensors: tensor '${name}' has unsupported dtype ${String(t.dtype)}`);
    if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0))
      throw new Error(`writeSafetensors: tensor '${name}' has an invalid shape`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    let data: ArrayBufferView;
    const want = { F32: Float32Array, I32: Int32Array, I64: BigInt64Array, F16: Uint16Array, BF16: Uint16Array }[t.dtype];
    if ((t.dtype === 'F16' || t.dtype === 'BF16') && t.data instanceof Float32Array) data = f32ToHalfBits(t.data, t.dtype);
    else if (t.data instanceof want) data = t.data;
    else throw new Error(`writeSafetensors: tensor '${name}' is ${t.dtype} but its data is a ${t.data.constructor.name}`);
    if ((data as Float32Array).length !== numel)
      throw new Error(`writeSafetensors: tensor '${name}' has ${(data as Float32Array).length} values for shape [${t.shape.join(', ')}]`);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data area starts 8-byte aligned (as the reference writer does).
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += ' '.repeat(pad);
  const hbytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hbytes.length));
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, hbytes);
    for (const b of blobs) fs.writeSync(fd, b);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
