// The machine's own ceiling, measured in the same run as the rows it explains: a plain 2048³
// matmul (x (2048, 2048) · Wᵀ, the backend's `linear`) in bf16 and f32. This VM's GEMM rate
// moves from day to day (bf16 0.4–1.9 TFLOP/s seen) and with other processes on its two cores,
// so a bench's absolute seconds only mean something next to this rate; the CPU model benches
// print it at their start and their end (a drift between the two says the run was disturbed).
import type { Backend } from '../native/api.ts';
import { noise, timeIt } from './dit.bench.ts';
import type { BenchRow } from './types.ts';

const S = 2048;

/** `ceiling.matmul2048.<dtype>` rows (median of `reps` after a warm-up), tagged `when`. */
export function matmulCeiling(backend: Backend, when: 'start' | 'end', reps = 5): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const dtype of ['bf16', 'f32'] as const) {
    const x = backend.fromArray(noise(S * S, 1, 5), [S, S], dtype);
    const w = backend.fromArray(noise(S * S, 0.05, 9), [S, S], dtype);
    try {
      const s = timeIt(() => backend.linear(x, w).dispose(), reps);
      rows.push({
        name: `ceiling.matmul2048.${dtype}.${when}`,
        metrics: { seconds: s, tflops: (2 * S * S * S) / s / 1e12 },
        notes: `plain ${S}³ linear, median of ${reps}, at the ${when} of this bench`,
      });
    } finally {
      x.dispose();
      w.dispose();
    }
  }
  return rows;
}
