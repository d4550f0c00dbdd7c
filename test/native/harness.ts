// Shared test harness: seeded random tensors, tolerance per dtype, and the comparison that
// reports the first mismatching elements. Every op test runs on every available backend.
import fc from 'fast-check';
import type { Backend, DType, Tensor } from '../../native/api.ts';
import { devices, getBackend } from '../../native/index.ts';

export type FloatDType = 'f32' | 'bf16' | 'f16';
export const FLOATS: FloatDType[] = ['f32', 'bf16', 'f16'];

/** |got - want| <= atol·max(1, max|want|) + rtol·|want|. bf16 keeps 8 mantissa bits, f16 11. */
export const TOL: Record<FloatDType, { atol: number; rtol: number }> = {
  f32: { atol: 2e-5, rtol: 2e-4 },
  bf16: { atol: 1.6e-2, rtol: 1.6e-2 },
  f16: { atol: 2e-3, rtol: 2e-3 },
};

export function backendsUnderTest(): Backend[] {
  return devices()
    .filter((d) => d.available)
    .map((d) => getBackend(d.name));
}

/** mulberry32 + Box-Muller: deterministic normal samples. */
export function randn(seed: number, n: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const u = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967297;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/** A random tensor and the exact values it holds after rounding to its dtype. */
export function rand(b: Backend, shape: number[], dt: DType, seed: number, scale = 1): { t: Tensor; v: Float64Array } {
  const n = shape.reduce((a, c) => a * c, 1);
  const t = b.fromArray(randn(seed, n, scale), shape, dt);
  return { t, v: Float64Array.from(t.toFloat32()) };
}

export function expectClose(what: string, got: Float32Array, want: Float64Array, dt: FloatDType, widen = 1): void {
  if (got.length !== want.length) throw new Error(`${what}: ${got.length} values, want ${want.length}`);
  let maxAbs = 1;
  for (const w of want) maxAbs = Math.max(maxAbs, Math.abs(w));
  const { atol, rtol } = TOL[dt];
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < got.length; i++) {
    const tol = widen * (atol * maxAbs + rtol * Math.abs(want[i]));
    if (!(Math.abs(got[i] - want[i]) <= tol)) {
      count++;
      if (bad.length < 5) bad.push(`[${i}] got ${got[i]} want ${want[i]} (tol ${tol.toExponential(2)})`);
    }
  }
  if (count) throw new Error(`${what} ${dt}: ${count} of ${got.length} values out of tolerance: ${bad.join('; ')}`);
}

/** Runs `body` on seeded random parameters for each float dtype the backend supports for `op`. */
export function forAll<T>(
  b: Backend,
  op: Parameters<Backend['supportsOp']>[0],
  arb: fc.Arbitrary<T>,
  body: (p: T, dt: FloatDType, seed: number) => void,
  opts: { runs?: number; dtypes?: FloatDType[] } = {},
): void {
  const dts = (opts.dtypes ?? FLOATS).filter((d) => b.supportsOp(op, d));
  if (dts.length === 0) return;
  fc.assert(
    fc.property(arb, fc.constantFrom(...dts), fc.integer({ min: 1, max: 2 ** 30 }), (p, dt, seed) => {
      b.scope(() => body(p, dt, seed));
    }),
    { seed: 20261122, numRuns: opts.runs ?? 12 },
  );
}

export const dim = (min: number, max: number): fc.Arbitrary<number> => fc.integer({ min, max });
export const shapeArb = (minRank: number, maxRank: number, maxDim: number): fc.Arbitrary<number[]> =>
  fc.array(dim(1, maxDim), { minLength: minRank, maxLength: maxRank });
