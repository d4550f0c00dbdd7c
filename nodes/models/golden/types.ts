// Shared types of the golden runner (scripts/golden.ts): a stage checks one fixture folder of
// shared/fixtures/golden (format in its README) and returns one comparison per tensor.
import type { Backend, DeviceName, NativeModule } from '../../../native/api.ts';

export type GoldenDType = 'f32' | 'bf16';

export interface Tolerance {
  atol: number;
  rtol: number;
}

export interface GoldenContext {
  /** The fixtures folder (holds gemma2/, scheduler/, …). */
  root: string;
  dtype: GoldenDType;
  device: DeviceName;
  /** Tolerance for component outputs at this dtype (see tolerance.ts). */
  tolerance: Tolerance;
  /** The native module and backend, loaded on first use (pure-TS stages never touch them). */
  native(): Promise<NativeModule>;
  backend(): Promise<Backend>;
}

export interface Comparison {
  /** What was compared, e.g. `gemma2/io.safetensors:last_hidden_state`. */
  name: string;
  shape: readonly number[];
  maxAbs: number;
  /** max |got − want| / |want| over elements with |want| >= atol. */
  maxRel: number;
  /** max |got − want| / (atol + rtol·|want|): the comparison passes iff this is <= 1. */
  ratio: number;
  tolerance: Tolerance;
  ok: boolean;
  /** Extra words for the report (e.g. why it failed). */
  note?: string;
}

export interface GoldenStage {
  /** Stage name; also the fixture sub-folder it reads. */
  name: string;
  /** True when the fixture files this stage needs are present under `root`. */
  available(root: string): boolean;
  run(ctx: GoldenContext): Promise<Comparison[]>;
}
