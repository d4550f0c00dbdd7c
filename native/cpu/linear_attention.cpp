// linear_attention: Sana's ReLU linear attention in f32, per (b, h):
//   kv (D, D) = Σ_j v_j ⊗ relu(k_j),  ks (D) = Σ_j relu(k_j)
//   out_i = kv · relu(q_i) / (ks · relu(q_i) + eps)
// linear_attention_tokens_cpu: the same on token-major qkv in its own dtype (see ops.h), as two
// small register-tiled GEMMs per head.
#include "vec.h"
#include "simd512.h"
#include <immintrin.h>
#include <vector>

namespace sana {
namespace {

// Token-major kernel. Per (b, h), with v' = [v, 1] (the ones column makes ks part of the state):
//   state  S (D, Dp) = Σ_j relu(k_j) ⊗ v'_j       (S[:, D] = ks; columns past D are zero)
//   apply  o'_i (Dp) = relu(q_i) · S,  out_i = o'_i[:D] / (o'_i[D] + eps)
// Both are small GEMMs, C (R rows, Dp) += A (R, K) · B (K, Dp), run as register tiles of up to 8
// rows × 3 16-float vectors (Dp = D + 1 rounded up to 16: 48 for Sana's d = 32) over f32 copies
// of a block of kBlk tokens (k relu'd, v with its ones column, q relu'd) converted from the
// activation dtype once. The former row-at-a-time loops kept S in memory (one load and store per
// FMA vector) and ran at ~15 GFLOP/s on one Zen 4 core.
constexpr int64_t kBlk = 128;

// c (R, NV·16, row stride ldc) = (acc ? c : 0) + Σ_k a(r, k) · b(k, :), a(r, k) = a[r·ars + k·aks].
template <int R, int NV>
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline void tile_avx512(float* c, int64_t ldc, const float* a, int64_t ars, int64_t aks,
                                                                                   const float* b, int64_t ldb, int64_t K, bool acc) {
  __m512 s[R][NV];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) s[r][v] = acc ? _mm512_loadu_ps(c + r * ldc + 16 * v) : _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k++) {
    __m512 bv[NV];
    for (int v = 0; v < NV; v++) bv[v] = _mm512_loadu_ps(b + k * ldb + 16 * v);
    for (int r = 0; r < R; r++) {
      const __m512 x = _mm512_set1_ps(a[r * ars + k * aks]);
      for (int v = 0; v < NV; v++) s[r][v] = _mm512_fmadd_ps(x, bv[v], s[r][v]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, s[r][v]);
}
template <int R>
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline void cols_avx512(float* c, int64_t ldc, const float* a, int64_t ars, int64_t aks,
                                                                                   const float* b, int64_t ldb, int64_t K, int64_t Dp, bool acc) {
  for (int64_t j = 0; j < Dp;) {
    switch (std::min<int64_t>(3, (Dp - j) / 16)) {
      case 3: tile_avx512<R, 3>(c + j, ldc, a, ars, aks, b + j, ldb, K, acc), j += 48; break;
      case 2: tile_avx512<R, 2>(c + j, ldc, a, ars, aks, b + j, ldb, K, acc), j += 32; break;
      default: tile_avx512<R, 1>(c + j, ldc, a, ars, aks, b + j, ldb, K, acc), j += 16; break;
    }
  }
}
// C (M, Dp) (+)= A (M, K) · B (K, Dp): rows in tiles of 8, then 4, 2, 1.
__attribute__((target(SANA_AVX512_TARGET))) void small_gemm_avx512(float* c, int64_t ldc, const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb,
                                                                   int64_t M, int64_t K, int64_t Dp, bool acc) {
  int64_t i = 0;
  for (; i + 8 <= M; i += 8) cols_avx512<8>(c + i * ldc, ldc, a + i * ars, ars, aks, b, ldb, K, Dp, acc);
  if (i + 4 <= M) cols_avx512<4>(c + i * ldc, ldc, a + i * ars, ars, aks, b, ldb, K, Dp, acc), i += 4;
  if (i + 2 <= M) cols_avx512<2>(c + i * ldc, ldc, a + i * ars, ars, aks, b, ldb, K, Dp, acc), i += 2;
  if (i < M) cols_avx512<1>(c + i * ldc, ldc, a + i * ars, ars, aks, b, ldb, K, Dp, acc);
}
// The same product as plain loops (vectorised over the Dp columns) for the AVX2 and baseline clones.
template <int Isa>
SANA_INLINE void small_gemm_loops(float* c, int64_t ldc, const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb, int64_t M, int64_t K,
                                  int64_t Dp, bool acc) {
  for (int64_t i = 0; i < M; i++) {
    float* __restrict cr = c + i * ldc;
    if (!acc)
      for (int64_t j = 0; j < Dp; j++) cr[j] = 0.f;
    for (int64_t k = 0; k < K; k++) {
      const float x = a[i * ars + k * aks];
      const float* __restrict br = b + k * ldb;
      for (int64_t j = 0; j < Dp; j++) cr[j] += x * br[j];
    }
  }
}
__attribute__((target("avx2,fma"))) void small_gemm_avx2(float* c, int64_t ldc, const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb,
                                                         int64_t M, int64_t K, int64_t Dp, bool acc) {
  small_gemm_loops<1>(c, ldc, a, ars, aks, b, ldb, M, K, Dp, acc);
}
void small_gemm_base(float* c, int64_t ldc, const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb, int64_t M, int64_t K, int64_t Dp, bool acc) {
  small_gemm_loops<0>(c, ldc, a, ars, aks, b, ldb, M, K, Dp, acc);
}
using SmallGemm = void (*)(float*, int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, int64_t, bool);
SmallGemm pick_small_gemm() {
  switch (cpu::simd_isa()) {
    case cpu::SimdIsa::Avx512: return small_gemm_avx512;
    case cpu::SimdIsa::Avx2: return small_gemm_avx2;
    default: return small_gemm_base;
  }
}

// One (b, h) of token-major qkv (B, N, 3C), C = H·D: q/k/v rows of head h at channel h·D, C + h·D,
// 2C + h·D of each token; out (B, N, C). Buffers (per thread): S (D, Dp), a (kBlk, D), w (kBlk, Dp).
template <typename T>
SANA_INLINE void la_tokens_head(T* out, const T* qkv, int64_t b, int64_t h, int64_t N, int64_t H, int64_t D, int64_t Dp, float eps, bool relu, SmallGemm gemm,
                                float* S, float* a, float* w) {
  const int64_t C = H * D;
  const T* base = qkv + b * N * 3 * C + h * D;
  std::fill(S, S + D * Dp, 0.f);
  for (int64_t j0 = 0; j0 < N; j0 += kBlk) {
    const int64_t n = std::min(kBlk, N - j0);
    for (int64_t j = 0; j < n; j++) {
      const T* row = base + (j0 + j) * 3 * C;
      cpu::load_f32(a + j * D, row + C, D);       // k
      cpu::load_f32(w + j * Dp, row + 2 * C, D);  // v
      if (relu)
        for (int64_t e = 0; e < D; e++) a[j * D + e] = std::max(a[j * D + e], 0.f);
      w[j * Dp + D] = 1.f;
      for (int64_t d = D + 1; d < Dp; d++) w[j * Dp + d] = 0.f;
    }
    // S (D, Dp) += relu(K)ᵀ (D, n) · V' (n, Dp): a(e, j) = a[j·D + e]
    gemm(S, Dp, a, 1, D, w, Dp, D, n, Dp, true);
  }
  for (int64_t i0 = 0; i0 < N; i0 += kBlk) {
    const int64_t n = std::min(kBlk, N - i0);
    for (int64_t i = 0; i < n; i++) {
      cpu::load_f32(a + i * D, base + (i0 + i) * 3 * C, D);  // q
      if (relu)
        for (int64_t e = 0; e < D; e++) a[i * D + e] = std::max(a[i * D + e], 0.f);
    }
    // O' (n, Dp) = relu(Q) (n, D) · S (D, Dp)
    gemm(w, Dp, a, D, 1, S, Dp, n, D, Dp, false);
    for (int64_t i = 0; i < n; i++) {
      float* o = w + i * Dp;
      const float inv = 1.0f / (o[D] + eps);
      for (int64_t d = 0; d < D; d++) o[d] *= inv;
      cpu::store_f32(out + (b * N + i0 + i) * C + h * D, o, D);
    }
  }
}

// Per ISA: the bf16/f16 conversions, ReLU and normalisation around the two GEMMs took as long as
// the GEMMs themselves when compiled for baseline x86-64.
SANA_ISA_CLONES(la_head_k,
                (T * out, const T* qkv, int64_t b, int64_t h, int64_t N, int64_t H, int64_t D, int64_t Dp, float eps, bool relu, SmallGemm gemm, float* S,
                 float* a, float* w),
                la_tokens_head<T>(out, qkv, b, h, N, H, D, Dp, eps, relu, gemm, S, a, w))

// The AVX-512 head for bf16 and f32: la_tokens_head with its row loops as whole vectors, bit for
// bit (relu as max(0, x) keeps NaN and -0 as std::max(x, 0) does). The generic loops (a
// conversion into the block buffer, then a ReLU pass, the ones column, the zero padding; the
// output scaled in place and then converted) were 38% of this op at 1024²: the strided row loads
// waiting for memory (now prefetched), and the output's re-read of rows just scaled.
template <typename T>
__attribute__((target(SANA_AVX512_TARGET))) void la_head_avx512(T* out, const T* qkv, int64_t b, int64_t h, int64_t N, int64_t H, int64_t D, int64_t Dp,
                                                                float eps, bool relu, SmallGemm, float* S, float* a, float* w) {
  using simd512::lanes16;
  using simd512::load16_f32;
  // Rows are 3C apart (6.9 KB for Sana-600M) and each load of a head's 64 bytes waited for
  // memory; asking 16 tokens ahead measured faster than 8 or 32 (1024²: median 4.07 vs 4.50 ms).
  constexpr int64_t kAhead = 16;
  const int64_t C = H * D;
  const T* base = qkv + b * N * 3 * C + h * D;
  const __m512 zero = _mm512_setzero_ps();
  // this head's D elements at channel offset `off` of token t, when t exists
  const auto ahead = [&](int64_t t, int64_t off) {
    if (t >= N) return;
    const char* p = reinterpret_cast<const char*>(base + t * 3 * C + off);
    for (int64_t o = 0; o < D * int64_t(sizeof(T)); o += 64) __builtin_prefetch(p + o);
  };
  // a row of D (packed: masked tail) from src, relu'd when asked
  const auto act_row = [&](float* dst, const T* src) __attribute__((target(SANA_AVX512_TARGET), always_inline)) {
    for (int64_t d = 0; d < D; d += 16) {
      const __mmask16 m = lanes16(D - d);
      const __m512 x = load16_f32(src + d, m);
      _mm512_mask_storeu_ps(dst + d, m, relu ? _mm512_maskz_max_ps(0xFFFF, zero, x) : x);
    }
  };
  std::fill(S, S + D * Dp, 0.f);
  for (int64_t j0 = 0; j0 < N; j0 += kBlk) {
    const int64_t n = std::min(kBlk, N - j0);
    for (int64_t j = 0; j < n; j++) {
      const T* row = base + (j0 + j) * 3 * C;
      ahead(j0 + j + kAhead, C);      // k
      ahead(j0 + j + kAhead, 2 * C);  // v
      act_row(a + j * D, row + C);    // k
      // v' = [v, 1, 0 …] over the whole padded row (Dp is a multiple of 16)
      for (int64_t d = 0; d < Dp; d += 16) {
        __m512 x = load16_f32(row + 2 * C + d, lanes16(D - d));
        if (D >= d && D < d + 16) x = _mm512_mask_mov_ps(x, __mmask16(1u << (D - d)), _mm512_set1_ps(1.f));
        _mm512_storeu_ps(w + j * Dp + d, x);
      }
    }
    small_gemm_avx512(S, Dp, a, 1, D, w, Dp, D, n, Dp, true);
  }
  for (int64_t i0 = 0; i0 < N; i0 += kBlk) {
    const int64_t n = std::min(kBlk, N - i0);
    for (int64_t i = 0; i < n; i++) {
      ahead(i0 + i + kAhead, 0);
      act_row(a + i * D, base + (i0 + i) * 3 * C);  // q
    }
    small_gemm_avx512(w, Dp, a, D, 1, S, Dp, n, D, Dp, false);
    for (int64_t i = 0; i < n; i++) {
      const float* o = w + i * Dp;
      const __m512 inv = _mm512_set1_ps(1.0f / (o[D] + eps));
      T* dst = out + (b * N + i0 + i) * C + h * D;
      for (int64_t d = 0; d < D; d += 16) simd512::store16_f32(dst + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), inv), lanes16(D - d));
    }
  }
}
template <typename T>
auto la_head_pick() {
  if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, float>)
    if (cpu::simd_isa() == cpu::SimdIsa::Avx512) return &la_head_avx512<T>;
  return la_head_k_pick<T>();
}

template <typename T>
void la_tokens_t(T* out, const T* qkv, int64_t B, int64_t N, int64_t H, int64_t D, float eps, bool relu) {
  const SmallGemm gemm = pick_small_gemm();
  const auto head = la_head_pick<T>();
  const int64_t Dp = (D + 1 + 15) / 16 * 16;
#pragma omp parallel
  {
    std::vector<float> S(static_cast<size_t>(D * Dp)), a(static_cast<size_t>(kBlk * D)), w(static_cast<size_t>(kBlk * Dp));
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < B * H; bh++) head(out, qkv, bh / H, bh % H, N, H, D, Dp, eps, relu, gemm, S.data(), a.data(), w.data());
  }
}

}  // namespace

Status linear_attention_tokens_cpu(void* out, const void* qkv, int64_t B, int64_t N, int64_t H, int64_t D, float eps, bool relu, DType dt) {
  if (B * N * H * D == 0) return nullptr;
  if (!SANA_FLOAT_DISPATCH(dt, la_tokens_t(static_cast<T*>(out), static_cast<const T*>(qkv), B, N, H, D, eps, relu)))
    return "linear_attention_tokens_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

Status linear_attention_cpu(float* out, const float* q, const float* k, const float* v, int64_t B, int64_t H, int64_t N, int64_t D, float eps, bool relu) {
  auto act = [relu](float x) { return relu ? (x > 0.f ? x : 0.f) : x; };
#pragma omp parallel
  {
    std::vector<float> kv(size_t(D * D)), ks(static_cast<size_t>(D)), kr(static_cast<size_t>(D)), qr(static_cast<size_t>(D));
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < B * H; bh++) {
      const float* qb = q + bh * N * D;
      const float* kb = k + bh * N * D;
      const float* vb = v + bh * N * D;
      std::fill(kv.begin(), kv.end(), 0.f);
      std::fill(ks.begin(), ks.end(), 0.f);
      for (int64_t j = 0; j < N; j++) {
        for (int64_t e = 0; e < D; e++) {
          kr[e] = act(kb[j * D + e]);
          ks[e] += kr[e];
        }
        for (int64_t e = 0; e < D; e++) {
          const float ke = kr[e];
          float* row = &kv[e * D];
          for (int64_t d = 0; d < D; d++) row[d] += ke * vb[j * D + d];  // kv[e][d]: (Dk, Dv)
        }
      }
      float* ob = out + bh * N * D;
      for (int64_t i = 0; i < N; i++) {
        float den = 0.f;
        for (int64_t e = 0; e < D; e++) {
          qr[e] = act(qb[i * D + e]);
          den += ks[e] * qr[e];
        }
        const float inv = 1.0f / (den + eps);
        float* o = ob + i * D;
        for (int64_t d = 0; d < D; d++) o[d] = 0.f;
        for (int64_t e = 0; e < D; e++) {  // o (Dv) += kv[e] (Dv) · relu(q)[e]: contiguous, vectorises
          const float qe = qr[e];
          const float* row = &kv[e * D];
          for (int64_t d = 0; d < D; d++) o[d] += row[d] * qe;
        }
        for (int64_t d = 0; d < D; d++) o[d] *= inv;
      }
    }
  }
  return nullptr;
}

}  // namespace sana
