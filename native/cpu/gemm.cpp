// The portable packed GEMM (see gemm.h).
#include "gemm.h"
#include <cstring>

namespace sana::cpu {

typedef float v16 __attribute__((vector_size(64), aligned(4)));

float* scratch_floats(int slot, size_t n) {
  thread_local std::vector<float> bufs[8];
  auto& b = bufs[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

void pack_b_nk(float* dst, const void* w, int64_t N, int64_t K, DType dt) {
  const int64_t panels = (N + kNR - 1) / kNR;
  const size_t es = dtype_size(dt);
#pragma omp parallel for if (N * K > kParallelMin) schedule(static)
  for (int64_t p = 0; p < panels; p++) {
    float* P = dst + p * K * kNR;
    std::vector<float> row(static_cast<size_t>(K));
    for (int64_t j = 0; j < kNR; j++) {
      const int64_t n = p * kNR + j;
      if (n < N) to_float_row(row.data(), static_cast<const char*>(w) + size_t(n * K) * es, K, dt);
      for (int64_t k = 0; k < K; k++) P[k * kNR + j] = n < N ? row[k] : 0.f;
    }
  }
}

void pack_b_kn(float* dst, const void* b, int64_t K, int64_t N, DType dt) {
  const int64_t panels = (N + kNR - 1) / kNR;
  const size_t es = dtype_size(dt);
#pragma omp parallel for if (N * K > kParallelMin) schedule(static)
  for (int64_t p = 0; p < panels; p++) {
    float* P = dst + p * K * kNR;
    const int64_t n0 = p * kNR, nn = std::min(kNR, N - n0);
    for (int64_t k = 0; k < K; k++) {
      float* d = P + k * kNR;
      to_float_row(d, static_cast<const char*>(b) + size_t(k * N + n0) * es, nn, dt);
      for (int64_t j = nn; j < kNR; j++) d[j] = 0.f;
    }
  }
}

// C tile (kMR × kNR, row stride kNR) = A rows [0, mr) · panel. The same body is compiled for
// AVX-512, AVX2+FMA and baseline x86-64 and picked once from cpuid (feature bits, not CPU model
// names, which is what GCC's `arch=` clones would test).
#define SANA_MICRO_BODY                                       \
  v16 c0 = {}, c1 = {}, c2 = {}, c3 = {}, c4 = {}, c5 = {};   \
  const float* a0 = A;                                        \
  const float* a1 = A + (mr > 1 ? lda : 0);                   \
  const float* a2 = A + (mr > 2 ? 2 * lda : 0);               \
  const float* a3 = A + (mr > 3 ? 3 * lda : 0);               \
  const float* a4 = A + (mr > 4 ? 4 * lda : 0);               \
  const float* a5 = A + (mr > 5 ? 5 * lda : 0);               \
  for (int64_t k = 0; k < K; k++) {                           \
    const v16 b = *reinterpret_cast<const v16*>(P + k * kNR); \
    c0 += a0[k] * b;                                          \
    c1 += a1[k] * b;                                          \
    c2 += a2[k] * b;                                          \
    c3 += a3[k] * b;                                          \
    c4 += a4[k] * b;                                          \
    c5 += a5[k] * b;                                          \
  }                                                           \
  *reinterpret_cast<v16*>(C + 0 * kNR) = c0;                  \
  *reinterpret_cast<v16*>(C + 1 * kNR) = c1;                  \
  *reinterpret_cast<v16*>(C + 2 * kNR) = c2;                  \
  *reinterpret_cast<v16*>(C + 3 * kNR) = c3;                  \
  *reinterpret_cast<v16*>(C + 4 * kNR) = c4;                  \
  *reinterpret_cast<v16*>(C + 5 * kNR) = c5;

using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*);
__attribute__((target("avx512f,avx512vl,fma"))) static void micro_avx512(const float* A, int64_t lda, const float* P, int64_t K, int64_t mr, float* C) {
  SANA_MICRO_BODY
}
__attribute__((target("avx2,fma"))) static void micro_avx2(const float* A, int64_t lda, const float* P, int64_t K, int64_t mr, float* C) { SANA_MICRO_BODY }
static void micro_base(const float* A, int64_t lda, const float* P, int64_t K, int64_t mr, float* C) { SANA_MICRO_BODY }

static MicroFn pick_micro() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return micro_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return micro_avx2;
  return micro_base;
}
static const MicroFn micro_6x16 = pick_micro();

void gemm_packed(void* out, DType out_dt, int64_t ldc, const float* A, int64_t lda, const float* Bp, int64_t M, int64_t N, int64_t K, const float* bias_col,
                 const float* bias_row, bool serial) {
  constexpr int64_t kMB = 8 * kMR;  // rows per work item: keeps an A block in L2 across panels
  const int64_t mblocks = (M + kMB - 1) / kMB, panels = (N + kNR - 1) / kNR;
  const size_t es = dtype_size(out_dt);
  auto body = [&](int64_t mb, int64_t p) {
    alignas(64) float C[kMR * kNR];
    const int64_t n0 = p * kNR, nn = std::min(kNR, N - n0);
    const float* P = Bp + p * K * kNR;
    for (int64_t m0 = mb * kMB; m0 < std::min(M, (mb + 1) * kMB); m0 += kMR) {
      const int64_t mr = std::min(kMR, M - m0);
      micro_6x16(A + m0 * lda, lda, P, K, mr, C);
      for (int64_t i = 0; i < mr; i++) {
        float* c = C + i * kNR;
        const float br = bias_row ? bias_row[m0 + i] : 0.f;
        for (int64_t j = 0; j < nn; j++) c[j] += br + (bias_col ? bias_col[n0 + j] : 0.f);
        from_float_row(static_cast<char*>(out) + size_t((m0 + i) * ldc + n0) * es, c, nn, out_dt);
      }
    }
  };
  if (serial) {
    for (int64_t mb = 0; mb < mblocks; mb++)
      for (int64_t p = 0; p < panels; p++) body(mb, p);
    return;
  }
#pragma omp parallel for collapse(2) schedule(static) if (M * N * K > (1 << 16))
  for (int64_t mb = 0; mb < mblocks; mb++)
    for (int64_t p = 0; p < panels; p++) body(mb, p);
}

}  // namespace sana::cpu
