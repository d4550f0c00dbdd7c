// Gemma-2 text encoder (transformers `Gemma2Model`, eager attention as in transformers 4.47):
// returns last_hidden_state, the tensor Sana conditions on (shared/spec/sana.md §5, fixture gemma2/).
// All tensor math goes through the Backend interface of native/api.ts.
//
// Reference behaviour kept on purpose:
// - embedding × sqrt(hidden) with the factor rounded to the model dtype (48 exactly in bf16);
// - RMSNorm x·rsqrt(mean x² + eps)·(1 + w) in f32, cast after the multiply;
// - scores · query_pre_attn_scalar^-0.5, tanh soft-cap, THEN the additive mask;
// - the mask (causal + key padding [+ sliding window]) is the reference's finfo(f32).min fill, not
//   skipped keys: a padded query whose window holds only padding is uniform over all L keys.
//   `selfAttentionRope` reproduces both (it takes the key mask and the window, not a bias tensor).
// - q|k|v and gate|up run as one GEMM each on weights concatenated at load time; attention reads
//   the fused (B, L, Hq + 2·Hkv, hd) output in place with RoPE inside, the GeGLU its two halves.
import type { Backend, DType, Tensor } from '../../native/api.ts';
import { checkLayout, linear, tensor, type Init, type Layout } from './layout.ts';
import { WeightSet, type WeightSource } from './weight_set.ts';
import { PrefixedCheckpoint, readJsonConfig, withCheckpoint, type FolderLoadOptions } from './weights.ts';

export interface Gemma2Config {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  queryPreAttnScalar: number;
  ropeTheta: number;
  rmsNormEps: number;
  /** undefined: no sliding-window layers. */
  slidingWindow?: number;
  /** undefined: no soft-capping. */
  attnLogitSoftcapping?: number;
  /** Per layer: true when it uses the sliding window. */
  slidingLayers: boolean[];
}

export function parseGemma2Config(raw: Record<string, unknown>, where = 'text_encoder/config.json'): Gemma2Config {
  const int = (k: string, d?: number): number => {
    const v = raw[k] ?? d;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`${where}: ${k} must be a positive integer, got ${JSON.stringify(raw[k])}`);
    return v;
  };
  const num = (k: string, d: number): number => {
    const v = raw[k] ?? d;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${where}: ${k} must be a number, got ${JSON.stringify(raw[k])}`);
    return v;
  };
  const optPos = (k: string): number | undefined => {
    const v = raw[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !(v > 0)) throw new Error(`${where}: ${k} must be a positive number or null, got ${JSON.stringify(v)}`);
    return v;
  };
  if (raw.model_type !== undefined && raw.model_type !== 'gemma2') throw new Error(`${where}: model_type ${JSON.stringify(raw.model_type)} is not gemma2`);
  const act = raw.hidden_activation ?? raw.hidden_act ?? 'gelu_pytorch_tanh';
  if (act !== 'gelu_pytorch_tanh') throw new Error(`${where}: hidden_activation ${JSON.stringify(act)} is not supported (gelu_pytorch_tanh)`);
  if (raw.attention_bias === true) throw new Error(`${where}: attention_bias=true is not supported (Gemma-2 has no attention biases)`);
  const numLayers = int('num_hidden_layers');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) throw new Error(`${where}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const hiddenSize = int('hidden_size');
  const headDim = int('head_dim', hiddenSize / numHeads);
  const slidingWindow = optPos('sliding_window');
  let slidingLayers: boolean[];
  const types = raw.layer_types;
  if (Array.isArray(types)) {
    if (types.length !== numLayers) throw new Error(`${where}: layer_types has ${types.length} entries for ${numLayers} layers`);
    slidingLayers = types.map((t, i) => {
      if (t !== 'sliding_attention' && t !== 'full_attention') throw new Error(`${where}: layer_types[${i}] = ${JSON.stringify(t)} is unknown`);
      return t === 'sliding_attention';
    });
  } else {
    // transformers 4.47: layers 0, 2, 4, … slide.
    slidingLayers = Array.from({ length: numLayers }, (_, i) => i % 2 === 0);
  }
  if (slidingWindow === undefined) slidingLayers = slidingLayers.map(() => false);
  return {
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    queryPreAttnScalar: num('query_pre_attn_scalar', headDim),
    ropeTheta: num('rope_theta', 10000),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    slidingWindow,
    attnLogitSoftcapping: optPos('attn_logit_softcapping'),
    slidingLayers,
  };
}

/** Parameter count of a Gemma2Model with this config (embedding included). */
export function gemma2ParamCount(c: Gemma2Config): number {
  const D = c.hiddenSize;
  const attn = D * c.numHeads * c.headDim * 2 + D * c.numKvHeads * c.headDim * 2;
  const mlp = 3 * D * c.intermediateSize;
  return c.vocabSize * D + c.numLayers * (attn + mlp + 4 * D) + D;
}

/** Matmul FLOPs of one forward over B·L tokens (2 per multiply-add; attention included). */
export function gemma2Flops(c: Gemma2Config, B: number, L: number): number {
  const D = c.hiddenSize;
  const proj = 2 * B * L * D * (2 * c.numHeads * c.headDim + 2 * c.numKvHeads * c.headDim);
  const mlp = 2 * B * L * 3 * D * c.intermediateSize;
  const attn = 2 * 2 * B * c.numHeads * L * L * c.headDim;
  return c.numLayers * (proj + mlp + attn);
}

export type CaptureFn = (name: string, t: Tensor) => void;

export interface Gemma2Model {
  readonly config: Gemma2Config;
  readonly dtype: DType;
  readonly backend: Backend;
  /** Bytes held by the loaded weights (for the model cache). */
  readonly bytes: number;
  /**
   * ids / mask (B rows of equal length L; mask 1 = token, 0 = padding, right padding) ->
   * last_hidden_state (B, L, hidden) in the model dtype, owned by the caller.
   * `capture` sees `embed_tokens` (raw lookup), `layers.{i}` and `norm`, synchronously; the
   * tensor is only valid during the call.
   */
  encode(ids: readonly (readonly number[])[], mask: readonly (readonly number[])[], capture?: CaptureFn): Tensor;
  dispose(): void;
}

interface LayerWeights {
  inNorm: Tensor; postAttnNorm: Tensor; preFfNorm: Tensor; postFfNorm: Tensor;
  /** q_proj | k_proj | v_proj rows: ((Hq + 2·Hkv)·hd, hidden). */
  qkv: Tensor;
  o: Tensor;
  /** up_proj | gate_proj rows: (2·intermediate, hidden), value half first as `gluHalves` reads it. */
  upGate: Tensor;
  down: Tensor;
}

/** transformers Gemma2Model's state_dict (names without the `model.` prefix, in the order a
 *  torch `save_file` stores them); the norms stay f32 whatever the compute dtype. */
export function gemma2Layout(c: Gemma2Config): Layout {
  const H = c.hiddenSize, F = c.intermediateSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  // Gemma scales embeddings by sqrt(H); std H^-0.5 makes the scaled inputs ~N(0, 1).
  const t: Layout = [];
  tensor(t, 'embed_tokens.weight', [c.vocabSize, H], { kind: 'normal', std: H ** -0.5 });
  // Gemma's RMSNorm multiplies by (1 + w): w near 0 is the identity scale.
  const norm = (name: string): void => tensor(t, name, [H], { kind: 'normal', std: 0.05 } satisfies Init, 'f32');
  for (let i = 0; i < c.numLayers; i++) {
    const l = `layers.${i}`;
    norm(`${l}.input_layernorm.weight`);
    linear(t, `${l}.mlp.down_proj`, H, F, false);
    linear(t, `${l}.mlp.gate_proj`, F, H, false);
    linear(t, `${l}.mlp.up_proj`, F, H, false);
    norm(`${l}.post_attention_layernorm.weight`);
    norm(`${l}.post_feedforward_layernorm.weight`);
    norm(`${l}.pre_feedforward_layernorm.weight`);
    linear(t, `${l}.self_attn.k_proj`, kv, H, false);
    linear(t, `${l}.self_attn.o_proj`, H, q, false);
    linear(t, `${l}.self_attn.q_proj`, q, H, false);
    linear(t, `${l}.self_attn.v_proj`, kv, H, false);
  }
  norm('norm.weight');
  return t;
}

/** Rounds a double to what `torch.tensor(x, dtype)` stores (round to nearest even). */
export function roundToDType(x: number, dtype: DType): number {
  if (dtype === 'f32') return Math.fround(x);
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  if (dtype === 'bf16') {
    const bits = u[0];
    u[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16;
    return f[0];
  }
  if (dtype === 'f16') {
    // Through the f16 grid: scale so that the f16 ulp is 1, round half to even, scale back.
    const a = Math.abs(x);
    if (a === 0) return x;
    const e = Math.max(Math.floor(Math.log2(a)), -14);
    const ulp = 2 ** (e - 10);
    const q = a / ulp;
    const r = Math.floor(q);
    const rounded = (q - r > 0.5 || (q - r === 0.5 && r % 2 === 1) ? r + 1 : r) * ulp;
    return Math.sign(x) * Math.min(rounded, 65504);
  }
  return x;
}


/** Builds the model from a weight source (names/shapes validated first); weights are converted
 *  to `dtype`, norms kept f32. Tensors the layout does not name (e.g. `lm_head`) are ignored. */
export function buildGemma2(cfg: Gemma2Config, src: WeightSource, backend: Backend, dtype: DType, where = 'weights'): Gemma2Model {
  if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`Gemma-2: compute dtype ${dtype} is not supported (f32 or bf16; fp16 overflows)`);
  const layout = gemma2Layout(cfg);
  checkLayout(layout, src, { what: 'Gemma-2', where });
  const ws = new WeightSet(src, backend, dtype, layout);
  const { embed, layers, finalNorm } = ws.build((w) => ({
    embed: w.get('embed_tokens.weight'),
    layers: Array.from({ length: cfg.numLayers }, (_, i): LayerWeights => {
      const p = `layers.${i}.`;
      return {
        inNorm: w.get(`${p}input_layernorm.weight`),
        postAttnNorm: w.get(`${p}post_attention_layernorm.weight`),
        preFfNorm: w.get(`${p}pre_feedforward_layernorm.weight`),
        postFfNorm: w.get(`${p}post_feedforward_layernorm.weight`),
        // Concatenated at load (the parts are freed at once): one GEMM instead of three / two.
        qkv: w.cat([`${p}self_attn.q_proj.weight`, `${p}self_attn.k_proj.weight`, `${p}self_attn.v_proj.weight`]),
        o: w.get(`${p}self_attn.o_proj.weight`),
        upGate: w.cat([`${p}mlp.up_proj.weight`, `${p}mlp.gate_proj.weight`]),
        down: w.get(`${p}mlp.down_proj.weight`),
      };
    }),
    finalNorm: w.get('norm.weight'),
  }));
  // Counted now: releasing a packed linear's source below frees storage, while the packed copy
  // that replaces it is about the same size.
  const bytes = ws.bytes;
  const D = cfg.hiddenSize;
  // After a layer's first forward its linears are packed: the originals are freed (CPU), so the
  // model keeps one copy of each weight instead of two (Gemma-2-2B bf16: −3.9 GB resident).
  const packedLayers = new Set<number>();
  const releaseLinears = (i: number): void => {
    if (packedLayers.has(i)) return;
    packedLayers.add(i);
    const w = layers[i]!;
    for (const t of [w.qkv, w.o, w.upGate, w.down]) backend.releasePackedSource(t);
  };
  const normalizer = roundToDType(Math.sqrt(D), dtype);
  const scale = cfg.queryPreAttnScalar ** -0.5;
  const eps = cfg.rmsNormEps;
  let disposed = false;

  const layerForward = (h: Tensor, w: LayerWeights, sliding: boolean, keyMask: Float32Array, positions: number[]): Tensor => {
    // --- attention ---
    const a = backend.rmsnorm(h, w.inNorm, undefined, eps, 1); // (B, L, D)
    const qkv = backend.linear(a, w.qkv); // (B, L, (Hq + 2·Hkv)·hd)
    const oTok = backend.selfAttentionRope(qkv, {
      heads: cfg.numHeads,
      kvHeads: cfg.numKvHeads,
      positions,
      theta: cfg.ropeTheta,
      scale,
      softcap: cfg.attnLogitSoftcapping,
      window: sliding ? cfg.slidingWindow : undefined,
      keyMask,
    }); // (B, L, Hq·hd)
    const attnOut = backend.rmsnorm(backend.linear(oTok, w.o), w.postAttnNorm, undefined, eps, 1); // (B, L, D)
    const h1 = backend.add(h, attnOut);
    // --- GeGLU MLP ---
    const f = backend.rmsnorm(h1, w.preFfNorm, undefined, eps, 1);
    const act = backend.gluHalves(backend.linear(f, w.upGate), 'gelu_tanh'); // (B, L, 2F) -> (B, L, F): up · gelu_tanh(gate)
    const mlpOut = backend.rmsnorm(backend.linear(act, w.down), w.postFfNorm, undefined, eps, 1); // (B, L, D)
    return backend.add(h1, mlpOut);
  };

  return {
    config: cfg,
    dtype,
    backend,
    bytes,
    encode(ids, mask, capture) {
      if (disposed) throw new Error('Gemma-2: encode() called after dispose()');
      const B = ids.length;
      if (B === 0) throw new Error('Gemma-2: encode() needs at least one row of ids');
      const L = ids[0].length;
      if (L === 0) throw new Error('Gemma-2: encode() got empty rows of ids');
      if (mask.length !== B) throw new Error(`Gemma-2: ${B} rows of ids but ${mask.length} rows of attention mask`);
      const flat = new Int32Array(B * L);
      const keyMask = new Float32Array(B * L);
      for (let b = 0; b < B; b++) {
        if (ids[b].length !== L || mask[b].length !== L) throw new Error(`Gemma-2: row ${b} has ${ids[b].length} ids / ${mask[b].length} mask values, expected ${L}`);
        for (let j = 0; j < L; j++) {
          const id = ids[b][j];
          if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize) throw new Error(`Gemma-2: token id ${id} at [${b}, ${j}] is outside the vocabulary (0..${cfg.vocabSize - 1})`);
          flat[b * L + j] = id;
          keyMask[b * L + j] = mask[b][j] !== 0 ? 1 : 0;
        }
      }
      const positions = Array.from({ length: L }, (_, i) => i);
      let h = backend.scope(() => {
        const idsT = backend.fromArray(flat, [B, L], 'i32');
        const e = backend.embedding(embed, idsT); // (B, L, D)
        capture?.('embed_tokens', e);
        return backend.affine(e, normalizer);
      });
      for (let i = 0; i < cfg.numLayers; i++) {
        const next = backend.scope(() => layerForward(h, layers[i], cfg.slidingLayers[i], keyMask, positions));
        releaseLinears(i);
        h.dispose();
        h = next;
        capture?.(`layers.${i}`, h);
      }
      const out = backend.rmsnorm(h, finalNorm, undefined, eps, 1);
      h.dispose();
      capture?.('norm', out);
      return out;
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      ws.dispose();
    },
  };
}

export function readGemma2Config(dir: string): Gemma2Config {
  return parseGemma2Config(readJsonConfig(dir), `${dir}/config.json`);
}

export type LoadGemma2Options = FolderLoadOptions;

/**
 * Loads Gemma-2 from a transformers folder (config.json + one or sharded safetensors, keys with
 * or without the `model.` prefix, f32/bf16/f16 stored) onto `backend`, computing in `dtype`.
 */
export async function loadGemma2(dir: string, backend: Backend, dtype: DType, opts: LoadGemma2Options = {}): Promise<Gemma2Model> {
  const cfg = readGemma2Config(dir);
  return withCheckpoint(dir, opts, ['model'], (ckpt) => buildGemma2(cfg, new PrefixedCheckpoint(ckpt, 'embed_tokens.weight', ['', 'model.']), backend, dtype, ckpt.files.join(', ')));
}
