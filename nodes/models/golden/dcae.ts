// Golden stage "dcae": the AutoencoderDC decoder on shared/fixtures/golden/dcae, every
// io*.safetensors (the shared set: io_linear, linear attention in every EfficientViT stage, and
// io_quadratic, whose deepest stage has H·W ≤ head dim where diffusers takes its quadratic path),
// with the per-stage intermediates compared. `decode` has no scaling inside, so no setting is read.
import { resolve } from 'node:path';
import type { DType } from '../../../native/api.ts';
import { loadDcaeDecoder } from '../dcae.ts';
import { readFixture } from './fixture.ts';
import { captureInto, compareArrays, F32_TOL, goldenDir, ioFiles, stageOk, type GoldenCheck, type GoldenStageResult, type StageDeps, type Tolerance } from './transformer.ts';

/**
 * bf16 bound for the tiny DC-AE, on the relative RMS error of every tensor. Measured: 0.3% after
 * conv_in, 1–2% through the stages, 2.0–2.7% on the sample. Elementwise bounds do not fit bf16
 * here: the ReLU linear attention of this random 8-dim-head model has queries with one or two
 * barely positive channels, and a bf16 rounding that flips such a channel's sign switches the
 * query's output between different convex combinations of the values (or to 0). That hits a few
 * pixels (52 of 6144 after stage 4, max |Δ| 1.3), which the later upsampling stages spread.
 */
export const DCAE_BF16_TOL: Tolerance = { atol: 0, rtol: 0, relRms: 0.05 };

export async function runDcaeGolden(deps: StageDeps): Promise<GoldenStageResult> {
  const dtype: DType = deps.dtype ?? 'f32';
  const tol = dtype === 'f32' ? F32_TOL : DCAE_BF16_TOL;
  const dir = resolve(deps.dir ?? goldenDir(), 'dcae');
  const files = ioFiles(dir);
  if (files.length === 0) throw new Error(`${dir}: no io*.safetensors`);
  const dec = await loadDcaeDecoder(dir, deps.backend, dtype, { native: deps.native });
  const checks: GoldenCheck[] = [];
  try {
    for (const name of files) {
      const fx = readFixture(resolve(dir, name));
      const file = name.replace(/\.safetensors$/, '');
      const z = fx.get('latent');
      const sub: GoldenCheck[] = [];
      const img = dec.decode({ data: z.data, shape: z.shape }, { capture: captureInto(fx, '', sub, tol) });
      try {
        checks.push(...sub.map((c) => ({ ...c, name: `${file}.${c.name}` })));
        checks.push(compareArrays(`${file}.sample`, img.toFloat32(), fx.get('sample'), tol));
      } finally {
        img.dispose();
      }
    }
  } finally {
    dec.dispose();
  }
  return { stage: 'dcae', dtype, tolerance: tol, checks, ok: stageOk(checks) };
}
