// Seeded Gaussian noise identical to `torch.randn(shape, generator=torch.Generator('cpu')
// .manual_seed(seed), dtype=torch.float32)`, so a seed means the same latents as in diffusers
// and ComfyUI (CPU generator). Derived from PyTorch's public CPU generator: at::mt19937
// (32-bit state, seeded with the low 32 bits of the seed), float uniforms from 24 random bits,
// and two normal samplers chosen by size:
//   * numel >= 16: fill all uniforms first, then Box-Muller in blocks of 16 in float32
//     (u1 = 1 - data[j], u2 = data[j + 8] for j < 8); a tail that is not a multiple of 16 is
//     redrawn as 16 fresh uniforms over the LAST 16 positions (overwriting some finished ones);
//   * numel < 16: the scalar double-precision sampler, two 64-bit uniforms per pair, cos first,
//     sin cached for the next element, each result rounded to float32.
// The float32 Box-Muller uses a float32 2π constant and a float32 polynomial log/sincos
// (the vectorised CPU kernel of the PyTorch build that made the fixtures); see `boxMuller16`.

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;

/** PyTorch's at::mt19937 (standard MT19937 output for a 32-bit seed). */
export class MT19937 {
  private readonly state = new Uint32Array(N);
  private next = 0;
  private left = 1;
  /** The second value of the scalar normal sampler's last pair: torch keeps it in the generator
   *  (next_double_normal_sample), so it carries over to the next small randn on the same one. */
  normalCache: number | undefined;

  constructor(seed: bigint | number) {
    let s = BigInt(seed);
    // torch.Generator.manual_seed accepts [-2^63, 2^64) and maps negatives into uint64.
    if (s < -(1n << 63n) || s >= 1n << 64n) throw new Error(`MT19937: seed ${s} is outside [-2^63, 2^64)`);
    if (s < 0n) s += 1n << 64n;
    // The engine keeps only the low 32 bits of the 64-bit seed.
    this.state[0] = Number(s & 0xffffffffn);
    for (let j = 1; j < N; j++) {
      const prev = this.state[j - 1];
      this.state[j] = (Math.imul(1812433253, (prev ^ (prev >>> 30)) >>> 0) + j) >>> 0;
    }
  }

  private twist(): void {
    const st = this.state;
    for (let k = 0; k < N; k++) {
      const y = (st[k] & 0x80000000) | (st[(k + 1) % N] & 0x7fffffff);
      st[k] = (st[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0)) >>> 0;
    }
    this.next = 0;
    this.left = N;
  }

  /** Next 32-bit output as a non-negative number. */
  nextU32(): number {
    if (--this.left === 0) this.twist();
    let y = this.state[this.next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** 53-bit uniform in [0, 1) from random64() = (first << 32) | second, as torch's double path. */
  nextDouble53(): number {
    const hi = this.nextU32();
    const lo = this.nextU32();
    // (hi << 32 | lo) & (2^53 - 1) = (hi & (2^21 - 1)) * 2^32 + lo, exact in a double.
    return ((hi & 0x1fffff) * 4294967296 + lo) / 9007199254740992;
  }

  /** 24-bit uniform in [0, 1), as torch's float path (exact in float32). */
  nextFloat24(): number {
    return (this.nextU32() & 0xffffff) / 16777216;
  }
}

// ---- float32 arithmetic helpers -------------------------------------------------------------

const fr = Math.fround;
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** The float32 neighbour of float32 `x` in the direction of `dir` (x finite, dir != 0). */
function nextFloat(x: number, dir: number): number {
  if (x === 0) return dir > 0 ? 1.401298464324817e-45 : -1.401298464324817e-45;
  f32Scratch[0] = x;
  u32Scratch[0] += (x > 0) === (dir > 0) ? 1 : -1;
  return f32Scratch[0];
}

/**
 * Single-rounded float32 fused multiply-add. The product of two float32 values is exact in a
 * double; the sum is rounded once in double and once more to float32, which can only be wrong
 * when the double lands exactly on a float32 midpoint: then the exact remainder decides.
 */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = fr(s);
  if (r === s || !Number.isFinite(s)) return r;
  const bv = s - p;
  const err = (p - (s - bv)) + (c - bv);
  if (err === 0) return r;
  const other = nextFloat(r, s - r);
  if ((r + other) / 2 !== s) return r;
  // s is a midpoint and the exact sum lies beyond it on the side of `err`.
  return (err > 0) === (other > r) ? other : r;
}

// ---- the vectorised kernel's float32 log and sincos ------------------------------------------
// PyTorch 1.13's AVX2 normal kernel uses Cephes-style float32 polynomials (log256_ps,
// sincos256_ps) and its compiler contracts multiply-then-add pairs into FMAs. Reproducing the
// bits means reproducing both: each `fmaf` below is one such contracted pair, every other
// operation rounds to float32. The coefficient values are Cephes' published float constants.

const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1,
  -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(fr);
const LOG_Q1 = fr(-2.1219444e-4);
const LOG_Q2 = fr(0.693359375);
const SQRT_HALF = fr(0.707106781186547524);

/** log(x) for float32 x in (0, 1] (the only range Box-Muller feeds it). */
function logf32(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0];
  // x = m · 2^e with m in [0.5, 1): exponent from the bits, mantissa re-biased to 0.5.
  let e = fr((bits >>> 23) - 127 + 1);
  u32Scratch[0] = (bits & 0x807fffff) | 0x3f000000;
  let m = f32Scratch[0];
  if (m < SQRT_HALF) {
    e = fr(e - 1);
    m = fr(fr(m - 1) + m);
  } else {
    m = fr(m - 1);
  }
  const z = fr(m * m);
  let y = LOG_P[0];
  for (let k = 1; k < LOG_P.length; k++) y = fmaf(y, m, LOG_P[k]);
  y = fr(y * m);
  y = fmaf(y, z, fr(e * LOG_Q1));
  y = fmaf(-z, 0.5, y);
  return fmaf(e, LOG_Q2, fr(m + y));
}

const DP1 = fr(-0.78515625);
const DP2 = fr(-2.4187564849853515625e-4);
const DP3 = fr(-3.77489497744594108e-8);
const SIN_P = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(fr);
const COS_P = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(fr);
const FOUR_OVER_PI = fr(1.27323954473516);

/** [sin(x), cos(x)] for float32 x >= 0 (Box-Muller angles are in [0, 2π)). */
function sincosf32(x: number): [number, number] {
  // Octant j (rounded up to even) and the remainder x - j·π/4 in three float32 pieces.
  let j = Math.trunc(fr(x * FOUR_OVER_PI));
  j = (j + 1) & ~1;
  let r = fmaf(j, DP1, x);
  r = fmaf(j, DP2, r);
  r = fmaf(j, DP3, r);
  const z = fr(r * r);
  let yc = fmaf(COS_P[0], z, COS_P[1]);
  yc = fmaf(yc, z, COS_P[2]);
  yc = fr(yc * z);
  yc = fmaf(yc, z, -fr(z * 0.5));
  yc = fr(yc + 1);
  let ys = fmaf(SIN_P[0], z, SIN_P[1]);
  ys = fmaf(ys, z, SIN_P[2]);
  ys = fr(ys * z);
  ys = fmaf(ys, r, r);
  const swap = (j & 2) !== 0;
  const s = swap ? yc : ys;
  const c = swap ? ys : yc;
  const sinNeg = (j & 4) !== 0;
  const cosNeg = (~(j - 2) & 4) !== 0;
  return [sinNeg ? -s : s, cosNeg ? -c : c];
}

const TWO_PI_F32 = fr(2 * Math.PI);

/** Box-Muller over data[o .. o+16): uniforms in, normals out (float32, mean 0, std 1). */
function boxMuller16(data: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = fr(1 - data[o + j]); // [0, 1) -> (0, 1] for the log
    const u2 = data[o + j + 8];
    const radius = fr(Math.sqrt(fr(-2 * logf32(u1))));
    const [s, c] = sincosf32(fr(TWO_PI_F32 * u2));
    data[o + j] = fr(radius * c);
    data[o + j + 8] = fr(radius * s);
  }
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`randn: shape [${shape.join(', ')}] has an invalid dimension ${d}`);
    n *= d;
  }
  return n;
}

/**
 * torch.randn(shape, generator=torch.Generator('cpu').manual_seed(seed), dtype=float32),
 * bit for bit (PyTorch 1.13 CPU kernels, as the golden fixtures were made). Seeds above 2^53
 * must be passed as bigint.
 */
export function randn(seed: bigint | number, shape: readonly number[]): Float32Array {
  if (typeof seed === 'number' && (!Number.isSafeInteger(seed))) {
    throw new Error(`randn: seed ${seed} is not a safe integer; pass seeds above 2^53 as bigint`);
  }
  return randnFrom(new MT19937(seed), shape);
}

/**
 * torch.randn(shape, generator=gen) on a generator that may already have been used: successive
 * calls continue its stream exactly as successive torch.randn calls on one torch.Generator
 * (e.g. a scheduler drawing fresh noise at every step).
 */
export function randnFrom(gen: MT19937, shape: readonly number[]): Float32Array {
  const n = numelOf(shape);
  const out = new Float32Array(n);
  if (n >= 16) {
    for (let i = 0; i < n; i++) out[i] = gen.nextFloat24();
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16(out, i);
    if (n % 16 !== 0) {
      // The tail is redrawn as a full block over the last 16 positions.
      const o = n - 16;
      for (let i = 0; i < 16; i++) out[o + i] = gen.nextFloat24();
      boxMuller16(out, o);
    }
    return out;
  }
  // Scalar path: double-precision Box-Muller, one pair per two outputs (sin kept for the next).
  for (let i = 0; i < n; i++) {
    if (gen.normalCache !== undefined) {
      out[i] = gen.normalCache;
      gen.normalCache = undefined;
      continue;
    }
    const u1 = gen.nextDouble53();
    const u2 = gen.nextDouble53();
    const r = Math.sqrt(-2 * Math.log(1 - u2));
    const theta = 2 * Math.PI * u1;
    gen.normalCache = r * Math.sin(theta);
    out[i] = r * Math.cos(theta);
  }
  return out;
}
