// The contract between the model code (nodes/models) and the native addon's backends.
// Types only: `native/index.ts` implements it for the CPU backend, the CUDA backend and the
// host emulation of the CUDA kernels ('cuda-emu'). Model code imports these types and gets a
// Backend from `getBackend()`; it never touches the addon's raw symbols.
//
// Conventions
// - Shapes are PyTorch order, row-major: images (B, C, H, W), tokens (B, N, D).
// - Every op returns a NEW contiguous tensor (except `reshape`, a view sharing storage) on the
//   backend's device, whose dtype is the dtype of the first tensor input unless stated.
// - Mixed dtypes: f32/bf16/f16 inputs may be mixed; arithmetic accumulates in f32; the result
//   has the first input's dtype. `linear`/`matmul`/`conv2d` compute in the dtype of the weight
//   when it is bf16/f16 (AMX on the CPU, tensor cores on CUDA) with f32 accumulation.
// - Errors (shape mismatch, wrong dtype, disposed tensor, out of memory) throw a JavaScript
//   Error whose message names the op and the offending argument; the process never aborts.
// - Lifetime is explicit: `dispose()` frees at once; `backend.scope(fn)` disposes every tensor
//   created inside fn except those returned by it (any nesting of arrays/objects) or `keep()`-ed.

export type DType = 'f32' | 'bf16' | 'f16' | 'i32' | 'i64';
export type DeviceName = 'cpu' | 'cuda' | 'cuda-emu';

export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: DeviceName;
  readonly numel: number;
  readonly disposed: boolean;
  /** Bytes held by this tensor's storage (0 for a view). */
  readonly nbytes: number;
  dispose(): void;
  /** Copies to the host as float32 (integers converted). */
  toFloat32(): Float32Array;
  /** Copies to the host: i32 -> Int32Array, i64 -> BigInt64Array, floats -> Float32Array. */
  toTypedArray(): Float32Array | Int32Array | BigInt64Array;
}

export interface SafetensorsEntry {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | string;
  shape: number[];
  /** The file that holds it (for sharded checkpoints). */
  file: string;
}

/** A memory-mapped (possibly sharded) safetensors checkpoint; every header is validated on open. */
export interface SafetensorsCheckpoint {
  readonly files: readonly string[];
  readonly metadata: Record<string, string>;
  keys(): string[];
  has(name: string): boolean;
  entry(name: string): SafetensorsEntry;
  /** Loads a tensor onto `backend`, converted to `dtype` (default: the stored dtype). */
  load(name: string, backend: Backend, dtype?: DType): Tensor;
  close(): void;
}

export interface AttentionOptions {
  /** Multiplier applied to q·k (e.g. head_dim^-0.5 or query_pre_attn_scalar^-0.5). */
  scale: number;
  /**
   * Additive bias broadcast to (B, Hq, Lq, Lk): shape (B, Lk), (B, 1, 1, Lk), (B, 1, Lq, Lk)
   * or (B, Hq, Lq, Lk). Added AFTER soft-capping, as Gemma-2 and diffusers do.
   */
  bias?: Tensor;
  /** Gemma-2 logit soft-capping: s = cap * tanh(s / cap) before the bias. */
  softcap?: number;
  /** Causal masking (key j visible to query i iff j <= i). */
  causal?: boolean;
  /** Sliding window: key j visible to query i iff i - j < window (with causal). */
  window?: number;
}

export interface Conv2dOptions {
  /** Zero padding on each side (default 0). */
  padding?: number;
  /** Stride (default 1). */
  stride?: number;
  /** Groups (default 1); groups == C_in == C_out is depthwise. */
  groups?: number;
}

/** Activation applied to a convolution's output (after the bias), rounded once. */
export type ConvAct = 'none' | 'silu' | 'relu';

export interface Conv2dNhwcOptions extends Conv2dOptions {
  /** Default 'none'. */
  act?: ConvAct;
}

/** Backend.selfAttentionRope's options (see there). */
export interface SelfAttentionRopeOptions {
  heads: number;
  kvHeads: number;
  positions: readonly number[];
  theta: number;
  scale: number;
  softcap?: number;
  window?: number;
  keyMask?: ArrayLike<number>;
}

export interface Backend {
  readonly name: DeviceName;
  /** Whether this backend implements `op` for `dtype` natively (else the caller may fall back). */
  supportsOp(op: OpName, dtype: DType): boolean;
  /** Human-readable facts: ISA chosen (AMX/AVX512/portable), oneDNN present, GPU name, memory. */
  info(): Record<string, unknown>;

  // --- creation, transfer, lifetime -----------------------------------------------------
  fromArray(data: Float32Array | Int32Array | BigInt64Array | number[], shape: readonly number[], dtype?: DType): Tensor;
  zeros(shape: readonly number[], dtype?: DType): Tensor;
  full(shape: readonly number[], value: number, dtype?: DType): Tensor;
  /** Copies a tensor (from any backend) onto this backend. */
  upload(t: Tensor): Tensor;
  cast(t: Tensor, dtype: DType): Tensor;
  scope<T>(fn: () => T): T;
  keep<T extends Tensor>(t: T): T;
  /** Bytes currently allocated by this backend, and the peak since `resetPeak()`. */
  memory(): { allocated: number; peak: number };
  resetPeak(): void;
  /**
   * Frees a linear weight's own data once the backend has packed it (after its first `linear`),
   * halving what a model keeps resident; the tensor then serves only as that linear's weight
   * (any other use is an error). False, with nothing changed, when there is no packed copy, the
   * tensor is a view or shares its storage, or the backend does not pack (CUDA).
   */
  releasePackedSource(w: Tensor): boolean;

  // --- shape ------------------------------------------------------------------------------
  /** View with a new shape (one dim may be -1); shares storage; input must be contiguous.
   *  `consume`: the result takes over the input's storage and owns it (not a view: it counts its
   *  bytes and can have its packed source released) and the input is disposed; refused for a view
   *  or a tensor whose storage another tensor shares. */
  reshape(t: Tensor, shape: readonly number[], opts?: { consume?: boolean }): Tensor;
  permute(t: Tensor, dims: readonly number[]): Tensor;
  concat(ts: readonly Tensor[], axis: number): Tensor;
  /** t[..., start:end, ...] along `axis`: a view sharing t's storage (like reshape's) when every
   *  dim before `axis` is 1, so the range is contiguous; else a copy. */
  slice(t: Tensor, axis: number, start: number, end: number): Tensor;
  /** Gathers `indices` along `axis` (e.g. Sana's keep-BOS-plus-last-299 selection). */
  indexSelect(t: Tensor, axis: number, indices: readonly number[]): Tensor;
  repeatInterleave(t: Tensor, repeats: number, axis: number): Tensor;

  // --- elementwise (numpy broadcasting of b against a; result has a's shape) ---------------
  add(a: Tensor, b: Tensor): Tensor;
  sub(a: Tensor, b: Tensor): Tensor;
  mul(a: Tensor, b: Tensor): Tensor;
  div(a: Tensor, b: Tensor): Tensor;
  /** a * s + t (scalars). */
  affine(a: Tensor, s: number, t?: number): Tensor;
  /** x * (1 + scale) + shift, with scale/shift broadcast against x (adaLN modulation). */
  modulate(x: Tensor, shift: Tensor, scale: Tensor): Tensor;
  /** h + gate * y (gated residual), gate broadcast against y. */
  addGated(h: Tensor, gate: Tensor, y: Tensor): Tensor;
  gelu_tanh(x: Tensor): Tensor;
  silu(x: Tensor): Tensor;
  relu(x: Tensor): Tensor;
  tanh(x: Tensor): Tensor;
  clamp(x: Tensor, lo: number, hi: number): Tensor;
  /** a * act(b), act = silu | gelu_tanh (GLU / GeGLU gates). */
  gluMul(a: Tensor, b: Tensor, act: 'silu' | 'gelu_tanh'): Tensor;
  /** `gluMul` on the two halves of the last dim, read in place: x (..., 2F) -> (..., F) =
   *  x[..., :F] * act(x[..., F:]) (a fused [value; gate] projection's output, no slices). */
  gluHalves(x: Tensor, act: 'silu' | 'gelu_tanh'): Tensor;
  /** Softmax over the last dim (f32 accumulation). */
  softmax(x: Tensor): Tensor;

  // --- nn ---------------------------------------------------------------------------------
  /** x (..., K) · wᵀ (N, K) + bias (N) -> (..., N). Weights are pre-packed on first use and the
   *  packed form is cached with the weight tensor (freed with it). */
  linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor;
  /** `linear` with the DiT's residual epilogue, rounded once: residual + gate ⊙ (x · wᵀ + bias).
   *  x (..., K), residual (..., N) like the linear's output; gate (B, 1, N) with x (B, ..., K) (one row
   *  per batch item, broadcast over its tokens), N values (one row for all), or undefined (a plain
   *  residual add). Output dtype = x's. Replaces `addGated(residual, gate, linear(x, w, bias))` and
   *  `add(residual, linear(x, w, bias))` without the intermediate tensor (oneDNN post-ops on the CPU,
   *  the GEMM's store on CUDA). */
  linearResidual(x: Tensor, w: Tensor, bias: Tensor | undefined, residual: Tensor, gate?: Tensor): Tensor;
  /** Batched a (..., M, K) · b (..., K, N) -> (..., M, N); transB takes b as (..., N, K). */
  matmul(a: Tensor, b: Tensor, transB?: boolean): Tensor;
  /** NCHW; w (C_out, C_in/groups, kh, kw); bias (C_out). */
  conv2d(x: Tensor, w: Tensor, bias: Tensor | undefined, opts?: Conv2dOptions): Tensor;
  /** `conv2d` on channels-last activations: x (B, H, W, C_in) -> act(conv + bias) (B, Ho, Wo, C_out);
   *  w and bias as conv2d's. Lets a model stay channels-last between layers: on the CPU oneDNN runs
   *  on NHWC directly (no reorders per call) with the activation as a post-op. */
  conv2dNhwc(x: Tensor, w: Tensor, bias: Tensor | undefined, opts?: Conv2dNhwcOptions): Tensor;
  // The norms share one argument order, that of their C twins (native/cpu/ops.h):
  // x, weight, bias (either may be undefined), eps, then op-specific parameters.
  /** RMSNorm over the last dim: x / sqrt(mean(x²) + eps) * (w + offset) [+ bias];
   *  offset 1 is Gemma's (1 + w). Statistics in f32. */
  rmsnorm(x: Tensor, w: Tensor | undefined, bias: Tensor | undefined, eps: number, offset?: number): Tensor;
  /** The channels-last DC-AE norm tail in one pass: act(rmsnorm(x) * w + bias) [+ residual], rounded
   *  once; RMSNorm over the last dim (C), act 'none' (default), 'silu' or 'relu'; residual: any
   *  shape holding x's values with C last (e.g. (B, H, W, C) for x (B, H·W, C)). Output has x's shape. */
  rmsnormAct(x: Tensor, w: Tensor | undefined, bias: Tensor | undefined, eps: number, act?: ConvAct, residual?: Tensor): Tensor;
  /** RMSNorm over channels of NCHW (DC-AE RMSNorm2d), weight and bias per channel. */
  rmsnorm2d(x: Tensor, w: Tensor | undefined, bias: Tensor | undefined, eps: number): Tensor;
  /** LayerNorm over the last dim, biased variance. */
  layernorm(x: Tensor, w: Tensor | undefined, bias: Tensor | undefined, eps: number): Tensor;
  /** adaLN: LayerNorm over the last dim without affine, then x̂ * (1 + scale) + shift, rounded
   *  once. x (B, ..., D); shift and scale (B, 1, D) (one vector per batch item) or D values
   *  (shared by all). Replaces `modulate(layernorm(x), shift, scale)`. */
  layernormModulate(x: Tensor, shift: Tensor, scale: Tensor, eps: number): Tensor;
  /** Sana GLUMBConv's depthwise 3×3 + GLU on token-major activations: u (B, h·w, 2F), w (2F, 1, 3, 3),
   *  bias (2F) -> (B, h·w, F). d = depthwise 3×3 conv, zero padding 1, of act(u) on the (h, w)
   *  grid; out = d[..., :F] * silu(d[..., F:]); act = silu when `preSilu` (default false), else
   *  identity. Replaces permute → conv2d(groups 2F) → slice, slice → gluMul → permute. */
  dwconv3x3GluTokens(u: Tensor, w: Tensor, bias: Tensor | undefined, grid: readonly [number, number], preSilu?: boolean): Tensor;
  /** Softmax attention. q (B, Hq, Lq, D), k/v (B, Hkv, Lk, D[v]), Hq % Hkv == 0 (GQA) ->
   *  (B, Hq, Lq, Dv). Never materialises more than one (Lq-block × Lk) score tile per thread. */
  attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor;
  /** `attention` on token-major activations (Sana's cross-attention without permutes): q (B, Lq, H·D)
   *  as the q linear writes it, kv (B, Lk, 2·H·D) the fused k|v linear's output laid out
   *  (B, Lk, 2, H, D), read in place -> (B, Lq, H·D) in q's dtype. bias: additive key bias (B, Lk)
   *  (or (B, 1, 1, Lk)). Same kernel as `attention`; on the CPU, key chunks whose bias puts every
   *  probability at exactly 0 (a padded caption's -10000) are skipped. */
  attentionTokens(q: Tensor, kv: Tensor, heads: number, opts: { scale: number; bias?: Tensor }): Tensor;
  /** Gemma-2's self attention on the fused q|k|v projection's output, read in place (no slices,
   *  head permutes or separate rope): qkv (B, N, (Hq + 2·Hkv)·D) laid out (B, N, Hq + 2·Hkv, D) ->
   *  (B, N, Hq·D) in qkv's dtype. q and k get `rope` (positions (N), theta) and are rounded to the
   *  dtype as the separate op's output was; then causal GQA attention, scores
   *  softcap·tanh(scale·q·k / softcap) (no cap when undefined), key j visible to query i iff j <= i,
   *  `keyMask[b·N + j]` != 0 (host values, 1 token / 0 padding; undefined: every key) and
   *  i − j < window (undefined: no window). A query that sees no key returns the mean of all N
   *  value rows: the uniform softmax the reference's finfo.min-filled scores give. */
  selfAttentionRope(qkv: Tensor, opts: SelfAttentionRopeOptions): Tensor;
  /** Sana's ReLU linear attention, computed in f32 whatever the input dtype:
   *  q, k, v (B, H, N, D) -> out (B, H, N, D),
   *  out_i = (Σ_j v_j relu(k_j)ᵀ) relu(q_i) / (Σ_j relu(k_j) · relu(q_i) + eps).
   *  ReLU is applied inside when `relu` is true (default true). Output dtype = q's dtype. */
  linearAttention(q: Tensor, k: Tensor, v: Tensor, eps: number, relu?: boolean): Tensor;
  /** `linearAttention` on token-major activations, as Sana's to_qkv produces them: qkv (B, N, 3·H·d)
   *  laid out (B, N, 3, H, d) -> (B, N, H·d) in qkv's dtype (f32 inside). Saves the head permutes,
   *  the q/k/v slices and the f32 casts around `linearAttention`. */
  linearAttentionTokens(qkv: Tensor, heads: number, eps: number, relu?: boolean): Tensor;
  /** Rotary embedding, HF "rotate_half" convention, on x (B, H, L, D) with positions (L). */
  rope(x: Tensor, positions: readonly number[], theta: number): Tensor;
  /** table (V, D), ids (...) of i32/i64 -> (..., D) in the table's dtype. */
  embedding(table: Tensor, ids: Tensor): Tensor;
  /** NCHW nearest-neighbour upsampling by an integer factor. */
  upsampleNearest(x: Tensor, factor: number): Tensor;
  /** NCHW bilinear resize, align_corners=False, no antialias (PyTorch semantics). */
  upsampleBilinear(x: Tensor, outH: number, outW: number): Tensor;
  /** NCHW pixel shuffle: (B, C·r², H, W) -> (B, C, H·r, W·r). */
  pixelShuffle(x: Tensor, r: number): Tensor;
  /** conv3x3(nearest2x(x)) runs at low resolution: each output parity phase (i, j) sees only a 2×2
   *  window of x, so one 2×2 conv with padding 1 and 4C outputs (phase p = 2i + j in channels
   *  [pC, (p+1)C)) gives y (B, H+1, W+1, 4C), channels-last. This places the phases: out (B, 2H, 2W, C),
   *  out[b, 2h+i, 2w+j, c] = y[b, h+i, w+j, pC + c] (+ shortcut[b, h, w, (4c + p) / (4C / C_s)],
   *  i.e. pixel_shuffle(repeat_interleave(shortcut)) in channels-last, when a shortcut (B, H, W, C_s)
   *  is given), rounded once. */
  upsamplePhasesNhwc(y: Tensor, shortcut?: Tensor): Tensor;
}

export type OpName =
  | 'cast'
  | 'permute'
  | 'concat'
  | 'slice'
  | 'indexSelect'
  | 'repeatInterleave'
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'affine'
  | 'modulate'
  | 'addGated'
  | 'gelu_tanh'
  | 'silu'
  | 'relu'
  | 'tanh'
  | 'clamp'
  | 'gluMul'
  | 'softmax'
  | 'linear'
  | 'linearResidual'
  | 'matmul'
  | 'conv2d'
  | 'conv2dNhwc'
  | 'upsamplePhasesNhwc'
  | 'rmsnorm'
  | 'rmsnorm2d'
  | 'rmsnormAct'
  | 'layernorm'
  | 'layernormModulate'
  | 'dwconv3x3GluTokens'
  | 'attention'
  | 'attentionTokens'
  | 'selfAttentionRope'
  | 'gluHalves'
  | 'linearAttention'
  | 'linearAttentionTokens'
  | 'rope'
  | 'embedding'
  | 'upsampleNearest'
  | 'upsampleBilinear'
  | 'pixelShuffle';

/** What `native/index.ts` exports. */
export interface NativeModule {
  /** Throws a clear error when the device is unavailable (no GPU, no CUDA build). */
  getBackend(device: DeviceName): Backend;
  /** Devices usable in this process, with their facts (for /system_stats). */
  devices(): Array<{ name: DeviceName; available: boolean; reason?: string; info: Record<string, unknown> }>;
  openSafetensors(pathOrIndexOrDir: string): SafetensorsCheckpoint;
  /** Writes F32/F16/BF16/I32/I64 tensors (host data) with optional metadata. */
  writeSafetensors(
    path: string,
    tensors: Record<string, { dtype: 'F32' | 'F16' | 'BF16' | 'I32' | 'I64'; shape: number[]; data: Float32Array | Int32Array | BigInt64Array | Uint16Array }>,
    metadata?: Record<string, string>,
  ): void;
  /** Build facts: oneDNN linked, CUDA compiled, ISA at run time, and the start-up hint when slow. */
  buildInfo(): { onednn: boolean; cuda: boolean; isa: string; hint?: string };
}
