// Tolerances of the golden runner. f32: the fixtures README's 1e-4 (atol = rtol) for component
// outputs. bf16 runs the same float32 reference with bf16 weights and activations, so the bound
// is the measured error of that rounding plus margin. Gemma-2 fixture in bf16 (CPU): max abs
// 0.195 on layer 2 (values up to 7.6; bf16 weights alone, f32 activations: 0.111) and 0.091 on
// last_hidden_state (values up to 2.7): worst ratio 0.66 under this bound.
import type { GoldenDType, Tolerance } from './types.ts';

export const F32_TOLERANCE: Tolerance = { atol: 1e-4, rtol: 1e-4 };
export const BF16_TOLERANCE: Tolerance = { atol: 0.2, rtol: 0.1 };

export function componentTolerance(dtype: GoldenDType): Tolerance {
  return dtype === 'f32' ? F32_TOLERANCE : BF16_TOLERANCE;
}
