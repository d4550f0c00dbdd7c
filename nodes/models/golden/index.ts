// The golden stages, in run order. Each stage file checks one fixture folder; add a stage by
// writing its file and adding one line here (`stageFromRunner` wraps a `run…Golden(deps)`
// function that returns the transformer.ts result shape).
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend, DType, NativeModule } from '../../../native/api.ts';
import { runDcaeGolden } from './dcae.ts';
import { runDcaeEncodeGolden } from './dcae_encode.ts';
import { gemma2Stage } from './gemma2.ts';
import { noiseStage } from './noise.ts';
import { runPipelineGolden } from './pipeline.ts';
import { schedulerStage } from './scheduler.ts';
import { runScmSchedulerGolden, runSprintPipelineGolden } from './sprint.ts';
import { runTransformerGolden } from './transformer.ts';
import type { Comparison, GoldenStage, Tolerance } from './types.ts';

/** What a runner-style stage returns (the DiT stages' shape). */
export interface RunnerResult {
  tolerance: Tolerance;
  checks: Array<{ name: string; maxAbs: number; worst: number; ok: boolean; tolerance?: Tolerance; note?: string }>;
}

export type StageRunner = (deps: { backend: Backend; native: Pick<NativeModule, 'openSafetensors'>; dtype?: DType; dir?: string }) => Promise<RunnerResult>;

/** True when `rel` exists under the root; a last part `io*` matches any io*.safetensors there. */
function present(root: string, rel: string): boolean {
  const p = join(root, rel);
  if (!rel.endsWith('io*')) return existsSync(p);
  const dir = join(p, '..');
  return existsSync(dir) && readdirSync(dir).some((f) => /^io.*\.safetensors$/.test(f));
}

/** Wraps a runner-style stage: available when every one of `files` exists under the root. */
export function stageFromRunner(name: string, files: readonly string[], run: StageRunner): GoldenStage {
  return {
    name,
    available: (root) => files.every((f) => present(root, f)),
    async run(ctx): Promise<Comparison[]> {
      const r = await run({ backend: await ctx.backend(), native: await ctx.native(), dtype: ctx.dtype, dir: ctx.root });
      return r.checks.map((c) => ({ name: `${name}:${c.name}`, shape: [], maxAbs: c.maxAbs, maxRel: NaN, ratio: c.worst, tolerance: c.tolerance ?? r.tolerance, ok: c.ok, ...(c.note ? { note: c.note } : {}) }));
    },
  };
}

export const STAGES: readonly GoldenStage[] = [
  noiseStage,
  schedulerStage,
  gemma2Stage,
  stageFromRunner('transformer', ['transformer/config.json', 'transformer/io*'], runTransformerGolden),
  // SANA 1.5 (qk_norm) and Sprint (qk_norm + guidance embedding) transformers, FAMILY.md.
  stageFromRunner('sana15/transformer', ['sana15/transformer/config.json', 'sana15/transformer/io*'], (d) => runTransformerGolden({ ...d, dir: join(d.dir!, 'sana15') })),
  stageFromRunner('sprint/transformer', ['sprint/transformer/config.json', 'sprint/transformer/io*'], (d) => runTransformerGolden({ ...d, dir: join(d.dir!, 'sprint') })),
  stageFromRunner('sprint/scheduler', ['sprint/scheduler/scheduler_config.json'], runScmSchedulerGolden),
  stageFromRunner('sprint/pipeline', ['sprint/pipeline/io.safetensors', 'sprint/pipeline/pipeline.json'], runSprintPipelineGolden),
  stageFromRunner('dcae', ['dcae/config.json', 'dcae/io*'], runDcaeGolden),
  // The encoder's model folder is each fixture's `model` metadata (FAMILY.md: ../dcae).
  stageFromRunner('dcae_encode', ['dcae_encode/io*'], runDcaeEncodeGolden),
  // The model folders come from pipeline.json's `models`; a missing one is an error, not a skip.
  stageFromRunner('pipeline', ['pipeline/io.safetensors'], runPipelineGolden),
];

export type { Comparison, GoldenContext, GoldenDType, GoldenStage, Tolerance } from './types.ts';
