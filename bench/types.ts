// The rows every `bench/*.bench.ts` returns from its default export:
//   export default async function (): Promise<BenchRow[]>
// A row is one measurement, or several measurements of the same case at once (`metrics`);
// bench/run.ts expands the latter into one row per metric.

/** One measurement. */
export interface BenchMeasurement {
  /** What was measured, e.g. 'executor 500-node chain'. */
  name: string;
  /** The quantity, e.g. 'overhead per node', 'throughput'. */
  metric: string;
  value: number;
  /** e.g. 'ms', 'ms/node', 'GFLOP/s'. */
  unit: string;
  /** Conditions: sizes, repetitions, median/best, backend. */
  notes?: string;
}

/** Several measurements of one case; units default from the key (see `unitOf` in run.ts). */
export interface BenchMultiRow {
  name: string;
  metrics: Record<string, number>;
  units?: Record<string, string>;
  notes?: string;
}

export type BenchRow = BenchMeasurement | BenchMultiRow;
