// The op cases that compare a CUDA device ('cuda-emu' in CI, 'cuda' on a GPU) with its CPU twin.
// Each case builds its inputs from a seeded generator, so both backends see identical data, and
// returns one output tensor. Shapes are deliberately not multiples of the kernels' tiles
// (GEMM 64x64x32, attention 8 queries x 16/32 keys, linear attention 32/512 tokens).
import type { Backend, DType, Tensor } from '../../native/api.ts';

/** Deterministic inputs: the same seed gives the same values on every backend. */
export class Inputs {
  private s: number;
  constructor(
    readonly b: Backend,
    seed: number,
  ) {
    this.s = seed >>> 0 || 1;
  }
  private next(): number {
    // xorshift32 -> [0, 1)
    this.s ^= this.s << 13;
    this.s >>>= 0;
    this.s ^= this.s >>> 17;
    this.s ^= this.s << 5;
    this.s >>>= 0;
    return this.s / 4294967296;
  }
  values(n: number, lo = -1, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * this.next();
    return a;
  }
  rand(shape: readonly number[], dtype: DType = 'f32', lo = -1, hi = 1): Tensor {
    return this.b.fromArray(
      this.values(
        shape.reduce((a, c) => a * c, 1),
        lo,
        hi,
      ),
      shape,
      dtype,
    );
  }
  ints(shape: readonly number[], max: number, dtype: 'i32' | 'i64'): Tensor {
    const n = shape.reduce((a, c) => a * c, 1);
    const v = Array.from({ length: n }, () => Math.floor(this.next() * max));
    return this.b.fromArray(v, shape, dtype);
  }
}

export interface TwinCase {
  name: string;
  run(b: Backend, x: Inputs): Tensor;
  /** relative tolerance (default by output dtype) */
  rtol?: number;
}

const FLOATS: DType[] = ['f32', 'bf16', 'f16'];
const perDtype = (name: string, dts: DType[], run: (dt: DType) => TwinCase['run'], rtol?: (dt: DType) => number): TwinCase[] =>
  dts.map((dt) => ({ name: `${name} ${dt}`, run: run(dt), ...(rtol ? { rtol: rtol(dt) } : {}) }));

export function twinCases(): TwinCase[] {
  const cases: TwinCase[] = [];
  // --- creation / conversion ---
  cases.push(
    { name: 'full bf16', run: (b) => b.full([3, 5], 1.7, 'bf16') },
    { name: 'cast f32->bf16', run: (b, x) => b.cast(x.rand([7, 13], 'f32', -3, 3), 'bf16') },
    { name: 'cast f16->f32', run: (b, x) => b.cast(x.rand([7, 13], 'f16', -3, 3), 'f32') },
    { name: 'cast f32->i32', run: (b, x) => b.cast(b.cast(x.rand([50], 'f32', -100, 100), 'i32'), 'f32') },
    { name: 'cast i64->bf16', run: (b, x) => b.cast(x.ints([40], 1000, 'i64'), 'bf16') },
  );
  // --- shape ---
  for (const dt of ['f32', 'bf16'] as DType[]) {
    cases.push(
      { name: `permute ${dt}`, run: (b, x) => b.permute(x.rand([2, 3, 5, 7], dt), [0, 2, 3, 1]) },
      { name: `concat ${dt}`, run: (b, x) => b.concat([x.rand([2, 3, 4], dt), x.rand([2, 5, 4], dt), x.rand([2, 1, 4], dt)], 1) },
      { name: `slice ${dt}`, run: (b, x) => b.slice(x.rand([3, 4, 9], dt), 2, 2, 7) },
      { name: `indexSelect ${dt}`, run: (b, x) => b.indexSelect(x.rand([2, 6, 5], dt), 1, [5, 0, 2, 2, 1]) },
      { name: `repeatInterleave ${dt}`, run: (b, x) => b.repeatInterleave(x.rand([2, 3, 4], dt), 3, 1) },
      { name: `upsampleNearest ${dt}`, run: (b, x) => b.upsampleNearest(x.rand([2, 3, 5, 4], dt), 2) },
      { name: `pixelShuffle ${dt}`, run: (b, x) => b.pixelShuffle(x.rand([2, 12, 3, 5], dt), 2) },
    );
  }
  cases.push({ name: 'concat i64', run: (b, x) => b.cast(b.concat([x.ints([2, 3], 99, 'i64'), x.ints([2, 2], 99, 'i64')], 1), 'f32') });
  // --- element-wise ---
  cases.push(
    ...perDtype('add bcast (1,C,1,1)', FLOATS, (dt) => (b, x) => b.add(x.rand([2, 3, 4, 5], dt), x.rand([1, 3, 1, 1], dt))),
    ...perDtype('sub bcast (W)', FLOATS, (dt) => (b, x) => b.sub(x.rand([2, 3, 7], dt), x.rand([7], dt))),
    ...perDtype('mul same shape', FLOATS, (dt) => (b, x) => b.mul(x.rand([4, 33], dt), x.rand([4, 33], dt))),
    ...perDtype('div', FLOATS, (dt) => (b, x) => b.div(x.rand([3, 17], dt), x.rand([3, 17], dt, 0.5, 2))),
    ...perDtype('affine', FLOATS, (dt) => (b, x) => b.affine(x.rand([5, 9], dt), 1.5, -0.25)),
    ...perDtype('modulate', FLOATS, (dt) => (b, x) => b.modulate(x.rand([2, 10, 24], dt), x.rand([2, 1, 24], dt), x.rand([2, 1, 24], dt))),
    ...perDtype('addGated', FLOATS, (dt) => (b, x) => b.addGated(x.rand([2, 10, 24], dt), x.rand([2, 1, 24], dt), x.rand([2, 10, 24], dt))),
    ...perDtype('gelu_tanh', FLOATS, (dt) => (b, x) => b.gelu_tanh(x.rand([300], dt, -6, 6))),
    ...perDtype('silu', FLOATS, (dt) => (b, x) => b.silu(x.rand([300], dt, -6, 6))),
    ...perDtype('relu', FLOATS, (dt) => (b, x) => b.relu(x.rand([300], dt))),
    ...perDtype('tanh', FLOATS, (dt) => (b, x) => b.tanh(x.rand([300], dt, -4, 4))),
    ...perDtype('clamp', FLOATS, (dt) => (b, x) => b.clamp(x.rand([300], dt, -3, 3), -1, 0.5)),
    ...perDtype('gluMul silu', FLOATS, (dt) => (b, x) => b.gluMul(x.rand([4, 40], dt), x.rand([4, 40], dt, -4, 4), 'silu')),
    ...perDtype('gluMul gelu_tanh', FLOATS, (dt) => (b, x) => b.gluMul(x.rand([4, 40], dt), x.rand([4, 40], dt, -4, 4), 'gelu_tanh')),
    ...perDtype('softmax', FLOATS, (dt) => (b, x) => b.softmax(x.rand([6, 77], dt, -5, 5))),
    ...perDtype('gluHalves gelu_tanh', FLOATS, (dt) => (b, x) => b.gluHalves(x.rand([3, 5, 2 * 37], dt, -4, 4), 'gelu_tanh')),
    ...perDtype('gluHalves silu', ['f32', 'bf16'], (dt) => (b, x) => b.gluHalves(x.rand([4, 2 * 40], dt, -4, 4), 'silu')),
  );
  // --- GEMM family ---
  const gemmTol = (dt: DType): number => (dt === 'f32' ? 1e-4 : dt === 'bf16' ? 2e-2 : 4e-3);
  cases.push(
    ...perDtype(
      'linear (2,37,45)x(70,45)+bias',
      FLOATS,
      (dt) => (b, x) => b.linear(x.rand([2, 37, 45], dt), x.rand([70, 45], dt, -0.3, 0.3), x.rand([70], 'f32')),
      gemmTol,
    ),
    ...perDtype('linear no bias (5,130)x(9,130)', FLOATS, (dt) => (b, x) => b.linear(x.rand([5, 130], dt), x.rand([9, 130], dt, -0.3, 0.3)), gemmTol),
    // K, N multiples of 8: the tensor-core kernel's 16-byte load paths (along k for weights, along n for matmul/1x1 conv)
    ...perDtype(
      'linear 16B loads (3,37,64)x(72,64)',
      ['bf16', 'f16'],
      (dt) => (b, x) => b.linear(x.rand([3, 37, 64], dt), x.rand([72, 64], dt, -0.3, 0.3), x.rand([72], 'f32')),
      gemmTol,
    ),
    ...perDtype('matmul 16B loads (2,19,40)x(2,40,72)', ['bf16'], (dt) => (b, x) => b.matmul(x.rand([2, 19, 40], dt), x.rand([2, 40, 72], dt)), gemmTol),
    ...perDtype(
      'conv2d 1x1 16B loads (2,16,4,6)->24',
      ['bf16'],
      (dt) => (b, x) => b.conv2d(x.rand([2, 16, 4, 6], dt), x.rand([24, 16, 1, 1], dt, -0.3, 0.3), x.rand([24], 'f32')),
      gemmTol,
    ),
    // the DiT's residual epilogue: per-image gate rows (2 × 37 rows), no gate, one shared gate row
    ...perDtype(
      'linearResidual gated (2,37,45)x(70,45)+bias',
      FLOATS,
      (dt) => (b, x) =>
        b.linearResidual(x.rand([2, 37, 45], dt), x.rand([70, 45], dt, -0.3, 0.3), x.rand([70], 'f32'), x.rand([2, 37, 70], dt), x.rand([2, 1, 70], dt)),
      gemmTol,
    ),
    ...perDtype(
      'linearResidual plain add (3,37,64)x(72,64)',
      ['f32', 'bf16'],
      (dt) => (b, x) => b.linearResidual(x.rand([3, 37, 64], dt), x.rand([72, 64], dt, -0.3, 0.3), undefined, x.rand([3, 37, 72], dt)),
      gemmTol,
    ),
    ...perDtype(
      'linearResidual shared gate (5,130)x(9,130)',
      ['bf16'],
      (dt) => (b, x) => b.linearResidual(x.rand([5, 130], dt), x.rand([9, 130], dt, -0.3, 0.3), x.rand([9], 'f32'), x.rand([5, 9], dt), x.rand([9], dt)),
      gemmTol,
    ),
    ...perDtype('matmul (3,19,33)x(3,33,67)', FLOATS, (dt) => (b, x) => b.matmul(x.rand([3, 19, 33], dt), x.rand([3, 33, 67], dt)), gemmTol),
    ...perDtype('matmul transB, b unbatched', FLOATS, (dt) => (b, x) => b.matmul(x.rand([2, 2, 21, 40], dt), x.rand([66, 40], dt), true), gemmTol),
    ...perDtype(
      'conv2d 3x3 pad1',
      ['f32', 'bf16'],
      (dt) => (b, x) => b.conv2d(x.rand([2, 5, 7, 9], dt), x.rand([6, 5, 3, 3], dt, -0.3, 0.3), x.rand([6], 'f32'), { padding: 1 }),
      gemmTol,
    ),
    ...perDtype(
      'conv2d 3x3 stride2 Cout70',
      ['f32', 'bf16'],
      (dt) => (b, x) => b.conv2d(x.rand([1, 4, 9, 8], dt), x.rand([70, 4, 3, 3], dt, -0.3, 0.3), undefined, { padding: 1, stride: 2 }),
      gemmTol,
    ),
    ...perDtype(
      'conv2d 1x1 groups2',
      ['f32', 'f16'],
      (dt) => (b, x) => b.conv2d(x.rand([2, 6, 5, 5], dt), x.rand([4, 3, 1, 1], dt), x.rand([4], 'f32'), { groups: 2 }),
      gemmTol,
    ),
    // channels-last: the direct kernel (3×3 with SiLU, strided, grouped, 5×5 depthwise) and the GEMM (plain 1×1)
    ...perDtype(
      'conv2dNhwc 3x3 pad1 silu',
      FLOATS,
      (dt) => (b, x) => b.conv2dNhwc(x.rand([2, 7, 9, 5], dt), x.rand([6, 5, 3, 3], dt, -0.3, 0.3), x.rand([6], 'f32'), { padding: 1, act: 'silu' }),
      gemmTol,
    ),
    ...perDtype(
      'conv2dNhwc 3x3 stride2 groups2 relu',
      ['f32', 'bf16'],
      (dt) => (b, x) =>
        b.conv2dNhwc(x.rand([1, 9, 8, 4], dt), x.rand([70, 2, 3, 3], dt, -0.3, 0.3), undefined, { padding: 1, stride: 2, groups: 2, act: 'relu' }),
      gemmTol,
    ),
    ...perDtype(
      'conv2dNhwc depthwise 5x5',
      FLOATS,
      (dt) => (b, x) => b.conv2dNhwc(x.rand([2, 6, 7, 12], dt), x.rand([12, 1, 5, 5], dt), undefined, { padding: 2, groups: 12 }),
      gemmTol,
    ),
    ...perDtype(
      'conv2dNhwc 1x1 (2,6,11,33)->65',
      ['f32', 'bf16'],
      (dt) => (b, x) => b.conv2dNhwc(x.rand([2, 6, 11, 33], dt), x.rand([65, 33, 1, 1], dt, -0.3, 0.3), x.rand([65], 'f32')),
      gemmTol,
    ),
    ...perDtype(
      'upsamplePhasesNhwc + shortcut (repeat 2)',
      FLOATS,
      (dt) => (b, x) => b.upsamplePhasesNhwc(x.rand([2, 6, 5, 4 * 6], dt), x.rand([2, 5, 4, 12], dt)),
    ),
    ...perDtype('upsamplePhasesNhwc', ['bf16'], (dt) => (b, x) => b.upsamplePhasesNhwc(x.rand([1, 4, 8, 4 * 33], dt))),
    ...perDtype(
      'conv2d depthwise 3x3',
      FLOATS,
      (dt) => (b, x) => b.conv2d(x.rand([2, 10, 6, 7], dt), x.rand([10, 1, 3, 3], dt), x.rand([10], 'f32'), { padding: 1, groups: 10 }),
      gemmTol,
    ),
    // F = 70: two of the CPU kernel's 64-channel blocks, the second with a tail; 5×7 grid.
    ...perDtype(
      'dwconv3x3GluTokens pre-silu',
      FLOATS,
      (dt) => (b, x) => b.dwconv3x3GluTokens(x.rand([2, 35, 140], dt, -3, 3), x.rand([140, 1, 3, 3], dt), x.rand([140], 'f32'), [5, 7], true),
      gemmTol,
    ),
    ...perDtype(
      'dwconv3x3GluTokens plain',
      ['f32', 'bf16'],
      (dt) => (b, x) => b.dwconv3x3GluTokens(x.rand([1, 12, 34], dt, -2, 2), x.rand([34, 1, 3, 3], dt), undefined, [4, 3]),
      gemmTol,
    ),
    ...perDtype(
      'conv2d 1x1 (2,33,6,11)->65',
      ['bf16'],
      (dt) => (b, x) => b.conv2d(x.rand([2, 33, 6, 11], dt), x.rand([65, 33, 1, 1], dt, -0.3, 0.3), x.rand([65], 'f32')),
      gemmTol,
    ),
  );
  // --- norms ---
  cases.push(
    ...perDtype('rmsnorm w+offset+bias', FLOATS, (dt) => (b, x) => b.rmsnorm(x.rand([3, 4, 50], dt), x.rand([50], dt), x.rand([50], dt), 1e-6, 1)),
    ...perDtype('rmsnorm no weight', FLOATS, (dt) => (b, x) => b.rmsnorm(x.rand([7, 300], dt), undefined, undefined, 1e-5)),
    ...perDtype(
      'rmsnormAct silu + residual',
      FLOATS,
      (dt) => (b, x) => b.rmsnormAct(x.rand([2, 5, 300], dt), x.rand([300], dt), x.rand([300], dt), 1e-5, 'silu', x.rand([2, 5, 300], dt)),
    ),
    ...perDtype('rmsnormAct relu, no affine', ['bf16'], (dt) => (b, x) => b.rmsnormAct(x.rand([7, 33], dt), undefined, undefined, 1e-5, 'relu')),
    ...perDtype('rmsnorm2d', FLOATS, (dt) => (b, x) => b.rmsnorm2d(x.rand([2, 12, 5, 3], dt), x.rand([12], dt), x.rand([12], dt), 1e-5)),
    ...perDtype('layernorm affine', FLOATS, (dt) => (b, x) => b.layernorm(x.rand([9, 70], dt, -2, 3), x.rand([70], dt), x.rand([70], dt), 1e-6)),
    ...perDtype(
      'layernormModulate per batch',
      FLOATS,
      (dt) => (b, x) => b.layernormModulate(x.rand([2, 5, 1100], dt, -2, 3), x.rand([2, 1, 1100], dt), x.rand([2, 1, 1100], dt), 1e-6),
    ),
    ...perDtype(
      'layernormModulate shared',
      ['f32', 'bf16'],
      (dt) => (b, x) => b.layernormModulate(x.rand([3, 70], dt, -2, 3), x.rand([70], dt), x.rand([70], dt), 1e-6),
    ),
    ...perDtype('layernorm plain', FLOATS, (dt) => (b, x) => b.layernorm(x.rand([9, 1152], dt, -2, 3), undefined, undefined, 1e-6)),
  );
  // --- attention ---
  const attTol = (dt: DType): number => (dt === 'f32' ? 1e-4 : dt === 'bf16' ? 2e-2 : 4e-3);
  cases.push(
    ...perDtype(
      'attention GQA + key bias',
      FLOATS,
      (dt) => (b, x) => {
        const bias = b.fromArray(
          x.values(2 * 45).map((v) => (v > 0.4 ? -10000 : 0)),
          [2, 45],
          'f32',
        );
        return b.attention(x.rand([2, 4, 13, 24], dt), x.rand([2, 2, 45, 24], dt), x.rand([2, 2, 45, 24], dt), { scale: 24 ** -0.5, bias });
      },
      attTol,
    ),
    ...perDtype(
      'attention causal window softcap',
      ['f32', 'bf16'],
      (dt) => (b, x) =>
        b.attention(x.rand([1, 4, 37, 64], dt, -2, 2), x.rand([1, 1, 37, 64], dt, -2, 2), x.rand([1, 1, 37, 64], dt), {
          scale: 0.125,
          causal: true,
          window: 9,
          softcap: 5,
        }),
      attTol,
    ),
    ...perDtype(
      'attention D256 full bias',
      ['f32'],
      (dt) => (b, x) =>
        b.attention(x.rand([1, 2, 9, 256], dt), x.rand([1, 2, 70, 256], dt), x.rand([1, 2, 70, 256], dt), {
          scale: 1 / 16,
          bias: x.rand([1, 2, 9, 70], 'f32'),
        }),
      attTol,
    ),
    ...perDtype(
      'attention cross (Sana shape)',
      ['bf16'],
      (dt) => (b, x) =>
        b.attention(x.rand([2, 3, 40, 72], dt), x.rand([2, 3, 30, 72], dt), x.rand([2, 3, 30, 72], dt), {
          scale: 72 ** -0.5,
          bias: x.rand([2, 1, 1, 30], 'f32'),
        }),
      attTol,
    ),
    // token-major q (B, Lq, H·D) and k|v (B, Lk, 2, H, D) read in place; a padding-style key bias
    // (-10000 past 11 / 40 keys) and 70 keys: two CPU key chunks, the second skipped on the CPU
    ...perDtype(
      'attentionTokens (Sana cross shape, padded keys)',
      FLOATS,
      (dt) => (b, x) => {
        const bias = b.fromArray(
          Float32Array.from({ length: 2 * 70 }, (_, i) => (i % 70 < (i < 70 ? 11 : 40) ? 0 : -10000)),
          [2, 70],
          'f32',
        );
        return b.attentionTokens(x.rand([2, 41, 3 * 72], dt, -2, 2), x.rand([2, 70, 2 * 3 * 72], dt, -2, 2), 3, { scale: 72 ** -0.5, bias });
      },
      attTol,
    ),
    ...perDtype(
      'attentionTokens no bias, head dim 20',
      ['f32', 'bf16'],
      (dt) => (b, x) => b.attentionTokens(x.rand([1, 19, 2 * 20], dt), x.rand([1, 33, 2 * 2 * 20], dt), 2, { scale: 20 ** -0.5 }),
      attTol,
    ),
    {
      name: 'linearAttention f32',
      run: (b, x) => b.linearAttention(x.rand([2, 3, 600, 32]), x.rand([2, 3, 600, 32]), x.rand([2, 3, 600, 32]), 1e-15),
      rtol: 1e-4,
    },
    {
      name: 'linearAttention bf16 in',
      run: (b, x) => b.linearAttention(x.rand([1, 2, 70, 32], 'bf16'), x.rand([1, 2, 70, 32], 'bf16'), x.rand([1, 2, 70, 32], 'bf16'), 1e-15),
      rtol: 2e-2,
    },
    // token-major qkv: 600 tokens span two 512-token state chunks; head dim 32 as in Sana
    ...perDtype(
      'linearAttentionTokens',
      FLOATS,
      (dt) => (b, x) => b.linearAttentionTokens(x.rand([2, 600, 3 * 3 * 32], dt), 3, 1e-15),
      (dt) => (dt === 'f32' ? 1e-4 : 2e-2),
    ),
    // Gemma-2's fused self attention: 8 q / 4 kv heads of 32 (the real model: 256), right padding
    // with a padded-only row at the window's reach, soft-cap, a window shorter than N.
    ...perDtype(
      'selfAttentionRope (GQA, padding, window, soft-cap)',
      FLOATS,
      (dt) => (b, x) => {
        const [B, N, Hq, Hkv, D] = [2, 45, 8, 4, 32];
        const keyMask = Array.from({ length: B * N }, (_, e) => (e < N ? (e < 20 ? 1 : 0) : e - N < 30 ? 1 : 0));
        return b.selfAttentionRope(x.rand([B, N, (Hq + 2 * Hkv) * D], dt, -2, 2), {
          heads: Hq,
          kvHeads: Hkv,
          positions: Array.from({ length: N }, (_, i) => i),
          theta: 10000,
          scale: 32 ** -0.5,
          softcap: 50,
          window: 16,
          keyMask,
        });
      },
      (dt) => (dt === 'f32' ? 1e-4 : dt === 'bf16' ? 2e-2 : 4e-3),
    ),
    ...perDtype(
      'selfAttentionRope no mask, head dim 20, positions from 7',
      ['f32', 'bf16'],
      (dt) => (b, x) =>
        b.selfAttentionRope(x.rand([1, 37, (3 + 2 * 1) * 20], dt), {
          heads: 3,
          kvHeads: 1,
          positions: Array.from({ length: 37 }, (_, i) => 7 + i),
          theta: 10000,
          scale: 20 ** -0.5,
        }),
      (dt) => (dt === 'f32' ? 1e-4 : 2e-2),
    ),
    ...perDtype('rope', FLOATS, (dt) => (b, x) => b.rope(x.rand([2, 3, 11, 16], dt), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 40], 10000)),
    ...perDtype('embedding i32', FLOATS, (dt) => (b, x) => b.embedding(x.rand([50, 24], dt), x.ints([3, 7], 50, 'i32'))),
    { name: 'embedding i64', run: (b, x) => b.embedding(x.rand([50, 24], 'bf16'), x.ints([9], 50, 'i64')) },
    ...perDtype('upsampleBilinear up', FLOATS, (dt) => (b, x) => b.upsampleBilinear(x.rand([2, 3, 5, 4], dt), 7, 11)),
    ...perDtype('upsampleBilinear down', ['f32'], (dt) => (b, x) => b.upsampleBilinear(x.rand([1, 2, 9, 8], dt), 4, 3)),
  );
  return cases;
}

export function defaultRtol(dt: DType): number {
  return dt === 'f32' ? 2e-5 : dt === 'bf16' ? 1e-2 : 2e-3;
}

/** Max error against `atol + rtol·|ref|`, atol = rtol·rms(ref); returns a description of the first misses. */
export function compare(got: Float32Array, ref: Float32Array, rtol: number): { ok: boolean; report: string } {
  if (got.length !== ref.length) return { ok: false, report: `length ${got.length} vs ${ref.length}` };
  let ss = 0;
  for (const v of ref) ss += v * v;
  const atol = rtol * Math.sqrt(ss / Math.max(1, ref.length)) + 1e-7;
  const misses: string[] = [];
  let bad = 0,
    worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i]! - ref[i]!);
    if (!(e <= atol + rtol * Math.abs(ref[i]!))) {
      if (misses.length < 4) misses.push(`[${i}] got ${got[i]} want ${ref[i]}`);
      bad++;
    }
    if (e > worst || Number.isNaN(e)) worst = e;
  }
  return { ok: bad === 0, report: `${bad}/${ref.length} off (max err ${worst.toExponential(2)}, atol ${atol.toExponential(2)}) ${misses.join('; ')}` };
}
