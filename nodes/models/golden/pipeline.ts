// Golden stage "pipeline": SanaPAGPipeline end to end on shared/fixtures/golden/pipeline with the
// model folders that pipeline.json's `models` names: Gemma on the stored ids, the BOS + last-(M−1)
// selection, the guidance batch, every step's model output / guided output / latents, the decoder
// input and output and the final image. Every call argument (prompts → batch, CHI, max sequence
// length, steps, guidance and PAG scales, PAG layers, height × width, VAE scaling factor, seed when
// recorded) comes from io.safetensors' metadata and pipeline.json (they must agree where both state
// a key). The loop runs free (our own latents feed the next step), so the per-step checks show where
// drift starts.
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { DType, Tensor } from '../../../native/api.ts';
import { loadDcaeDecoder } from '../dcae.ts';
import { loadGemma2 } from '../gemma2.ts';
import { randn } from '../noise.ts';
import { selectIndices } from '../prompt.ts';
import { combineGuidance, guidanceLayout, pagScaleAt, type GuidanceMode } from '../sana_dit/guidance.ts';
import { loadSanaTransformer } from '../sana_dit/load.ts';
import { createSampler, schedulerConfigFromJson } from '../scheduler.ts';
import { parseLenientJson } from '../weights.ts';
import { readFixture } from './fixture.ts';
import { FixtureMeta, pagLayerIndices, samplerKindOf, shortName } from './meta.ts';
import { compareArrays, F32_TOL, goldenDir, stageOk, type GoldenCheck, type GoldenStageResult, type StageDeps, type Tolerance } from './transformer.ts';

/** Fixture README: four steps and a decoder, so ~1e-3 end to end in f32. */
export const PIPELINE_TOL: Tolerance = { atol: 1e-3, rtol: 1e-3 };
/**
 * bf16 bound (all three models in bf16; latents, guidance and scheduler in f32). The shared
 * fixture's CFG 4.5 + PAG 2.0 amplifies model differences ~4×, and 1/scaling_factor another 2.4×. Measured on the CPU
 * backend: guided outputs |Δ| ≤ 0.25, decoder input |Δ| 0.39 (values ≤ 18), decoder output
 * |Δ| 0.18, image |Δ| 0.09; worst ratio 0.64 under this bound.
 */
export const PIPELINE_BF16_TOL: Tolerance = { atol: 0.4, rtol: 0.1 };

const f32 = Math.fround;

/** A model folder or file named by pipeline.json's `models`, relative to pipeline/. */
function modelPath(models: Record<string, unknown>, key: string, pdir: string, files: string): string {
  const v = models[key];
  if (typeof v !== 'string' || v === '') throw new Error(`${files}: models has no "${key}" path (needed to load the ${key})`);
  return resolve(pdir, v);
}

function readJsonObject(file: string): Record<string, unknown> {
  const raw = parseLenientJson(readFileSync(file, 'utf8'), file);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: expected a JSON object`);
  return raw as Record<string, unknown>;
}

export async function runPipelineGolden(deps: StageDeps): Promise<GoldenStageResult> {
  const dtype: DType = deps.dtype ?? 'f32';
  const tol = dtype === 'f32' ? PIPELINE_TOL : PIPELINE_BF16_TOL;
  const compTol = dtype === 'f32' ? F32_TOL : tol;
  const root = deps.dir ?? goldenDir();
  const bk = deps.backend;
  const pdir = resolve(root, 'pipeline');
  const ioPath = resolve(pdir, 'io.safetensors');
  const fx = readFixture(ioPath);
  const io = shortName(ioPath);
  const meta = FixtureMeta.ofFixture(fx).withJsonFile(resolve(pdir, 'pipeline.json'));
  const checks: GoldenCheck[] = [];
  const host = (t: Tensor): Float32Array => { try { return t.toFloat32(); } finally { t.dispose(); } };
  // A tensor the fixture lacks, or of another size, is a failed check (the settings read from the
  // metadata decide what we produce), so the report still shows every other tensor.
  const cmp = (name: string, got: Float32Array, t: Tolerance): void => {
    const want = fx.tensors.get(name);
    const fail = (note: string): void => { checks.push({ name, maxAbs: Infinity, worst: Infinity, relRms: Infinity, tolerance: t, ok: false, note }); };
    if (!want) return fail(`${io} has no ${name}`);
    if (want.data.length !== got.length) return fail(`produced ${got.length} values, ${io} stores [${want.shape.join(', ')}]`);
    checks.push(compareArrays(name, got, want, t));
  };

  // --- the call's settings ----------------------------------------------------------------------
  const prompts = meta.strList('prompts', 'the prompts; their count is the batch size');
  if (prompts.length === 0) throw new Error(`${meta.files}: prompts is empty`);
  // SanaPAGPipeline.__call__ defaults for arguments a fixture may leave unrecorded.
  const perPrompt = meta.has('num_images_per_prompt') ? meta.int('num_images_per_prompt', 'images per prompt') : 1;
  const pagAdaptive = meta.has('pag_adaptive_scale') ? meta.num('pag_adaptive_scale', 'adaptive PAG scale') : 0;
  const chi = meta.strList('complex_human_instruction', 'whether the prompt carries the complex human instruction');
  const M = meta.int('max_sequence_length', 'the text length the transformer sees');
  const steps = meta.int('num_inference_steps', 'the step count');
  const cfgScale = meta.num('guidance_scale', 'the CFG scale');
  const pagScale = meta.num('pag_scale', 'the PAG scale');
  const pagPatterns = meta.strList('pag_applied_layers', 'the PAG layers');
  const height = meta.int('height', 'the image height');
  const width = meta.int('width', 'the image width');
  const scaling = meta.num('vae_scaling_factor', 'the latent scaling factor');
  const models = meta.obj('models', 'the model folders, relative to pipeline/');
  const seedKey = ['seed', 'generator_seed'].find((k) => meta.has(k));

  const B = prompts.length;
  const rowsB = B * perPrompt;
  // diffusers' rules: CFG when guidance_scale > 1, PAG when pag_scale > 0 and layers are given.
  const doCfg = cfgScale > 1;
  const doPag = pagScale > 0 && pagPatterns.length > 0;
  const mode: GuidanceMode = doCfg ? (doPag ? 'cfg+pag' : 'cfg') : doPag ? 'pag' : 'none';
  const layout = guidanceLayout(mode, rowsB);

  // --- text encoder on the stored ids ---------------------------------------------------------
  const rows = (name: string): number[][] => {
    const t = fx.get(name);
    const [R, L] = t.shape as [number, number];
    return Array.from({ length: R }, (_, b) => Array.from(t.data.subarray(b * L, (b + 1) * L)));
  };
  const [pRows, Lall] = fx.get('text_encoder.prompt.input_ids').shape as [number, number];
  if (pRows !== B) throw new Error(`${io}: text_encoder.prompt.input_ids has ${pRows} row(s), but the metadata's prompts list ${B} prompt(s)`);
  // Without an instruction the prompt is padded to M; with one to n_chi + M − 2 (n_chi ≥ 2 with BOS).
  if (chi.length === 0 ? Lall !== M : Lall < M) {
    throw new Error(`${io}: text_encoder.prompt.input_ids has ${Lall} columns, which max_sequence_length ${M} ${chi.length === 0 ? 'without' : 'with'} a complex_human_instruction does not give`);
  }
  if (doCfg) {
    const [nRows, nLen] = fx.get('text_encoder.negative.input_ids').shape as [number, number];
    if (nRows !== B || nLen !== M) throw new Error(`${io}: text_encoder.negative.input_ids is [${nRows}, ${nLen}]; prompts (${B}) and max_sequence_length (${M}) give [${B}, ${M}]`);
  }
  const te = await loadGemma2(modelPath(models, 'text_encoder', pdir, meta.files), bk, dtype, { native: deps.native });
  let negH: Float32Array | undefined, posH: Float32Array;
  const hidden = te.config.hiddenSize;
  try {
    if (doCfg) negH = host(te.encode(rows('text_encoder.negative.input_ids'), rows('text_encoder.negative.attention_mask')));
    posH = host(te.encode(rows('text_encoder.prompt.input_ids'), rows('text_encoder.prompt.attention_mask')));
  } finally {
    te.dispose();
  }
  if (negH) cmp('text_encoder.negative.last_hidden_state', negH, compTol);
  cmp('text_encoder.prompt.last_hidden_state', posH, compTol);

  // BOS + last M−1 positions of each prompt row; the negative prompt is used whole. Each prompt's
  // rows repeat perPrompt times in a row (diffusers' repeat + view).
  const sel = selectIndices(Lall, M);
  const pMask = fx.get('text_encoder.prompt.attention_mask').data;
  const posSel = new Float32Array(rowsB * M * hidden), posMask = new Float32Array(rowsB * M);
  const negSel = new Float32Array(rowsB * M * hidden), negMask = new Float32Array(rowsB * M);
  const nMask = doCfg ? fx.get('text_encoder.negative.attention_mask').data : undefined;
  for (let r = 0; r < rowsB; r++) {
    const b = Math.floor(r / perPrompt);
    sel.forEach((j, s) => {
      const src = (b * Lall + j) * hidden;
      posSel.set(posH.subarray(src, src + hidden), (r * M + s) * hidden);
      posMask[r * M + s] = pMask[b * Lall + j]!;
    });
    if (negH && nMask) {
      negSel.set(negH.subarray(b * M * hidden, (b + 1) * M * hidden), r * M * hidden);
      negMask.set(nMask.subarray(b * M, (b + 1) * M), r * M);
    }
  }
  const slot = rowsB * M;
  const embeds = new Float32Array(layout.copies * slot * hidden), masks = new Float32Array(layout.copies * slot);
  layout.text.forEach((kind, k) => {
    embeds.set(kind === 'uncond' ? negSel : posSel, k * slot * hidden);
    masks.set(kind === 'uncond' ? negMask : posMask, k * slot);
  });
  cmp('transformer.encoder_hidden_states', embeds, compTol);
  cmp('transformer.encoder_attention_mask', masks, { atol: 0, rtol: 0 });

  // --- latents ------------------------------------------------------------------------------------
  const vaeDir = modelPath(models, 'vae', pdir, meta.files);
  const vaeCfgFile = join(vaeDir, 'config.json');
  const enc = readJsonObject(vaeCfgFile).encoder_block_out_channels;
  // SanaPAGPipeline.vae_scale_factor = 2 ** (len(vae.config.encoder_block_out_channels) - 1).
  if (!Array.isArray(enc) || enc.length === 0) throw new Error(`${vaeCfgFile}: no "encoder_block_out_channels" (the pipeline derives the latent size from it)`);
  const vsf = 2 ** (enc.length - 1);
  const trDir = modelPath(models, 'transformer', pdir, meta.files);
  const model = await loadSanaTransformer(trDir, bk, dtype, { native: deps.native });
  let x: Float32Array;
  let latShape: number[];
  try {
    latShape = [rowsB, model.config.inChannels, Math.floor(height / vsf), Math.floor(width / vsf)];
    const init = fx.get('initial_latents');
    if (init.shape.join() !== latShape.join()) {
      throw new Error(`${io}: initial_latents is [${init.shape.join(', ')}], but prompts × images per prompt, ${height}×${width} and the VAE's ×${vsf} give [${latShape.join(', ')}]`);
    }
    x = Float32Array.from(init.data);
    if (seedKey) {
      const seed = meta.str(seedKey, 'the generator seed');
      if (!/^-?\d+$/.test(seed.trim())) throw new Error(`${meta.files}: ${seedKey} ${JSON.stringify(seed)} is not an integer`);
      cmp('initial_latents', randn(BigInt(seed.trim()), latShape), { atol: 0, rtol: 0 });
    }

    // --- denoising --------------------------------------------------------------------------------
    const schedPath = modelPath(models, 'scheduler', pdir, meta.files);
    const schedFile = statSync(schedPath).isDirectory() ? join(schedPath, 'scheduler_config.json') : schedPath;
    const schedRaw = readJsonObject(schedFile);
    const sampler = createSampler({ kind: samplerKindOf(schedRaw, schedFile), steps, config: schedulerConfigFromJson(schedRaw, schedFile) });
    cmp('timesteps', Float32Array.from(sampler.timesteps), { atol: 0, rtol: 0 });
    cmp('sigmas', sampler.sigmas, { atol: 1e-7, rtol: 0 });
    const pagLayers = doPag ? new Set(pagLayerIndices(pagPatterns, model.config.numLayers, `${meta.files}: pag_applied_layers`)) : undefined;
    const rowsIn = layout.copies * rowsB;
    for (let i = 0; i < steps; i++) {
      const xin = new Float32Array(layout.copies * x.length);
      for (let c = 0; c < layout.copies; c++) xin.set(x, c * x.length);
      const t = sampler.timesteps[i]!;
      const out = host(model.forward({ data: xin, shape: [rowsIn, ...latShape.slice(1)] }, [t],
        { data: embeds, shape: [rowsIn, M, hidden] }, masks,
        pagLayers ? { pagLayers, pagSlice: layout.pagSlice! } : {}));
      cmp(`step${i}.transformer_input`, xin, tol);
      cmp(`step${i}.timestep`, new Float32Array(rowsIn).fill(t), { atol: 0, rtol: 0 });
      cmp(`step${i}.transformer_output`, out, tol);
      const v = combineGuidance(out, mode, { cfg: cfgScale, pag: doPag ? pagScaleAt(pagScale, pagAdaptive, t) : 0 });
      cmp(`step${i}.guided_output`, v, tol);
      x = sampler.step(v, x);
      cmp(`step${i}.latents_out`, x, tol);
    }
  } finally {
    model.dispose();
  }

  // --- decode -------------------------------------------------------------------------------------
  const dec = await loadDcaeDecoder(vaeDir, bk, dtype, { native: deps.native });
  try {
    // The reference divides by vae.config.scaling_factor; the metadata records that value.
    if (f32(dec.config.scalingFactor) !== f32(scaling)) {
      throw new Error(`${meta.files}: vae_scaling_factor ${scaling} disagrees with ${vaeCfgFile} scaling_factor ${dec.config.scalingFactor}`);
    }
    const sf = f32(scaling);
    const z = x.map((v) => f32(v / sf));
    cmp('vae.decode_input', z, tol);
    const img = host(dec.decode({ data: z, shape: latShape }));
    cmp('vae.decode_output', img, tol);
    // output_type="pt": image_processor.postprocess denormalises to [0, 1].
    const img01 = img.map((v) => Math.min(1, Math.max(0, f32(f32(v / 2) + 0.5))));
    cmp('image', img01, tol);
  } finally {
    dec.dispose();
  }
  return { stage: 'pipeline', dtype, tolerance: tol, checks, ok: stageOk(checks) };
}
