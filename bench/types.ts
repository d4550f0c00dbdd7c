// The row every `bench/*.bench.ts` returns from its default export:
//   export default async function (): Promise<BenchRow[]>
export interface BenchRow {
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
