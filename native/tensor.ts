// Tensor handles over native storages: reference-counted storage (views share it), explicit
// dispose, and the scope stack that `Backend.scope` uses to free intermediates.
import type { DType, DeviceName, Tensor } from './api.ts';
import { raw, DTYPE_CODE, DTYPE_SIZE, type RawStorage } from './binding.ts';

/** One device buffer shared by a tensor and its views; freed when the last holder lets go. */
export class StorageRef {
  private refs = 1;
  constructor(readonly raw: RawStorage) {}
  retain(): this {
    this.refs++;
    return this;
  }
  /** Whether another tensor (a view) shares this storage. */
  get shared(): boolean {
    return this.refs > 1;
  }
  release(): void {
    if (--this.refs === 0) this.raw.free();
  }
}

// The scope stack (per JS thread: each worker gets its own module instance).
const scopes: Array<Set<NativeTensor>> = [];

export class NativeTensor implements Tensor {
  readonly numel: number;
  private _disposed = false;
  constructor(
    readonly storage: StorageRef,
    /** Byte offset into the storage. */
    readonly offset: number,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly device: DeviceName,
    readonly isView: boolean,
  ) {
    this.numel = shape.reduce((a, b) => a * b, 1);
    Object.freeze(this.shape);
    const top = scopes[scopes.length - 1];
    if (top) top.add(this);
  }
  get disposed(): boolean {
    return this._disposed;
  }
  get nbytes(): number {
    return this.isView ? 0 : this.storage.raw.nbytes;
  }
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    this.storage.release();
  }
  /** Throws when the tensor can no longer be used; `what` names the op and argument. */
  check(what: string): void {
    if (this._disposed) throw new Error(`${what}: tensor ${fmtShape(this.shape)} ${this.dtype} was disposed`);
  }
  toFloat32(): Float32Array {
    this.check('toFloat32');
    return new Float32Array(raw().read(this.storage.raw, this.offset, this.numel, DTYPE_CODE[this.dtype], DTYPE_CODE.f32));
  }
  toTypedArray(): Float32Array | Int32Array | BigInt64Array {
    this.check('toTypedArray');
    if (this.dtype === 'i32') return new Int32Array(raw().read(this.storage.raw, this.offset, this.numel, DTYPE_CODE.i32, DTYPE_CODE.i32));
    if (this.dtype === 'i64') return new BigInt64Array(raw().read(this.storage.raw, this.offset, this.numel, DTYPE_CODE.i64, DTYPE_CODE.i64));
    return this.toFloat32();
  }
  get byteLength(): number {
    return this.numel * DTYPE_SIZE[this.dtype];
  }
  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}, ${this.device})`;
  }
}

export const fmtShape = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** Runs fn; disposes every tensor created inside except those in its result or kept. */
export function runScope<T>(fn: () => T): T {
  const mine = new Set<NativeTensor>();
  scopes.push(mine);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of mine) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result && typeof (result as { then?: unknown }).then === 'function') {
    for (const t of mine) t.dispose();
    throw new Error('scope(fn): fn returned a Promise; scopes are synchronous (tensors would be freed before it settles)');
  }
  const returned = new Set<NativeTensor>();
  collect(result, returned, new Set());
  const parent = scopes[scopes.length - 1];
  for (const t of mine) {
    if (returned.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** Removes t from every open scope so that no scope disposes it. */
export function keepTensor<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t as unknown as NativeTensor);
  return t;
}

function collect(v: unknown, out: Set<NativeTensor>, seen: Set<unknown>): void {
  if (v === null || typeof v !== 'object' || seen.has(v)) return;
  seen.add(v);
  if (v instanceof NativeTensor) {
    out.add(v);
    return;
  }
  if (ArrayBuffer.isView(v)) return;
  if (v instanceof Map) {
    for (const [k, x] of v) {
      collect(k, out, seen);
      collect(x, out, seen);
    }
    return;
  }
  if (v instanceof Set || Array.isArray(v)) {
    for (const x of v) collect(x, out, seen);
    return;
  }
  for (const x of Object.values(v as Record<string, unknown>)) collect(x, out, seen);
}
