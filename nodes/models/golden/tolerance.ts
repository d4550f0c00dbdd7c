// Tolerances of the golden runner. f32: the fixtures README's 1e-4 (atol = rtol) for component
// outputs. bf16 runs the same float32 reference with bf16 weights and activations, so the bound
// is the measured error of that rounding plus margin (numbers in nodes/models/README.md).
import type { GoldenDType, Tolerance } from './types.ts';

export const F32_TOLERANCE: Tolerance = { atol: 1e-4, rtol: 1e-4 };
export const BF16_TOLERANCE: Tolerance = { atol: 6e-2, rtol: 6e-2 };

export function componentTolerance(dtype: GoldenDType): Tolerance {
  return dtype === 'f32' ? F32_TOLERANCE : BF16_TOLERANCE;
}
