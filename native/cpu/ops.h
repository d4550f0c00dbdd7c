// The C-level op functions of the CPU backend, one file per op (native/cpu/<op>.cpp). Every
// backend mirrors these signatures: the CUDA twin of `rmsnorm_cpu(out, x, w, ...)` is
// `rmsnorm_cuda(out, x, w, ..., stream)`, declared in native/cuda/ops.cuh and defined in the
// file of its kind (norm.cu; the list is in native/cuda/README.md). Argument order is always:
// outputs, inputs, dims, parameters, dtypes.
//
// Conventions shared by all of them
// - Pointers are the backend's device pointers; every tensor is contiguous, row-major.
// - Arrays documented as "host" (indices, positions, per-input pointer lists) live in host memory
//   whatever the device; a device backend copies what it needs.
// - Float tensors of one call share one dtype `dt` unless a second dtype is named; the binding
//   layer (native/src/ops_binding.cc) casts mismatched inputs before calling, checks every shape,
//   and allocates `out`. So these functions never validate user input, except where the data
//   itself can be wrong (embedding ids), and report it through Status.
// - Arithmetic accumulates in f32 (float); 16-bit values are converted on load and rounded once
//   on store.
// - Return value: nullptr on success, else a message owned by the callee (static or
//   thread-local storage) that the binding turns into a JavaScript Error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include "../src/dtype.h"

namespace sana {

using Status = const char*;

// Per-weight-tensor cache that a backend may fill on first use (pre-packed GEMM/conv weights)
// and that is destroyed with the weight's storage. Backends subclass it.
// `bytes()` is what the memory tracker counts for it (packed copies of weights are real memory).
struct WeightCache {
  virtual ~WeightCache() = default;
  virtual size_t bytes() const { return 0; }
  // True when the cache can serve every later call without the weight's own data (it holds a
  // packed copy to re-derive other layouts from), after which the owner may free that data.
  virtual bool drop_source() { return false; }
};
using WeightCacheSlot = std::unique_ptr<WeightCache>;

// Broadcast description for element-wise ops: `out` is contiguous over `shape[0..ndim)`;
// input k is read at sum_d idx[d] * stride[k][d] (elements; stride 0 = broadcast dim).
constexpr int kMaxDims = 8;
struct Broadcast {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t stride[3][kMaxDims];
};

enum class UnaryOp : int32_t { Affine = 0, GeluTanh, Silu, Relu, Tanh, Clamp };
// GluSilu / GluGelu: out = a * act(b).
enum class BinaryOp : int32_t { Add = 0, Sub, Mul, Div, GluSilu, GluGelu };
// Modulate: out = a * (1 + c) + b  (x, shift, scale).  AddGated: out = a + b * c  (h, gate, y).
enum class TernaryOp : int32_t { Modulate = 0, AddGated };
// Activation fused after a convolution's bias (conv2d_nhwc).
enum class ConvAct : int32_t { None = 0, Silu, Relu };

// --- creation / conversion -------------------------------------------------------------------
Status fill_cpu(void* out, int64_t n, double value, DType dt);
Status cast_cpu(void* out, const void* in, int64_t n, DType out_dt, DType in_dt);

// --- shape (dtype-agnostic byte movers; elsize in bytes) -------------------------------------
// out has shape in_shape permuted: out.shape[i] = in_shape[perm[i]].
Status permute_cpu(void* out, const void* in, int ndim, const int64_t* in_shape, const int32_t* perm, size_t elsize);
// inputs i (outer, axis_lens[i], inner) -> out (outer, sum axis_lens, inner); `ins` is a host array.
Status concat_cpu(void* out, const void* const* ins, const int64_t* axis_lens, int n_in, int64_t outer, int64_t inner, size_t elsize);
// in (outer, axis_len, inner) -> out (outer, len, inner) from `start`.
Status slice_cpu(void* out, const void* in, int64_t outer, int64_t axis_len, int64_t inner, int64_t start, int64_t len, size_t elsize);
// in (outer, axis_len, inner), idx (host, n_idx, each in [0, axis_len)) -> out (outer, n_idx, inner).
Status index_select_cpu(void* out, const void* in, const int64_t* idx, int64_t n_idx, int64_t outer, int64_t axis_len, int64_t inner, size_t elsize);
// in (outer, axis_len, inner) -> out (outer, axis_len * repeats, inner), each row repeated in place.
Status repeat_interleave_cpu(void* out, const void* in, int64_t outer, int64_t axis_len, int64_t inner, int64_t repeats, size_t elsize);

// --- element-wise ----------------------------------------------------------------------------
// Affine: out = in * p0 + p1.  Clamp: out = min(max(in, p0), p1).  Others ignore p0/p1.
Status unary_cpu(void* out, const void* in, int64_t n, UnaryOp op, float p0, float p1, DType dt);
Status binary_cpu(void* out, const void* a, const void* b, const Broadcast* bc, BinaryOp op, DType dt);
Status ternary_cpu(void* out, const void* a, const void* b, const void* c, const Broadcast* bc, TernaryOp op, DType dt);
// x (rows, C) -> softmax over C.
Status softmax_cpu(void* out, const void* x, int64_t rows, int64_t C, DType dt);

// --- nn --------------------------------------------------------------------------------------
// x (M, K) · w (N, K)ᵀ + bias (N, f32, may be null) -> out (M, N) in out_dt. x and w are `dt`.
Status linear_cpu(void* out, const void* x, const void* w, const float* bias, int64_t M, int64_t N, int64_t K, DType out_dt, DType dt, WeightCacheSlot* wcache);
// The DiT's residual epilogue on linear: out (M, N) = res + gate ⊙ (x · wᵀ + bias), rounded once
// to out_dt. res (M, N) and gate are out_dt; gate: row m uses gate row m / gate_rows ((M /
// gate_rows, N): one row per image, broadcast over its tokens), or null for out = res + x · wᵀ + bias.
Status linear_residual_cpu(void* out, const void* x, const void* w, const float* bias, const void* res, const void* gate, int64_t M, int64_t N, int64_t K,
                           int64_t gate_rows, DType out_dt, DType dt, WeightCacheSlot* wcache);
// a (batch, M, K) · b (batch, K, N) [transB: b (batch, N, K)] -> out (batch, M, N) in out_dt.
// a_bstride / b_bstride: elements between batches (0 broadcasts one matrix over the batch).
Status matmul_cpu(void* out, const void* a, const void* b, int64_t batch, int64_t M, int64_t N, int64_t K, int64_t a_bstride, int64_t b_bstride, bool transB,
                  DType out_dt, DType dt);
// x (B, Cin, H, W), w (Cout, Cin/groups, KH, KW), bias (Cout, f32, may be null) -> out (B, Cout, Ho, Wo).
Status conv2d_cpu(void* out, const void* x, const void* w, const float* bias, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t KH,
                  int64_t KW, int64_t stride, int64_t pad, int64_t groups, int64_t Ho, int64_t Wo, DType out_dt, DType dt, WeightCacheSlot* wcache);
// Channels-last conv2d: x (B, H, W, Cin), w (Cout, Cin/groups, KH, KW) as conv2d's, bias (Cout,
// f32, may be null) -> out (B, Ho, Wo, Cout) = act(conv + bias).
Status conv2d_nhwc_cpu(void* out, const void* x, const void* w, const float* bias, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t KH,
                       int64_t KW, int64_t stride, int64_t pad, int64_t groups, int64_t Ho, int64_t Wo, ConvAct act, DType out_dt, DType dt,
                       WeightCacheSlot* wcache);
// The phases of conv3x3(nearest2x(x)) computed as one 2×2 conv (padding 1) at low resolution:
// y (B, H+1, W+1, 4C), phase p = 2i + j in channels [pC, (p+1)C) -> out (B, 2H, 2W, C),
// out[b, 2h+i, 2w+j, c] = y[b, h+i, w+j, pC + c] + x[b, h, w, (4c + p) / (4C / Cx)] where x
// (B, H, W, Cx), or null for no shortcut (the DC-AE decoder's repeat_interleave + pixel_shuffle).
Status upsample_phases_nhwc_cpu(void* out, const void* y, const void* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t Cx, DType dt);
// x (rows, C); w, bias (C) or null: out = x / sqrt(mean(x²) + eps) * (w + offset) + bias.
Status rmsnorm_cpu(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, float offset, DType dt);
// Channels-last norm tail: x (rows, C); w, bias (C) or null; res (rows, C) or null:
// out = act(x / sqrt(mean(x²) + eps) * w + bias) + res, rounded once.
Status rmsnorm_act_cpu(void* out, const void* x, const void* w, const void* bias, const void* res, int64_t rows, int64_t C, float eps, ConvAct act, DType dt);
// x (B, C, HW): RMS over C at each pixel, then * w[c] + bias[c] (either may be null).
Status rmsnorm2d_cpu(void* out, const void* x, const void* w, const void* bias, int64_t B, int64_t C, int64_t HW, float eps, DType dt);
// x (rows, C): (x - mean) / sqrt(var + eps) * w + bias (biased variance; w, bias may be null).
Status layernorm_cpu(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, DType dt);
// adaLN: x (B, R, C) -> layernorm without affine, then * (1 + scale) + shift, rounded once.
// shift/scale element (b, c) at b * mod_bstride + c (mod_bstride 0: one vector for every batch).
Status layernorm_modulate_cpu(void* out, const void* x, const void* shift, const void* scale, int64_t B, int64_t R, int64_t C, int64_t mod_bstride, float eps,
                              DType dt);
// GLUMBConv's depthwise 3×3 + GLU on tokens: u (B, H·W, 2F) token-major, w (2F, 1, 3, 3), bias (2F,
// f32, may be null) -> out (B, H·W, F) with d = depthwise 3×3 conv (zero padding 1) of act(u) on
// the (H, W) grid, out = d[..., :F] * silu(d[..., F:]); act = silu when pre_silu, else identity.
// w_cache: w's storage slot, or null; the CPU keeps w there as f32 per-lane taps (no transpose per
// call and item).
Status dwconv3x3_glu_tokens_cpu(void* out, const void* u, const void* w, const float* bias, int64_t B, int64_t H, int64_t W, int64_t F, bool pre_silu, DType dt,
                                WeightCacheSlot* w_cache);
// q (B, Hq, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv) -> out (B, Hq, Lq, Dv); head h reads kv
// head h / (Hq / Hkv). bias: f32, element (b, h, i, j) at b*bias_sb + h*bias_sh + i*bias_sq + j,
// or null. softcap <= 0: none. window <= 0: none (else key j visible iff i - j < window).
Status attention_cpu(void* out, const void* q, const void* k, const void* v, const float* bias, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t Lk,
                     int64_t D, int64_t Dv, int64_t bias_sb, int64_t bias_sh, int64_t bias_sq, float scale, float softcap, bool causal, int64_t window,
                     DType dt);
// The same attention on token-major activations (Sana's cross-attention, no permutes): q (B, Lq,
// H, D) as the q linear writes it, k and v read in place from the fused k|v linear's output kv
// (B, Lk, 2, H, D), out (B, Lq, H, D). bias: f32 key bias (B, Lk) added to every head's and
// query's scores, or null. No GQA, soft-cap, causal or window (attention_cpu has them).
// kv_cache: kv's storage slot, or null. The CPU keeps kv's keys and values there in the kernel's
// f32 tiles (with their norms) across calls: a prepared caption's k|v serve every sampling step
// unchanged, so each step converted the same 300 keys again. Converted lazily, as far as calls
// have needed; freed with kv.
Status attention_tokens_cpu(void* out, const void* q, const void* kv, const float* bias, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, float scale,
                            DType dt, WeightCacheSlot* kv_cache);
// Gemma-2's self attention on the fused QKV GEMM's output, read in place: qkv (B, N, Hq + 2·Hkv, D)
// (q heads, k heads, v heads per token) -> out (B, N, Hq, D). q and k get RoPE (rope_cpu's math,
// positions host (N)) and are rounded to dt, then causal GQA attention with scores
// s = softcap·tanh(scale·q·k / softcap) (softcap <= 0: none), key j visible to query i iff j <= i,
// key_mask[b·N + j] != 0 (host (B, N), or null: every key) and i - j < window (window <= 0: none).
// A query that sees no key gets the mean of all N value rows (the reference's uniform softmax
// over finfo.min-filled scores).
Status self_attention_rope_cpu(void* out, const void* qkv, const int64_t* positions, const int64_t* key_mask, int64_t B, int64_t N, int64_t Hq, int64_t Hkv,
                               int64_t D, float theta, float scale, float softcap, int64_t window, DType dt);
// f32 only: q, k, v (B, H, N, D) -> out (B, H, N, D) (Sana's ReLU linear attention).
Status linear_attention_cpu(float* out, const float* q, const float* k, const float* v, int64_t B, int64_t H, int64_t N, int64_t D, float eps, bool relu);
// The same on token-major qkv (B, N, 3, H, D) of dtype dt (Sana's to_qkv output as is) -> out
// (B, N, H, D) in dt; f32 inside. Replaces permute + three slices + three casts + cast + permute.
Status linear_attention_tokens_cpu(void* out, const void* qkv, int64_t B, int64_t N, int64_t H, int64_t D, float eps, bool relu, DType dt);
// x (BH, L, D), positions (host, L): HF rotate_half rotary embedding, inv_freq_i = theta^(-2i/D).
Status rope_cpu(void* out, const void* x, const int64_t* positions, int64_t BH, int64_t L, int64_t D, float theta, DType dt);
// table (V, D), ids (n_ids) of ids_dt (I32/I64) -> out (n_ids, D). Out-of-range ids: Status.
Status embedding_cpu(void* out, const void* table, const void* ids, int64_t n_ids, int64_t V, int64_t D, DType dt, DType ids_dt);
// x (BC, H, W) -> out (BC, H*factor, W*factor).
Status upsample_nearest_cpu(void* out, const void* x, int64_t BC, int64_t H, int64_t W, int64_t factor, size_t elsize);
// x (BC, H, W) -> out (BC, Ho, Wo), align_corners=False, no antialias.
Status upsample_bilinear_cpu(void* out, const void* x, int64_t BC, int64_t H, int64_t W, int64_t Ho, int64_t Wo, DType dt);
// x (B, C*r*r, H, W) -> out (B, C, H*r, W*r).
Status pixel_shuffle_cpu(void* out, const void* x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t r, size_t elsize);

}  // namespace sana
