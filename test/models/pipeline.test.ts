// The end-to-end golden: SanaPAGPipeline (CFG 4.5 + PAG 2.0 on block 1, 4 DPM-Solver++ steps,
// DC-AE decode) with the tiny models, every intermediate within 1e-3 in f32.
import { describe, expect, it } from 'vitest';
import * as native from '../../native/index.ts';
import { runPipelineGolden } from '../../nodes/models/golden/pipeline.ts';
import { GOLDEN } from '../fixtures.ts';

// Model runs on the shared 2-core machine can take minutes under load.
const HEAVY_MS = 300_000;
const backend = native.getBackend('cpu');

describe('pipeline golden', () => {
  it('f32: text encoder, selection, 4 guided steps, decode and image within 1e-3', async () => {
    const r = await runPipelineGolden({ backend, native, dtype: 'f32', dir: GOLDEN });
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    // 2 text + 2 batch + 2 schedule + 4 steps × 5 (timestep, input, output, guided, latents) + 3 decode
    expect(r.checks.length).toBe(29);
  }, HEAVY_MS);

  it('bf16 models: within the stated bf16 bound', async () => {
    const r = await runPipelineGolden({ backend, native, dtype: 'bf16', dir: GOLDEN });
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
  }, HEAVY_MS);
});
