// The golden stages, in run order. Each stage file checks one fixture folder; add a stage by
// writing its file and adding one line here (`stageFromRunner` wraps a `run…Golden(deps)`
// function that returns the transformer.ts result shape).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend, DType, NativeModule } from '../../../native/api.ts';
import { runDcaeGolden } from './dcae.ts';
import { gemma2Stage } from './gemma2.ts';
import { noiseStage } from './noise.ts';
import { runPipelineGolden } from './pipeline.ts';
import { schedulerStage } from './scheduler.ts';
import { runTransformerGolden } from './transformer.ts';
import type { Comparison, GoldenStage, Tolerance } from './types.ts';

/** What a runner-style stage returns (the DiT stages' shape). */
export interface RunnerResult {
  tolerance: Tolerance;
  checks: Array<{ name: string; maxAbs: number; worst: number; ok: boolean; tolerance?: Tolerance }>;
}

export type StageRunner = (deps: { backend: Backend; native: Pick<NativeModule, 'openSafetensors'>; dtype?: DType; dir?: string }) => Promise<RunnerResult>;

/** Wraps a runner-style stage: available when every one of `files` exists under the root. */
export function stageFromRunner(name: string, files: readonly string[], run: StageRunner): GoldenStage {
  return {
    name,
    available: (root) => files.every((f) => existsSync(join(root, f))),
    async run(ctx): Promise<Comparison[]> {
      const r = await run({ backend: await ctx.backend(), native: await ctx.native(), dtype: ctx.dtype, dir: ctx.root });
      return r.checks.map((c) => ({ name: `${name}:${c.name}`, shape: [], maxAbs: c.maxAbs, maxRel: NaN, ratio: c.worst, tolerance: c.tolerance ?? r.tolerance, ok: c.ok }));
    },
  };
}

export const STAGES: readonly GoldenStage[] = [
  noiseStage,
  schedulerStage,
  gemma2Stage,
  stageFromRunner('transformer', ['transformer/config.json', 'transformer/io.safetensors', 'transformer/io_pag.safetensors'], runTransformerGolden),
  stageFromRunner('dcae', ['dcae/config.json', 'dcae/io_linear.safetensors', 'dcae/io_quadratic.safetensors'], runDcaeGolden),
  stageFromRunner('pipeline', ['pipeline/io.safetensors', 'gemma2/config.json', 'transformer/config.json', 'dcae/config.json', 'scheduler/scheduler_config.json'], runPipelineGolden),
];

export type { Comparison, GoldenContext, GoldenDType, GoldenStage, Tolerance } from './types.ts';
