// Portable f32 GEMM used when oneDNN is absent (and for shapes it rejects): B is packed into
// zero-padded panels of kNR columns, (ceil(N/kNR), K, kNR), and a kMR × kNR register tile is
// computed with GCC vector extensions, compiled for AVX-512, AVX2+FMA and baseline x86-64; the
// variant is picked once at load time from cpuid feature bits.
#pragma once
#include "common.h"
#include <vector>

namespace sana::cpu {

constexpr int64_t kNR = 16, kMR = 6;

inline int64_t packed_b_floats(int64_t K, int64_t N) { return ((N + kNR - 1) / kNR) * K * kNR; }
// w (N, K) row-major (a linear weight, or b with transB) -> panels.
void pack_b_nk(float* dst, const void* w, int64_t N, int64_t K, DType dt);
// b (K, N) row-major -> panels.
void pack_b_kn(float* dst, const void* b, int64_t K, int64_t N, DType dt);

// out (M, N) with row stride ldc, dtype out_dt = A (M, K; f32, row stride lda) · Bp
//   + bias_col[n] (may be null) + bias_row[m] (may be null).
// Threads split the work unless `serial` (when the caller is already inside a parallel region).
void gemm_packed(void* out, DType out_dt, int64_t ldc, const float* A, int64_t lda, const float* Bp, int64_t M, int64_t N, int64_t K, const float* bias_col,
                 const float* bias_row, bool serial = false);

// Thread-local scratch that only grows: the per-call buffers of the hot paths. Slots 0-7: 0 linear's
// f32 copy of x, 1-3 conv2d, 4-6 attention (f32 keys, values, key norms), 7 linearResidual.
float* scratch_floats(int slot, size_t n);

}  // namespace sana::cpu
