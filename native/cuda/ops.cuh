// The CUDA twins of native/cpu/ops.h: same names with `_cuda`, same argument order, plus the
// stream. Declared in sana::cuda_real (nvcc build) or sana::cuda_emu (host emulation build),
// whichever SANA_CUDA_NS names; see common.cuh.
#pragma once
#include "../cpu/ops.h"
#include "common.cuh"

namespace sana {
namespace SANA_CUDA_NS {

Status fill_cuda(void* out, int64_t n, double value, DType dt, cudaStream_t s);
Status cast_cuda(void* out, const void* in, int64_t n, DType out_dt, DType in_dt, cudaStream_t s);

Status permute_cuda(void* out, const void* in, int ndim, const int64_t* in_shape, const int32_t* perm, size_t elsize, cudaStream_t s);
Status concat_cuda(void* out, const void* const* ins, const int64_t* axis_lens, int n_in, int64_t outer, int64_t inner, size_t elsize, cudaStream_t s);
Status slice_cuda(void* out, const void* in, int64_t outer, int64_t axis_len, int64_t inner, int64_t start, int64_t len, size_t elsize, cudaStream_t s);
Status index_select_cuda(void* out, const void* in, const int64_t* idx, int64_t n_idx, int64_t outer, int64_t axis_len, int64_t inner, size_t elsize,
                         cudaStream_t s);
Status repeat_interleave_cuda(void* out, const void* in, int64_t outer, int64_t axis_len, int64_t inner, int64_t repeats, size_t elsize, cudaStream_t s);

Status unary_cuda(void* out, const void* in, int64_t n, UnaryOp op, float p0, float p1, DType dt, cudaStream_t s);
Status binary_cuda(void* out, const void* a, const void* b, const Broadcast* bc, BinaryOp op, DType dt, cudaStream_t s);
Status ternary_cuda(void* out, const void* a, const void* b, const void* c, const Broadcast* bc, TernaryOp op, DType dt, cudaStream_t s);
Status softmax_cuda(void* out, const void* x, int64_t rows, int64_t C, DType dt, cudaStream_t s);

Status linear_cuda(void* out, const void* x, const void* w, const float* bias, int64_t M, int64_t N, int64_t K, DType out_dt, DType dt, WeightCacheSlot* wcache,
                   cudaStream_t s);
Status linear_residual_cuda(void* out, const void* x, const void* w, const float* bias, const void* res, const void* gate, int64_t M, int64_t N, int64_t K,
                            int64_t gate_rows, DType out_dt, DType dt, WeightCacheSlot* wcache, cudaStream_t s);
Status matmul_cuda(void* out, const void* a, const void* b, int64_t batch, int64_t M, int64_t N, int64_t K, int64_t a_bstride, int64_t b_bstride, bool transB,
                   DType out_dt, DType dt, cudaStream_t s);
Status conv2d_cuda(void* out, const void* x, const void* w, const float* bias, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t KH,
                   int64_t KW, int64_t stride, int64_t pad, int64_t groups, int64_t Ho, int64_t Wo, DType out_dt, DType dt, WeightCacheSlot* wcache,
                   cudaStream_t s);
Status conv2d_nhwc_cuda(void* out, const void* x, const void* w, const float* bias, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t KH,
                        int64_t KW, int64_t stride, int64_t pad, int64_t groups, int64_t Ho, int64_t Wo, ConvAct act, DType out_dt, DType dt,
                        WeightCacheSlot* wcache, cudaStream_t s);
Status rmsnorm_cuda(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, float offset, DType dt, cudaStream_t s);
Status rmsnorm_act_cuda(void* out, const void* x, const void* w, const void* bias, const void* res, int64_t rows, int64_t C, float eps, ConvAct act, DType dt,
                        cudaStream_t s);
Status rmsnorm2d_cuda(void* out, const void* x, const void* w, const void* bias, int64_t B, int64_t C, int64_t HW, float eps, DType dt, cudaStream_t s);
Status layernorm_cuda(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, DType dt, cudaStream_t s);
Status layernorm_modulate_cuda(void* out, const void* x, const void* shift, const void* scale, int64_t B, int64_t R, int64_t C, int64_t mod_bstride, float eps,
                               DType dt, cudaStream_t s);
Status dwconv3x3_glu_tokens_cuda(void* out, const void* u, const void* w, const float* bias, int64_t B, int64_t H, int64_t W, int64_t F, bool pre_silu,
                                 DType dt, WeightCacheSlot* w_cache, cudaStream_t s);
Status attention_cuda(void* out, const void* q, const void* k, const void* v, const float* bias, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t Lk,
                      int64_t D, int64_t Dv, int64_t bias_sb, int64_t bias_sh, int64_t bias_sq, float scale, float softcap, bool causal, int64_t window,
                      DType dt, cudaStream_t s);
Status attention_tokens_cuda(void* out, const void* q, const void* kv, const float* bias, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, float scale,
                             DType dt, WeightCacheSlot* kv_cache, cudaStream_t s);
Status linear_attention_cuda(float* out, const float* q, const float* k, const float* v, int64_t B, int64_t H, int64_t N, int64_t D, float eps, bool relu,
                             cudaStream_t s);
Status self_attention_rope_cuda(void* out, const void* qkv, const int64_t* positions, const int64_t* key_mask, int64_t B, int64_t N, int64_t Hq, int64_t Hkv,
                                int64_t D, float theta, float scale, float softcap, int64_t window, DType dt, cudaStream_t s);
Status linear_attention_tokens_cuda(void* out, const void* qkv, int64_t B, int64_t N, int64_t H, int64_t D, float eps, bool relu, DType dt, cudaStream_t s);
Status rope_cuda(void* out, const void* x, const int64_t* positions, int64_t BH, int64_t L, int64_t D, float theta, DType dt, cudaStream_t s);
Status embedding_cuda(void* out, const void* table, const void* ids, int64_t n_ids, int64_t V, int64_t D, DType dt, DType ids_dt, cudaStream_t s);
Status upsample_nearest_cuda(void* out, const void* x, int64_t BC, int64_t H, int64_t W, int64_t factor, size_t elsize, cudaStream_t s);
Status upsample_bilinear_cuda(void* out, const void* x, int64_t BC, int64_t H, int64_t W, int64_t Ho, int64_t Wo, DType dt, cudaStream_t s);
Status upsample_phases_nhwc_cuda(void* out, const void* y, const void* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t Cx, DType dt, cudaStream_t s);
Status pixel_shuffle_cuda(void* out, const void* x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t r, size_t elsize, cudaStream_t s);

}  // namespace SANA_CUDA_NS
}  // namespace sana
