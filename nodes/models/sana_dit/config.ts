// SanaTransformer2DModel's config.json (Sana 1.0, SANA 1.5 and Sana-Sprint through their `qk_norm`
// / `guidance_embeds` options), parsed into the numbers the layout and the forward pass use.
import { join } from 'node:path';
import { readJsonConfig } from '../weights.ts';

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


export function readTransformerConfig(dir: string): SanaTransformerConfig {
  return parseSanaTransformerConfig(readJsonConfig(dir), join(dir, 'config.json'));
}
