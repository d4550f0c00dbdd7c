// `Backend` (native/api.ts) over the addon: checks shapes and dtypes, casts mixed-dtype
// operands, allocates outputs, and calls the raw ops (native/src/ops_binding.cc), which
// re-check every buffer size before dispatching to the device's kernel table.
import type {
  AttentionOptions,
  Backend,
  Conv2dNhwcOptions,
  Conv2dOptions,
  ConvAct,
  DType,
  DeviceName,
  OpName,
  SelfAttentionRopeOptions,
  Tensor,
} from './api.ts';
import { raw, DTYPE_CODE, DTYPE_SIZE, isFloat, type RawAddon } from './binding.ts';
import { NativeTensor, StorageRef, fmtShape, keepTensor, runScope } from './tensor.ts';
import { broadcastStrides, checkShape, collapse, contiguousStrides, normAxis, prod, splitAt } from './shapes.ts';

const UNARY = { affine: 0, gelu_tanh: 1, silu: 2, relu: 3, tanh: 4, clamp: 5 } as const;
const BINARY = { add: 0, sub: 1, mul: 2, div: 3, glu_silu: 4, glu_gelu_tanh: 5 } as const;
const TERNARY = { modulate: 0, addGated: 1 } as const;
/** ConvAct of native/cpu/ops.h. */
const CONV_ACT = { none: 0, silu: 1, relu: 2 } as const;

export class NativeBackend implements Backend {
  private readonly r: RawAddon;
  constructor(readonly name: DeviceName) {
    this.r = raw();
  }

  supportsOp(op: OpName, dtype: DType): boolean {
    return this.r.supportsOp(this.name, op, DTYPE_CODE[dtype]);
  }
  info(): Record<string, unknown> {
    const b = this.r.backends().find((x) => x.name === this.name);
    return { device: this.name, ...(b ? (JSON.parse(b.info) as Record<string, unknown>) : {}), memory: this.memory() };
  }

  // --- helpers ---------------------------------------------------------------------------------
  /** A tensor of this backend that is alive, else an error naming op and argument. */
  private t(op: string, what: string, x: Tensor): NativeTensor {
    if (!(x instanceof NativeTensor)) throw new Error(`${op}: ${what} is not a native tensor`);
    x.check(`${op}: ${what}`);
    if (x.device !== this.name) throw new Error(`${op}: ${what} is on '${x.device}', this backend is '${this.name}' (upload it first)`);
    return x;
  }
  private f(op: string, what: string, x: Tensor): NativeTensor {
    const n = this.t(op, what, x);
    if (!isFloat(n.dtype)) throw new Error(`${op}: ${what} must be f32, bf16 or f16, got ${n.dtype}`);
    return n;
  }
  private alloc(shape: readonly number[], dtype: DType): NativeTensor {
    checkShape('alloc', 'shape', shape);
    const n = prod(shape);
    const s = this.r.alloc(this.name, n * DTYPE_SIZE[dtype]);
    return new NativeTensor(new StorageRef(s), 0, [...shape], dtype, this.name, false);
  }
  /** `x` in dtype `dt`: x itself, or a temporary cast the caller must dispose (see `tmp`). */
  private as(x: NativeTensor, dt: DType, temps: NativeTensor[]): NativeTensor {
    if (x.dtype === dt) return x;
    const c = this.castRaw(x, dt);
    temps.push(c);
    return c;
  }
  private castRaw(x: NativeTensor, dt: DType): NativeTensor {
    const out = this.alloc(x.shape, dt);
    this.r.ops.cast(out.storage.raw, 0, x.storage.raw, x.offset, x.numel, DTYPE_CODE[dt], DTYPE_CODE[x.dtype]);
    return out;
  }
  private guard<T extends NativeTensor>(out: T, temps: NativeTensor[], run: () => void): T {
    try {
      run();
      return out;
    } catch (e) {
      out.dispose();
      throw e;
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  // --- creation, transfer, lifetime -----------------------------------------------------------
  fromArray(data: Float32Array | Int32Array | BigInt64Array | number[], shape: readonly number[], dtype?: DType): Tensor {
    checkShape('fromArray', 'shape', shape);
    const n = prod(shape);
    if (data.length !== n) throw new Error(`fromArray: ${data.length} values for shape ${fmtShape(shape)} (${n} elements)`);
    let src: Float32Array | Int32Array | BigInt64Array;
    let srcDt: DType;
    if (Array.isArray(data)) {
      const dt = dtype ?? 'f32';
      if (dt === 'i64') src = BigInt64Array.from(data, (v) => BigInt(Math.trunc(v)));
      else if (dt === 'i32') src = Int32Array.from(data);
      else src = Float32Array.from(data);
      srcDt = dt === 'i64' ? 'i64' : dt === 'i32' ? 'i32' : 'f32';
    } else {
      src = data;
      srcDt = data instanceof Float32Array ? 'f32' : data instanceof Int32Array ? 'i32' : 'i64';
    }
    const dt = dtype ?? srcDt;
    const out = this.alloc(shape, dt);
    return this.guard(out, [], () => this.r.write(out.storage.raw, 0, src, DTYPE_CODE[srcDt], DTYPE_CODE[dt], n));
  }
  zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    return this.full(shape, 0, dtype);
  }
  full(shape: readonly number[], value: number, dtype: DType = 'f32'): Tensor {
    const out = this.alloc(shape, dtype);
    return this.guard(out, [], () => this.r.ops.fill(out.storage.raw, 0, out.numel, value, DTYPE_CODE[dtype]));
  }
  upload(t: Tensor): Tensor {
    if (!(t instanceof NativeTensor)) throw new Error('upload: not a native tensor');
    t.check('upload');
    const out = this.alloc(t.shape, t.dtype);
    return this.guard(out, [], () => this.r.copy(out.storage.raw, 0, t.storage.raw, t.offset, t.byteLength));
  }
  cast(t: Tensor, dtype: DType): Tensor {
    return this.castRaw(this.t('cast', 'input', t), dtype);
  }
  scope<T>(fn: () => T): T {
    return runScope(fn);
  }
  keep<T extends Tensor>(t: T): T {
    return keepTensor(t);
  }
  memory(): { allocated: number; peak: number } {
    return this.r.memory(this.name);
  }
  resetPeak(): void {
    this.r.memory(this.name, true);
  }
  releasePackedSource(w: Tensor): boolean {
    const t = this.t('releasePackedSource', 'w', w);
    if (t.offset !== 0 || t.storage.shared || t.storage.raw.released || t.nbytes === 0) return false;
    return t.storage.raw.releaseSource();
  }

  // --- shape ----------------------------------------------------------------------------------
  reshape(t: Tensor, shape: readonly number[], opts: { consume?: boolean } = {}): Tensor {
    const x = this.t('reshape', 'input', t);
    if (opts.consume && (x.isView || x.offset !== 0 || x.storage.shared)) {
      throw new Error(
        `reshape: consume needs a tensor that owns its storage alone, got ${x.isView || x.offset !== 0 ? 'a view' : 'a tensor whose storage a view shares'}`,
      );
    }
    const s = [...shape];
    const free = s.filter((d) => d === -1).length;
    if (free > 1) throw new Error(`reshape: more than one -1 in ${fmtShape(shape)}`);
    if (free === 1) {
      const known = prod(s.filter((d) => d !== -1));
      if (known === 0 || x.numel % known !== 0) throw new Error(`reshape: cannot infer -1 in ${fmtShape(shape)} for ${x.numel} elements`);
      s[s.indexOf(-1)] = x.numel / known;
    }
    checkShape('reshape', 'shape', s);
    if (prod(s) !== x.numel) throw new Error(`reshape: ${fmtShape(x.shape)} (${x.numel} elements) cannot become ${fmtShape(shape)}`);
    if (!opts.consume) return new NativeTensor(x.storage.retain(), x.offset, s, x.dtype, this.name, true);
    const owned = new NativeTensor(x.storage.retain(), 0, s, x.dtype, this.name, false);
    x.dispose();
    return owned;
  }
  permute(t: Tensor, dims: readonly number[]): Tensor {
    const x = this.t('permute', 'input', t);
    if (dims.length !== x.shape.length) throw new Error(`permute: ${dims.length} dims given for ${fmtShape(x.shape)}`);
    const perm = dims.map((d) => normAxis('permute', d, x.shape.length));
    if (new Set(perm).size !== perm.length) throw new Error(`permute: ${fmtShape(dims)} is not a permutation`);
    const out = this.alloc(
      perm.map((p) => x.shape[p]),
      x.dtype,
    );
    return this.guard(out, [], () => this.r.ops.permute(out.storage.raw, 0, x.storage.raw, x.offset, [...x.shape], perm, DTYPE_SIZE[x.dtype]));
  }
  concat(ts: readonly Tensor[], axis: number): Tensor {
    if (ts.length === 0) throw new Error('concat: no tensors');
    const first = this.t('concat', 'tensors[0]', ts[0]);
    const ax = normAxis('concat', axis, first.shape.length);
    const temps: NativeTensor[] = [];
    const xs = ts.map((t, i) => {
      const x = this.t('concat', `tensors[${i}]`, t);
      if (x.shape.length !== first.shape.length || x.shape.some((d, k) => k !== ax && d !== first.shape[k]))
        throw new Error(`concat: tensors[${i}] ${fmtShape(x.shape)} does not match ${fmtShape(first.shape)} outside axis ${ax}`);
      return this.as(x, first.dtype, temps);
    });
    const shape = [...first.shape];
    shape[ax] = xs.reduce((a, x) => a + x.shape[ax], 0);
    const out = this.alloc(shape, first.dtype);
    const [outer, , inner] = splitAt(shape, ax);
    return this.guard(out, temps, () =>
      this.r.ops.concat(
        out.storage.raw,
        0,
        xs.flatMap((x) => [x.storage.raw, x.offset]),
        xs.map((x) => x.shape[ax]),
        outer,
        inner,
        DTYPE_SIZE[first.dtype],
      ),
    );
  }
  slice(t: Tensor, axis: number, start: number, end: number): Tensor {
    const x = this.t('slice', 'input', t);
    const ax = normAxis('slice', axis, x.shape.length);
    const n = x.shape[ax];
    const s = start < 0 ? start + n : start,
      e = end < 0 ? end + n : end;
    if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e > n || s > e)
      throw new Error(`slice: [${start}, ${end}) is outside axis ${ax} of length ${n}`);
    const shape = [...x.shape];
    shape[ax] = e - s;
    const [outer, len, inner] = splitAt(x.shape, ax);
    // One contiguous range (every dim before the axis is 1): a view, like reshape's, not a copy.
    // Each copy was a native call (~9 µs) for a few KB at Sana's per-block modulation chunks.
    if (outer === 1) return new NativeTensor(x.storage.retain(), x.offset + s * inner * DTYPE_SIZE[x.dtype], shape, x.dtype, this.name, true);
    const out = this.alloc(shape, x.dtype);
    return this.guard(out, [], () => this.r.ops.slice(out.storage.raw, 0, x.storage.raw, x.offset, outer, len, inner, s, e - s, DTYPE_SIZE[x.dtype]));
  }
  indexSelect(t: Tensor, axis: number, indices: readonly number[]): Tensor {
    const x = this.t('indexSelect', 'input', t);
    const ax = normAxis('indexSelect', axis, x.shape.length);
    const n = x.shape[ax];
    const idx = indices.map((i, k) => {
      const j = i < 0 ? i + n : i;
      if (!Number.isInteger(j) || j < 0 || j >= n) throw new Error(`indexSelect: indices[${k}] = ${i} is outside axis ${ax} of length ${n}`);
      return j;
    });
    const shape = [...x.shape];
    shape[ax] = idx.length;
    const out = this.alloc(shape, x.dtype);
    const [outer, len, inner] = splitAt(x.shape, ax);
    return this.guard(out, [], () => this.r.ops.indexSelect(out.storage.raw, 0, x.storage.raw, x.offset, idx, outer, len, inner, DTYPE_SIZE[x.dtype]));
  }
  repeatInterleave(t: Tensor, repeats: number, axis: number): Tensor {
    const x = this.t('repeatInterleave', 'input', t);
    const ax = normAxis('repeatInterleave', axis, x.shape.length);
    if (!Number.isInteger(repeats) || repeats < 0) throw new Error(`repeatInterleave: repeats must be a non-negative integer, got ${repeats}`);
    const shape = [...x.shape];
    shape[ax] *= repeats;
    const out = this.alloc(shape, x.dtype);
    const [outer, len, inner] = splitAt(x.shape, ax);
    return this.guard(out, [], () => this.r.ops.repeatInterleave(out.storage.raw, 0, x.storage.raw, x.offset, outer, len, inner, repeats, DTYPE_SIZE[x.dtype]));
  }

  // --- element-wise ---------------------------------------------------------------------------
  private binary(op: string, code: number, ta: Tensor, tb: Tensor): Tensor {
    const a = this.f(op, 'a', ta);
    const temps: NativeTensor[] = [];
    const b = this.as(this.f(op, 'b', tb), a.dtype, temps);
    try {
      const sa = contiguousStrides(a.shape),
        sb = broadcastStrides(op, 'b', b.shape, a.shape);
      const c = collapse(a.shape, [sa, sb]);
      const out = this.alloc(a.shape, a.dtype);
      return this.guard(out, temps.splice(0), () =>
        this.r.ops.binary(out.storage.raw, 0, a.storage.raw, a.offset, b.storage.raw, b.offset, code, DTYPE_CODE[a.dtype], c.shape, c.strides[0], c.strides[1]),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  private ternary(op: keyof typeof TERNARY, tx: Tensor, tb: Tensor, tc: Tensor, names: [string, string, string]): Tensor {
    const x = this.f(op, names[0], tx);
    const temps: NativeTensor[] = [];
    try {
      const b = this.as(this.f(op, names[1], tb), x.dtype, temps),
        c = this.as(this.f(op, names[2], tc), x.dtype, temps);
      const cl = collapse(x.shape, [
        contiguousStrides(x.shape),
        broadcastStrides(op, names[1], b.shape, x.shape),
        broadcastStrides(op, names[2], c.shape, x.shape),
      ]);
      const out = this.alloc(x.shape, x.dtype);
      return this.guard(out, temps.splice(0), () =>
        this.r.ops.ternary(
          out.storage.raw,
          0,
          x.storage.raw,
          x.offset,
          b.storage.raw,
          b.offset,
          c.storage.raw,
          c.offset,
          TERNARY[op],
          DTYPE_CODE[x.dtype],
          cl.shape,
          cl.strides[0],
          cl.strides[1],
          cl.strides[2],
        ),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  private unary(op: keyof typeof UNARY, t: Tensor, p0 = 0, p1 = 0): Tensor {
    const x = this.f(op, 'x', t);
    const out = this.alloc(x.shape, x.dtype);
    return this.guard(out, [], () => this.r.ops.unary(out.storage.raw, 0, x.storage.raw, x.offset, x.numel, UNARY[op], p0, p1, DTYPE_CODE[x.dtype]));
  }
  add(a: Tensor, b: Tensor): Tensor {
    return this.binary('add', BINARY.add, a, b);
  }
  sub(a: Tensor, b: Tensor): Tensor {
    return this.binary('sub', BINARY.sub, a, b);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return this.binary('mul', BINARY.mul, a, b);
  }
  div(a: Tensor, b: Tensor): Tensor {
    return this.binary('div', BINARY.div, a, b);
  }
  affine(a: Tensor, s: number, t = 0): Tensor {
    return this.unary('affine', a, s, t);
  }
  modulate(x: Tensor, shift: Tensor, scale: Tensor): Tensor {
    return this.ternary('modulate', x, shift, scale, ['x', 'shift', 'scale']);
  }
  addGated(h: Tensor, gate: Tensor, y: Tensor): Tensor {
    return this.ternary('addGated', h, gate, y, ['h', 'gate', 'y']);
  }
  gelu_tanh(x: Tensor): Tensor {
    return this.unary('gelu_tanh', x);
  }
  silu(x: Tensor): Tensor {
    return this.unary('silu', x);
  }
  relu(x: Tensor): Tensor {
    return this.unary('relu', x);
  }
  tanh(x: Tensor): Tensor {
    return this.unary('tanh', x);
  }
  clamp(x: Tensor, lo: number, hi: number): Tensor {
    if (!(lo <= hi)) throw new Error(`clamp: lo ${lo} > hi ${hi}`);
    return this.unary('clamp', x, lo, hi);
  }
  gluMul(a: Tensor, b: Tensor, act: 'silu' | 'gelu_tanh'): Tensor {
    if (act !== 'silu' && act !== 'gelu_tanh') throw new Error(`gluMul: unknown activation '${String(act)}'`);
    return this.binary('gluMul', act === 'silu' ? BINARY.glu_silu : BINARY.glu_gelu_tanh, a, b);
  }
  gluHalves(tx: Tensor, act: 'silu' | 'gelu_tanh'): Tensor {
    if (act !== 'silu' && act !== 'gelu_tanh') throw new Error(`gluHalves: unknown activation '${String(act)}'`);
    const x = this.f('gluHalves', 'x', tx);
    const F2 = x.shape[x.shape.length - 1];
    if (x.shape.length === 0 || F2 % 2) throw new Error(`gluHalves: last dim of ${fmtShape(x.shape)} must be even`);
    const F = F2 / 2,
      rows = x.numel / Math.max(F2, 1);
    const shape = [...x.shape.slice(0, -1), F];
    const out = this.alloc(shape, x.dtype);
    // The broadcast binary kernel with both operands as strided views of x: rows of F values 2F
    // apart, the gate half starting F elements in.
    return this.guard(out, [], () =>
      this.r.ops.binary(
        out.storage.raw,
        0,
        x.storage.raw,
        x.offset,
        x.storage.raw,
        x.offset + F * DTYPE_SIZE[x.dtype],
        act === 'silu' ? BINARY.glu_silu : BINARY.glu_gelu_tanh,
        DTYPE_CODE[x.dtype],
        [rows, F],
        [F2, 1],
        [F2, 1],
      ),
    );
  }
  softmax(t: Tensor): Tensor {
    const x = this.f('softmax', 'x', t);
    if (x.shape.length === 0) throw new Error('softmax: x must have at least one dim');
    const C = x.shape[x.shape.length - 1];
    const out = this.alloc(x.shape, x.dtype);
    return this.guard(out, [], () => this.r.ops.softmax(out.storage.raw, 0, x.storage.raw, x.offset, C ? x.numel / C : 0, C, DTYPE_CODE[x.dtype]));
  }

  // --- nn -------------------------------------------------------------------------------------
  /** Compute dtype of a GEMM-like op: the weight's when 16-bit, else f32. */
  private static gemmDtype(w: NativeTensor): DType {
    return w.dtype === 'bf16' || w.dtype === 'f16' ? w.dtype : 'f32';
  }

  /** linear's operands, checked and cast to the GEMM dtype (casts pushed on `temps`): x (…, K), w (N, K), bias (N) f32. */
  private linearOperands(op: string, tx: Tensor, tw: Tensor, tbias: Tensor | undefined, temps: NativeTensor[]) {
    const x = this.f(op, 'x', tx),
      w = this.f(op, 'w', tw);
    if (w.shape.length !== 2) throw new Error(`${op}: w must be (N, K), got ${fmtShape(w.shape)}`);
    const [N, K] = w.shape as [number, number];
    if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== K)
      throw new Error(`${op}: x ${fmtShape(x.shape)} does not end in K=${K} of w ${fmtShape(w.shape)}`);
    let b: NativeTensor | undefined;
    if (tbias) {
      b = this.f(op, 'bias', tbias);
      if (b.numel !== N || b.shape.length !== 1) throw new Error(`${op}: bias ${fmtShape(b.shape)} must be (${N})`);
    }
    const dt = NativeBackend.gemmDtype(w);
    return {
      x,
      N,
      K,
      M: x.numel / K || 0,
      outShape: [...x.shape.slice(0, -1), N],
      dt,
      xc: this.as(x, dt, temps),
      wc: this.as(w, dt, temps),
      b: b && this.as(b, 'f32', temps),
    };
  }

  linear(tx: Tensor, tw: Tensor, tbias?: Tensor): Tensor {
    const temps: NativeTensor[] = [];
    try {
      const { x, N, K, M, outShape, dt, xc, wc, b } = this.linearOperands('linear', tx, tw, tbias, temps);
      const out = this.alloc(outShape, x.dtype);
      return this.guard(out, temps.splice(0), () =>
        this.r.ops.linear(
          out.storage.raw,
          0,
          xc.storage.raw,
          xc.offset,
          wc.storage.raw,
          wc.offset,
          b ? b.storage.raw : null,
          b ? b.offset : 0,
          M,
          N,
          K,
          DTYPE_CODE[x.dtype],
          DTYPE_CODE[dt],
        ),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  linearResidual(tx: Tensor, tw: Tensor, tbias: Tensor | undefined, tres: Tensor, tgate?: Tensor): Tensor {
    const temps: NativeTensor[] = [];
    try {
      const { x, N, K, M, outShape, dt, xc, wc, b } = this.linearOperands('linearResidual', tx, tw, tbias, temps);
      const res = this.f('linearResidual', 'residual', tres);
      if (res.shape.length !== outShape.length || res.shape.some((d, i) => d !== outShape[i]))
        throw new Error(`linearResidual: residual ${fmtShape(res.shape)} must be the output shape ${fmtShape(outShape)}`);
      // gate rows: one (1, N) row per batch item (rows M / B each), or one row for all M rows
      let gateRows = Math.max(M, 1);
      let gc: NativeTensor | undefined;
      if (tgate) {
        const g = this.f('linearResidual', 'gate', tgate);
        const Bx = x.shape.length >= 2 ? x.shape[0]! : 1;
        if (g.numel === N) gateRows = Math.max(M, 1);
        else if (x.shape.length >= 2 && g.shape[0] === Bx && g.numel === Bx * N) gateRows = M / Bx || 1;
        else throw new Error(`linearResidual: gate ${fmtShape(g.shape)} must be (${Bx}, 1, ${N}) or ${N} values for x ${fmtShape(x.shape)}`);
        gc = this.as(g, x.dtype, temps);
      }
      const rc = this.as(res, x.dtype, temps);
      const out = this.alloc(outShape, x.dtype);
      return this.guard(out, temps.splice(0), () =>
        this.r.ops.linearResidual(
          out.storage.raw,
          0,
          xc.storage.raw,
          xc.offset,
          wc.storage.raw,
          wc.offset,
          b ? b.storage.raw : null,
          b ? b.offset : 0,
          rc.storage.raw,
          rc.offset,
          gc ? gc.storage.raw : null,
          gc ? gc.offset : 0,
          M,
          N,
          K,
          gateRows,
          DTYPE_CODE[x.dtype],
          DTYPE_CODE[dt],
        ),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  matmul(ta: Tensor, tb: Tensor, transB = false): Tensor {
    const a = this.f('matmul', 'a', ta),
      b = this.f('matmul', 'b', tb);
    if (a.shape.length < 2 || b.shape.length < 2) throw new Error(`matmul: a ${fmtShape(a.shape)} and b ${fmtShape(b.shape)} need at least 2 dims`);
    const [M, K] = a.shape.slice(-2);
    const [bk, bn] = b.shape.slice(-2);
    const Kb = transB ? bn : bk,
      N = transB ? bk : bn;
    if (K !== Kb) throw new Error(`matmul: a ${fmtShape(a.shape)} and b ${fmtShape(b.shape)}${transB ? 'ᵀ' : ''} disagree on K (${K} vs ${Kb})`);
    const ab = a.shape.slice(0, -2),
      bb = b.shape.slice(0, -2);
    const na = prod(ab),
      nb = prod(bb);
    const sameBatch = ab.length === bb.length && ab.every((d, i) => d === bb[i]);
    if (!sameBatch && na !== 1 && nb !== 1) throw new Error(`matmul: batch dims ${fmtShape(ab)} and ${fmtShape(bb)} must match (or one side be unbatched)`);
    const batchShape = na > nb ? ab : nb > na ? bb : ab.length >= bb.length ? ab : bb,
      batch = Math.max(na, nb);
    const temps: NativeTensor[] = [];
    try {
      const dt = NativeBackend.gemmDtype(b);
      const ac = this.as(a, dt, temps),
        bc = this.as(b, dt, temps);
      const out = this.alloc([...batchShape, M, N], a.dtype);
      return this.guard(out, temps.splice(0), () =>
        this.r.ops.matmul(
          out.storage.raw,
          0,
          ac.storage.raw,
          ac.offset,
          bc.storage.raw,
          bc.offset,
          batch,
          M,
          N,
          K,
          na === 1 && batch > 1 ? 0 : M * K,
          nb === 1 && batch > 1 ? 0 : K * N,
          transB,
          DTYPE_CODE[a.dtype],
          DTYPE_CODE[dt],
        ),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  conv2d(tx: Tensor, tw: Tensor, tbias: Tensor | undefined, opts: Conv2dOptions = {}): Tensor {
    return this.conv('conv2d', tx, tw, tbias, opts, false, 'none');
  }
  conv2dNhwc(tx: Tensor, tw: Tensor, tbias: Tensor | undefined, opts: Conv2dNhwcOptions = {}): Tensor {
    return this.conv('conv2dNhwc', tx, tw, tbias, opts, true, opts.act ?? 'none');
  }
  /** conv2d and conv2dNhwc: x (B, C, H, W) or, channels-last, (B, H, W, C). */
  private conv(op: 'conv2d' | 'conv2dNhwc', tx: Tensor, tw: Tensor, tbias: Tensor | undefined, opts: Conv2dOptions, nhwc: boolean, act: ConvAct): Tensor {
    const x = this.f(op, 'x', tx),
      w = this.f(op, 'w', tw);
    const pad = opts.padding ?? 0,
      stride = opts.stride ?? 1,
      groups = opts.groups ?? 1;
    if (x.shape.length !== 4 || w.shape.length !== 4)
      throw new Error(`${op}: x ${fmtShape(x.shape)} and w ${fmtShape(w.shape)} must be 4-D (${nhwc ? 'NHWC' : 'NCHW'}, OIHW)`);
    if (!(act in CONV_ACT)) throw new Error(`${op}: unknown activation ${String(act)}`);
    const [B, Cin, H, W] = nhwc ? [x.shape[0]!, x.shape[3]!, x.shape[1]!, x.shape[2]!] : x.shape,
      [Cout, Cg, KH, KW] = w.shape;
    if (!Number.isInteger(groups) || groups < 1 || Cin % groups || Cout % groups || Cg !== Cin / groups)
      throw new Error(`${op}: w ${fmtShape(w.shape)} does not fit ${Cin} input channels in ${groups} groups`);
    if (!Number.isInteger(stride) || stride < 1 || !Number.isInteger(pad) || pad < 0) throw new Error(`${op}: bad stride ${stride} or padding ${pad}`);
    const Ho = Math.floor((H + 2 * pad - KH) / stride) + 1,
      Wo = Math.floor((W + 2 * pad - KW) / stride) + 1;
    if (Ho < 1 || Wo < 1) throw new Error(`${op}: kernel ${KH}x${KW} larger than the padded input ${H}x${W}`);
    const temps: NativeTensor[] = [];
    try {
      const dt = NativeBackend.gemmDtype(w);
      const xc = this.as(x, dt, temps),
        wc = this.as(w, dt, temps);
      let b: NativeTensor | undefined;
      if (tbias) {
        b = this.f(op, 'bias', tbias);
        if (b.numel !== Cout) throw new Error(`${op}: bias ${fmtShape(b.shape)} must have ${Cout} values`);
        b = this.as(b, 'f32', temps);
      }
      const out = this.alloc(nhwc ? [B, Ho, Wo, Cout] : [B, Cout, Ho, Wo], x.dtype);
      const [bs, bo] = b ? [b.storage.raw, b.offset] : [null, 0];
      const dims = [B, Cin, H, W, Cout, KH, KW, stride, pad, groups, Ho, Wo] as const;
      const ops = this.r.ops;
      return this.guard(out, temps.splice(0), () =>
        nhwc
          ? ops.conv2dNhwc(
              out.storage.raw,
              0,
              xc.storage.raw,
              xc.offset,
              wc.storage.raw,
              wc.offset,
              bs,
              bo,
              ...dims,
              CONV_ACT[act],
              DTYPE_CODE[x.dtype],
              DTYPE_CODE[dt],
            )
          : ops.conv2d(out.storage.raw, 0, xc.storage.raw, xc.offset, wc.storage.raw, wc.offset, bs, bo, ...dims, DTYPE_CODE[x.dtype], DTYPE_CODE[dt]),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  /** Optional per-channel parameter of norm ops, cast to x's dtype. */
  private param(op: string, what: string, p: Tensor | undefined, C: number, dt: DType, temps: NativeTensor[]): NativeTensor | undefined {
    if (!p) return undefined;
    const n = this.f(op, what, p);
    if (n.numel !== C) throw new Error(`${op}: ${what} ${fmtShape(n.shape)} must have ${C} values`);
    return this.as(n, dt, temps);
  }
  /** A norm's output like x, its optional per-channel weight and bias checked (and cast to x's
   *  dtype) first; `call` runs the kernel. */
  private normOp(
    op: string,
    x: NativeTensor,
    C: number,
    tw: Tensor | undefined,
    tbias: Tensor | undefined,
    call: (out: NativeTensor, w: NativeTensor | undefined, b: NativeTensor | undefined) => void,
  ): Tensor {
    const temps: NativeTensor[] = [];
    try {
      const w = this.param(op, 'w', tw, C, x.dtype, temps),
        b = this.param(op, 'bias', tbias, C, x.dtype, temps);
      const out = this.alloc(x.shape, x.dtype);
      return this.guard(out, temps.splice(0), () => call(out, w, b));
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  rmsnorm(tx: Tensor, tw: Tensor | undefined, tbias: Tensor | undefined, eps: number, offset = 0): Tensor {
    const x = this.f('rmsnorm', 'x', tx);
    const C = x.shape[x.shape.length - 1] ?? 1;
    return this.normOp('rmsnorm', x, C, tw, tbias, (out, w, b) =>
      this.r.ops.rmsnorm(
        out.storage.raw,
        0,
        x.storage.raw,
        x.offset,
        w?.storage.raw ?? null,
        w?.offset ?? 0,
        b?.storage.raw ?? null,
        b?.offset ?? 0,
        C ? x.numel / C : 0,
        C,
        eps,
        offset,
        DTYPE_CODE[x.dtype],
      ),
    );
  }
  rmsnorm2d(tx: Tensor, tw: Tensor | undefined, tbias: Tensor | undefined, eps: number): Tensor {
    const x = this.f('rmsnorm2d', 'x', tx);
    if (x.shape.length !== 4) throw new Error(`rmsnorm2d: x must be NCHW, got ${fmtShape(x.shape)}`);
    const [B, C, H, W] = x.shape;
    return this.normOp('rmsnorm2d', x, C, tw, tbias, (out, w, b) =>
      this.r.ops.rmsnorm2d(
        out.storage.raw,
        0,
        x.storage.raw,
        x.offset,
        w?.storage.raw ?? null,
        w?.offset ?? 0,
        b?.storage.raw ?? null,
        b?.offset ?? 0,
        B,
        C,
        H * W,
        eps,
        DTYPE_CODE[x.dtype],
      ),
    );
  }
  rmsnormAct(tx: Tensor, tw: Tensor | undefined, tbias: Tensor | undefined, eps: number, act: ConvAct = 'none', tres?: Tensor): Tensor {
    const x = this.f('rmsnormAct', 'x', tx);
    const C = x.shape[x.shape.length - 1] ?? 1;
    if (!(act in CONV_ACT)) throw new Error(`rmsnormAct: unknown activation ${String(act)}`);
    const temps: NativeTensor[] = [];
    try {
      let res: NativeTensor | undefined;
      if (tres) {
        res = this.as(this.f('rmsnormAct', 'residual', tres), x.dtype, temps);
        if (res.numel !== x.numel || res.shape[res.shape.length - 1] !== C)
          throw new Error(`rmsnormAct: residual ${fmtShape(res.shape)} must hold x's ${x.numel} values with ${C} channels last`);
      }
      const r = res;
      return this.normOp('rmsnormAct', x, C, tw, tbias, (out, w, b) =>
        this.r.ops.rmsnormAct(
          out.storage.raw,
          0,
          x.storage.raw,
          x.offset,
          w?.storage.raw ?? null,
          w?.offset ?? 0,
          b?.storage.raw ?? null,
          b?.offset ?? 0,
          r?.storage.raw ?? null,
          r?.offset ?? 0,
          x.numel / C,
          C,
          eps,
          CONV_ACT[act],
          DTYPE_CODE[x.dtype],
        ),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  layernorm(tx: Tensor, tw: Tensor | undefined, tbias: Tensor | undefined, eps: number): Tensor {
    const x = this.f('layernorm', 'x', tx);
    const C = x.shape[x.shape.length - 1] ?? 1;
    return this.normOp('layernorm', x, C, tw, tbias, (out, w, b) =>
      this.r.ops.layernorm(
        out.storage.raw,
        0,
        x.storage.raw,
        x.offset,
        w?.storage.raw ?? null,
        w?.offset ?? 0,
        b?.storage.raw ?? null,
        b?.offset ?? 0,
        C ? x.numel / C : 0,
        C,
        eps,
        DTYPE_CODE[x.dtype],
      ),
    );
  }
  layernormModulate(tx: Tensor, tshift: Tensor, tscale: Tensor, eps: number): Tensor {
    const x = this.f('layernormModulate', 'x', tx),
      shift = this.f('layernormModulate', 'shift', tshift),
      scale = this.f('layernormModulate', 'scale', tscale);
    const D = x.shape[x.shape.length - 1] ?? 1;
    const rows = D ? x.numel / D : 0;
    const Bx = x.shape.length >= 2 ? x.shape[0]! : 1;
    // Per batch item (B, 1, D): batch stride D; a single D vector: stride 0, one "batch" of all rows.
    let B: number, mbs: number;
    if (shift.numel === D && scale.numel === D) {
      B = 1;
      mbs = 0;
    } else if (x.shape.length >= 2 && shift.numel === Bx * D && scale.numel === Bx * D && shift.shape[0] === Bx && scale.shape[0] === Bx) {
      B = Bx;
      mbs = D;
    } else {
      throw new Error(
        `layernormModulate: shift ${fmtShape(shift.shape)} and scale ${fmtShape(scale.shape)} must both be (B, 1, ${D}) or ${D} values for x ${fmtShape(x.shape)}`,
      );
    }
    const temps: NativeTensor[] = [];
    try {
      const sh = this.as(shift, x.dtype, temps),
        sc = this.as(scale, x.dtype, temps);
      const out = this.alloc(x.shape, x.dtype);
      return this.guard(out, temps.splice(0), () =>
        this.r.ops.layernormModulate(
          out.storage.raw,
          0,
          x.storage.raw,
          x.offset,
          sh.storage.raw,
          sh.offset,
          sc.storage.raw,
          sc.offset,
          B,
          B ? rows / B : 0,
          D,
          mbs,
          eps,
          DTYPE_CODE[x.dtype],
        ),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  dwconv3x3GluTokens(tu: Tensor, tw: Tensor, tbias: Tensor | undefined, grid: readonly [number, number], preSilu = false): Tensor {
    const u = this.f('dwconv3x3GluTokens', 'u', tu),
      w = this.f('dwconv3x3GluTokens', 'w', tw);
    const [H, W] = grid;
    if (u.shape.length !== 3) throw new Error(`dwconv3x3GluTokens: u ${fmtShape(u.shape)} must be (B, h·w, 2F)`);
    const [B, N, C2] = u.shape as [number, number, number];
    if (!Number.isInteger(H) || !Number.isInteger(W) || H < 1 || W < 1 || H * W !== N)
      throw new Error(`dwconv3x3GluTokens: grid ${H}x${W} does not hold the ${N} tokens of u ${fmtShape(u.shape)}`);
    if (C2 % 2) throw new Error(`dwconv3x3GluTokens: u ${fmtShape(u.shape)} must have an even channel count (value, gate)`);
    const F = C2 / 2;
    if (w.numel !== C2 * 9 || (w.shape.length === 4 && (w.shape[0] !== C2 || w.shape[1] !== 1 || w.shape[2] !== 3 || w.shape[3] !== 3)))
      throw new Error(`dwconv3x3GluTokens: w ${fmtShape(w.shape)} must be (${C2}, 1, 3, 3)`);
    const temps: NativeTensor[] = [];
    try {
      const wc = this.as(w, u.dtype, temps);
      let b: NativeTensor | undefined;
      if (tbias) {
        b = this.f('dwconv3x3GluTokens', 'bias', tbias);
        if (b.numel !== C2) throw new Error(`dwconv3x3GluTokens: bias ${fmtShape(b.shape)} must have ${C2} values`);
        b = this.as(b, 'f32', temps);
      }
      const out = this.alloc([B, N, F], u.dtype);
      return this.guard(out, temps.splice(0), () =>
        this.r.ops.dwconv3x3GluTokens(
          out.storage.raw,
          0,
          u.storage.raw,
          u.offset,
          wc.storage.raw,
          wc.offset,
          b ? b.storage.raw : null,
          b ? b.offset : 0,
          B,
          H,
          W,
          F,
          preSilu,
          DTYPE_CODE[u.dtype],
        ),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  attention(tq: Tensor, tk: Tensor, tv: Tensor, opts: AttentionOptions): Tensor {
    const q = this.f('attention', 'q', tq);
    if (q.shape.length !== 4 || tk.shape.length !== 4 || tv.shape.length !== 4) throw new Error('attention: q, k, v must be (B, H, L, D)');
    const [B, Hq, Lq, D] = q.shape,
      [Bk, Hkv, Lk, Dk] = tk.shape,
      [Bv, Hv, Lv, Dv] = tv.shape;
    if (Bk !== B || Bv !== B || Hv !== Hkv || Lv !== Lk || Dk !== D)
      throw new Error(`attention: q ${fmtShape(q.shape)}, k ${fmtShape(tk.shape)}, v ${fmtShape(tv.shape)} do not agree`);
    if (Hkv < 1 || Hq % Hkv) throw new Error(`attention: ${Hq} query heads are not a multiple of ${Hkv} kv heads`);
    const temps: NativeTensor[] = [];
    try {
      const k = this.as(this.f('attention', 'k', tk), q.dtype, temps),
        v = this.as(this.f('attention', 'v', tv), q.dtype, temps);
      let bias: NativeTensor | undefined;
      let sb = 0,
        sh = 0,
        sq = 0;
      if (opts.bias) {
        const bt = this.f('attention', 'bias', opts.bias);
        const s = bt.shape.length === 2 ? [bt.shape[0], 1, 1, bt.shape[1]] : bt.shape;
        const ok = s.length === 4 && (s[0] === B || s[0] === 1) && (s[1] === Hq || s[1] === 1) && (s[2] === Lq || s[2] === 1) && s[3] === Lk;
        if (!ok) throw new Error(`attention: bias ${fmtShape(bt.shape)} does not broadcast to (${B}, ${Hq}, ${Lq}, ${Lk})`);
        const st = contiguousStrides(s);
        sb = s[0] === 1 ? 0 : st[0];
        sh = s[1] === 1 ? 0 : st[1];
        sq = s[2] === 1 ? 0 : st[2];
        bias = this.as(bt, 'f32', temps);
      }
      const window = opts.window ?? 0;
      if (!Number.isInteger(window) || window < 0) throw new Error(`attention: window must be a non-negative integer, got ${window}`);
      const out = this.alloc([B, Hq, Lq, Dv], q.dtype);
      return this.guard(out, temps.splice(0), () =>
        this.r.ops.attention(
          out.storage.raw,
          0,
          q.storage.raw,
          q.offset,
          k.storage.raw,
          k.offset,
          v.storage.raw,
          v.offset,
          bias?.storage.raw ?? null,
          bias?.offset ?? 0,
          B,
          Hq,
          Hkv,
          Lq,
          Lk,
          D,
          Dv,
          sb,
          sh,
          sq,
          opts.scale,
          opts.softcap ?? 0,
          opts.causal ?? false,
          window,
          DTYPE_CODE[q.dtype],
        ),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  attentionTokens(tq: Tensor, tkv: Tensor, heads: number, opts: { scale: number; bias?: Tensor }): Tensor {
    const q = this.f('attentionTokens', 'q', tq);
    if (q.shape.length !== 3 || tkv.shape.length !== 3) throw new Error(`attentionTokens: q must be (B, Lq, H·D) and kv (B, Lk, 2·H·D)`);
    const [B, Lq, C] = q.shape as [number, number, number];
    const [Bk, Lk, C2] = tkv.shape as [number, number, number];
    if (!Number.isInteger(heads) || heads < 1 || C % heads) throw new Error(`attentionTokens: q ${fmtShape(q.shape)} does not split into ${heads} heads`);
    if (Bk !== B || C2 !== 2 * C) throw new Error(`attentionTokens: kv ${fmtShape(tkv.shape)} must be (${B}, Lk, ${2 * C}) for q ${fmtShape(q.shape)}`);
    const D = C / heads;
    const temps: NativeTensor[] = [];
    try {
      const kv = this.as(this.f('attentionTokens', 'kv', tkv), q.dtype, temps);
      let bias: NativeTensor | undefined;
      if (opts.bias) {
        const bt = this.f('attentionTokens', 'bias', opts.bias);
        const s = bt.shape;
        const ok = (s.length === 2 && s[0] === B && s[1] === Lk) || (s.length === 4 && s[0] === B && s[1] === 1 && s[2] === 1 && s[3] === Lk);
        if (!ok) throw new Error(`attentionTokens: bias ${fmtShape(bt.shape)} must be a key bias (${B}, ${Lk}) or (${B}, 1, 1, ${Lk})`);
        bias = this.as(bt, 'f32', temps);
      }
      const out = this.alloc([B, Lq, C], q.dtype);
      return this.guard(out, temps.splice(0), () =>
        this.r.ops.attentionTokens(
          out.storage.raw,
          0,
          q.storage.raw,
          q.offset,
          kv.storage.raw,
          kv.offset,
          bias?.storage.raw ?? null,
          bias?.offset ?? 0,
          B,
          heads,
          Lq,
          Lk,
          D,
          opts.scale,
          DTYPE_CODE[q.dtype],
        ),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  selfAttentionRope(tqkv: Tensor, opts: SelfAttentionRopeOptions): Tensor {
    const op = 'selfAttentionRope';
    const qkv = this.f(op, 'qkv', tqkv);
    if (qkv.shape.length !== 3) throw new Error(`${op}: qkv must be (B, N, (Hq + 2·Hkv)·D), got ${fmtShape(qkv.shape)}`);
    const [B, N, C3] = qkv.shape as [number, number, number];
    const { heads: Hq, kvHeads: Hkv } = opts;
    if (!Number.isInteger(Hq) || !Number.isInteger(Hkv) || Hq < 1 || Hkv < 1 || Hq % Hkv)
      throw new Error(`${op}: ${Hq} query heads are not a positive multiple of ${Hkv} kv heads`);
    if (C3 % (Hq + 2 * Hkv)) throw new Error(`${op}: qkv ${fmtShape(qkv.shape)} does not split into ${Hq} q + 2 × ${Hkv} kv heads`);
    const D = C3 / (Hq + 2 * Hkv);
    if (D % 2) throw new Error(`${op}: head dim ${D} must be even`);
    if (opts.positions.length !== N) throw new Error(`${op}: ${opts.positions.length} positions for N=${N}`);
    const window = opts.window ?? 0;
    if (!Number.isInteger(window) || window < 0) throw new Error(`${op}: window must be a non-negative integer, got ${window}`);
    const mask = opts.keyMask ? Array.from(opts.keyMask, (v) => (v !== 0 ? 1 : 0)) : [];
    if (opts.keyMask && mask.length !== B * N) throw new Error(`${op}: keyMask has ${mask.length} values, expected B·N = ${B * N}`);
    const out = this.alloc([B, N, Hq * D], qkv.dtype);
    return this.guard(out, [], () =>
      this.r.ops.selfAttentionRope(
        out.storage.raw,
        0,
        qkv.storage.raw,
        qkv.offset,
        [...opts.positions],
        mask,
        B,
        N,
        Hq,
        Hkv,
        D,
        opts.theta,
        opts.scale,
        opts.softcap ?? 0,
        window,
        DTYPE_CODE[qkv.dtype],
      ),
    );
  }
  linearAttention(tq: Tensor, tk: Tensor, tv: Tensor, eps: number, relu = true): Tensor {
    const q = this.f('linearAttention', 'q', tq);
    for (const [n, t] of [
      ['k', tk],
      ['v', tv],
    ] as const)
      if (t.shape.length !== 4 || t.shape.some((d, i) => d !== q.shape[i]))
        throw new Error(`linearAttention: ${n} ${fmtShape(t.shape)} must equal q ${fmtShape(q.shape)}`);
    if (q.shape.length !== 4) throw new Error(`linearAttention: q must be (B, H, N, D), got ${fmtShape(q.shape)}`);
    const [B, H, N, D] = q.shape;
    const temps: NativeTensor[] = [];
    try {
      const qf = this.as(q, 'f32', temps),
        kf = this.as(this.f('linearAttention', 'k', tk), 'f32', temps),
        vf = this.as(this.f('linearAttention', 'v', tv), 'f32', temps);
      const o32 = this.alloc(q.shape, 'f32');
      this.guard(o32, [], () =>
        this.r.ops.linearAttention(o32.storage.raw, 0, qf.storage.raw, qf.offset, kf.storage.raw, kf.offset, vf.storage.raw, vf.offset, B, H, N, D, eps, relu),
      );
      if (q.dtype === 'f32') return o32;
      temps.push(o32);
      return this.castRaw(o32, q.dtype);
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  linearAttentionTokens(tqkv: Tensor, heads: number, eps: number, relu = true): Tensor {
    const qkv = this.f('linearAttentionTokens', 'qkv', tqkv);
    if (qkv.shape.length !== 3) throw new Error(`linearAttentionTokens: qkv must be (B, N, 3·H·d), got ${fmtShape(qkv.shape)}`);
    const [B, N, C3] = qkv.shape as [number, number, number];
    if (!Number.isInteger(heads) || heads < 1 || C3 % (3 * heads))
      throw new Error(`linearAttentionTokens: qkv ${fmtShape(qkv.shape)} does not split into q, k, v of ${heads} heads`);
    const D = C3 / 3 / heads;
    const out = this.alloc([B, N, heads * D], qkv.dtype);
    return this.guard(out, [], () =>
      this.r.ops.linearAttentionTokens(out.storage.raw, 0, qkv.storage.raw, qkv.offset, B, N, heads, D, eps, relu, DTYPE_CODE[qkv.dtype]),
    );
  }
  rope(tx: Tensor, positions: readonly number[], theta: number): Tensor {
    const x = this.f('rope', 'x', tx);
    if (x.shape.length !== 4) throw new Error(`rope: x must be (B, H, L, D), got ${fmtShape(x.shape)}`);
    const [B, H, L, D] = x.shape;
    if (positions.length !== L) throw new Error(`rope: ${positions.length} positions for L=${L}`);
    if (D % 2) throw new Error(`rope: head dim ${D} must be even`);
    const out = this.alloc(x.shape, x.dtype);
    return this.guard(out, [], () => this.r.ops.rope(out.storage.raw, 0, x.storage.raw, x.offset, [...positions], B * H, L, D, theta, DTYPE_CODE[x.dtype]));
  }
  embedding(ttable: Tensor, tids: Tensor): Tensor {
    const table = this.f('embedding', 'table', ttable),
      ids = this.t('embedding', 'ids', tids);
    if (table.shape.length !== 2) throw new Error(`embedding: table must be (V, D), got ${fmtShape(table.shape)}`);
    if (ids.dtype !== 'i32' && ids.dtype !== 'i64') throw new Error(`embedding: ids must be i32 or i64, got ${ids.dtype}`);
    const [V, D] = table.shape;
    const out = this.alloc([...ids.shape, D], table.dtype);
    return this.guard(out, [], () =>
      this.r.ops.embedding(
        out.storage.raw,
        0,
        table.storage.raw,
        table.offset,
        ids.storage.raw,
        ids.offset,
        ids.numel,
        V,
        D,
        DTYPE_CODE[table.dtype],
        DTYPE_CODE[ids.dtype],
      ),
    );
  }
  private nchw(op: string, t: Tensor): NativeTensor {
    const x = this.t(op, 'x', t);
    if (x.shape.length !== 4) throw new Error(`${op}: x must be NCHW, got ${fmtShape(x.shape)}`);
    return x;
  }
  upsampleNearest(tx: Tensor, factor: number): Tensor {
    const x = this.nchw('upsampleNearest', tx);
    if (!Number.isInteger(factor) || factor < 1) throw new Error(`upsampleNearest: factor must be a positive integer, got ${factor}`);
    const [B, C, H, W] = x.shape;
    const out = this.alloc([B, C, H * factor, W * factor], x.dtype);
    return this.guard(out, [], () => this.r.ops.upsampleNearest(out.storage.raw, 0, x.storage.raw, x.offset, B * C, H, W, factor, DTYPE_SIZE[x.dtype]));
  }
  upsampleBilinear(tx: Tensor, outH: number, outW: number): Tensor {
    const x = this.nchw('upsampleBilinear', tx);
    this.f('upsampleBilinear', 'x', x);
    if (!Number.isInteger(outH) || !Number.isInteger(outW) || outH < 1 || outW < 1) throw new Error(`upsampleBilinear: bad output size ${outH}x${outW}`);
    const [B, C, H, W] = x.shape;
    const out = this.alloc([B, C, outH, outW], x.dtype);
    return this.guard(out, [], () => this.r.ops.upsampleBilinear(out.storage.raw, 0, x.storage.raw, x.offset, B * C, H, W, outH, outW, DTYPE_CODE[x.dtype]));
  }
  upsamplePhasesNhwc(ty: Tensor, tshort?: Tensor): Tensor {
    const y = this.f('upsamplePhasesNhwc', 'y', ty);
    if (y.shape.length !== 4 || y.shape[1]! < 2 || y.shape[2]! < 2 || y.shape[3]! % 4)
      throw new Error(`upsamplePhasesNhwc: y ${fmtShape(y.shape)} must be (B, H+1, W+1, 4C) with H, W ≥ 1`);
    const [B, H1, W1, C4] = y.shape as [number, number, number, number];
    const H = H1 - 1,
      W = W1 - 1,
      C = C4 / 4;
    const temps: NativeTensor[] = [];
    try {
      let x: NativeTensor | undefined;
      if (tshort) {
        x = this.as(this.f('upsamplePhasesNhwc', 'shortcut', tshort), y.dtype, temps);
        const [Bx, Hx, Wx, Cx] = x.shape;
        if (x.shape.length !== 4 || Bx !== B || Hx !== H || Wx !== W || !Cx || C4 % Cx)
          throw new Error(`upsamplePhasesNhwc: shortcut ${fmtShape(x.shape)} must be (${B}, ${H}, ${W}, C_s) with 4·${C} a multiple of C_s`);
      }
      const out = this.alloc([B, 2 * H, 2 * W, C], y.dtype);
      return this.guard(out, temps.splice(0), () =>
        this.r.ops.upsamplePhasesNhwc(
          out.storage.raw,
          0,
          y.storage.raw,
          y.offset,
          x ? x.storage.raw : null,
          x ? x.offset : 0,
          B,
          H,
          W,
          C,
          x ? x.shape[3]! : 0,
          DTYPE_CODE[y.dtype],
        ),
      );
    } finally {
      for (const t of temps) t.dispose();
    }
  }
  pixelShuffle(tx: Tensor, r: number): Tensor {
    const x = this.nchw('pixelShuffle', tx);
    const [B, Cr, H, W] = x.shape;
    if (!Number.isInteger(r) || r < 1 || Cr % (r * r)) throw new Error(`pixelShuffle: ${Cr} channels are not divisible by r²=${r * r}`);
    const C = Cr / (r * r);
    const out = this.alloc([B, C, H * r, W * r], x.dtype);
    return this.guard(out, [], () => this.r.ops.pixelShuffle(out.storage.raw, 0, x.storage.raw, x.offset, B, C, H, W, r, DTYPE_SIZE[x.dtype]));
  }
}
