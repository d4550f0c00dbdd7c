// Golden stage "transformer": SanaTransformer2DModel on shared/fixtures/golden/transformer, one
// forward per io*.safetensors with every captured intermediate compared too, so a mismatch is
// localised to a module. A file is a PAG forward when its metadata says so (`pag_layer` /
// `pag_processor` / `batch_layout`, or it stores `output_without_pag`); the hooked blocks and the
// perturbed rows come from that metadata.
// Also the home of the comparison helpers the dcae and pipeline stages share.
import { existsSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Backend, DType, NativeModule, Tensor } from '../../../native/api.ts';
import { loadSanaTransformer } from '../sana_dit/load.ts';
import { readFixture, type FixtureFile, type FixtureTensor } from './fixture.ts';
import { shortName } from './meta.ts';

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
  /** Why it failed when there were no numbers to compare (e.g. the fixture lacks the tensor). */
  note?: string;
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

/** The io*.safetensors files of a stage folder, sorted (empty when the folder is absent). */
export function ioFiles(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^io.*\.safetensors$/.test(f)).sort() : [];
}

/** Integers from "1", "0,1" or "[0, 1]". */
function intList(v: string, where: string): number[] {
  const s = v.trim().replace(/^\[|\]$/g, '');
  const out = s === '' ? [] : s.split(',').map((x) => Number(x.trim()));
  if (out.some((n) => !Number.isInteger(n) || n < 0)) throw new Error(`${where}: expected block indices, got ${JSON.stringify(v)}`);
  return out;
}

export interface PagSetup { layers: Set<number>; slice: [number, number] }

/**
 * The PAG forward a transformer fixture file records, or undefined for a plain forward. Blocks
 * from `pag_layer` (or the `transformer_blocks.{i}.attn1.processor` names of `pag_processor`; both
 * must agree when both are there); perturbed rows from `batch_layout` (the entry named
 * `…perturbed…`, each entry holding an equal share of the batch).
 */
export function pagSetupOf(fx: FixtureFile, batch: number): PagSetup | undefined {
  const md = fx.metadata;
  const f = shortName(fx.path);
  const isPag = md.pag_layer !== undefined || md.pag_processor !== undefined || md.batch_layout !== undefined || fx.tensors.has('output_without_pag');
  if (!isPag) return undefined;
  const fromKey = md.pag_layer !== undefined ? intList(md.pag_layer, `${f}: pag_layer`) : undefined;
  const fromProc = md.pag_processor !== undefined
    ? [...md.pag_processor.matchAll(/transformer_blocks\.(\d+)\.attn1/g)].map((m) => Number(m[1]))
    : undefined;
  if (fromKey === undefined && (fromProc === undefined || fromProc.length === 0)) {
    throw new Error(`${f}: a PAG forward, but the metadata has no "pag_layer" (nor a "pag_processor" naming transformer_blocks.{i}.attn1)`);
  }
  if (fromKey && fromProc && [...new Set(fromKey)].sort().join() !== [...new Set(fromProc)].sort().join()) {
    throw new Error(`${f}: metadata pag_layer ${JSON.stringify(md.pag_layer)} and pag_processor ${JSON.stringify(md.pag_processor)} name different blocks`);
  }
  if (md.batch_layout === undefined) throw new Error(`${f}: a PAG forward, but the metadata has no "batch_layout" (which rows are perturbed)`);
  const parts = md.batch_layout.trim().replace(/^\[|\]$/g, '').split(',').map((p) => p.trim());
  const k = parts.findIndex((p) => p.includes('perturbed'));
  if (k < 0 || parts.filter((p) => p.includes('perturbed')).length !== 1) {
    throw new Error(`${f}: batch_layout ${JSON.stringify(md.batch_layout)} must name exactly one perturbed part`);
  }
  if (batch % parts.length !== 0) throw new Error(`${f}: batch ${batch} does not split into the ${parts.length} parts of batch_layout ${md.batch_layout}`);
  const per = batch / parts.length;
  return { layers: new Set(fromKey ?? fromProc), slice: [k * per, (k + 1) * per] };
}

export async function runTransformerGolden(deps: StageDeps): Promise<GoldenStageResult> {
  const dtype = deps.dtype ?? 'f32';
  const tol = dtype === 'f32' ? F32_TOL : dtype === 'f16' ? TRANSFORMER_F16_TOL : TRANSFORMER_BF16_TOL;
  const dir = resolve(deps.dir ?? goldenDir(), 'transformer');
  const files = ioFiles(dir);
  if (files.length === 0) throw new Error(`${dir}: no io*.safetensors`);
  const bk = deps.backend;
  const model = await loadSanaTransformer(dir, bk, dtype, { native: deps.native });
  const checks: GoldenCheck[] = [];
  try {
    // One forward on a fixture's inputs; `label` prefixes the names of the intermediate checks.
    const run = (fx: FixtureFile, pag: PagSetup | undefined, label?: string): Float32Array => {
      const x = fx.get('hidden_states'), y = fx.get('encoder_hidden_states');
      const sub: GoldenCheck[] = [];
      const out = model.forward({ data: x.data, shape: x.shape }, Array.from(fx.get('timestep').data), { data: y.data, shape: y.shape },
        fx.get('encoder_attention_mask').data, {
          ...(pag ? { pagLayers: pag.layers, pagSlice: pag.slice } : {}),
          ...(label !== undefined ? { capture: captureInto(fx, '', sub, tol) } : {}),
          // Sprint: the guidance embedding's input, already times guidance_embeds_scale.
          ...(fx.tensors.has('guidance') ? { guidance: Array.from(fx.get('guidance').data) } : {}),
        });
      checks.push(...sub.map((c) => ({ ...c, name: `${label}${c.name}` })));
      try { return out.toFloat32(); } finally { out.dispose(); }
    };
    for (const file of files) {
      const fx = readFixture(resolve(dir, file));
      const stem = file.replace(/\.safetensors$/, '');
      const pag = pagSetupOf(fx, fx.get('hidden_states').shape[0]!);
      checks.push(compareArrays(`${stem}.output`, run(fx, pag, `${stem}.`), fx.get('output'), tol));
      if (fx.tensors.has('output_without_pag')) {
        checks.push(compareArrays(`${stem}.output_without_pag`, run(fx, undefined), fx.get('output_without_pag'), tol));
      }
    }
  } finally {
    model.dispose();
  }
  return { stage: 'transformer', dtype, tolerance: tol, checks, ok: stageOk(checks) };
}
