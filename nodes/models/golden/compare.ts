// Tensor comparison with |got − want| <= atol + rtol·|want| (the fixtures README's criterion).
import type { Comparison, Tolerance } from './types.ts';

export function compareArrays(
  name: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  shape: readonly number[],
  tol: Tolerance,
): Comparison {
  if (got.length !== want.length) {
    return { name, shape, maxAbs: Infinity, maxRel: Infinity, ratio: Infinity, tolerance: tol, ok: false, note: `size ${got.length} != expected ${want.length}` };
  }
  let maxAbs = 0;
  let maxRel = 0;
  let ratio = 0;
  let nonFinite = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    if (!Number.isFinite(g) && g !== w) {
      nonFinite++;
      continue;
    }
    const d = Math.abs(g - w);
    if (Number.isNaN(d)) continue; // both the same non-finite value
    if (d > maxAbs) maxAbs = d;
    const aw = Math.abs(w);
    if (aw >= tol.atol && d / aw > maxRel) maxRel = d / aw;
    const bound = tol.atol + tol.rtol * aw;
    const r = bound > 0 ? d / bound : d > 0 ? Infinity : 0;
    if (r > ratio) ratio = r;
  }
  if (nonFinite > 0) {
    return { name, shape, maxAbs: Infinity, maxRel: Infinity, ratio: Infinity, tolerance: tol, ok: false, note: `${nonFinite} non-finite values` };
  }
  return { name, shape, maxAbs, maxRel, ratio, tolerance: tol, ok: ratio <= 1 };
}

/** Exact comparison (noise must match bit for bit). */
export function compareExact(name: string, got: Float32Array, want: Float32Array, shape: readonly number[]): Comparison {
  const c = compareArrays(name, got, want, shape, { atol: 0, rtol: 0 });
  let diff = 0;
  if (got.length === want.length) for (let i = 0; i < got.length; i++) if (!Object.is(got[i], want[i])) diff++;
  return { ...c, ok: c.ok && diff === 0, note: diff > 0 ? `${diff} of ${want.length} values differ` : c.note };
}
