// Golden stage "transformer": SanaTransformer2DModel on shared/fixtures/golden/transformer
// (plain forward io.safetensors; PAG forward io_pag.safetensors with output_without_pag), with
// every captured intermediate compared too, so a mismatch is localised to a module.
// Also the home of the comparison helpers the dcae and pipeline stages share.
import { resolve } from 'node:path';
import type { Backend, DType, NativeModule, Tensor } from '../../../native/api.ts';
import { loadSanaTransformer } from '../sana_dit.ts';
import { readFixture, type FixtureFile, type FixtureTensor } from './fixture.ts';

/**
 * Elementwise |got − want| ≤ atol + rtol·|want|, or, when `relRms` is set, a bound on the relative
 * RMS error ‖got − want‖₂ / ‖want‖₂ instead (used for bf16 where a few elements sit on a
 * discontinuity of the ReLU attention kernel; see DCAE_BF16_TOL).
 */
export interface Tolerance { atol: number; rtol: number; relRms?: number }

export interface GoldenCheck {
  name: string;
  /** max |got − want| */
  maxAbs: number;
  /** ≤ 1 passes: max |got − want| / (atol + rtol·|want|), or relRMS / tol.relRms. */
  worst: number;
  /** ‖got − want‖₂ / ‖want‖₂ */
  relRms: number;
  /** The bound this check used (a stage may hold checks of different bounds). */
  tolerance: Tolerance;
  ok: boolean;
}

export interface GoldenStageResult {
  stage: string;
  dtype: DType;
  tolerance: Tolerance;
  checks: GoldenCheck[];
  ok: boolean;
}

/** Default location of the fixtures: ../shared/fixtures/golden next to the repository. */
export function goldenDir(): string {
  return process.env.SANA_GOLDEN_DIR ?? resolve(import.meta.dirname, '../../../../shared/fixtures/golden');
}

export function compareArrays(name: string, got: Float32Array, want: FixtureTensor | Float32Array, tol: Tolerance): GoldenCheck {
  const w = want instanceof Float32Array ? want : want.data;
  if (got.length !== w.length) throw new Error(`golden ${name}: got ${got.length} values, the fixture has ${w.length}`);
  let maxAbs = 0, worst = 0, num = 0, den = 0, nan = false;
  for (let i = 0; i < w.length; i++) {
    const d = Math.abs(got[i]! - w[i]!);
    if (Number.isNaN(d)) { nan = true; continue; }
    if (d > maxAbs) maxAbs = d;
    num += d * d;
    den += w[i]! * w[i]!;
    const bound = tol.atol + tol.rtol * Math.abs(w[i]!);
    const r = d === 0 ? 0 : d / bound; // exact comparisons (bound 0) pass only on equality
    if (r > worst) worst = r;
  }
  const relRms = num === 0 ? 0 : Math.sqrt(num / den);
  if (tol.relRms !== undefined) worst = relRms / tol.relRms;
  if (nan) maxAbs = worst = Infinity;
  return { name, maxAbs, worst, relRms, tolerance: tol, ok: worst <= 1 };
}

export const stageOk = (checks: GoldenCheck[]): boolean => checks.every((c) => c.ok);

/** A capture hook that compares each named module output with `intermediate.<name>` when the
 *  fixture has it. */
export function captureInto(fx: FixtureFile, prefix: string, checks: GoldenCheck[], tol: Tolerance): (name: string, t: Tensor) => void {
  return (name, t) => {
    const key = `intermediate.${prefix}${name}`;
    if (fx.tensors.has(key)) checks.push(compareArrays(key, t.toFloat32(), fx.get(key), tol));
  };
}

export const F32_TOL: Tolerance = { atol: 1e-4, rtol: 1e-4 };
/**
 * bf16 bound for the tiny DiT: weights and activations rounded to 8 mantissa bits (relative step
 * 2^-8 ≈ 3.9e-3) through two blocks. Measured on the CPU backend: worst |Δ| 0.064 (io_pag
 * norm_out, values ≤ 5), worst ratio 0.54 under this bound; outputs |Δ| ≤ 0.036.
 */
export const TRANSFORMER_BF16_TOL: Tolerance = { atol: 6e-2, rtol: 3e-2 };
/** fp16 (how the fp16-trained 600M / 1600M-1024 checkpoints run): 11 mantissa bits; measured worst
 *  |Δ| 6.9e-3 (io_pag block 1), relative RMS ≤ 9e-4. */
export const TRANSFORMER_F16_TOL: Tolerance = { atol: 1e-2, rtol: 5e-3 };

export interface StageDeps {
  backend: Backend;
  native: Pick<NativeModule, 'openSafetensors'>;
  dtype?: DType;
  dir?: string;
}

export async function runTransformerGolden(deps: StageDeps): Promise<GoldenStageResult> {
  const dtype = deps.dtype ?? 'f32';
  const tol = dtype === 'f32' ? F32_TOL : dtype === 'f16' ? TRANSFORMER_F16_TOL : TRANSFORMER_BF16_TOL;
  const dir = resolve(deps.dir ?? goldenDir(), 'transformer');
  const bk = deps.backend;
  const model = await loadSanaTransformer(dir, bk, dtype, { native: deps.native });
  const checks: GoldenCheck[] = [];
  try {
    // One forward on a fixture's inputs; `label` prefixes the names of the intermediate checks.
    const run = (fx: FixtureFile, pag: boolean, label?: string): Float32Array => {
      const x = fx.get('hidden_states'), y = fx.get('encoder_hidden_states');
      const B = x.shape[0]!;
      const sub: GoldenCheck[] = [];
      const out = model.forward({ data: x.data, shape: x.shape }, Array.from(fx.get('timestep').data), { data: y.data, shape: y.shape },
        fx.get('encoder_attention_mask').data, {
          // what SanaPAGPipeline installs for pag_applied_layers=["transformer_blocks.1"]: block 1
          // exactly, identity attention on the last third of the batch
          ...(pag ? { pagLayers: new Set([1]), pagSlice: [(2 * B) / 3, B] as const } : {}),
          ...(label !== undefined ? { capture: captureInto(fx, '', sub, tol) } : {}),
        });
      checks.push(...sub.map((c) => ({ ...c, name: `${label}${c.name}` })));
      try { return out.toFloat32(); } finally { out.dispose(); }
    };
    const io = readFixture(resolve(dir, 'io.safetensors'));
    checks.push(compareArrays('io.output', run(io, false, 'io.'), io.get('output'), tol));
    const pagFx = readFixture(resolve(dir, 'io_pag.safetensors'));
    checks.push(compareArrays('io_pag.output', run(pagFx, true, 'io_pag.'), pagFx.get('output'), tol));
    checks.push(compareArrays('io_pag.output_without_pag', run(pagFx, false), pagFx.get('output_without_pag'), tol));
  } finally {
    model.dispose();
  }
  return { stage: 'transformer', dtype, tolerance: tol, checks, ok: stageOk(checks) };
}
