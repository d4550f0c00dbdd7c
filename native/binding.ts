// Loads the compiled addon (native/build/Release/sana_native.node, or $SANA_NATIVE_ADDON) and
// types its raw surface. Only native/*.ts use this; model code goes through `Backend`.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { DType } from './api.ts';
import { profiler } from './profile.ts';

export interface RawStorage {
  readonly nbytes: number;
  readonly device: string;
  readonly freed: boolean;
  /** True once releaseSource() freed the data (the storage then only serves linear as a weight). */
  readonly released: boolean;
  free(): void;
  /** Frees the data when the weight cache holds a packed copy that serves every later call. */
  releaseSource(): boolean;
}
export interface RawMapped {
  readonly size: number;
  bytes(offset: number, length: number): Buffer;
  load(device: string, byteOffset: number, count: number, srcDtype: number, dstDtype: number): RawStorage;
  close(): void;
}
type S = RawStorage | null;
/** Raw op entry points: arguments in the order of native/cpu/ops.h, tensors as (storage, byteOffset). */
export interface RawOps {
  fill(out: S, o: number, n: number, value: number, dt: number): void;
  cast(out: S, o: number, inp: S, io: number, n: number, outDt: number, inDt: number): void;
  permute(out: S, o: number, inp: S, io: number, inShape: number[], perm: number[], elsize: number): void;
  concat(out: S, o: number, inputs: Array<RawStorage | number>, axisLens: number[], outer: number, inner: number, elsize: number): void;
  slice(out: S, o: number, inp: S, io: number, outer: number, axisLen: number, inner: number, start: number, len: number, elsize: number): void;
  indexSelect(out: S, o: number, inp: S, io: number, indices: number[], outer: number, axisLen: number, inner: number, elsize: number): void;
  repeatInterleave(out: S, o: number, inp: S, io: number, outer: number, axisLen: number, inner: number, repeats: number, elsize: number): void;
  unary(out: S, o: number, inp: S, io: number, n: number, op: number, p0: number, p1: number, dt: number): void;
  binary(out: S, o: number, a: S, ao: number, b: S, bo: number, op: number, dt: number, shape: number[], sa: number[], sb: number[]): void;
  ternary(
    out: S,
    o: number,
    a: S,
    ao: number,
    b: S,
    bo: number,
    c: S,
    co: number,
    op: number,
    dt: number,
    shape: number[],
    sa: number[],
    sb: number[],
    sc: number[],
  ): void;
  softmax(out: S, o: number, x: S, xo: number, rows: number, C: number, dt: number): void;
  linear(out: S, o: number, x: S, xo: number, w: S, wo: number, bias: S, bo: number, M: number, N: number, K: number, outDt: number, dt: number): void;
  linearResidual(
    out: S,
    o: number,
    x: S,
    xo: number,
    w: S,
    wo: number,
    bias: S,
    bo: number,
    res: S,
    ro: number,
    gate: S,
    go: number,
    M: number,
    N: number,
    K: number,
    gateRows: number,
    outDt: number,
    dt: number,
  ): void;
  matmul(
    out: S,
    o: number,
    a: S,
    ao: number,
    b: S,
    bo: number,
    batch: number,
    M: number,
    N: number,
    K: number,
    aBstride: number,
    bBstride: number,
    transB: boolean,
    outDt: number,
    dt: number,
  ): void;
  conv2d(
    out: S,
    o: number,
    x: S,
    xo: number,
    w: S,
    wo: number,
    bias: S,
    bo: number,
    B: number,
    Cin: number,
    H: number,
    W: number,
    Cout: number,
    KH: number,
    KW: number,
    stride: number,
    pad: number,
    groups: number,
    Ho: number,
    Wo: number,
    outDt: number,
    dt: number,
  ): void;
  conv2dNhwc(
    out: S,
    o: number,
    x: S,
    xo: number,
    w: S,
    wo: number,
    bias: S,
    bo: number,
    B: number,
    Cin: number,
    H: number,
    W: number,
    Cout: number,
    KH: number,
    KW: number,
    stride: number,
    pad: number,
    groups: number,
    Ho: number,
    Wo: number,
    act: number,
    outDt: number,
    dt: number,
  ): void;
  upsamplePhasesNhwc(out: S, o: number, y: S, yo: number, x: S, xo: number, B: number, H: number, W: number, C: number, Cx: number, dt: number): void;
  rmsnorm(out: S, o: number, x: S, xo: number, w: S, wo: number, b: S, bo: number, rows: number, C: number, eps: number, offset: number, dt: number): void;
  rmsnormAct(
    out: S,
    o: number,
    x: S,
    xo: number,
    w: S,
    wo: number,
    b: S,
    bo: number,
    r: S,
    ro: number,
    rows: number,
    C: number,
    eps: number,
    act: number,
    dt: number,
  ): void;
  rmsnorm2d(out: S, o: number, x: S, xo: number, w: S, wo: number, b: S, bo: number, B: number, C: number, HW: number, eps: number, dt: number): void;
  layernorm(out: S, o: number, x: S, xo: number, w: S, wo: number, b: S, bo: number, rows: number, C: number, eps: number, dt: number): void;
  layernormModulate(
    out: S,
    o: number,
    x: S,
    xo: number,
    shift: S,
    so: number,
    scale: S,
    co: number,
    B: number,
    R: number,
    C: number,
    modBstride: number,
    eps: number,
    dt: number,
  ): void;
  linearAttentionTokens(out: S, o: number, qkv: S, qo: number, B: number, N: number, H: number, D: number, eps: number, relu: boolean, dt: number): void;
  dwconv3x3GluTokens(
    out: S,
    o: number,
    u: S,
    uo: number,
    w: S,
    wo: number,
    bias: S | null,
    bo: number,
    B: number,
    H: number,
    W: number,
    F: number,
    preSilu: boolean,
    dt: number,
  ): void;
  attention(
    out: S,
    o: number,
    q: S,
    qo: number,
    k: S,
    ko: number,
    v: S,
    vo: number,
    bias: S,
    bo: number,
    B: number,
    Hq: number,
    Hkv: number,
    Lq: number,
    Lk: number,
    D: number,
    Dv: number,
    sb: number,
    sh: number,
    sq: number,
    scale: number,
    softcap: number,
    causal: boolean,
    window: number,
    dt: number,
  ): void;
  attentionTokens(
    out: S,
    o: number,
    q: S,
    qo: number,
    kv: S,
    ko: number,
    bias: S,
    bo: number,
    B: number,
    H: number,
    Lq: number,
    Lk: number,
    D: number,
    scale: number,
    dt: number,
  ): void;
  selfAttentionRope(
    out: S,
    o: number,
    qkv: S,
    qo: number,
    positions: number[],
    keyMask: number[],
    B: number,
    N: number,
    Hq: number,
    Hkv: number,
    D: number,
    theta: number,
    scale: number,
    softcap: number,
    window: number,
    dt: number,
  ): void;
  linearAttention(
    out: S,
    o: number,
    q: S,
    qo: number,
    k: S,
    ko: number,
    v: S,
    vo: number,
    B: number,
    H: number,
    N: number,
    D: number,
    eps: number,
    relu: boolean,
  ): void;
  rope(out: S, o: number, x: S, xo: number, positions: number[], BH: number, L: number, D: number, theta: number, dt: number): void;
  embedding(out: S, o: number, table: S, to: number, ids: S, io: number, n: number, V: number, D: number, dt: number, idsDt: number): void;
  upsampleNearest(out: S, o: number, x: S, xo: number, BC: number, H: number, W: number, factor: number, elsize: number): void;
  upsampleBilinear(out: S, o: number, x: S, xo: number, BC: number, H: number, W: number, Ho: number, Wo: number, dt: number): void;
  pixelShuffle(out: S, o: number, x: S, xo: number, B: number, C: number, H: number, W: number, r: number, elsize: number): void;
}
export interface RawAddon {
  alloc(device: string, nbytes: number): RawStorage;
  write(s: RawStorage, byteOffset: number, data: ArrayBufferView, srcDtype: number, dstDtype: number, count: number): void;
  read(s: RawStorage, byteOffset: number, count: number, srcDtype: number, dstDtype: number): ArrayBuffer;
  copy(dst: RawStorage, dstOffset: number, src: RawStorage, srcOffset: number, nbytes: number): void;
  memory(device: string, resetPeak?: boolean): { allocated: number; peak: number; cached?: number };
  trimHostCache(): number;
  backends(): Array<{ name: string; available: boolean; reason?: string; info: string }>;
  supportsOp(device: string, op: string, dtype: number): boolean;
  buildInfo(): { onednn: boolean; cuda: boolean; isa: string; gemm: string; bf16Dot: boolean; hint?: string };
  fmaPeak(ms?: number): number;
  threads(set?: number): number;
  openMapped(path: string): RawMapped;
  ops: RawOps;
}

export const DTYPE_CODE: Record<DType, number> = { f32: 0, bf16: 1, f16: 2, i32: 3, i64: 4 };
export const DTYPE_SIZE: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4, i64: 8 };
export const isFloat = (d: DType): boolean => d === 'f32' || d === 'bf16' || d === 'f16';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Where the addon is looked for: $SANA_NATIVE_ADDON (e.g. the no-oneDNN test build), else the default build. */
export const addonPath = process.env.SANA_NATIVE_ADDON ?? path.join(here, 'build', 'Release', 'sana_native.node');

let cached: RawAddon | undefined;
export function raw(): RawAddon {
  if (cached) return cached;
  if (!existsSync(addonPath)) {
    throw new Error(`native addon not built: ${addonPath} is missing (run \`npm run build:native\`; it needs cmake, a C++17 compiler and ninja or make)`);
  }
  const require = createRequire(import.meta.url);
  cached = require(addonPath) as RawAddon;
  profiler.attach(cached);
  return cached;
}
