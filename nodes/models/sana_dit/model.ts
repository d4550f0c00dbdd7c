// SanaTransformer2DModel's forward pass on the Backend interface (shared/spec/sana.md §2, §3), with the PAG
// "identity attention" patch. Module paths equal the diffusers checkpoint keys, so loading is a
// lookup in the model's WeightSet. All tensor math goes through `Backend`; only the timestep
// sinusoid and the 2K/4K sin-cos table are computed on the host (embeddings.ts).
//
// Letters: B batch, C latent channels, h·w latent grid, N = h·w tokens, D model width,
// H self-attention heads of d = D/H, Hc·dc cross-attention heads, L text tokens, F FFN hidden.
import type { Backend, DType, Tensor } from '../../../native/api.ts';
import { isHost, type TensorInput } from '../tensor_input.ts';
import { WeightSet, type WeightSource } from '../weight_set.ts';
import type { SanaTransformerConfig } from './config.ts';
import { sincosPosEmbed, timestepSinusoid } from './embeddings.ts';
import { timeEmbedders, transformerLayout, validateTransformerTensors } from './layout.ts';

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

/**
 * The text side of a forward, computed once per prompt: the attention bias from the mask and
 * every block's cross-attention k|v (caption projection → norm → to_k|to_v, q/k-normed). It
 * depends on the text alone, never on x or t, so a sampler prepares it once and runs each step
 * on it (the k|v GEMMs are 14% of a 512² Sana-600M CFG forward's FLOPs). Bound to the model
 * that prepared it (a LoRA-patched model has other to_k/to_v weights).
 */
export interface PreparedText {
  /** Batch rows and text tokens it was prepared for. */
  readonly rows: number;
  readonly tokens: number;
  /** Bytes it holds on the backend. */
  readonly bytes: number;
  dispose(): void;
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
  /** embeds (B, L, caption_channels) and mask (B, L) → the text side of every later `step`.
   *  `capture` sees caption_projection and caption_norm here. The caller disposes it. */
  prepareText(embeds: TensorInput, mask: TensorInput | Float32Array, opts?: Pick<SanaForwardOptions, 'capture'>): PreparedText;
  /** `forward` on prepared text: x (B, C, h, w) with B = text.rows → velocity (B, C, h, w) f32. */
  step(x: TensorInput, t: readonly number[], text: PreparedText, opts?: SanaForwardOptions): Tensor;
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
  /** The base model's weight slots (WeightSet.slots). */
  slots: ReadonlyMap<string, Tensor>;
  /** Checkpoint tensors this model loads itself; every slot touching one of them is rebuilt. */
  changed: ReadonlySet<string>;
  baseDisposed: () => boolean;
}

/** Builds the model from any weight source (names/shapes validated first). */
export function buildSanaTransformer(cfg: SanaTransformerConfig, src: WeightSource, backend: Backend, dtype: DType, where = 'weights', share?: ShareFrom): SanaTransformer {
  if (!SUPPORTED_DTYPES.includes(dtype)) throw new Error(`Sana transformer: compute dtype ${dtype} is not one of ${SUPPORTED_DTYPES.join(', ')}`);
  const layout = transformerLayout(cfg);
  validateTransformerTensors(cfg, src, where, layout);
  // A LoRA-patched model borrows every slot none of whose checkpoint tensors changed, so it holds
  // only what it merged.
  const ws = new WeightSet(src, backend, dtype, layout, share && { slots: share.slots, changed: share.changed });
  const D = cfg.innerDim, F = cfg.ffnHidden, p = cfg.patchSize;
  return ws.build((w) => {
    const [te, ge] = timeEmbedders(cfg) as [string, string | undefined];
    const mlp = (e: string): Mlp => ({
      w1: w.get(`${e}.linear_1.weight`), b1: w.bias(`${e}.linear_1.bias`),
      w2: w.get(`${e}.linear_2.weight`), b2: w.bias(`${e}.linear_2.bias`),
    });
    const top: Top = {
      patchW: w.get('patch_embed.proj.weight'),
      // 1×1 patches are a per-pixel linear over channels: (D, C).
      patchLin: p === 1 ? w.as('patch_embed.proj.weight', [D, cfg.inChannels]) : undefined,
      patchB: w.bias('patch_embed.proj.bias'),
      tMlp: mlp(te),
      gMlp: ge !== undefined ? mlp(ge) : undefined,
      tlW: w.get('time_embed.linear.weight'),
      tlB: w.bias('time_embed.linear.bias'),
      c1W: w.get('caption_projection.linear_1.weight'),
      c1B: w.bias('caption_projection.linear_1.bias'),
      c2W: w.get('caption_projection.linear_2.weight'),
      c2B: w.bias('caption_projection.linear_2.bias'),
      capNorm: w.get('caption_norm.weight'),
      sstOut: w.get('scale_shift_table'),
      projW: w.get('proj_out.weight'),
      projB: w.bias('proj_out.bias'),
    };
    const blocks: Block[] = [];
    for (let i = 0; i < cfg.numLayers; i++) {
      const b = `transformer_blocks.${i}.`;
      blocks.push({
        sst: w.get(`${b}scale_shift_table`),
        qkvW: w.cat([`${b}attn1.to_q.weight`, `${b}attn1.to_k.weight`, `${b}attn1.to_v.weight`]),
        qkvB: cfg.attentionBias ? w.cat([`${b}attn1.to_q.bias`, `${b}attn1.to_k.bias`, `${b}attn1.to_v.bias`]) : undefined,
        o1W: w.get(`${b}attn1.to_out.0.weight`),
        o1B: w.bias(`${b}attn1.to_out.0.bias`),
        q2W: w.get(`${b}attn2.to_q.weight`),
        q2B: w.bias(`${b}attn2.to_q.bias`),
        kv2W: w.cat([`${b}attn2.to_k.weight`, `${b}attn2.to_v.weight`]),
        kv2B: w.cat([`${b}attn2.to_k.bias`, `${b}attn2.to_v.bias`]),
        o2W: w.get(`${b}attn2.to_out.0.weight`),
        o2B: w.bias(`${b}attn2.to_out.0.bias`),
        invW: w.reshaped(`${b}ff.conv_inverted.weight`, [2 * F, D]),
        invB: w.bias(`${b}ff.conv_inverted.bias`),
        dwW: w.get(`${b}ff.conv_depth.weight`),
        dwB: w.bias(`${b}ff.conv_depth.bias`),
        ptW: w.reshaped(`${b}ff.conv_point.weight`, [D, F]),
        qk: cfg.qkNorm === null ? undefined : {
          q1: w.get(`${b}attn1.norm_q.weight`), k1: w.get(`${b}attn1.norm_k.weight`),
          q2: w.get(`${b}attn2.norm_q.weight`), k2: w.get(`${b}attn2.norm_k.weight`),
        },
      });
    }
    const bytes = w.bytes;
    let disposed = false;
    const owner = {};
    const usable = (what: string): void => {
      if (disposed) throw new Error(`Sana transformer: ${what}() after dispose()`);
      if (share?.baseDisposed()) throw new Error(`Sana transformer: ${what}() on a patched model whose base model was disposed`);
    };
    // After a block's first run its linears are packed (CPU): the originals are freed, so the model
    // keeps one copy of each instead of two, and the next block's packed copies reuse the freed
    // blocks (fresh pages fault at ~0.35 GB/s on these VMs). The 1×1 conv weights are loaded
    // reshaped into linears (WeightSet.reshaped: not views) so they go too.
    const released = new Set<number>();
    let kvReleased = false;
    const afterBlock = (i: number): void => {
      if (released.has(i)) return;
      released.add(i);
      const b = blocks[i]!;
      for (const t of [b.qkvW, b.o1W, b.q2W, b.o2W, b.invW, b.ptW]) backend.releasePackedSource(t);
    };
    const prepare = (embeds: TensorInput, mask: TensorInput | Float32Array, capture: SanaForwardOptions['capture']): Prepared => {
      const p = prepareCaption(backend, cfg, dtype, top, blocks, owner, embeds, mask, capture);
      if (!kvReleased) {
        kvReleased = true;
        for (const b of blocks) backend.releasePackedSource(b.kv2W);
      }
      return p;
    };
    const step = (x: TensorInput, t: readonly number[], text: PreparedText, opts: SanaForwardOptions): Tensor => {
      if (!(text instanceof Prepared) || text.owner !== owner) throw new Error('Sana transformer: step() with text prepared by another model (prepareText of this model is needed: the k|v come from its weights)');
      if (text.disposed) throw new Error('Sana transformer: step() with prepared text that was disposed');
      return runStep(backend, cfg, dtype, top, blocks, x, t, text, opts, afterBlock);
    };
    return {
      config: cfg,
      dtype,
      bytes,
      forward: (x, t, embeds, mask, opts = {}) => {
        usable('forward');
        const text = prepare(embeds, mask, opts.capture);
        try {
          return step(x, t, text, opts);
        } finally {
          text.dispose();
        }
      },
      prepareText: (embeds, mask, opts = {}) => {
        usable('prepareText');
        return prepare(embeds, mask, opts.capture);
      },
      step: (x, t, text, opts = {}) => {
        usable('step');
        return step(x, t, text, opts);
      },
      withWeights: (patchSrc, changed, patchWhere = 'patched weights') => {
        if (disposed) throw new Error('Sana transformer: withWeights() after dispose()');
        const isGone = (): boolean => disposed || (share?.baseDisposed() ?? false);
        return buildSanaTransformer(cfg, patchSrc, backend, dtype, patchWhere, { slots: w.slots, changed, baseDisposed: isGone });
      },
      dispose: () => {
        if (disposed) return;
        disposed = true;
        w.dispose();
      },
    };
  });
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

class Prepared implements PreparedText {
  disposed = false;
  constructor(
    readonly owner: object,
    readonly rows: number,
    readonly tokens: number,
    /** (B, L) additive mask bias, broadcast over heads and queries. */
    readonly bias: Tensor,
    /** Per block: (B, L, 2X) cross-attention k|v, token-major. */
    readonly kv: Tensor[],
  ) {}
  get bytes(): number {
    return [this.bias, ...this.kv].reduce((a, t) => a + t.nbytes, 0);
  }
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.bias.dispose();
    for (const t of this.kv) t.dispose();
  }
}

function prepareCaption(
  backend: Backend, cfg: SanaTransformerConfig, dtype: DType, top: Top, blocks: Block[], owner: object,
  embedsIn: TensorInput, maskIn: TensorInput | Float32Array, cap: SanaForwardOptions['capture'],
): Prepared {
  const bk = backend;
  const Xw = cfg.numCrossHeads * cfg.crossHeadDim;
  const [bias, kv] = bk.scope(() => {
    const y = toDevice(bk, embedsIn, dtype, 'text embeddings', 3); // (B, L, Cc)
    const [B, L, Cc] = y.shape as [number, number, number];
    if (Cc !== cfg.captionChannels) throw new Error(`Sana transformer: text embeddings have width ${Cc}, config caption_channels is ${cfg.captionChannels}`);
    const m = maskIn instanceof Float32Array ? maskIn : isHost(maskIn) ? maskIn.data : maskIn.toFloat32();
    if (m.length !== B * L) throw new Error(`Sana transformer: attention mask has ${m.length} values, expected B·L = ${B}·${L}`);
    // (1 − m)·(−10000), rounded to the model dtype by fromArray like diffusers' `.to(dtype)`, then
    // kept in f32: the attention reads its key bias in f32 (no cast per block and step).
    const biasHost = new Float32Array(B * L);
    for (let i = 0; i < B * L; i++) biasHost[i] = (1 - m[i]!) * -10000;
    const bias = bk.cast(bk.fromArray(biasHost, [B, L], dtype), 'f32'); // (B, L)

    const Yp = bk.linear(bk.gelu_tanh(bk.linear(y, top.c1W, top.c1B)), top.c2W, top.c2B); // (B, L, D)
    cap?.('caption_projection', Yp);
    const Y = bk.rmsnorm(Yp, top.capNorm, undefined, 1e-5); // (B, L, D), × w (no 1 + w)
    cap?.('caption_norm', Y);
    const kv = blocks.map((blk) =>
      bk.scope(() => {
        const kvLin = bk.linear(Y, blk.kv2W, blk.kv2B); // (B, L, 2X)
        if (!blk.qk) return kvLin;
        return bk.concat([bk.rmsnorm(bk.slice(kvLin, 2, 0, Xw), blk.qk.k2, undefined, 1e-5), bk.slice(kvLin, 2, Xw, 2 * Xw)], 2); // (B, L, 2X)
      }),
    );
    return [bias, kv] as const;
  });
  // Owned by the caller until dispose(), whatever scope it was prepared in.
  bk.keep(bias);
  for (const t of kv) bk.keep(t);
  const [B, L] = bias.shape as [number, number];
  return new Prepared(owner, B, L, bias, kv);
}

function runStep(
  backend: Backend, cfg: SanaTransformerConfig, dtype: DType, top: Top, blocks: Block[],
  xIn: TensorInput, tIn: readonly number[], text: Prepared, opts: SanaForwardOptions, afterBlock: (i: number) => void,
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
  if (text.rows !== B) throw new Error(`Sana transformer: text embeddings have batch ${text.rows}, latent batch is ${B}`);
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
    const L = text.tokens;

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
    // Chunk-major (6, B, D): each block's six modulation chunks are then contiguous (B, D) ranges,
    // taken as views rather than copied (6 native calls per block).
    const tmod6 = bk.permute(bk.reshape(tmod, [B, 6, D]), [1, 0, 2]);

    // --- blocks ----------------------------------------------------------------------------------
    for (let i = 0; i < blocks.length; i++) {
      const blk = blocks[i]!;
      const pag = pagLayers.has(i);
      const prev = X;
      X = bk.scope(() => runBlock(bk, blk, prev, text.kv[i]!, text.bias, tmod6, { B, N, D, H, d, Hc, dc, F, h, w, L, dtype, pag, ps, pe, eps: cfg.normEps }));
      // Free the block input now rather than at the end of the forward (28 of them otherwise).
      prev.dispose();
      afterBlock(i);
      cap?.(`transformer_blocks.${i}`, X);
    }

    // --- output ----------------------------------------------------------------------------------
    const temb3 = bk.reshape(temb, [B, 1, D]);
    const ss = bk.add(bk.concat([temb3, temb3], 1), top.sstOut); // (B, 2, D): [shift, scale]
    const shift = bk.slice(ss, 1, 0, 1), scale = bk.slice(ss, 1, 1, 2); // (B, 1, D)
    const Xn = bk.layernormModulate(X, shift, scale, cfg.normEps); // (B, N, D)
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

function runBlock(bk: Backend, blk: Block, X: Tensor, kvLin: Tensor, bias: Tensor, tmod6: Tensor, g: Dims): Tensor {
  const { B, D, H, Hc, dc, h, w } = g;
  const mod = bk.add(tmod6, bk.reshape(blk.sst, [6, 1, D])); // (6, B, D)
  const chunk = (k: number): Tensor => bk.reshape(bk.slice(mod, 0, k, k + 1), [B, 1, D]); // (B, 1, D), a view
  const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = [0, 1, 2, 3, 4, 5].map(chunk) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];

  // 1. self-attention: ReLU linear attention (identity attention on the PAG slice)
  const A = bk.layernormModulate(X, shiftMsa, scaleMsa, g.eps); // (B, N, D): adaLN, one pass
  let qkv = bk.linear(A, blk.qkvW, blk.qkvB); // (B, N, 3D)
  if (blk.qk) {
    // Before the head split and the ReLU kernel, over all D channels of q and of k.
    qkv = bk.concat([
      bk.rmsnorm(bk.slice(qkv, 2, 0, D), blk.qk.q1, undefined, 1e-5),
      bk.rmsnorm(bk.slice(qkv, 2, D, 2 * D), blk.qk.k1, undefined, 1e-5),
      bk.slice(qkv, 2, 2 * D, 3 * D),
    ], 2); // (B, N, 3D)
  }
  // qkv stays token-major, (b, N, 3, H, d): the op reads q, k, v per head in place, f32 inside.
  const linAttn = (seg: Tensor): Tensor => bk.linearAttentionTokens(seg, H, 1e-15, true); // (b, N, D)
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
  // X + gate ⊙ to_out(att) in the GEMM's epilogue (one rounding, no (B, N, D) intermediate). f16
  // keeps the separate ops: diffusers clamps to_out's f16 output to ±65504 before the residual.
  if (g.dtype === 'f16') X = bk.addGated(X, gateMsa, bk.clamp(bk.linear(att, blk.o1W, blk.o1B), -65504, 65504));
  else X = bk.linearResidual(att, blk.o1W, blk.o1B, X, gateMsa); // (B, N, D)

  // 2. cross-attention: no norm, no modulation, no gate
  // k|v (B, L, 2X) come prepared from the text (prepareCaption): the same at every step.
  let qLin = bk.linear(X, blk.q2W, blk.q2B); // (B, N, X)
  if (blk.qk) qLin = bk.rmsnorm(qLin, blk.qk.q2, undefined, 1e-5);
  // Token-major: q (B, N, Hc·dc) and k|v (B, L, 2, Hc, dc) are read in place, no head permutes.
  const o2 = bk.attentionTokens(qLin, kvLin, Hc, { scale: 1 / Math.sqrt(dc), bias }); // (B, N, Hc·dc)
  X = bk.linearResidual(o2, blk.o2W, blk.o2B, X); // X + to_out(o2)

  // 3. Mix-FFN (GLUMBConv): 1×1 convs as linears on tokens, the depthwise 3×3 on the (h, w) grid.
  // diffusers: silu(conv_inverted) → conv_depth (3×3, padding 1, groups 2F) → chunk(2) on channels →
  // value · silu(gate). One token-major op does the SiLU, the conv and the gate (no NCHW permutes).
  const Fi = bk.layernormModulate(X, shiftMlp, scaleMlp, g.eps); // (B, N, D)
  const u = bk.linear(Fi, blk.invW, blk.invB); // (B, N, 2F), before its SiLU
  const gTok = bk.dwconv3x3GluTokens(u, blk.dwW, blk.dwB, [h, w], true); // (B, N, F): value · silu(gate)
  return bk.linearResidual(gTok, blk.ptW, undefined, X, gateMlp); // X + gate ⊙ conv_point(gTok): (B, N, D)
}
