// FLOP and byte counts of one Sana transformer step, and the resulting floor on a GPU.
// Run: `node --import tsx native/cuda/flops.ts` (prints the tables of BENCHMARKS.md "CUDA: on paper").
//
// Conventions
// - One step = one transformer forward on the CFG batch (B = 2: conditional + unconditional).
// - A GEMM of (M x K) by (K x N) costs 2·M·N·K FLOPs. Element-wise ops are counted at a few FLOPs
//   per element (exp/tanh as 1): they are <1% of the total and only matter for the byte count.
// - Bytes assume no fusion: every op reads its inputs and writes its output once, weights are
//   read once per op per step (bf16), activations are bf16 except the f32 linear attention.
//   Flash-style attention never writes the (N x L) score matrix.
// - The model follows shared/spec/sana.md §2 (diffusers SanaTransformer2DModel).

export interface SanaDims {
  /** model width D = heads · headDim */
  D: number;
  layers: number;
  heads: number;
  headDim: number;
  crossHeads: number;
  crossHeadDim: number;
  captionChannels: number;
  inChannels: number;
  outChannels: number;
  /** FFN hidden F = int(mlp_ratio · D); conv_inverted is D -> 2F */
  F: number;
}

/** Reads the dims from a diffusers `transformer/config.json` object. */
export function sanaDimsFromConfig(cfg: Record<string, unknown>): SanaDims {
  const num = (k: string): number => {
    const v = cfg[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`sana config: "${k}" is missing or not a number`);
    return v;
  };
  if (num('patch_size') !== 1) throw new Error('sana config: only patch_size 1 is modelled');
  const heads = num('num_attention_heads');
  const headDim = num('attention_head_dim');
  const D = heads * headDim;
  return {
    D,
    layers: num('num_layers'),
    heads,
    headDim,
    crossHeads: num('num_cross_attention_heads'),
    crossHeadDim: num('cross_attention_head_dim'),
    captionChannels: num('caption_channels'),
    inChannels: num('in_channels'),
    outChannels: num('out_channels'),
    F: Math.trunc(num('mlp_ratio') * D),
  };
}

/** The published configurations of shared/spec/sana.md §2.1. */
export const SANA_600M: SanaDims = {
  D: 1152,
  layers: 28,
  heads: 36,
  headDim: 32,
  crossHeads: 16,
  crossHeadDim: 72,
  captionChannels: 2304,
  inChannels: 32,
  outChannels: 32,
  F: 2880,
};
export const SANA_1600M: SanaDims = {
  D: 2240,
  layers: 20,
  heads: 70,
  headDim: 32,
  crossHeads: 20,
  crossHeadDim: 112,
  captionChannels: 2304,
  inChannels: 32,
  outChannels: 32,
  F: 5600,
};

/** Parameter count of the diffusers transformer (checked against spec Appendix B in the tests). */
export function sanaParamCount(d: SanaDims): number {
  const { D, F } = d;
  const C = d.crossHeads * d.crossHeadDim;
  const block =
    4 * D * D +
    D + // attn1: q, k, v (no bias), out (+bias)
    (D * C + C) * 3 +
    (C * D + D) + // attn2: q, k, v (+bias), out (+bias)
    (D * 2 * F + 2 * F) +
    (2 * F * 9 + 2 * F) +
    F * D + // ff: inverted, depthwise, point
    6 * D; // scale_shift_table
  const top =
    d.inChannels * D +
    D + // patch_embed 1x1 conv
    (d.captionChannels * D + D) +
    (D * D + D) +
    D + // caption_projection, caption_norm
    (256 * D + D) +
    (D * D + D) +
    (D * 6 * D + 6 * D) + // time_embed
    2 * D + // scale_shift_table
    D * d.outChannels +
    d.outChannels; // proj_out
  return d.layers * block + top;
}

export type OpKind = 'gemm' | 'attention' | 'conv' | 'elementwise';
export interface OpCost {
  name: string;
  kind: OpKind;
  /** how many times per step (layers for per-block ops) */
  count: number;
  /** per occurrence */
  flops: number;
  bytes: number;
}

export interface StepOptions {
  /** image side in pixels; latent side = image / 32 */
  image: number;
  textTokens?: number;
  batch?: number;
  /** bytes per activation element (bf16 = 2) */
  actBytes?: number;
  /** bytes per weight element (bf16 = 2) */
  weightBytes?: number;
}

/** Every op of one transformer step with its FLOPs and bytes (see the conventions above). */
export function sanaStepCosts(d: SanaDims, opts: StepOptions): OpCost[] {
  const side = opts.image / 32;
  if (!Number.isInteger(side) || side <= 0) throw new Error(`sana step: image ${opts.image} is not a multiple of 32`);
  const B = opts.batch ?? 2,
    L = opts.textTokens ?? 300,
    a = opts.actBytes ?? 2,
    w = opts.weightBytes ?? 2;
  const N = side * side; // image tokens per sample
  const { D, F } = d;
  const C = d.crossHeads * d.crossHeadDim;
  const T = B * N; // image tokens in the batch
  const ops: OpCost[] = [];
  const add = (name: string, kind: OpKind, count: number, flops: number, bytes: number): void => {
    ops.push({ name, kind, count, flops, bytes });
  };
  // x (rows, K) · Wᵀ (K, Nout) [+ bias]
  const linear = (name: string, count: number, rows: number, K: number, Nout: number, bias: boolean): void =>
    add(name, 'gemm', count, 2 * rows * K * Nout + (bias ? rows * Nout : 0), (rows * K + rows * Nout) * a + (K * Nout + (bias ? Nout : 0)) * w);
  const ew = (name: string, count: number, elems: number, flopsPerElem: number, tensorsRead: number): void =>
    add(name, 'elementwise', count, elems * flopsPerElem, elems * (tensorsRead + 1) * a);

  // --- once per step ---
  linear('patch_embed (1x1 conv 32->D)', 1, T, d.inChannels, D, true);
  linear('time_embed linear_1 (256->D)', 1, B, 256, D, true);
  linear('time_embed D->D', 1, B, D, D, true);
  linear('time_embed D->6D', 1, B, D, 6 * D, true);
  linear('caption_projection 2304->D', 1, B * L, d.captionChannels, D, true);
  ew('caption GELU(tanh)', 1, B * L * D, 8, 1);
  linear('caption_projection D->D', 1, B * L, D, D, true);
  ew('caption RMSNorm', 1, B * L * D, 4, 1);

  // --- per block ---
  const nl = d.layers;
  ew('norm1 LayerNorm', nl, T * D, 7, 1);
  ew('modulate (msa)', nl, T * D, 2, 1);
  linear('attn1 to_q/to_k/to_v (3 GEMMs)', nl, T, D, 3 * D, false);
  // ReLU linear attention in f32: S = Σ v kᵀ (33x32 per head with the pad row), o = S q / z·q
  add('attn1 ReLU linear attention (f32)', 'attention', nl, 2 * T * D * (d.headDim + 1) * 2 + 3 * T * D, 4 * T * D * 4);
  linear('attn1 to_out', nl, T, D, D, true);
  ew('gated residual (msa)', nl, T * D, 2, 2);
  linear('attn2 to_q', nl, T, D, C, true);
  linear('attn2 to_k/to_v (300 text tokens)', nl, B * L, D, 2 * C, true);
  // scores q·k (N x L per head) + P·V, plus the online softmax (~5 flops per score)
  add('attn2 softmax attention (flash)', 'attention', nl, 4 * T * L * C + 5 * T * L * d.crossHeads, (2 * T * C + 2 * B * L * C) * a + B * L * 4);
  linear('attn2 to_out', nl, T, C, D, true);
  ew('residual add (cross)', nl, T * D, 1, 2);
  ew('norm2 LayerNorm', nl, T * D, 7, 1);
  ew('modulate (mlp)', nl, T * D, 2, 1);
  linear('ff conv_inverted 1x1 (D->2F)', nl, T, D, 2 * F, true);
  ew('ff SiLU', nl, T * 2 * F, 4, 1);
  add('ff conv_depth 3x3 depthwise (2F)', 'conv', nl, 2 * T * 2 * F * 9 + T * 2 * F, 2 * T * 2 * F * a + 2 * F * 10 * w);
  ew('ff GLU a·SiLU(g)', nl, T * F, 5, 2);
  linear('ff conv_point 1x1 (F->D)', nl, T, F, D, false);
  ew('gated residual (mlp)', nl, T * D, 2, 2);

  // --- output ---
  ew('norm_out LayerNorm + modulate', 1, T * D, 9, 1);
  linear('proj_out D->32', 1, T, D, d.outChannels, true);
  return ops;
}

export interface StepSummary {
  flops: number;
  gemmFlops: number;
  attentionFlops: number;
  bytes: number;
  weightBytes: number;
}

export function summarize(ops: readonly OpCost[], d: SanaDims, weightBytes = 2): StepSummary {
  let flops = 0,
    gemm = 0,
    att = 0,
    bytes = 0;
  for (const o of ops) {
    flops += o.flops * o.count;
    bytes += o.bytes * o.count;
    if (o.kind === 'gemm' || o.kind === 'conv') gemm += o.flops * o.count;
    if (o.kind === 'attention') att += o.flops * o.count;
  }
  return { flops, gemmFlops: gemm, attentionFlops: att, bytes, weightBytes: sanaParamCount(d) * weightBytes };
}

export interface GpuPeak {
  name: string;
  flops: number;
  bytesPerS: number;
}
/** Dense bf16 tensor-core peak and HBM3 bandwidth of an H100 SXM (datasheet). */
export const H100: GpuPeak = { name: 'H100 SXM', flops: 989e12, bytesPerS: 3.35e12 };

/** A100 SXM 80 GB (the GPU of the published Sana latency): 312 TFLOP/s bf16, 2.039 TB/s. */
export const A100: GpuPeak = { name: 'A100 SXM', flops: 312e12, bytesPerS: 2.039e12 };

/** Roofline floor: the step cannot be faster than its compute or its memory traffic alone. */
export function floorSeconds(s: StepSummary, gpu: GpuPeak): { compute: number; memory: number; floor: number } {
  const compute = s.flops / gpu.flops,
    memory = s.bytes / gpu.bytesPerS;
  return { compute, memory, floor: Math.max(compute, memory) };
}

/** Unfused execution: each op is bound by its own compute or traffic, and the ops run one after another. */
export function perOpFloorSeconds(ops: readonly OpCost[], gpu: GpuPeak): number {
  let t = 0;
  for (const o of ops) t += o.count * Math.max(o.flops / gpu.flops, o.bytes / gpu.bytesPerS);
  return t;
}

function fmt(n: number, unit: string): string {
  const units: Array<[number, string]> = [
    [1e15, 'P'],
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [v, p] of units) if (Math.abs(n) >= v) return `${(n / v).toFixed(2)} ${p}${unit}`;
  return `${n.toFixed(0)} ${unit}`;
}

/** The markdown tables of BENCHMARKS.md. */
export function report(): string {
  const lines: string[] = [];
  lines.push(
    '| model | image | tokens N | params | FLOPs/step | of which GEMM+conv | attention | bytes/step (unfused) | H100 compute floor | H100 memory floor | per-op roofline (unfused) | ×20 steps |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const [name, d] of [
    ['Sana-600M', SANA_600M],
    ['Sana-1600M', SANA_1600M],
  ] as const) {
    for (const image of [1024, 4096]) {
      const ops = sanaStepCosts(d, { image });
      const s = summarize(ops, d);
      const f = floorSeconds(s, H100);
      const perOp = perOpFloorSeconds(ops, H100);
      const N = (image / 32) ** 2;
      lines.push(
        `| ${name} | ${image}² | ${N} | ${(sanaParamCount(d) / 1e6).toFixed(1)} M | ${fmt(s.flops, 'FLOP')} | ${fmt(s.gemmFlops, 'FLOP')} | ${fmt(s.attentionFlops, 'FLOP')} | ${fmt(s.bytes, 'B')} | ${(f.compute * 1e3).toFixed(2)} ms | ${(f.memory * 1e3).toFixed(2)} ms | ${(perOp * 1e3).toFixed(2)} ms | ${(perOp * 20 * 1e3).toFixed(0)} ms |`,
      );
    }
  }
  lines.push('');
  lines.push('The same unfused per-op roofline on an A100 (312 TFLOP/s bf16, 2.04 TB/s), the GPU of the published latency:');
  lines.push('');
  lines.push('| model | image | per step | ×20 steps |');
  lines.push('|---|---|---|---|');
  for (const [name, d] of [
    ['Sana-600M', SANA_600M],
    ['Sana-1600M', SANA_1600M],
  ] as const) {
    for (const image of [1024, 4096]) {
      const t = perOpFloorSeconds(sanaStepCosts(d, { image }), A100);
      lines.push(`| ${name} | ${image}² | ${(t * 1e3).toFixed(2)} ms | ${(t * 20 * 1e3).toFixed(0)} ms |`);
    }
  }
  lines.push('');
  lines.push('Per-op breakdown, Sana-600M at 1024² (one step, CFG batch 2; count = occurrences per step):');
  lines.push('');
  lines.push('| op | count | FLOPs (all) | bytes (all) | arithmetic intensity |');
  lines.push('|---|---|---|---|---|');
  for (const o of sanaStepCosts(SANA_600M, { image: 1024 })) {
    lines.push(`| ${o.name} | ${o.count} | ${fmt(o.flops * o.count, 'FLOP')} | ${fmt(o.bytes * o.count, 'B')} | ${(o.flops / o.bytes).toFixed(1)} |`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(report() + '\n');
}
