// SanaTransformer2DModel (Sana 1.0: 600M / 1600M, 512 px … 4K; SANA 1.5 and Sana-Sprint through
// their `qk_norm` / `guidance_embeds` options) on the Backend interface, with the PAG "identity
// attention" patch and the CFG/PAG guidance combination (spec §2, §3, §7).
//
// Module paths equal the diffusers checkpoint keys, so loading is a lookup. All tensor math goes
// through `Backend`; only the 256-wide timestep sinusoid and the 2K/4K sin-cos table are computed
// on the host (they are tiny and must follow PyTorch's float32/float64 recipe exactly).
//
// Letters: B batch, C latent channels, h·w latent grid, N = h·w tokens, D model width,
// H self-attention heads of d = D/H, Hc·dc cross-attention heads, L text tokens, F FFN hidden.
import { join } from 'node:path';
import type { Backend, DType, NativeModule, SafetensorsCheckpoint, Tensor } from '../../native/api.ts';
import { pickSafetensors, readJsonConfig, tensorShapeProblems } from './weights.ts';

// ------------------------------------------------------------------------------------------------
// Config

export interface SanaTransformerConfig {
  inChannels: number;
  outChannels: number;
  patchSize: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  /** D = numHeads · headDim. */
  innerDim: number;
  numCrossHeads: number;
  crossHeadDim: number;
  crossAttentionDim: number;
  captionChannels: number;
  mlpRatio: number;
  /** F = int(mlpRatio · D). */
  ffnHidden: number;
  normEps: number;
  attentionBias: boolean;
  /** null: no positional embedding (512/1024 models); 1.0 (2K) / 2.0 (4K): sin-cos PE. */
  interpolationScale: number | null;
  sampleSize: number;
  /** SanaPipeline multiplies timesteps by it before the call (1.0 for every Sana 1.0 config). */
  timestepScale: number;
  /** SANA 1.5 / Sprint: RMSNorm (eps 1e-5, weight) over the whole q and k projections, all heads
   *  together, in self- and cross-attention; null for Sana 1.0. */
  qkNorm: 'rms_norm_across_heads' | null;
  /** Sana-Sprint: the time embedding also embeds a guidance value (`forward`'s `guidance` option). */
  guidanceEmbeds: boolean;
  /** The factor SanaSprintPipeline multiplies guidance_scale by before the call (0.1). */
  guidanceEmbedsScale: number;
}

const num = (raw: Record<string, unknown>, key: string, file: string, dflt?: number): number => {
  const v = raw[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${file}: "${key}" must be a number (got ${JSON.stringify(raw[key])})`);
  return v;
};

/** Parses a diffusers SanaTransformer2DModel config.json (Sana 1.0, SANA 1.5, Sana-Sprint), refusing
 *  options this code does not implement. */
export function parseSanaTransformerConfig(raw: unknown, file = 'transformer/config.json'): SanaTransformerConfig {
  if (typeof raw !== 'object' || raw === null) throw new Error(`${file}: not a JSON object`);
  const r = raw as Record<string, unknown>;
  if (r._class_name !== undefined && r._class_name !== 'SanaTransformer2DModel') {
    throw new Error(`${file}: _class_name is ${JSON.stringify(r._class_name)}, expected "SanaTransformer2DModel"`);
  }
  // diffusers' Attention knows other qk_norm kinds, but no Sana checkpoint uses them.
  if (r.qk_norm !== undefined && r.qk_norm !== null && r.qk_norm !== 'rms_norm_across_heads') {
    throw new Error(`${file}: qk_norm ${JSON.stringify(r.qk_norm)} is not supported (null, or "rms_norm_across_heads" as SANA 1.5 / Sprint use)`);
  }
  if (r.guidance_embeds !== undefined && r.guidance_embeds !== null && typeof r.guidance_embeds !== 'boolean') {
    throw new Error(`${file}: guidance_embeds must be true or false (got ${JSON.stringify(r.guidance_embeds)})`);
  }
  if (r.norm_elementwise_affine === true) {
    throw new Error(`${file}: norm_elementwise_affine = true is not supported (Sana 1.0 norms carry no weights)`);
  }
  const inChannels = num(r, 'in_channels', file, 32);
  const numHeads = num(r, 'num_attention_heads', file, 70);
  const headDim = num(r, 'attention_head_dim', file, 32);
  const innerDim = numHeads * headDim;
  const mlpRatio = num(r, 'mlp_ratio', file, 2.5);
  const outRaw = r.out_channels;
  const interp = r.interpolation_scale;
  if (interp !== undefined && interp !== null && (typeof interp !== 'number' || !(interp > 0))) {
    throw new Error(`${file}: interpolation_scale must be null or a positive number (got ${JSON.stringify(interp)})`);
  }
  const cfg: SanaTransformerConfig = {
    inChannels,
    outChannels: outRaw === undefined || outRaw === null ? inChannels : num(r, 'out_channels', file),
    patchSize: num(r, 'patch_size', file, 1),
    numLayers: num(r, 'num_layers', file, 20),
    numHeads,
    headDim,
    innerDim,
    numCrossHeads: num(r, 'num_cross_attention_heads', file, 20),
    crossHeadDim: num(r, 'cross_attention_head_dim', file, 112),
    crossAttentionDim: num(r, 'cross_attention_dim', file, 2240),
    captionChannels: num(r, 'caption_channels', file, 2304),
    mlpRatio,
    ffnHidden: Math.trunc(mlpRatio * innerDim),
    normEps: num(r, 'norm_eps', file, 1e-6),
    attentionBias: r.attention_bias === true,
    interpolationScale: typeof interp === 'number' ? interp : null,
    sampleSize: num(r, 'sample_size', file, 32),
    timestepScale: num(r, 'timestep_scale', file, 1.0),
    qkNorm: r.qk_norm === 'rms_norm_across_heads' ? 'rms_norm_across_heads' : null,
    guidanceEmbeds: r.guidance_embeds === true,
    guidanceEmbedsScale: num(r, 'guidance_embeds_scale', file, 0.1),
  };
  if (cfg.crossAttentionDim !== innerDim) {
    throw new Error(`${file}: cross_attention_dim ${cfg.crossAttentionDim} differs from the model width ${innerDim}; Sana feeds the projected caption (width ${innerDim}) to cross-attention`);
  }
  if (cfg.patchSize < 1 || !Number.isInteger(cfg.patchSize)) throw new Error(`${file}: patch_size must be a positive integer`);
  return cfg;
}

/** Every tensor a checkpoint of this config must hold, with its shape (diffusers names). */
export function expectedTransformerTensors(cfg: SanaTransformerConfig): Map<string, number[]> {
  const D = cfg.innerDim, F = cfg.ffnHidden, p = cfg.patchSize, X = cfg.numCrossHeads * cfg.crossHeadDim;
  const m = new Map<string, number[]>([
    ['patch_embed.proj.weight', [D, cfg.inChannels, p, p]],
    ['patch_embed.proj.bias', [D]],
  ]);
  for (const e of timeEmbedders(cfg)) {
    m.set(`${e}.linear_1.weight`, [D, 256]);
    m.set(`${e}.linear_1.bias`, [D]);
    m.set(`${e}.linear_2.weight`, [D, D]);
    m.set(`${e}.linear_2.bias`, [D]);
  }
  for (const [k, s] of [
    ['time_embed.linear.weight', [6 * D, D]],
    ['time_embed.linear.bias', [6 * D]],
    ['caption_projection.linear_1.weight', [D, cfg.captionChannels]],
    ['caption_projection.linear_1.bias', [D]],
    ['caption_projection.linear_2.weight', [D, D]],
    ['caption_projection.linear_2.bias', [D]],
    ['caption_norm.weight', [D]],
    ['scale_shift_table', [2, D]],
    ['proj_out.weight', [p * p * cfg.outChannels, D]],
    ['proj_out.bias', [p * p * cfg.outChannels]],
  ] as Array<[string, number[]]>) m.set(k, s);
  for (let i = 0; i < cfg.numLayers; i++) {
    const b = `transformer_blocks.${i}.`;
    m.set(`${b}scale_shift_table`, [6, D]);
    for (const n of ['to_q', 'to_k', 'to_v']) {
      m.set(`${b}attn1.${n}.weight`, [D, D]);
      if (cfg.attentionBias) m.set(`${b}attn1.${n}.bias`, [D]);
    }
    m.set(`${b}attn1.to_out.0.weight`, [D, D]);
    m.set(`${b}attn1.to_out.0.bias`, [D]);
    for (const n of ['to_q', 'to_k', 'to_v']) {
      m.set(`${b}attn2.${n}.weight`, [X, D]);
      m.set(`${b}attn2.${n}.bias`, [X]);
    }
    m.set(`${b}attn2.to_out.0.weight`, [D, X]);
    m.set(`${b}attn2.to_out.0.bias`, [D]);
    if (cfg.qkNorm !== null) {
      // kv_heads = heads in both attentions, so k has q's width
      m.set(`${b}attn1.norm_q.weight`, [D]);
      m.set(`${b}attn1.norm_k.weight`, [D]);
      m.set(`${b}attn2.norm_q.weight`, [X]);
      m.set(`${b}attn2.norm_k.weight`, [X]);
    }
    m.set(`${b}ff.conv_inverted.weight`, [2 * F, D, 1, 1]);
    m.set(`${b}ff.conv_inverted.bias`, [2 * F]);
    m.set(`${b}ff.conv_depth.weight`, [2 * F, 1, 3, 3]);
    m.set(`${b}ff.conv_depth.bias`, [2 * F]);
    m.set(`${b}ff.conv_point.weight`, [D, F, 1, 1]);
  }
  return m;
}

/** The MLPs of the time embedding: AdaLayerNormSingle nests its one under `emb.`; Sprint's
 *  SanaCombinedTimestepGuidanceEmbeddings holds a timestep and a guidance embedder directly. */
function timeEmbedders(cfg: SanaTransformerConfig): string[] {
  return cfg.guidanceEmbeds
    ? ['time_embed.timestep_embedder', 'time_embed.guidance_embedder']
    : ['time_embed.emb.timestep_embedder'];
}

/** The part of a checkpoint the loader reads (a SafetensorsCheckpoint fits; tests and benches
 *  pass synthetic sources). */
export type WeightSource = Pick<SafetensorsCheckpoint, 'keys' | 'has' | 'entry' | 'load'>;

/**
 * Checks names and shapes of a checkpoint against the config before anything is allocated:
 * missing tensors, wrong shapes, and unknown tensors (e.g. SANA-1.5 q/k norms) each fail with the
 * file and tensor named.
 */
export function validateTransformerTensors(cfg: SanaTransformerConfig, src: Pick<WeightSource, 'keys' | 'entry'>, where: string): void {
  const want = expectedTransformerTensors(cfg);
  const { problems, extra } = tensorShapeProblems(want, src);
  const have = new Set(src.keys());
  for (const name of want.keys()) {
    const dtype = have.has(name) ? src.entry(name).dtype : undefined;
    if (dtype !== undefined && !['F32', 'F16', 'BF16'].includes(dtype)) problems.push(`${name} has dtype ${dtype}; only F32/F16/BF16 weights are supported`);
  }
  if (extra.some((k) => /\.norm_[qk]\./.test(k))) {
    problems.push(`q/k norm tensors present (${extra.filter((k) => /\.norm_[qk]\./.test(k)).slice(0, 2).join(', ')}…): a SANA-1.5 checkpoint, but config.json has no qk_norm "rms_norm_across_heads"`);
  } else if (extra.some((k) => k.startsWith('time_embed.guidance_embedder.'))) {
    problems.push('time_embed.guidance_embedder.* present: a Sana-Sprint checkpoint, but config.json has no guidance_embeds = true');
  } else if (extra.length > 0) {
    problems.push(`${extra.length} unexpected tensor(s): ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', …' : ''}`);
  }
  if (problems.length > 0) {
    throw new Error(`Sana transformer weights in ${where} do not match its config (${problems.length} problem(s)):\n  ${problems.slice(0, 12).join('\n  ')}`);
  }
}

// ------------------------------------------------------------------------------------------------
// Host-side embeddings (exact PyTorch recipes)

const f32 = Math.fround;

/** diffusers get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0) in float32:
 *  row b = [cos(t_b·f_0..127), sin(t_b·f_0..127)], f_k = exp(-ln(1e4)·k/128). Returns (B, 256). */
export function timestepSinusoid(t: readonly number[], dim = 256): Float32Array {
  const half = dim / 2;
  const negLn = f32(-Math.log(10000));
  const freqs = new Float32Array(half);
  for (let k = 0; k < half; k++) freqs[k] = f32(Math.exp(f32(f32(negLn * k) / half)));
  const out = new Float32Array(t.length * dim);
  t.forEach((tv, b) => {
    const tf = f32(tv);
    for (let k = 0; k < half; k++) {
      const arg = f32(tf * freqs[k]!);
      out[b * dim + k] = Math.cos(arg);
      out[b * dim + half + k] = Math.sin(arg);
    }
  });
  return out;
}

/** 2-D sin-cos positional embedding of diffusers PatchEmbed (spec §2.4): (h·w, D) float32, token
 *  n = r·w + c gets [emb(x = column), emb(y = row)]. Grid positions are float32 like torch.arange;
 *  frequencies and sin/cos in float64, then rounded to float32. */
export function sincosPosEmbed(D: number, h: number, w: number, baseSize: number, interpolationScale: number): Float32Array {
  if (D % 4 !== 0) throw new Error(`sincos positional embedding: model width ${D} must be divisible by 4`);
  const E = D / 2, Q = E / 2;
  const omega = new Float64Array(Q);
  for (let k = 0; k < Q; k++) omega[k] = 1 / Math.pow(10000, k / (E / 2));
  const gy = new Float32Array(h), gx = new Float32Array(w);
  for (let r = 0; r < h; r++) gy[r] = f32(f32(r / f32(h / baseSize)) / interpolationScale);
  for (let c = 0; c < w; c++) gx[c] = f32(f32(c / f32(w / baseSize)) / interpolationScale);
  const out = new Float32Array(h * w * D);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const o = (r * w + c) * D;
      for (let k = 0; k < Q; k++) {
        const ax = gx[c]! * omega[k]!, ay = gy[r]! * omega[k]!;
        out[o + k] = Math.sin(ax);
        out[o + Q + k] = Math.cos(ax);
        out[o + E + k] = Math.sin(ay);
        out[o + E + Q + k] = Math.cos(ay);
      }
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Guidance (spec §7): batch layouts and the float32 combination

export type GuidanceMode = 'none' | 'cfg' | 'pag' | 'cfg+pag';

/** How many copies of the latent batch the transformer sees, what text goes into each slot, and
 *  which batch rows (in units of the prompt batch B) take identity attention. */
export function guidanceLayout(mode: GuidanceMode, B: number): { copies: number; text: Array<'uncond' | 'cond'>; pagSlice?: [number, number] } {
  switch (mode) {
    case 'none': return { copies: 1, text: ['cond'] };
    case 'cfg': return { copies: 2, text: ['uncond', 'cond'] };
    case 'pag': return { copies: 2, text: ['cond', 'cond'], pagSlice: [B, 2 * B] };
    case 'cfg+pag': return { copies: 3, text: ['uncond', 'cond', 'cond'], pagSlice: [2 * B, 3 * B] };
  }
}

/** diffusers' adaptive PAG scale: max(0, pag_scale − adaptive·(1000 − t)); adaptive 0 = constant. */
export function pagScaleAt(pagScale: number, adaptiveScale: number, t: number): number {
  return Math.max(0, pagScale - adaptiveScale * (1000 - t));
}

/**
 * Combines the transformer output (copies·B, C, h, w), flattened, into the guided velocity (B, C, h, w)
 * in float32, with each operation rounded to float32 as torch does:
 *   cfg: u + g·(c − u);  cfg+pag: u + g·(c − u) + p·(c − p̃);  pag: c + p·(c − p̃);  none: c.
 */
export function combineGuidance(out: Float32Array, mode: GuidanceMode, scales: { cfg?: number; pag?: number }): Float32Array {
  const copies = guidanceLayout(mode, 1).copies;
  if (out.length % copies !== 0) throw new Error(`combineGuidance: output length ${out.length} is not a multiple of ${copies} slots for mode ${mode}`);
  const n = out.length / copies;
  const g = f32(scales.cfg ?? 1), p = f32(scales.pag ?? 0);
  const res = new Float32Array(n);
  if (mode === 'none') { res.set(out.subarray(0, n)); return res; }
  for (let i = 0; i < n; i++) {
    if (mode === 'cfg') {
      const u = out[i]!, c = out[n + i]!;
      res[i] = f32(u + f32(g * f32(c - u)));
    } else if (mode === 'cfg+pag') {
      const u = out[i]!, c = out[n + i]!, pt = out[2 * n + i]!;
      res[i] = f32(f32(u + f32(g * f32(c - u))) + f32(p * f32(c - pt)));
    } else {
      const c = out[i]!, pt = out[n + i]!;
      res[i] = f32(c + f32(p * f32(c - pt)));
    }
  }
  return res;
}

// ------------------------------------------------------------------------------------------------
// Model

/** Host data with its shape, accepted wherever a Tensor input is. */
export interface HostArray { data: Float32Array; shape: readonly number[] }
export type TensorInput = Tensor | HostArray;

const isHost = (x: TensorInput): x is HostArray => (x as HostArray).data instanceof Float32Array;

export interface SanaForwardOptions {
  /** Block indices whose self-attention takes identity attention on `pagSlice` (exact indices). */
  pagLayers?: ReadonlySet<number>;
  /** Batch rows [start, end) that are the perturbed slice; required with non-empty pagLayers. */
  pagSlice?: readonly [number, number];
  /** Called with module outputs named like diffusers' modules (golden comparisons). The tensor is
   *  disposed after the call returns: copy what you need. */
  capture?: (name: string, t: Tensor) => void;
  /** Sana-Sprint (`guidanceEmbeds`): the guidance per row, or one value for all rows, already
   *  multiplied by `guidanceEmbedsScale` (diffusers' `guidance` argument). Required there,
   *  refused elsewhere. */
  guidance?: readonly number[];
}

export interface SanaTransformer {
  readonly config: SanaTransformerConfig;
  readonly dtype: DType;
  /** Bytes of weights held on the backend. */
  readonly bytes: number;
  /**
   * x (B, C, h, w), t (B) or one value for all rows, embeds (B, L, caption_channels),
   * mask (B, L) of 1 keep / 0 drop → velocity (B, C, h, w) as a float32 tensor owned by the caller.
   */
  forward(x: TensorInput, t: readonly number[], embeds: TensorInput, mask: TensorInput | Float32Array, opts?: SanaForwardOptions): Tensor;
  /**
   * A model patch (LoRA): a model that shares every weight of this one except the tensors named
   * in `changed`, which it loads from `src` (names and shapes as the checkpoint's). Its `bytes`
   * and `dispose()` cover only what it loaded; it must not outlive this model (its forward
   * refuses once this one is disposed). Shared weights are used only as they are here (as linear
   * weights), so they may have had their source released after packing; the changed tensors
   * come from `src`, never from this model's packed copies.
   */
  withWeights(src: WeightSource, changed: ReadonlySet<string>, where?: string): SanaTransformer;
  dispose(): void;
}

interface Block {
  sst: Tensor; // (6, D)
  qkvW: Tensor; qkvB?: Tensor; // (3D, D) fused to_q|to_k|to_v
  o1W: Tensor; o1B: Tensor;
  q2W: Tensor; q2B: Tensor;
  kv2W: Tensor; kv2B: Tensor; // (2X, D) fused to_k|to_v
  o2W: Tensor; o2B: Tensor;
  invW: Tensor; invB: Tensor; // (2F, D) (1×1 conv as a linear)
  dwW: Tensor; dwB: Tensor; // (2F, 1, 3, 3)
  ptW: Tensor; // (D, F)
  /** qk_norm weights: (D) for attn1, (X) for attn2. */
  qk?: { q1: Tensor; k1: Tensor; q2: Tensor; k2: Tensor };
}

const SUPPORTED_DTYPES: readonly DType[] = ['f32', 'bf16', 'f16'];

/** What a patched model borrows from the model it patches (see `SanaTransformer.withWeights`). */
interface ShareFrom {
  /** The base model's tensors as forward uses them, by slot key (checkpoint names, `+`-joined
   *  for fused tensors, `@shape` for reshaped views). */
  slots: ReadonlyMap<string, Tensor>;
  /** Checkpoint tensors this model loads itself; every slot touching one of them is rebuilt. */
  changed: ReadonlySet<string>;
  baseDisposed: () => boolean;
}

/** Builds the model from any weight source (names/shapes validated first). */
export function buildSanaTransformer(cfg: SanaTransformerConfig, src: WeightSource, backend: Backend, dtype: DType, where = 'weights', share?: ShareFrom): SanaTransformer {
  if (!SUPPORTED_DTYPES.includes(dtype)) throw new Error(`Sana transformer: compute dtype ${dtype} is not one of ${SUPPORTED_DTYPES.join(', ')}`);
  validateTransformerTensors(cfg, src, where);
  const owned: Tensor[] = [];
  const slots = new Map<string, Tensor>();
  const keepT = (t: Tensor): Tensor => { owned.push(t); return t; };
  const ld = (name: string): Tensor => src.load(name, backend, dtype);
  // Every weight forward uses is a slot: built once here, or borrowed from the base model when
  // none of its checkpoint tensors changed (so a LoRA-patched model holds only what it merged).
  const slot = (key: string, names: readonly string[], make: () => Tensor): Tensor => {
    let t = slots.get(key);
    if (t) return t;
    const borrowed = share && !names.some((n) => share.changed.has(n)) ? share.slots.get(key) : undefined;
    t = borrowed ?? make();
    slots.set(key, t);
    return t;
  };
  const ldOne = (name: string): Tensor => slot(name, [name], () => keepT(ld(name)));
  // Loads then reshapes outside any scope: the loaded tensor and its view are both kept, so the
  // backend's packed-weight cache (attached to the view passed to `linear`) lives as long as the model.
  const ldAs = (name: string, shape: number[]): Tensor =>
    slot(`${name}@${shape.join('x')}`, [name], () => keepT(backend.reshape(ldOne(name), shape)));
  const ldCat = (names: string[]): Tensor => slot(names.join('+'), names, () => {
    const parts = names.map(ld);
    const cat = backend.concat(parts, 0);
    parts.forEach((p) => p.dispose());
    return keepT(cat);
  });
  const D = cfg.innerDim, F = cfg.ffnHidden, p = cfg.patchSize;
  try {
    const patchW = ldOne('patch_embed.proj.weight');
    const top = {
      patchW,
      // 1×1 patches are a per-pixel linear over channels: (D, C).
      patchLin: p === 1 ? ldAs('patch_embed.proj.weight', [D, cfg.inChannels]) : undefined,
      patchB: ldOne('patch_embed.proj.bias'),
      ...(() => {
        const [te, ge] = timeEmbedders(cfg) as [string, string | undefined];
        const mlp = (e: string): Mlp => ({
          w1: ldOne(`${e}.linear_1.weight`), b1: ldOne(`${e}.linear_1.bias`),
          w2: ldOne(`${e}.linear_2.weight`), b2: ldOne(`${e}.linear_2.bias`),
        });
        return { tMlp: mlp(te), gMlp: ge !== undefined ? mlp(ge) : undefined };
      })(),
      tlW: ldOne('time_embed.linear.weight'),
      tlB: ldOne('time_embed.linear.bias'),
      c1W: ldOne('caption_projection.linear_1.weight'),
      c1B: ldOne('caption_projection.linear_1.bias'),
      c2W: ldOne('caption_projection.linear_2.weight'),
      c2B: ldOne('caption_projection.linear_2.bias'),
      capNorm: ldOne('caption_norm.weight'),
      sstOut: ldOne('scale_shift_table'),
      projW: ldOne('proj_out.weight'),
      projB: ldOne('proj_out.bias'),
    };
    const blocks: Block[] = [];
    for (let i = 0; i < cfg.numLayers; i++) {
      const b = `transformer_blocks.${i}.`;
      blocks.push({
        sst: ldOne(`${b}scale_shift_table`),
        qkvW: ldCat([`${b}attn1.to_q.weight`, `${b}attn1.to_k.weight`, `${b}attn1.to_v.weight`]),
        qkvB: cfg.attentionBias ? ldCat([`${b}attn1.to_q.bias`, `${b}attn1.to_k.bias`, `${b}attn1.to_v.bias`]) : undefined,
        o1W: ldOne(`${b}attn1.to_out.0.weight`),
        o1B: ldOne(`${b}attn1.to_out.0.bias`),
        q2W: ldOne(`${b}attn2.to_q.weight`),
        q2B: ldOne(`${b}attn2.to_q.bias`),
        kv2W: ldCat([`${b}attn2.to_k.weight`, `${b}attn2.to_v.weight`]),
        kv2B: ldCat([`${b}attn2.to_k.bias`, `${b}attn2.to_v.bias`]),
        o2W: ldOne(`${b}attn2.to_out.0.weight`),
        o2B: ldOne(`${b}attn2.to_out.0.bias`),
        invW: ldAs(`${b}ff.conv_inverted.weight`, [2 * F, D]),
        invB: ldOne(`${b}ff.conv_inverted.bias`),
        dwW: ldOne(`${b}ff.conv_depth.weight`),
        dwB: ldOne(`${b}ff.conv_depth.bias`),
        ptW: ldAs(`${b}ff.conv_point.weight`, [D, F]),
        qk: cfg.qkNorm === null ? undefined : {
          q1: ldOne(`${b}attn1.norm_q.weight`), k1: ldOne(`${b}attn1.norm_k.weight`),
          q2: ldOne(`${b}attn2.norm_q.weight`), k2: ldOne(`${b}attn2.norm_k.weight`),
        },
      });
    }
    const bytes = owned.reduce((s, t) => s + t.nbytes, 0);
    let disposed = false;
    return {
      config: cfg,
      dtype,
      bytes,
      forward: (x, t, embeds, mask, opts = {}) => {
        if (disposed) throw new Error('Sana transformer: forward() after dispose()');
        if (share?.baseDisposed()) throw new Error('Sana transformer: forward() on a patched model whose base model was disposed');
        return runForward(backend, cfg, dtype, top, blocks, x, t, embeds, mask, opts);
      },
      withWeights: (patchSrc, changed, patchWhere = 'patched weights') => {
        if (disposed) throw new Error('Sana transformer: withWeights() after dispose()');
        const isGone = (): boolean => disposed || (share?.baseDisposed() ?? false);
        return buildSanaTransformer(cfg, patchSrc, backend, dtype, patchWhere, { slots, changed, baseDisposed: isGone });
      },
      dispose: () => {
        if (disposed) return;
        disposed = true;
        // Views first, then their storage.
        for (const t of [...owned].reverse()) if (!t.disposed) t.dispose();
      },
    };
  } catch (e) {
    for (const t of [...owned].reverse()) if (!t.disposed) t.dispose();
    throw e;
  }
}

/** linear_1 → SiLU → linear_2 (diffusers TimestepEmbedding). */
type Mlp = { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor };

type Top = {
  patchW: Tensor; patchLin?: Tensor; patchB: Tensor;
  tMlp: Mlp; gMlp?: Mlp; tlW: Tensor; tlB: Tensor;
  c1W: Tensor; c1B: Tensor; c2W: Tensor; c2B: Tensor; capNorm: Tensor;
  sstOut: Tensor; projW: Tensor; projB: Tensor;
};

function toDevice(backend: Backend, x: TensorInput, dtype: DType, what: string, rank: number): Tensor {
  if (isHost(x)) {
    const n = x.shape.reduce((a, b) => a * b, 1);
    if (x.shape.length !== rank || n !== x.data.length) throw new Error(`Sana transformer: ${what} host data of length ${x.data.length} does not fit shape ${JSON.stringify(x.shape)} (rank ${rank} expected)`);
    return backend.fromArray(x.data, x.shape, dtype);
  }
  if (x.shape.length !== rank) throw new Error(`Sana transformer: ${what} has shape ${JSON.stringify(x.shape)}, expected rank ${rank}`);
  const up = x.device === backend.name ? x : backend.upload(x);
  return up.dtype === dtype ? up : backend.cast(up, dtype);
}

function runForward(
  backend: Backend, cfg: SanaTransformerConfig, dtype: DType, top: Top, blocks: Block[],
  xIn: TensorInput, tIn: readonly number[], embedsIn: TensorInput, maskIn: TensorInput | Float32Array, opts: SanaForwardOptions,
): Tensor {
  const bk = backend;
  const D = cfg.innerDim, H = cfg.numHeads, d = cfg.headDim, Hc = cfg.numCrossHeads, dc = cfg.crossHeadDim;
  const F = cfg.ffnHidden, p = cfg.patchSize, C = cfg.outChannels;
  const [B, Cin, hh, ww] = (isHost(xIn) ? xIn.shape : xIn.shape) as [number, number, number, number];
  if (Cin !== cfg.inChannels) throw new Error(`Sana transformer: latent has ${Cin} channels, config in_channels is ${cfg.inChannels}`);
  if (hh % p !== 0 || ww % p !== 0) throw new Error(`Sana transformer: latent ${hh}x${ww} is not a multiple of patch_size ${p}`);
  const h = hh / p, w = ww / p, N = h * w;
  const t = tIn.length === 1 ? new Array<number>(B).fill(tIn[0]!) : [...tIn];
  if (t.length !== B) throw new Error(`Sana transformer: ${tIn.length} timesteps for a batch of ${B}`);
  const pagLayers = opts.pagLayers ?? new Set<number>();
  for (const l of pagLayers) {
    if (!Number.isInteger(l) || l < 0 || l >= cfg.numLayers) throw new Error(`Sana transformer: PAG layer ${l} is not a block index in 0..${cfg.numLayers - 1}`);
  }
  let ps = 0, pe = 0;
  if (pagLayers.size > 0) {
    if (!opts.pagSlice) throw new Error('Sana transformer: pagLayers given without pagSlice (the perturbed batch rows)');
    [ps, pe] = opts.pagSlice;
    if (!(Number.isInteger(ps) && Number.isInteger(pe) && 0 <= ps && ps < pe && pe <= B)) {
      throw new Error(`Sana transformer: pagSlice [${ps}, ${pe}) is not a non-empty row range of the batch of ${B}`);
    }
  }
  const cap = opts.capture;
  let guid: number[] | undefined;
  if (cfg.guidanceEmbeds) {
    const g = opts.guidance;
    if (!g || (g.length !== 1 && g.length !== B)) {
      throw new Error(`Sana transformer: this model embeds guidance (guidance_embeds = true, Sana-Sprint); pass opts.guidance with 1 or ${B} values (got ${g ? g.length : 'none'})`);
    }
    guid = g.length === 1 ? new Array<number>(B).fill(g[0]!) : [...g];
  } else if (opts.guidance !== undefined) {
    throw new Error('Sana transformer: opts.guidance given, but this model has no guidance embedding (guidance_embeds is not true)');
  }

  return bk.scope(() => {
    // --- inputs --------------------------------------------------------------------------------
    const x = toDevice(bk, xIn, dtype, 'latent x', 4); // (B, Cin, hh, ww)
    const y = toDevice(bk, embedsIn, dtype, 'text embeddings', 3); // (B, L, Cc)
    const [By, L, Cc] = y.shape as [number, number, number];
    if (By !== B) throw new Error(`Sana transformer: text embeddings have batch ${By}, latent batch is ${B}`);
    if (Cc !== cfg.captionChannels) throw new Error(`Sana transformer: text embeddings have width ${Cc}, config caption_channels is ${cfg.captionChannels}`);
    const m = maskIn instanceof Float32Array ? maskIn : isHost(maskIn) ? maskIn.data : maskIn.toFloat32();
    if (m.length !== B * L) throw new Error(`Sana transformer: attention mask has ${m.length} values, expected B·L = ${B}·${L}`);
    // (1 − m)·(−10000), rounded to the model dtype by fromArray like diffusers' `.to(dtype)`.
    const biasHost = new Float32Array(B * L);
    for (let i = 0; i < B * L; i++) biasHost[i] = (1 - m[i]!) * -10000;
    const bias = bk.fromArray(biasHost, [B, L], dtype); // (B, L), broadcast over heads and queries

    // --- patch embedding -------------------------------------------------------------------------
    let X: Tensor;
    if (p === 1) {
      const xt = bk.reshape(bk.permute(x, [0, 2, 3, 1]), [B, N, Cin]); // (B, N, Cin)
      X = bk.linear(xt, top.patchLin!, top.patchB); // (B, N, D)
    } else {
      const pe2 = bk.conv2d(x, top.patchW, top.patchB, { stride: p }); // (B, D, h, w)
      X = bk.permute(bk.reshape(pe2, [B, D, N]), [0, 2, 1]); // (B, N, D)
    }
    if (cfg.interpolationScale !== null) {
      const pos = bk.fromArray(sincosPosEmbed(D, h, w, cfg.sampleSize / p, cfg.interpolationScale), [1, N, D], 'f32');
      X = bk.add(X, pos); // f32 add, rounded to the model dtype (diffusers: (latent + pe).to(dtype))
    }
    cap?.('patch_embed', X);

    // --- timestep: adaLN-single (Sprint: plus the guidance embedding) -------------------------------
    const embedScalar = (vals: readonly number[], e: Mlp): Tensor => {
      const sin = bk.cast(bk.fromArray(timestepSinusoid(vals), [B, 256], 'f32'), dtype); // (B, 256)
      return bk.linear(bk.silu(bk.linear(sin, e.w1, e.b1)), e.w2, e.b2); // (B, D)
    };
    let temb = embedScalar(t, top.tMlp); // (B, D)
    if (guid) temb = bk.add(temb, embedScalar(guid, top.gMlp!)); // the sum is also embedded_timestep
    const tmod = bk.linear(bk.silu(temb), top.tlW, top.tlB); // (B, 6D)
    cap?.('time_embed.timestep', tmod);
    cap?.('time_embed.embedded_timestep', temb);
    const tmod3 = bk.reshape(tmod, [B, 6, D]);

    // --- caption ---------------------------------------------------------------------------------
    const Yp = bk.linear(bk.gelu_tanh(bk.linear(y, top.c1W, top.c1B)), top.c2W, top.c2B); // (B, L, D)
    cap?.('caption_projection', Yp);
    const Y = bk.rmsnorm(Yp, top.capNorm, 1e-5); // (B, L, D), × w (no 1 + w)
    cap?.('caption_norm', Y);

    // --- blocks ----------------------------------------------------------------------------------
    for (let i = 0; i < blocks.length; i++) {
      const blk = blocks[i]!;
      const pag = pagLayers.has(i);
      const prev = X;
      X = bk.scope(() => runBlock(bk, blk, prev, Y, bias, tmod3, { B, N, D, H, d, Hc, dc, F, h, w, L, dtype, pag, ps, pe, eps: cfg.normEps }));
      // Free the block input now rather than at the end of the forward (28 of them otherwise).
      prev.dispose();
      cap?.(`transformer_blocks.${i}`, X);
    }

    // --- output ----------------------------------------------------------------------------------
    const temb3 = bk.reshape(temb, [B, 1, D]);
    const ss = bk.add(bk.concat([temb3, temb3], 1), top.sstOut); // (B, 2, D): [shift, scale]
    const shift = bk.slice(ss, 1, 0, 1), scale = bk.slice(ss, 1, 1, 2); // (B, 1, D)
    const Xn = bk.modulate(bk.layernorm(X, cfg.normEps), shift, scale); // (B, N, D)
    cap?.('norm_out', Xn);
    const O = bk.linear(Xn, top.projW, top.projB); // (B, N, p·p·C)
    cap?.('proj_out', O);
    let v: Tensor;
    if (p === 1) {
      v = bk.permute(bk.reshape(O, [B, h, w, C]), [0, 3, 1, 2]); // (B, C, h, w)
    } else {
      const o6 = bk.reshape(O, [B, h, w, p, p, C]);
      v = bk.reshape(bk.permute(o6, [0, 5, 1, 3, 2, 4]), [B, C, h * p, w * p]); // (B, C, h·p, w·p)
    }
    return v.dtype === 'f32' ? v : bk.cast(v, 'f32');
  });
}

interface Dims {
  B: number; N: number; D: number; H: number; d: number; Hc: number; dc: number; F: number;
  h: number; w: number; L: number; dtype: DType; pag: boolean; ps: number; pe: number; eps: number;
}

function runBlock(bk: Backend, blk: Block, X: Tensor, Y: Tensor, bias: Tensor, tmod3: Tensor, g: Dims): Tensor {
  const { B, N, D, H, d, Hc, dc, F, h, w, L } = g;
  const mod = bk.add(tmod3, blk.sst); // (B, 6, D)
  const chunk = (k: number): Tensor => bk.slice(mod, 1, k, k + 1); // (B, 1, D)
  const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = [0, 1, 2, 3, 4, 5].map(chunk) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];

  // 1. self-attention: ReLU linear attention (identity attention on the PAG slice)
  const A = bk.modulate(bk.layernorm(X, g.eps), shiftMsa, scaleMsa); // (B, N, D)
  let qkv = bk.linear(A, blk.qkvW, blk.qkvB); // (B, N, 3D)
  if (blk.qk) {
    // Before the head split and the ReLU kernel, over all D channels of q and of k.
    qkv = bk.concat([
      bk.rmsnorm(bk.slice(qkv, 2, 0, D), blk.qk.q1, 1e-5),
      bk.rmsnorm(bk.slice(qkv, 2, D, 2 * D), blk.qk.k1, 1e-5),
      bk.slice(qkv, 2, 2 * D, 3 * D),
    ], 2); // (B, N, 3D)
  }
  const linAttn = (seg: Tensor): Tensor => {
    const b = seg.shape[0]!;
    const s5 = bk.permute(bk.reshape(seg, [b, N, 3, H, d]), [2, 0, 3, 1, 4]); // (3, b, H, N, d)
    const part = (k: number): Tensor => bk.reshape(bk.slice(s5, 0, k, k + 1), [b, H, N, d]);
    const o = bk.linearAttention(part(0), part(1), part(2), 1e-15, true); // (b, H, N, d), f32 inside
    return bk.reshape(bk.permute(o, [0, 2, 1, 3]), [b, N, D]); // (b, N, D)
  };
  let att: Tensor;
  if (!g.pag) {
    att = linAttn(qkv);
  } else {
    const parts: Tensor[] = [];
    if (g.ps > 0) parts.push(linAttn(bk.slice(qkv, 0, 0, g.ps)));
    // identity attention: the value projection alone, to_out applied below like the normal path
    parts.push(bk.slice(bk.slice(qkv, 0, g.ps, g.pe), 2, 2 * D, 3 * D)); // (pe − ps, N, D)
    if (g.pe < B) parts.push(linAttn(bk.slice(qkv, 0, g.pe, B)));
    att = parts.length === 1 ? parts[0]! : bk.concat(parts, 0); // (B, N, D)
  }
  let a1 = bk.linear(att, blk.o1W, blk.o1B); // (B, N, D)
  if (g.dtype === 'f16') a1 = bk.clamp(a1, -65504, 65504);
  X = bk.addGated(X, gateMsa, a1);

  // 2. cross-attention: no norm, no modulation, no gate
  let qLin = bk.linear(X, blk.q2W, blk.q2B); // (B, N, X)
  let kvLin = bk.linear(Y, blk.kv2W, blk.kv2B); // (B, L, 2X)
  if (blk.qk) {
    const Xw = Hc * dc;
    qLin = bk.rmsnorm(qLin, blk.qk.q2, 1e-5);
    kvLin = bk.concat([bk.rmsnorm(bk.slice(kvLin, 2, 0, Xw), blk.qk.k2, 1e-5), bk.slice(kvLin, 2, Xw, 2 * Xw)], 2); // (B, L, 2X)
  }
  const q = bk.permute(bk.reshape(qLin, [B, N, Hc, dc]), [0, 2, 1, 3]); // (B, Hc, N, dc)
  const kv = bk.permute(bk.reshape(kvLin, [B, L, 2, Hc, dc]), [2, 0, 3, 1, 4]); // (2, B, Hc, L, dc)
  const k = bk.reshape(bk.slice(kv, 0, 0, 1), [B, Hc, L, dc]);
  const v = bk.reshape(bk.slice(kv, 0, 1, 2), [B, Hc, L, dc]);
  const o2 = bk.attention(q, k, v, { scale: 1 / Math.sqrt(dc), bias }); // (B, Hc, N, dc)
  const o2t = bk.reshape(bk.permute(o2, [0, 2, 1, 3]), [B, N, Hc * dc]); // (B, N, Hc·dc)
  X = bk.add(X, bk.linear(o2t, blk.o2W, blk.o2B));

  // 3. Mix-FFN (GLUMBConv): 1×1 convs as linears on tokens, the depthwise 3×3 on the (h, w) grid
  const Fi = bk.modulate(bk.layernorm(X, g.eps), shiftMlp, scaleMlp); // (B, N, D)
  const u = bk.silu(bk.linear(Fi, blk.invW, blk.invB)); // (B, N, 2F)
  const uImg = bk.reshape(bk.permute(u, [0, 2, 1]), [B, 2 * F, h, w]); // (B, 2F, h, w)
  const dw = bk.conv2d(uImg, blk.dwW, blk.dwB, { padding: 1, groups: 2 * F }); // (B, 2F, h, w)
  const glu = bk.gluMul(bk.slice(dw, 1, 0, F), bk.slice(dw, 1, F, 2 * F), 'silu'); // (B, F, h, w): value · silu(gate)
  const gTok = bk.permute(bk.reshape(glu, [B, F, N]), [0, 2, 1]); // (B, N, F)
  const Fo = bk.linear(gTok, blk.ptW); // (B, N, D)
  return bk.addGated(X, gateMlp, Fo);
}

// ------------------------------------------------------------------------------------------------
// Loading from a diffusers `transformer/` folder

export interface LoadOptions {
  /** The addon (or anything with its `openSafetensors`); imported from native/index.ts when absent. */
  native?: Pick<NativeModule, 'openSafetensors'>;
  /** diffusers weight variant to open (`bf16`, `fp16`); default: full precision first. */
  variant?: string;
}

export function readTransformerConfig(dir: string): SanaTransformerConfig {
  return parseSanaTransformerConfig(readJsonConfig(dir), join(dir, 'config.json'));
}

/**
 * Loads SanaTransformer2DModel from a diffusers `transformer/` folder (config.json + one or sharded
 * safetensors, f32/f16/bf16 stored), converting weights to the compute `dtype`.
 */
export async function loadSanaTransformer(dir: string, backend: Backend, dtype: DType, opts: LoadOptions = {}): Promise<SanaTransformer> {
  const cfg = readTransformerConfig(dir);
  const native = opts.native ?? (await importNative());
  const ckpt = native.openSafetensors(pickSafetensors(dir, { variant: opts.variant, stems: ['diffusion_pytorch_model', 'model'] }));
  try {
    return buildSanaTransformer(cfg, ckpt, backend, dtype, ckpt.files.join(', '));
  } finally {
    ckpt.close();
  }
}

/** The addon's module, loaded on first use so that this file (config parsing, shape checks,
 *  guidance math) stays importable where the addon is not built. */
export async function importNative(): Promise<Pick<NativeModule, 'openSafetensors'>> {
  const spec = '../../native/index.ts';
  return (await import(spec)) as Pick<NativeModule, 'openSafetensors'>;
}
