// The Sana transformer's tensor layout (diffusers SanaTransformer2DModel state_dict; no
// positional-embedding buffer is stored), as one table per config: the shape check, the loader
// and the tiny-model generator all read it.
import { checkLayout, conv, layoutShapes, linear, ONES, tensor, unexpectedLine, type Init, type Layout } from '../layout.ts';
import type { WeightSource } from '../weight_set.ts';
import type { SanaTransformerConfig } from './config.ts';

/** The MLPs of the time embedding: AdaLayerNormSingle nests its one under `emb.`; Sprint's
 *  SanaCombinedTimestepGuidanceEmbeddings holds a timestep and a guidance embedder directly. */
export function timeEmbedders(cfg: SanaTransformerConfig): string[] {
  return cfg.guidanceEmbeds
    ? ['time_embed.timestep_embedder', 'time_embed.guidance_embedder']
    : ['time_embed.emb.timestep_embedder'];
}

/** Every tensor a checkpoint of this config holds, in the order the shipped tiny checkpoints
 *  store them (Sprint: the guidance embedder after `time_embed.linear`). */
export function transformerLayout(cfg: SanaTransformerConfig): Layout {
  const D = cfg.innerDim, F = cfg.ffnHidden, p = cfg.patchSize, X = cfg.numCrossHeads * cfg.crossHeadDim;
  const t: Layout = [];
  const table: Init = { kind: 'normal', std: D ** -0.5 };
  // diffusers initialises q/k norms to 1; the generator draws them near 1 so that a wrong norm
  // wiring shows in the output.
  const qkNorm: Init = { kind: 'normal', mean: 1, std: 0.05 };
  const [te, ge] = timeEmbedders(cfg) as [string, string | undefined];
  const mlp = (e: string): void => {
    linear(t, `${e}.linear_1`, D, 256, true);
    linear(t, `${e}.linear_2`, D, D, true);
  };
  conv(t, 'patch_embed.proj', D, cfg.inChannels, p, true);
  mlp(te);
  linear(t, 'time_embed.linear', 6 * D, D, true);
  if (ge !== undefined) mlp(ge);
  linear(t, 'caption_projection.linear_1', D, cfg.captionChannels, true);
  linear(t, 'caption_projection.linear_2', D, D, true);
  tensor(t, 'caption_norm.weight', [D], ONES);
  for (let i = 0; i < cfg.numLayers; i++) {
    const b = `transformer_blocks.${i}`;
    tensor(t, `${b}.scale_shift_table`, [6, D], table);
    for (const n of ['to_q', 'to_k', 'to_v']) linear(t, `${b}.attn1.${n}`, D, D, cfg.attentionBias);
    linear(t, `${b}.attn1.to_out.0`, D, D, true);
    // kv_heads = heads in both attentions, so k has q's width
    if (cfg.qkNorm !== null) for (const n of ['norm_q', 'norm_k']) tensor(t, `${b}.attn1.${n}.weight`, [D], qkNorm);
    linear(t, `${b}.attn2.to_q`, X, D, true);
    linear(t, `${b}.attn2.to_k`, X, cfg.crossAttentionDim, true);
    linear(t, `${b}.attn2.to_v`, X, cfg.crossAttentionDim, true);
    linear(t, `${b}.attn2.to_out.0`, D, X, true);
    if (cfg.qkNorm !== null) for (const n of ['norm_q', 'norm_k']) tensor(t, `${b}.attn2.${n}.weight`, [X], qkNorm);
    conv(t, `${b}.ff.conv_inverted`, 2 * F, D, 1, true);
    conv(t, `${b}.ff.conv_depth`, 2 * F, 2 * F, 3, true, 2 * F);
    conv(t, `${b}.ff.conv_point`, D, F, 1, false);
  }
  tensor(t, 'scale_shift_table', [2, D], table);
  linear(t, 'proj_out', p * p * cfg.outChannels, D, true);
  return t;
}

/** Every tensor a checkpoint of this config must hold, with its shape (diffusers names). */
export function expectedTransformerTensors(cfg: SanaTransformerConfig): Map<string, number[]> {
  return layoutShapes(transformerLayout(cfg));
}

/**
 * Checks names and shapes of a checkpoint against the config before anything is allocated:
 * missing tensors, wrong shapes, and unknown tensors (e.g. SANA-1.5 q/k norms) each fail with the
 * file and tensor named.
 */
export function validateTransformerTensors(cfg: SanaTransformerConfig, src: Pick<WeightSource, 'keys' | 'entry'>, where: string, layout = transformerLayout(cfg)): void {
  checkLayout(layout, src, {
    what: 'Sana transformer',
    where,
    storedDtypes: ['F32', 'F16', 'BF16'],
    extra: (extra) => {
      const norms = extra.filter((k) => /\.norm_[qk]\./.test(k));
      if (norms.length > 0) return [`q/k norm tensors present (${norms.slice(0, 2).join(', ')}…): a SANA-1.5 checkpoint, but config.json has no qk_norm "rms_norm_across_heads"`];
      if (extra.some((k) => k.startsWith('time_embed.guidance_embedder.'))) return ['time_embed.guidance_embedder.* present: a Sana-Sprint checkpoint, but config.json has no guidance_embeds = true'];
      return unexpectedLine(extra, 'tensor');
    },
  });
}
