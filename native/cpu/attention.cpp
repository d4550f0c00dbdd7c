// attention: blocked softmax attention with an online softmax (flash-style). Each thread holds
// one (kBq × kBk) score tile and a (kBq × Dv) accumulator; the full Lq × Lk matrix never exists.
// Per score: s = scale·q·k; soft-cap s = cap·tanh(s/cap); s += bias; masked keys are skipped.
// One kernel serves three layouts through row strides (AttnRows): `attention` (B, H, L, D),
// `attentionTokens`, token-major q (B, Lq, H·D) and k|v read in place from (B, Lk, 2, H, D), and
// `selfAttentionRope` (Gemma-2), q|k|v read in place from the fused QKV GEMM's (B, N, Hq+2Hkv, D)
// with RoPE applied to q and k as their rows are converted to f32 (RopeTab).
#include "vec.h"
#include "simd512.h"
#include "gemm.h"
#include "../src/host_cache.h"
#include "../src/cpuinfo.h"
#include <immintrin.h>
#include <atomic>
#include <cstring>
#include <cmath>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace sana {
namespace {

constexpr int64_t kBq = 32, kBk = 64;

// AVX-512 register tiles, written with intrinsics in always-inline templates of the clone's own
// target (R query rows, NV 16-float column vectors are compile-time, so the accumulators stay in
// zmm registers).
//
// s (R, NV·16) = qf (R, D) · kT (D, kBk)[:, :NV·16], kT = a key chunk transposed; only the
// columns of keys the tile uses are computed (a padded caption's 1 or 40 visible keys: 1 or 3
// vectors, not 4). R = 4, NV = 4: per d, 4 key loads and 4 broadcasts feed 16 FMAs (FMA-bound;
// the former 2-row tile was load-bound).
template <int R, int NV>
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline void qk_rows(float* s, const float* qf, const float* kT, int64_t D) {
  __m512 a[R][NV];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) a[r][c] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; d++) {
    __m512 k[NV];
    for (int c = 0; c < NV; c++) k[c] = _mm512_loadu_ps(kT + d * kBk + 16 * c);
    for (int r = 0; r < R; r++) {
      const __m512 x = _mm512_set1_ps(qf[r * D + d]);
      for (int c = 0; c < NV; c++) a[r][c] = _mm512_fmadd_ps(x, k[c], a[r][c]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) _mm512_storeu_ps(s + r * kBk + 16 * c, a[r][c]);
}
template <int NV>
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline void qk_nv(float* s, const float* qf, const float* kT, int64_t nq, int64_t D) {
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4) qk_rows<4, NV>(s + i * kBk, qf + i * D, kT, D);
  switch (nq - i) {
    case 3: qk_rows<3, NV>(s + i * kBk, qf + i * D, kT, D); break;
    case 2: qk_rows<2, NV>(s + i * kBk, qf + i * D, kT, D); break;
    case 1: qk_rows<1, NV>(s + i * kBk, qf + i * D, kT, D); break;
    default: break;
  }
}
__attribute__((target(SANA_AVX512_TARGET))) void qk_avx512(float* s, const float* qf, const float* kT, int64_t nq, int64_t D, int64_t ncol) {
  switch (ncol / 16) {
    case 1: qk_nv<1>(s, qf, kT, nq, D); break;
    case 2: qk_nv<2>(s, qf, kT, nq, D); break;
    case 3: qk_nv<3>(s, qf, kT, nq, D); break;
    default: qk_nv<4>(s, qf, kT, nq, D); break;
  }
}

// acc (R, NV·16 columns at c0) += p (R, nk) · v (nk, same columns). The accumulators stay in
// registers over the whole key loop (R·NV ≤ 20 zmm); per key NV value loads and R broadcasts.
// Dv is padded to Dvp (a multiple of 16, zero columns) in the f32 value copy and the
// accumulator, so there is no scalar tail: the old 64-column tile ran Dv = 72's last 8 columns
// through memory, one store-to-load dependency per key.
template <int R, int NV>
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline void pv_rows(float* acc, int64_t lda, const float* p, const float* vf, int64_t ldv,
                                                                               int64_t nk) {
  __m512 a[R][NV];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) a[r][c] = _mm512_loadu_ps(acc + r * lda + 16 * c);
  for (int64_t j = 0; j < nk; j++) {
    __m512 v[NV];
    for (int c = 0; c < NV; c++) v[c] = _mm512_loadu_ps(vf + j * ldv + 16 * c);
    for (int r = 0; r < R; r++) {
      const __m512 x = _mm512_set1_ps(p[r * kBk + j]);
      for (int c = 0; c < NV; c++) a[r][c] = _mm512_fmadd_ps(x, v[c], a[r][c]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) _mm512_storeu_ps(acc + r * lda + 16 * c, a[r][c]);
}
// Column blocks of 4 vectors (64 floats), or 5 when exactly 5 remain (Dv = 72 → 80: one pass).
template <int R>
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline void pv_cols(float* acc, const float* p, const float* vf, int64_t nk, int64_t Dvp) {
  for (int64_t c = 0; c < Dvp;) {
    const int64_t rem = (Dvp - c) / 16;
    float* a = acc + c;
    const float* v = vf + c;
    switch (rem == 5 ? 5 : rem >= 4 ? 4 : rem) {
      case 5: pv_rows<R, 5>(a, Dvp, p, v, Dvp, nk), c += 80; break;
      case 4: pv_rows<R, 4>(a, Dvp, p, v, Dvp, nk), c += 64; break;
      case 3: pv_rows<R, 3>(a, Dvp, p, v, Dvp, nk), c += 48; break;
      case 2: pv_rows<R, 2>(a, Dvp, p, v, Dvp, nk), c += 32; break;
      default: pv_rows<R, 1>(a, Dvp, p, v, Dvp, nk), c += 16; break;
    }
  }
}
__attribute__((target(SANA_AVX512_TARGET))) void pv_avx512(float* acc, const float* s, const float* vf, int64_t nq, int64_t nk, int64_t Dvp) {
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4) pv_cols<4>(acc + i * Dvp, s + i * kBk, vf, nk, Dvp);
  switch (nq - i) {
    case 3: pv_cols<3>(acc + i * Dvp, s + i * kBk, vf, nk, Dvp); break;
    case 2: pv_cols<2>(acc + i * Dvp, s + i * kBk, vf, nk, Dvp); break;
    case 1: pv_cols<1>(acc + i * Dvp, s + i * kBk, vf, nk, Dvp); break;
    default: break;
  }
}

// Portable tile bodies for AVX2 and baseline: loops the compiler vectorises over the 64 keys (QK)
// and over Dvp (PV). GCC lowers 64-byte vectors through the stack when the ISA has no 64-byte
// registers, so these clones use plain loops.
#define SANA_QK_SIMPLE                                          \
  for (int64_t i = 0; i < nq; i++) {                            \
    float* __restrict srow = s + i * kBk;                       \
    for (int64_t j = 0; j < ncol; j++) srow[j] = 0.f;           \
    for (int64_t d = 0; d < D; d++) {                           \
      const float qv = qf[i * D + d];                           \
      const float* __restrict kr = kT + d * kBk;                \
      for (int64_t j = 0; j < ncol; j++) srow[j] += qv * kr[j]; \
    }                                                           \
  }
#define SANA_PV_SIMPLE                                      \
  for (int64_t i = 0; i < nq; i++) {                        \
    float* __restrict a = acc + i * Dvp;                    \
    const float* p = s + i * kBk;                           \
    for (int64_t j = 0; j < nk; j++) {                      \
      const float pj = p[j];                                \
      if (pj == 0.f) continue;                              \
      const float* __restrict vr = vf + j * Dvp;            \
      for (int64_t d = 0; d < Dvp; d++) a[d] += pj * vr[d]; \
    }                                                       \
  }

// Online-softmax update of a tile: for each row with a finite max, p = exp(s - max) (0 where
// the score is -inf, i.e. masked), rescale the accumulator row by exp(old max - new max), add
// the row sum to l. exp is a branch-free polynomial (range reduction by ln 2, degree-6
// Taylor, |rel err| < 2e-7) so the loop vectorises. The chunk skip in attention_t relies on
// p being exactly 0 for t0 < -87.
#define SANA_SOFTMAX_BODY                                                                                                              \
  for (int64_t i = 0; i < nq; i++) {                                                                                                   \
    float* __restrict row = s + i * kBk;                                                                                               \
    const float mx = mnew[i];                                                                                                          \
    if (mx == -INFINITY) {                                                                                                             \
      for (int64_t j = 0; j < ncol; j++) row[j] = 0.f;                                                                                 \
      continue;                                                                                                                        \
    }                                                                                                                                  \
    for (int64_t j = 0; j < ncol; j++) {                                                                                               \
      const float x = row[j];                                                                                                          \
      const float t0 = x - mx;                                                                                                         \
      const float t = t0 < -87.0f ? -87.0f : t0;                                                                                       \
      const float n = (t * 1.44269504f + 12582912.0f) - 12582912.0f;                                                                   \
      const float r = (t - n * 0.693145752f) - n * 1.42860677e-6f;                                                                     \
      float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f + r * 0.00138888892f))))); \
      const int32_t bits = (int32_t(n) + 127) << 23;                                                                                   \
      float sc2;                                                                                                                       \
      __builtin_memcpy(&sc2, &bits, 4);                                                                                                \
      /* masked (-inf) and e^-87-negligible keys are exactly 0: no denormal p in P·V */                                               \
      row[j] = (t0 < -87.0f || j >= nk) ? 0.f : p * sc2;                                                                               \
    }                                                                                                                                  \
    /* Row sum in 16 lanes (ncol is a multiple of 16): a single running float sum is a serial    */                                    \
    /* chain GCC will not reorder, and cost as much as the exponentials.                          */                                   \
    float lane[16] = {};                                                                                                               \
    for (int64_t j = 0; j < ncol; j += 16)                                                                                             \
      for (int t = 0; t < 16; t++) lane[t] += row[j + t];                                                                              \
    float sum = 0.f;                                                                                                                   \
    for (int t = 0; t < 16; t++) sum += lane[t];                                                                                       \
    const float corr = mold[i] == -INFINITY ? 0.f : std::exp(mold[i] - mx);                                                            \
    if (corr != 1.0f) { /* the max moved (or this is the row's first visible chunk) */                                                 \
      float* __restrict a = acc + i * Dvp;                                                                                             \
      for (int64_t d = 0; d < Dvp; d++) a[d] *= corr;                                                                                  \
    }                                                                                                                                  \
    l[i] = l[i] * corr + sum;                                                                                                          \
  }

// Columns [0, ncol) of the tile (ncol = nk rounded up to 16, the columns QK wrote).
using SmFn = void (*)(float*, float*, float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t);
#define SANA_SM_PARAMS (float* s, float* acc, float* l, const float* mold, const float* mnew, int64_t nq, int64_t nk, int64_t ncol, int64_t Dvp)
// Horizontal sum / max of a vector (GCC 12's _mm512_reduce_* helpers trip -Wmaybe-uninitialized).
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline float hsum16(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s = 0.f;
  for (int k = 0; k < 16; k++) s += t[k];
  return s;
}
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline float hmax16(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float m = t[0];
  for (int k = 1; k < 16; k++) m = t[k] > m ? t[k] : m;
  return m;
}
// AVX-512: the same exp polynomial, constants and masking as SANA_SOFTMAX_BODY, 16 keys per
// vector with the row sum in a vector (the portable body's lane arrays were left partly scalar).
__attribute__((target(SANA_AVX512_TARGET))) void sm_avx512 SANA_SM_PARAMS {
  const __m512 lo87 = _mm512_set1_ps(-87.0f), log2e = _mm512_set1_ps(1.44269504f), shift = _mm512_set1_ps(12582912.0f);
  const __m512 ln2hi = _mm512_set1_ps(0.693145752f), ln2lo = _mm512_set1_ps(1.42860677e-6f), one = _mm512_set1_ps(1.0f);
  const __m512 c2 = _mm512_set1_ps(0.5f), c3 = _mm512_set1_ps(0.166666672f), c4 = _mm512_set1_ps(0.0416666679f), c5 = _mm512_set1_ps(0.00833333377f),
               c6 = _mm512_set1_ps(0.00138888892f);
  for (int64_t i = 0; i < nq; i++) {
    float* row = s + i * kBk;
    const float mx = mnew[i];
    if (mx == -INFINITY) {
      for (int64_t j = 0; j < ncol; j += 16) _mm512_storeu_ps(row + j, _mm512_setzero_ps());
      continue;
    }
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t j = 0; j < ncol; j += 16) {
      const __m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(row + j), vmx);
      // (mask forms with an explicit source: GCC 12's unmasked max/shift pass an "undefined"
      // vector that trips -Wmaybe-uninitialized)
      const __m512 t = _mm512_mask_max_ps(t0, 0xffff, t0, lo87);
      const __m512 big = _mm512_fmadd_ps(t, log2e, shift);  // 1.5·2^23 + n: n in the low mantissa bits
      const __m512 n = _mm512_sub_ps(big, shift);
      const __m512 r = _mm512_fnmadd_ps(n, ln2lo, _mm512_fnmadd_ps(n, ln2hi, t));
      __m512 p = _mm512_fmadd_ps(r, c6, c5);
      p = _mm512_fmadd_ps(r, p, c4);
      p = _mm512_fmadd_ps(r, p, c3);
      p = _mm512_fmadd_ps(r, p, c2);
      p = _mm512_fmadd_ps(r, p, one);
      p = _mm512_fmadd_ps(r, p, one);
      // 2^n from the exponent bits: int32(big) - int32(shift) = n
      const __m512i ni = _mm512_sub_epi32(_mm512_castps_si512(big), _mm512_castps_si512(shift));
      const __m512i e = _mm512_add_epi32(ni, _mm512_set1_epi32(127));
      const __m512 sc2 = _mm512_castsi512_ps(_mm512_mask_slli_epi32(e, 0xffff, e, 23));
      // masked (-inf) and e^-87-negligible keys are exactly 0 (no denormal p in P·V); keys >= nk too
      const int64_t left = nk - j;
      const __mmask16 live = left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
      const __mmask16 keep = _mm512_mask_cmp_ps_mask(live, t0, lo87, _CMP_GE_OQ);
      p = _mm512_maskz_mul_ps(keep, p, sc2);
      _mm512_storeu_ps(row + j, p);
      vsum = _mm512_add_ps(vsum, p);
    }
    const float sum = hsum16(vsum);
    const float corr = mold[i] == -INFINITY ? 0.f : std::exp(mold[i] - mx);
    if (corr != 1.0f) {  // the max moved (or this is the row's first visible chunk)
      float* a = acc + i * Dvp;
      const __m512 vc = _mm512_set1_ps(corr);
      for (int64_t d = 0; d < Dvp; d += 16) _mm512_storeu_ps(a + d, _mm512_mul_ps(_mm512_loadu_ps(a + d), vc));
    }
    l[i] = l[i] * corr + sum;
  }
}
__attribute__((target("avx2,fma"))) void sm_avx2 SANA_SM_PARAMS { SANA_SOFTMAX_BODY }
void sm_base SANA_SM_PARAMS { SANA_SOFTMAX_BODY }

using QkFn = void (*)(float*, const float*, const float*, int64_t, int64_t, int64_t);
using PvFn = void (*)(float*, const float*, const float*, int64_t, int64_t, int64_t);
__attribute__((target("avx2,fma"))) void qk_avx2(float* s, const float* qf, const float* kT, int64_t nq, int64_t D, int64_t ncol) { SANA_QK_SIMPLE }
void qk_base(float* s, const float* qf, const float* kT, int64_t nq, int64_t D, int64_t ncol) { SANA_QK_SIMPLE }
__attribute__((target("avx2,fma"))) void pv_avx2(float* acc, const float* s, const float* vf, int64_t nq, int64_t nk, int64_t Dvp) { SANA_PV_SIMPLE }
void pv_base(float* acc, const float* s, const float* vf, int64_t nq, int64_t nk, int64_t Dvp) { SANA_PV_SIMPLE }

// Scores of a tile after QK: soft-cap (vec.h's polynomial tanh), + bias, -inf outside the
// causal/window band and below key `klo` (keys an earlier pass over this chunk took; a contiguous
// key range per query, so no per-key branch), running max.
#define SANA_SCORE_BODY                                                                     \
  for (int64_t i = 0; i < nq; i++) {                                                        \
    const int64_t qi = i0 + i;                                                              \
    float* __restrict srow = s + i * kBk;                                                   \
    int64_t lo = std::max<int64_t>(0, klo - j0), hi = nk;                                   \
    if (causal) hi = std::min(hi, qi - j0 + 1);                                             \
    if (window > 0) lo = std::max<int64_t>(lo, qi - window + 1 - j0);                       \
    lo = std::min(lo, nk);                                                                  \
    hi = std::max(hi, lo);                                                                  \
    const float* brow = bias ? bias + qi * sq + j0 : nullptr;                               \
    if (softcap > 0.f) {                                                                    \
      const float ic = 1.0f / softcap;                                                      \
      for (int64_t j = 0; j < nk; j++) srow[j] = softcap * cpu::tanh_f(srow[j] * ic);       \
    }                                                                                       \
    if (brow)                                                                               \
      for (int64_t j = 0; j < nk; j++) srow[j] += brow[j];                                  \
    for (int64_t j = 0; j < lo; j++) srow[j] = -INFINITY;                                   \
    for (int64_t j = hi; j < nk; j++) srow[j] = -INFINITY;                                  \
    /* running max in 16 lanes (a vector max per 16 keys), then across them */              \
    float lane[16];                                                                         \
    for (int t = 0; t < 16; t++) lane[t] = m[i];                                            \
    int64_t j = lo;                                                                         \
    for (; j + 16 <= hi; j += 16)                                                           \
      for (int t = 0; t < 16; t++) lane[t] = srow[j + t] > lane[t] ? srow[j + t] : lane[t]; \
    float mx = m[i];                                                                        \
    for (; j < hi; j++) mx = srow[j] > mx ? srow[j] : mx;                                   \
    for (int t = 0; t < 16; t++) mx = lane[t] > mx ? lane[t] : mx;                          \
    mn[i] = mx;                                                                             \
  }
using ScFn = void (*)(float*, const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int64_t, float, int64_t);
#define SANA_SC_PARAMS                                                                                                                              \
  (float* s, const float* bias, const float* m, float* mn, int64_t nq, int64_t nk, int64_t i0, int64_t j0, int64_t sq, bool causal, int64_t window, \
   float softcap, int64_t klo)
// AVX-512: soft-cap and bias as in SANA_SCORE_BODY, then the band mask and the running max on
// whole vectors (masked loads past nk).
__attribute__((target(SANA_AVX512_TARGET))) void sc_avx512 SANA_SC_PARAMS {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t i = 0; i < nq; i++) {
    const int64_t qi = i0 + i;
    float* srow = s + i * kBk;
    int64_t lo = std::max<int64_t>(0, klo - j0), hi = nk;
    if (causal) hi = std::min(hi, qi - j0 + 1);
    if (window > 0) lo = std::max<int64_t>(lo, qi - window + 1 - j0);
    const float* brow = bias ? bias + qi * sq + j0 : nullptr;
    if (softcap > 0.f) {
      const float ic = 1.0f / softcap;
      for (int64_t j = 0; j < nk; j++) srow[j] = softcap * cpu::tanh_f(srow[j] * ic);
    }
    __m512 vmx = _mm512_set1_ps(m[i]);
    const __m512i vlo = _mm512_set1_epi32(int32_t(std::max<int64_t>(lo, 0))), vhi = _mm512_set1_epi32(int32_t(std::min(hi, nk)));
    for (int64_t j = 0; j < nk; j += 16) {
      const __mmask16 in = _mm512_cmplt_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(int32_t(j))), _mm512_set1_epi32(int32_t(nk)));
      __m512 x = _mm512_maskz_loadu_ps(in, srow + j);
      if (brow) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(in, brow + j));
      const __m512i idx = _mm512_add_epi32(lane, _mm512_set1_epi32(int32_t(j)));
      const __mmask16 band = _mm512_cmpge_epi32_mask(idx, vlo) & _mm512_cmplt_epi32_mask(idx, vhi);
      x = _mm512_mask_blend_ps(band, ninf, x);
      _mm512_mask_storeu_ps(srow + j, in, x);
      vmx = _mm512_mask_max_ps(vmx, 0xffff, vmx, x);
    }
    mn[i] = hmax16(vmx);
  }
}
__attribute__((target("avx2,fma"))) void sc_avx2 SANA_SC_PARAMS { SANA_SCORE_BODY }
void sc_base SANA_SC_PARAMS { SANA_SCORE_BODY }

struct Kernels {
  QkFn qk;
  PvFn pv;
  SmFn sm;
  ScFn sc;
};
// ---- bf16 pair tiles (vdpbf16ps) for a kept bf16 k|v (attentionTokens on AVX512-BF16 CPUs) ----
// The kept tiles hold bf16 pairs instead of f32: keys (D/2, kBk, 2), a key's k-pair p at column j;
// values (kBk/2, Dvp, 2), keys 2i and 2i+1 of column d side by side. vdpbf16ps multiplies 16
// columns' pairs by a broadcast pair and adds both products into f32 lanes: QK reads q's bf16
// rows as they are, PV reads P rounded to bf16 (as PyTorch's CPU flash attention does for bf16).
// A standalone single-core test of one (32 × 64, D = 72) tile ran QK at 420-443 GFLOP/s against
// 162 in f32 FMA, PV at 395 against ~160; the tiles take half the memory.
#define SANA_BF16DOT_TARGET "avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,fma"
// s (R, NV·16) = scale · q rows (R, D; bf16, row stride si) · key pairs (D/2, kBk, 2).
template <int R, int NV>
__attribute__((target(SANA_BF16DOT_TARGET), always_inline)) inline void qk2_rows(float* s, const uint16_t* q, int64_t si, const uint16_t* kp, int64_t pairs,
                                                                                 float scale) {
  __m512 a[R][NV];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) a[r][c] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; p++) {
    __m512bh k[NV];
    for (int c = 0; c < NV; c++) k[c] = (__m512bh)_mm512_loadu_si512(kp + (p * kBk + 16 * c) * 2);
    for (int r = 0; r < R; r++) {
      int32_t w;
      std::memcpy(&w, q + r * si + 2 * p, 4);
      const __m512bh x = (__m512bh)_mm512_set1_epi32(w);
      for (int c = 0; c < NV; c++) a[r][c] = _mm512_dpbf16_ps(a[r][c], x, k[c]);
    }
  }
  const __m512 sv = _mm512_set1_ps(scale);
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) _mm512_storeu_ps(s + r * kBk + 16 * c, _mm512_mul_ps(a[r][c], sv));
}
template <int NV>
__attribute__((target(SANA_BF16DOT_TARGET), always_inline)) inline void qk2_nv(float* s, const uint16_t* q, int64_t si, const uint16_t* kp, int64_t nq,
                                                                               int64_t pairs, float scale) {
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4) qk2_rows<4, NV>(s + i * kBk, q + i * si, si, kp, pairs, scale);
  switch (nq - i) {
    case 3: qk2_rows<3, NV>(s + i * kBk, q + i * si, si, kp, pairs, scale); break;
    case 2: qk2_rows<2, NV>(s + i * kBk, q + i * si, si, kp, pairs, scale); break;
    case 1: qk2_rows<1, NV>(s + i * kBk, q + i * si, si, kp, pairs, scale); break;
    default: break;
  }
}
__attribute__((target(SANA_BF16DOT_TARGET))) void qk2_avx512(float* s, const uint16_t* q, int64_t si, const uint16_t* kp, int64_t nq, int64_t D, int64_t ncol,
                                                             float scale) {
  switch (ncol / 16) {
    case 1: qk2_nv<1>(s, q, si, kp, nq, D / 2, scale); break;
    case 2: qk2_nv<2>(s, q, si, kp, nq, D / 2, scale); break;
    case 3: qk2_nv<3>(s, q, si, kp, nq, D / 2, scale); break;
    default: qk2_nv<4>(s, q, si, kp, nq, D / 2, scale); break;
  }
}
// acc (R, NV·16 columns) += P (R, 2·kpairs; bf16 pairs, row stride kBk) · value pairs (columns at
// vp, pair-row stride 2·Dvp).
template <int R, int NV>
__attribute__((target(SANA_BF16DOT_TARGET), always_inline)) inline void pv2_rows(float* acc, int64_t lda, const uint16_t* pb, const uint16_t* vp, int64_t Dvp,
                                                                                 int64_t kpairs) {
  __m512 a[R][NV];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) a[r][c] = _mm512_loadu_ps(acc + r * lda + 16 * c);
  for (int64_t jp = 0; jp < kpairs; jp++) {
    __m512bh v[NV];
    for (int c = 0; c < NV; c++) v[c] = (__m512bh)_mm512_loadu_si512(vp + (jp * Dvp + 16 * c) * 2);
    for (int r = 0; r < R; r++) {
      int32_t w;
      std::memcpy(&w, pb + r * kBk + 2 * jp, 4);
      const __m512bh x = (__m512bh)_mm512_set1_epi32(w);
      for (int c = 0; c < NV; c++) a[r][c] = _mm512_dpbf16_ps(a[r][c], x, v[c]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) _mm512_storeu_ps(acc + r * lda + 16 * c, a[r][c]);
}
template <int R>
__attribute__((target(SANA_BF16DOT_TARGET), always_inline)) inline void pv2_cols(float* acc, const uint16_t* pb, const uint16_t* vp, int64_t kpairs,
                                                                                 int64_t Dvp) {
  // column blocks of up to 5 vectors: R·NV ≤ 20 accumulators
  int64_t c0 = 0;
  for (; c0 + 80 <= Dvp; c0 += 80) pv2_rows<R, 5>(acc + c0, Dvp, pb, vp + c0 * 2, Dvp, kpairs);
  switch ((Dvp - c0) / 16) {
    case 4: pv2_rows<R, 4>(acc + c0, Dvp, pb, vp + c0 * 2, Dvp, kpairs); break;
    case 3: pv2_rows<R, 3>(acc + c0, Dvp, pb, vp + c0 * 2, Dvp, kpairs); break;
    case 2: pv2_rows<R, 2>(acc + c0, Dvp, pb, vp + c0 * 2, Dvp, kpairs); break;
    case 1: pv2_rows<R, 1>(acc + c0, Dvp, pb, vp + c0 * 2, Dvp, kpairs); break;
    default: break;
  }
}
// P (nq, ncol) f32 -> pb (nq, ncol) bf16 (nearest even; P is 0 or a normal number in (0, 1]), then
// acc += P · V over the first ceil(nk / 2) key pairs (a pair's key past nk has P = 0).
__attribute__((target(SANA_BF16DOT_TARGET))) void pv2_avx512(float* acc, const float* s, uint16_t* pb, const uint16_t* vp, int64_t nq, int64_t nk, int64_t ncol,
                                                             int64_t Dvp) {
  for (int64_t i = 0; i < nq; i++)
    for (int64_t j = 0; j < ncol; j += 32) {
      // (j is 0 or 32 of a 64-column row: the 32-column store ends at the row's end at most;
      // with ncol 16 or 48 its upper 16 columns are zeros past ncol, which PV never reads)
      const __m512 lo = _mm512_loadu_ps(s + i * kBk + j);
      const __m512 hi = j + 16 < ncol ? _mm512_loadu_ps(s + i * kBk + j + 16) : _mm512_setzero_ps();
      _mm512_storeu_si512(pb + i * kBk + j, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
  const int64_t kpairs = (nk + 1) / 2;
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4) pv2_cols<4>(acc + i * Dvp, pb + i * kBk, vp, kpairs, Dvp);
  switch (nq - i) {
    case 3: pv2_cols<3>(acc + i * Dvp, pb + i * kBk, vp, kpairs, Dvp); break;
    case 2: pv2_cols<2>(acc + i * Dvp, pb + i * kBk, vp, kpairs, Dvp); break;
    case 1: pv2_cols<1>(acc + i * Dvp, pb + i * kBk, vp, kpairs, Dvp); break;
    default: break;
  }
}
// Keys [j0, n) of one chunk as bf16 pairs: k-pairs into columns of kp (D/2, kBk, 2), values into
// vp (kBk/2, Dvp, 2). The chunk's buffer starts zeroed (columns past n, the pad past Dv, a pair's
// missing second key), so only converted keys are written.
void kv_chunk_pairs(uint16_t* kp, uint16_t* vp, const bf16_t* k, int64_t ksj, const bf16_t* v, int64_t vsj, int64_t j0, int64_t n, int64_t D, int64_t Dv,
                    int64_t Dvp) {
  uint32_t* ku = reinterpret_cast<uint32_t*>(kp);
  for (int64_t j = j0; j < n; j++) {
    const uint16_t* kr = reinterpret_cast<const uint16_t*>(k + j * ksj);
    for (int64_t p = 0; p < D / 2; p++) {
      uint32_t w;
      std::memcpy(&w, kr + 2 * p, 4);
      ku[p * kBk + j] = w;
    }
    const uint16_t* vr = reinterpret_cast<const uint16_t*>(v + j * vsj);
    uint16_t* vo = vp + (j / 2) * Dvp * 2 + (j & 1);
    for (int64_t d = 0; d < Dv; d++) vo[2 * d] = vr[d];
  }
}

// Per call, by vec.h's simd_isa() (cpuid, lowered by SANA_CPU_ISA for the tests).
Kernels pick_kernels() {
  switch (cpu::simd_isa()) {
    case cpu::SimdIsa::Avx512: return Kernels{qk_avx512, pv_avx512, sm_avx512, sc_avx512};
    case cpu::SimdIsa::Avx2: return Kernels{qk_avx2, pv_avx2, sm_avx2, sc_avx2};
    default: return Kernels{qk_base, pv_base, sm_base, sc_base};
  }
}

// Where the rows live: row (b, head, i) of q, k, v and out starts at element b·sb + head·sh + i·si
// of its tensor, with D (q, k) or Dv (v, out) contiguous values.
struct AttnRows {
  int64_t q_sb, q_sh, q_si, k_sb, k_sh, k_sj, v_sb, v_sh, v_sj, o_sb, o_sh, o_si;
};

// RoPE (HF rotate_half) of the rows of one call: cos / sin of position(t)·theta^(-2i/D) for token
// t, (N, D/2) each. Null when the layout has no rotary embedding.
struct RopeTab {
  const float* cs;
  const float* sn;
};
// Rotates row r (D floats, f32) in place as rope_cpu does, then rounds it to T and back: the
// separate rope op stored q and k in the model dtype, and the reference (transformers) does too.
template <typename T>
SANA_INLINE void rope_row(float* r, int64_t D, const float* c, const float* s) {
  const int64_t half = D / 2;
  for (int64_t i = 0; i < half; i++) {
    const float x1 = r[i], x2 = r[i + half];
    r[i] = x1 * c[i] - x2 * s[i];
    r[i + half] = x2 * c[i] + x1 * s[i];
  }
  if constexpr (!std::is_same_v<T, float>) {
    alignas(64) T tmp[cpu::kChunk];
    for (int64_t c0 = 0; c0 < D; c0 += cpu::kChunk) {
      const int64_t m = std::min(cpu::kChunk, D - c0);
      cpu::store_f32(tmp, r + c0, m);
      cpu::load_f32(r + c0, tmp, m);
    }
  }
}

using simd512::lanes16;
using simd512::load16_f32;
using simd512::store16_f32;

// The query tile in f32, scaled: qf (nq, D) = scale · q rows (row stride si); returns the largest
// row norm (for the skip bound). Compiled per ISA: at Sana's shapes this ran as long as the tiles.
// cs / sn: the RoPE rows of the tile's first query, or null.
template <typename T>
SANA_INLINE float q_tile_body(float* qf, const T* q, int64_t si, int64_t nq, int64_t D, float scale, const float* cs, const float* sn) {
  float qn2 = 0.f;
  for (int64_t i = 0; i < nq; i++) {
    float* r = qf + i * D;
    cpu::load_f32(r, q + i * si, D);
    if (cs) rope_row<T>(r, D, cs + i * (D / 2), sn + i * (D / 2));
    float n2 = 0.f;
    for (int64_t d = 0; d < D; d++) r[d] *= scale;
#pragma omp simd reduction(+ : n2)
    for (int64_t d = 0; d < D; d++) n2 += r[d] * r[d];
    qn2 = std::max(qn2, n2);
  }
  return std::sqrt(qn2);
}
// Without RoPE, bf16 and f32 rows go through whole 16-float vectors with one masked tail instead
// of the generic body's three loops per row, each with a scalar tail at Sana's D = 72: that body
// took 15% of a 1024² cross attention, as long as the QK products. Same values (scale · q);
// the norm's sum runs in another order, which the skip bound's 2^-10 margin covers.
template <typename T>
__attribute__((target(SANA_AVX512_TARGET))) float q_tile_avx512(float* qf, const T* q, int64_t si, int64_t nq, int64_t D, float scale, const float* cs,
                                                                const float* sn) {
  if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, float>) {
    if (!cs) {
      const __m512 sv = _mm512_set1_ps(scale);
      float qn2 = 0.f;
      // Token-major q rows are H·D elements apart, a stride the hardware prefetchers do not
      // follow: each row waited for its lines. Rows kAhead ahead are fetched meanwhile.
      constexpr int64_t kAhead = 4;
      const int64_t row_bytes = D * int64_t(sizeof(T));
      auto fetch = [&](int64_t i) {
        const char* p = reinterpret_cast<const char*>(q + i * si);
        for (int64_t o = 0; o < row_bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
        _mm_prefetch(p + row_bytes - 1, _MM_HINT_T0);
      };
      for (int64_t i = 0; i < std::min(nq, kAhead); i++) fetch(i);
      for (int64_t i = 0; i < nq; i++) {
        if (i + kAhead < nq) fetch(i + kAhead);
        const T* r = q + i * si;
        float* o = qf + i * D;
        __m512 n2 = _mm512_setzero_ps();
        for (int64_t d = 0; d < D; d += 16) {
          const __mmask16 m = lanes16(D - d);
          const __m512 x = _mm512_mul_ps(load16_f32(r + d, m), sv);
          _mm512_mask_storeu_ps(o + d, m, x);
          n2 = _mm512_fmadd_ps(x, x, n2);
        }
        qn2 = std::max(qn2, hsum16(n2));
      }
      return std::sqrt(qn2);
    }
  }
  return q_tile_body<T>(qf, q, si, nq, D, scale, cs, sn);
}
template <typename T>
__attribute__((target("avx2,fma"))) float q_tile_avx2(float* qf, const T* q, int64_t si, int64_t nq, int64_t D, float scale, const float* cs, const float* sn) {
  return q_tile_body<T>(qf, q, si, nq, D, scale, cs, sn);
}
template <typename T>
float q_tile_base(float* qf, const T* q, int64_t si, int64_t nq, int64_t D, float scale, const float* cs, const float* sn) {
  return q_tile_body<T>(qf, q, si, nq, D, scale, cs, sn);
}
template <typename T>
auto q_tile_pick() {
  switch (cpu::simd_isa()) {
    case cpu::SimdIsa::Avx512: return &q_tile_avx512<T>;
    case cpu::SimdIsa::Avx2: return &q_tile_avx2<T>;
    default: return &q_tile_base<T>;
  }
}

// Keys [j0, n) of one chunk (n <= kBk keys from `k`, the chunk's first key row, row stride ksj)
// into columns [j0, n) of kT (D, kBk), transposed, zero columns past n, and their values into rows
// [j0, n) of vd (n, Dvp), zero columns past Dv; norms[j] = ‖k_j‖ (of the rotated key when cs / sn,
// the chunk's first RoPE rows, are given). With !convert only the norms (keys past the soft end,
// converted later if the skip test fails). `row` is scratch of kv_row_floats(D), zero past D.
SANA_INLINE size_t kv_row_floats(int64_t D) { return size_t((D + 15) / 16 * 16); }
template <typename T>
SANA_INLINE void kv_chunk_body(float* kT, float* vd, float* norms, const T* k, int64_t ksj, const T* v, int64_t vsj, int64_t j0, int64_t n, int64_t D,
                               int64_t Dv, int64_t Dvp, float* row, bool convert, const float* cs, const float* sn) {
  const int64_t Dp = int64_t(kv_row_floats(D));  // row's length, zero past D
  for (int64_t j = j0; j < n; j++) {
    cpu::load_f32(row, k + j * ksj, D);
    if (cs) rope_row<T>(row, D, cs + j * (D / 2), sn + j * (D / 2));
    // 16 lane sums, then a 4-step tree: an `omp simd` reduction compiled to a 16-add serial
    // chain through the stack per key, 40% of a 2 × 64-query cross attention's time.
    float lanes[16] = {};
    for (int64_t d = 0; d < Dp; d += 16)
      for (int l = 0; l < 16; l++) lanes[l] += row[d + l] * row[d + l];
    for (int w = 8; w >= 1; w /= 2)
      for (int l = 0; l < w; l++) lanes[l] += lanes[l + w];
    norms[j] = std::sqrt(lanes[0]);
    if (convert)
      for (int64_t d = 0; d < D; d++) kT[d * kBk + j] = row[d];
  }
  if (!convert) return;
  for (int64_t j = n; j < kBk; j++)
    for (int64_t d = 0; d < D; d++) kT[d * kBk + j] = 0.f;
  for (int64_t j = j0; j < n; j++) {
    cpu::load_f32(vd + j * Dvp, v + j * vsj, Dv);
    for (int64_t d = Dv; d < Dvp; d++) vd[j * Dvp + d] = 0.f;
  }
}
// ‖k_j‖ of n bf16 key rows (row stride ksj) straight from bf16, for the chunks only the skip test
// reads (past a padded caption's soft end: most of Sana's cross attention keys, every step). Per
// key a few FMAs and an in-register reduction; keys are independent, so they overlap. kv_chunk's
// convert-then-reduce loop ran ~150 cycles per 72-value key.
__attribute__((target(SANA_AVX512_TARGET))) void key_norms_bf16_avx512(float* norms, const bf16_t* k, int64_t ksj, int64_t n, int64_t D) {
  for (int64_t j = 0; j < n; j++) {
    const bf16_t* r = k + j * ksj;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 16) {
      const __m512 x = load16_f32(r + d, lanes16(D - d));
      acc = _mm512_fmadd_ps(x, x, acc);
    }
    norms[j] = std::sqrt(hsum16(acc));
  }
}
// kv's keys and values as attention_t's f32 tiles, kept on kv's storage (attention_tokens): a
// prepared caption's k|v are read by every sampling step unchanged, and converting them (with the
// key norms of the skip test) was a fixed ~0.2 ms per call, most of a small image's cross
// attention. Per (b, chunk) one buffer of Hkv key tiles (D, kBk) then Hkv value rows (kBk, Dvp),
// allocated when the chunk is first converted (a short prompt converts one chunk of five); its
// state and converted prefix persist across calls, so later calls convert only what a call
// needs beyond them (the same rules as within a call). Per key, ‖k_j‖ once.
struct KvCache : WeightCache {
  const void* kv = nullptr;
  int64_t B = 0, H = 0, Lk = 0, D = 0, chunks = 0, Dvp = 0;
  DType dt = DType::F32;
  bool pairs = false;                         // bf16 pair tiles (bf16dot) instead of f32 tiles
  std::vector<float*> bufs;                   // (B·chunks), null until converted
  std::unique_ptr<std::atomic<int>[]> state;  // (B·chunks), attention_t's kNone / kPrefix / kReady
  std::vector<int64_t> done;                  // (B·chunks): converted prefix (keys) of a kPrefix chunk
  std::vector<float> norms;                   // (B·H, Lk)
  std::vector<uint8_t> normed;                // (B·chunks): norms computed
  // f32 tiles, or bf16 pairs in half the bytes (D even, Dvp a multiple of 16)
  size_t chunk_floats() const { return size_t(H * (D * kBk + kBk * Dvp)) / (pairs ? 2 : 1); }
  ~KvCache() override {
    for (float* p : bufs)
      if (p) host_cache_free(p);
  }
  size_t bytes() const override {
    size_t n = norms.size() * sizeof(float);
    for (float* p : bufs)
      if (p) n += chunk_floats() * sizeof(float);
    return n;
  }
};
std::mutex g_kv_slot_mu;
KvCache* kv_cache_for(WeightCacheSlot* slot, const void* kv, int64_t B, int64_t H, int64_t Lk, int64_t D, DType dt, bool pairs) {
  std::lock_guard<std::mutex> lock(g_kv_slot_mu);
  auto* c = dynamic_cast<KvCache*>(slot->get());
  if (c && c->kv == kv && c->B == B && c->H == H && c->Lk == Lk && c->D == D && c->dt == dt && c->pairs == pairs) return c;
  auto fresh = std::make_unique<KvCache>();
  fresh->kv = kv, fresh->B = B, fresh->H = H, fresh->Lk = Lk, fresh->D = D, fresh->dt = dt, fresh->pairs = pairs;
  fresh->chunks = (Lk + kBk - 1) / kBk;
  fresh->Dvp = (D + 15) / 16 * 16;
  const size_t nbc = size_t(B * fresh->chunks);
  fresh->bufs.assign(nbc, nullptr);
  fresh->state.reset(new std::atomic<int>[nbc]);
  for (size_t i = 0; i < nbc; i++) fresh->state[i].store(0, std::memory_order_relaxed);
  fresh->done.assign(nbc, 0);
  fresh->norms.assign(size_t(B * H * Lk), 0.f);
  fresh->normed.assign(nbc, 0);
  c = fresh.get();
  *slot = std::move(fresh);
  return c;
}

SANA_ISA_CLONES(kv_chunk_k,
                (float* kT, float* vd, float* norms, const T* k, int64_t ksj, const T* v, int64_t vsj, int64_t j0, int64_t n, int64_t D, int64_t Dv,
                 int64_t Dvp, float* row, bool convert, const float* cs, const float* sn),
                kv_chunk_body<T>(kT, vd, norms, k, ksj, v, vsj, j0, n, D, Dv, Dvp, row, convert, cs, sn))
// Output rows: out[i] = acc[i] / l[i] (0 for a row that saw no key), rounded once.
template <typename T>
SANA_INLINE void out_tile_body(T* out, int64_t osi, float* acc, const float* l, int64_t nq, int64_t Dv, int64_t Dvp) {
  for (int64_t i = 0; i < nq; i++) {
    // A fully masked row has no defined softmax; it yields zeros rather than NaN.
    const float inv = l[i] > 0.f ? 1.0f / l[i] : 0.f;
    float* a = acc + i * Dvp;
    for (int64_t d = 0; d < Dv; d++) a[d] *= inv;
    cpu::store_f32(out + i * osi, a, Dv);
  }
}
SANA_ISA_CLONES(out_tile_k, (T * out, int64_t osi, float* acc, const float* l, int64_t nq, int64_t Dv, int64_t Dvp),
                out_tile_body<T>(out, osi, acc, l, nq, Dv, Dvp))
// The AVX-512 output tile for bf16 and f32, as q_tile_avx512 and for the same reason (9% of a
// 1024² cross attention): the accumulator rows are whole vectors (Dvp), the output's tail is one
// masked store. Bit for bit out_tile_body: a · (1 / l), then cpu::store_f32's rounding (nearest
// even, NaN kept quiet).
template <typename T>
__attribute__((target(SANA_AVX512_TARGET))) void out_tile_avx512(T* out, int64_t osi, float* acc, const float* l, int64_t nq, int64_t Dv, int64_t Dvp) {
  for (int64_t i = 0; i < nq; i++) {
    const __m512 inv = _mm512_set1_ps(l[i] > 0.f ? 1.0f / l[i] : 0.f);
    const float* a = acc + i * Dvp;
    T* o = out + i * osi;
    for (int64_t d = 0; d < Dv; d += 16) {
      const __mmask16 m = lanes16(Dv - d);
      const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(a + d), inv);
      store16_f32(o + d, x, m);
    }
  }
}
template <typename T>
auto out_tile_pick() {
  if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, float>)
    if (cpu::simd_isa() == cpu::SimdIsa::Avx512) return &out_tile_avx512<T>;
  return out_tile_k_pick<T>();
}

template <typename T>
void attention_t(T* out, const T* q, const T* k, const T* v, const float* bias, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t Lk, int64_t D,
                 int64_t Dv, int64_t sb, int64_t sh, int64_t sq, float scale, float softcap, bool causal, int64_t window, const AttnRows& R,
                 const RopeTab* rope = nullptr, KvCache* kc = nullptr) {
  const Kernels kKernels = pick_kernels();
  const auto q_tile = q_tile_pick<T>();
  const auto kv_chunk = kv_chunk_k_pick<T>();
  const auto out_tile = out_tile_pick<T>();
  const bool avx512 = cpu::simd_isa() == cpu::SimdIsa::Avx512;
  const int64_t group = Hq / Hkv, qblocks = (Lq + kBq - 1) / kBq, chunks = (Lk + kBk - 1) / kBk;
  const int64_t Dvp = (Dv + 15) / 16 * 16;  // value/accumulator row stride: whole 16-float vectors
  // K converted once to f32 chunks of kBk keys, each transposed to (D, kBk) and zero-padded;
  // V converted once to f32 (B, Hkv, Lk, Dvp), zero columns past Dv. Shared read-only by all
  // query blocks; in the calling thread's scratch (reused across calls: no page faults).
  // Up to 4 Mi floats each (Sana's cross attention: 1.4 Mi) the thread's scratch, kept between
  // calls; larger (long Gemma prompts) a heap buffer freed after the call, so one long prompt does
  // not pin its size for the rest of the process.
  // With a KvCache (kc), the tiles live in its per-chunk buffers instead, kept across calls.
  constexpr size_t kKeep = size_t(4) << 20;
  const size_t nk_all = kc ? 0 : size_t(B * Hkv * chunks * D * kBk), nv_all = kc ? 0 : size_t(B * Hkv * Lk * Dvp);
  std::vector<float> big_k, big_v;
  float* kT_all = kc ? nullptr : nk_all <= kKeep ? cpu::scratch_floats(4, nk_all) : (big_k.resize(nk_all), big_k.data());
  float* v_all = kc ? nullptr : nv_all <= kKeep ? cpu::scratch_floats(5, nv_all) : (big_v.resize(nv_all), big_v.data());
  // Chunk (b, c)'s tiles: kv head hk's keys (D, kBk) at k + hk·k_hs, its values (kBk rows of Dvp)
  // at v + hk·v_hs. A cached chunk's buffer exists once the chunk has been converted (convert_at
  // makes it; only the thread converting the chunk writes the pointer, before its release store).
  struct ChunkAt {
    float* k;
    int64_t k_hs;
    float* v;
    int64_t v_hs;
  };
  auto chunk_at = [&](int64_t b, int64_t c) -> ChunkAt {
    if (kc) {
      float* p = kc->bufs[size_t(b * chunks + c)];
      return {p, D * kBk, p + Hkv * D * kBk, kBk * Dvp};
    }
    return {kT_all + (b * Hkv * chunks + c) * D * kBk, chunks * D * kBk, v_all + (b * Hkv * Lk + c * kBk) * Dvp, Lk * Dvp};
  };
  // bf16 pair tiles (KvCache::pairs; only ever set for bf16): QK, PV and conversion take the
  // bf16dot kernels.
  const bool pairs = kc && kc->pairs;
  auto convert_at = [&](int64_t b, int64_t c) -> ChunkAt {
    if (kc && !kc->bufs[size_t(b * chunks + c)]) {
      void* p = host_cache_alloc(kc->chunk_floats() * sizeof(float));
      if (!p) throw std::bad_alloc();  // (as a scratch vector's allocation would)
      if (pairs) std::memset(p, 0, kc->chunk_floats() * sizeof(float));
      kc->bufs[size_t(b * chunks + c)] = static_cast<float*>(p);
    }
    return chunk_at(b, c);
  };
  // Per (b·Hkv + hk, chunk): max ‖k_j‖ over the chunk's keys (knorm) and over its keys at or past
  // the batch's soft end (ktail); per (b, chunk): the largest key bias (bmax).
  float* knorm = cpu::scratch_floats(6, size_t(2 * B * Hkv * chunks + B * chunks));
  float* ktail = knorm + B * Hkv * chunks;
  float* bmax = ktail + B * Hkv * chunks;
  // Keys that cannot matter, per batch row of a key bias (sh = sq = 0):
  // - key_end: trailing keys at -inf or <= -1e30 (the usual "masked" fill) get a probability of
  //   exactly 0 once any key is visible; they are never read. A batch whose keys are all masked
  //   keeps every key (its softmax is then uniform, as in the reference).
  // - soft_end: one past the last key whose bias is within 1000 of the row's largest (Sana's
  //   padded caption: (1 - mask)·-10000, soft_end = the prompt length). The keys after it are
  //   taken only if `negligible` below cannot prove their probabilities are exactly 0.
  const bool key_bias = !bias || (sh == 0 && sq == 0);
  const bool soft_ok = bias && key_bias && !causal && window <= 0;
  std::vector<int64_t> key_end(static_cast<size_t>(B), Lk), soft_end(static_cast<size_t>(B), Lk);
  std::vector<float> btail(static_cast<size_t>(B), -INFINITY);
  // Per (b, chunk): how much of it is converted (state) and, for kPrefix, up to which key (done);
  // a KvCache's own, carried over from earlier calls.
  enum : int { kNone = 0, kBusy = 1, kReady = 2, kPrefix = 3 };
  std::unique_ptr<std::atomic<int>[]> own_ready;
  std::vector<int64_t> own_done;
  if (!kc) {
    own_ready.reset(new std::atomic<int>[size_t(B * chunks)]);
    for (int64_t i = 0; i < B * chunks; i++) own_ready[size_t(i)].store(kNone, std::memory_order_relaxed);
    own_done.assign(size_t(B * chunks), 0);
  }
  std::atomic<int>* ready = kc ? kc->state.get() : own_ready.get();
  int64_t* done = kc ? kc->done.data() : own_done.data();
  for (int64_t b = 0; b < B; b++) {
    if (bias && key_bias) {
      const float* br = bias + b * sb;
      int64_t e = Lk;
      while (e > 0 && br[e - 1] <= -1e30f) e--;
      if (e > 0) key_end[b] = e;
      if (soft_ok) {
        float top = -INFINITY;
        for (int64_t j = 0; j < Lk; j++) top = std::max(top, br[j]);
        int64_t se = Lk;
        while (se > 0 && top > -INFINITY && br[se - 1] < top - 1000.0f) se--;
        soft_end[b] = std::max<int64_t>(se, 1);
        for (int64_t j = soft_end[b]; j < Lk; j++) btail[b] = std::max(btail[b], br[j]);
      }
    }
    for (int64_t c = 0; c < chunks; c++) {
      float mb = bias ? -INFINITY : 0.f;
      if (bias && key_bias)
        for (int64_t j = c * kBk; j < std::min(Lk, (c + 1) * kBk); j++) mb = std::max(mb, bias[b * sb + j]);
      bmax[b * chunks + c] = mb;
    }
  }
  // Keys [j0, n) of chunk (b, c), kv head hk, through kv_chunk: norms into nrm (indexed by key in
  // the chunk), converted when `convert`.
  auto chunk_keys = [&](int64_t b, int64_t c, int64_t hk, int64_t j0, int64_t n, float* nrm, float* row, bool convert) {
    if constexpr (std::is_same_v<T, bf16_t>) {
      if (pairs && convert) {
        uint16_t* base = reinterpret_cast<uint16_t*>(convert_at(b, c).k);
        const bf16_t* kr = k + b * R.k_sb + hk * R.k_sh + c * kBk * R.k_sj;
        key_norms_bf16_avx512(nrm + j0, kr + j0 * R.k_sj, R.k_sj, n - j0, D);
        kv_chunk_pairs(base + hk * D * kBk, base + Hkv * D * kBk + hk * kBk * Dvp, kr, R.k_sj, v + b * R.v_sb + hk * R.v_sh + c * kBk * R.v_sj, R.v_sj, j0, n,
                       D, Dv, Dvp);
        return;
      }
    }
    float *kt = nullptr, *vd = nullptr;
    if (convert) {
      const ChunkAt at = convert_at(b, c);
      kt = at.k + hk * at.k_hs;
      vd = at.v + hk * at.v_hs;
    }
    kv_chunk(kt, vd, nrm, k + b * R.k_sb + hk * R.k_sh + c * kBk * R.k_sj, R.k_sj, v + b * R.v_sb + hk * R.v_sh + c * kBk * R.v_sj, R.v_sj, j0, n, D, Dv, Dvp,
             row, convert, rope ? rope->cs + c * kBk * (D / 2) : nullptr, rope ? rope->sn + c * kBk * (D / 2) : nullptr);
  };
  // One parallel region (conversion, barrier, query blocks): on a loaded machine every fork/join
  // can wait a scheduler slice for a descheduled thread.
#pragma omp parallel
  {
    {
      // Work item = (b, chunk), all kv heads: a token-major key row holds every head side by side,
      // so each row is read once while it is in cache (one head at a time refetched it per head).
      std::vector<float> row(kv_row_floats(D)), nrm(static_cast<size_t>(kBk));
#pragma omp for schedule(dynamic)
      for (int64_t bc = 0; bc < B * chunks; bc++) {
        const int64_t b = bc / chunks, c = bc % chunks, n = std::min(kBk, Lk - c * kBk);
        // Chunks entirely past the soft end wait for `ensure` (most never convert).
        // Chunks past key_end are never read (their probabilities are exactly 0): norms only.
        const bool now = (!soft_ok || c * kBk < soft_end[b]) && c * kBk < key_end[b];
        // The chunk holding the soft end converts its keys up to it, rounded up to the 16 columns
        // QK reads, now (the rest waits for `ensure`): a short prompt has 1–40 real keys of 64.
        const int64_t pre = now && soft_ok ? std::min(n, (soft_end[b] - c * kBk + 15) / 16 * 16) : now ? n : 0;
        // What earlier calls converted (a KvCache's chunk; this thread alone touches it until the
        // barrier) and whether its key norms are known: a chunk gets its norms on its first visit,
        // when nothing of it is converted yet.
        const int s0 = ready[bc].load(std::memory_order_acquire);
        const int64_t have = s0 == kReady ? n : s0 == kPrefix ? done[bc] : 0;
        const bool need_norms = !(kc && kc->normed[size_t(bc)]);
        for (int64_t hk = 0; hk < Hkv; hk++) {
          const int64_t bh = b * Hkv + hk;
          float* nr = kc ? kc->norms.data() + bh * Lk + c * kBk : nrm.data();
          if (pre > have) chunk_keys(b, c, hk, have, pre, nr, row.data(), true);
          if (need_norms && pre < n) {  // norms only
            if (!rope && avx512 && std::is_same_v<T, bf16_t>)
              key_norms_bf16_avx512(nr + pre, reinterpret_cast<const bf16_t*>(k + b * R.k_sb + hk * R.k_sh + (c * kBk + pre) * R.k_sj), R.k_sj, n - pre, D);
            else chunk_keys(b, c, hk, pre, n, nr, row.data(), false);
          }
          float nmax = 0.f, tmax = 0.f;
          for (int64_t j = 0; j < n; j++) {
            nmax = std::max(nmax, nr[j]);
            if (c * kBk + j >= soft_end[b]) tmax = std::max(tmax, nr[j]);
          }
          knorm[bh * chunks + c] = nmax;
          ktail[bh * chunks + c] = tmax;
        }
        if (kc) kc->normed[size_t(bc)] = 1;
        const int64_t upto = std::max(have, pre);
        done[bc] = upto;
        ready[bc].store(upto == n ? kReady : upto > 0 ? kPrefix : kNone, std::memory_order_release);
      }
    }
    // Makes keys [0, upto) of chunk (b, c) readable: converts its keys [done, n), every kv head, on
    // first use past its converted prefix (kNone / kPrefix → kBusy → kReady). The prefix's columns
    // and rows are not rewritten: other threads may be reading them. A thread that finds the chunk
    // busy waits (the converting thread is running it).
    auto ensure = [&](int64_t b, int64_t c, int64_t upto) {
      std::atomic<int>& st = ready[b * chunks + c];
      int s = st.load(std::memory_order_acquire);
      while (s != kReady && !(s == kPrefix && done[b * chunks + c] >= upto)) {
        if (s == kBusy) {
          std::this_thread::yield();
          s = st.load(std::memory_order_acquire);
          continue;
        }
        if (!st.compare_exchange_weak(s, kBusy, std::memory_order_acq_rel)) continue;
        std::vector<float> row(kv_row_floats(D)), nrm(static_cast<size_t>(kBk));
        const int64_t n = std::min(kBk, Lk - c * kBk), j0 = s == kPrefix ? done[b * chunks + c] : 0;
        for (int64_t hk = 0; hk < Hkv; hk++) chunk_keys(b, c, hk, j0, n, nrm.data(), row.data(), true);
        done[b * chunks + c] = n;
        st.store(kReady, std::memory_order_release);
        return;
      }
    };
    // Per-thread tiles: queries (kBq, D), scores (kBq, kBk), output accumulator (kBq, Dvp),
    // running max (old, new) and sum per query.
    std::vector<float> qf(static_cast<size_t>(kBq * D));
    std::vector<float> sc(static_cast<size_t>(kBq * kBk)), acc(static_cast<size_t>(kBq * Dvp)), m(kBq), mn(kBq), l(kBq);
    std::vector<uint16_t> pb(pairs ? size_t(kBq * kBk) : 0);  // P as bf16 (pair tiles)
#pragma omp for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < Hq; h++)
        for (int64_t qb = 0; qb < qblocks; qb++) {
          const int64_t i0 = qb * kBq, nq = std::min(kBq, Lq - i0);
          const int64_t hk = h / group;
          const float* kn = knorm + (b * Hkv + hk) * chunks;
          const float* bias_bh = bias ? bias + b * sb + h * sh : nullptr;
          const T* qp = q + b * R.q_sb + h * R.q_sh + i0 * R.q_si;
          const float qn = q_tile(qf.data(), qp, R.q_si, nq, D, scale, rope ? rope->cs + i0 * (D / 2) : nullptr,
                                  rope ? rope->sn + i0 * (D / 2) : nullptr);  // max ‖scale·q_i‖ of the block
          std::fill(acc.begin(), acc.end(), 0.f);
          std::fill(m.begin(), m.end(), -INFINITY);
          std::fill(l.begin(), l.end(), 0.f);
          // Keys [j0, j0 + nk) of chunk j0 / kBk; keys below klo are masked (already taken).
          auto run_chunk = [&](int64_t j0, int64_t nk, int64_t klo) {
            const int64_t ncol = (nk + 15) / 16 * 16;
            ensure(b, j0 / kBk, j0 % kBk + nk);
            const ChunkAt at = chunk_at(b, j0 / kBk);  // (j0 is a chunk's first key)
            const uint16_t* base = reinterpret_cast<const uint16_t*>(at.k);
            if (pairs) qk2_avx512(sc.data(), reinterpret_cast<const uint16_t*>(qp), R.q_si, base + hk * D * kBk, nq, D, ncol, scale);
            else kKernels.qk(sc.data(), qf.data(), at.k + hk * at.k_hs, nq, D, ncol);
            kKernels.sc(sc.data(), bias_bh, m.data(), mn.data(), nq, nk, i0, j0, sq, causal, window, softcap, klo);
            kKernels.sm(sc.data(), acc.data(), l.data(), m.data(), mn.data(), nq, nk, ncol, Dvp);
            std::copy(mn.begin(), mn.begin() + nq, m.begin());
            if (pairs) pv2_avx512(acc.data(), sc.data(), pb.data(), base + Hkv * D * kBk + hk * kBk * Dvp, nq, nk, ncol, Dvp);
            else kKernels.pv(acc.data(), sc.data(), at.v + hk * at.v_hs, nq, nk, Dvp);
          };
          // Exact skip test for keys with ‖k‖ <= kmax and bias <= bmx: a score is at most
          // ‖scale·q‖·‖k‖ (Cauchy-Schwarz; the factor 1 + 2^-10 and the +1 cover f32 rounding of
          // the dot product, the norms and the bias add for D <= 8192), soft-capped at most
          // `softcap`, plus the bias. When that is 88 below every row's running max, every p of
          // those keys is exactly 0 in the softmax (t0 < -87) and neither max nor sum moves, so
          // skipping them changes no bit.
          auto negligible = [&](float kmax, float bmx) {
            if (!key_bias) return false;
            float mmin = INFINITY;
            for (int64_t i = 0; i < nq; i++) mmin = std::min(mmin, m[i]);
            if (!(mmin > -INFINITY)) return false;
            float bound = qn * kmax * (1.0f + 1.0f / 1024) + 1.0f;
            if (softcap > 0.f) bound = std::min(bound, softcap * (1.0f + 1.0f / 1024) + 1.0f);
            return bound + bmx - mmin < -88.0f;
          };
          // Keys any query of this block can see.
          int64_t j_end = key_end[b], j_begin = 0;
          if (causal) j_end = std::min(j_end, i0 + nq);
          if (window > 0) j_begin = std::max<int64_t>(0, i0 - window + 1);
          const int64_t soft = soft_ok ? std::min(j_end, soft_end[b]) : j_end;
          for (int64_t j0 = j_begin - (j_begin % kBk); j0 < soft; j0 += kBk) {
            if (negligible(kn[j0 / kBk], bmax[b * chunks + j0 / kBk])) continue;
            run_chunk(j0, std::min(kBk, soft - j0), 0);
          }
          if (soft < j_end) {
            // Past the soft end: all of it at once when the tail bound allows (the usual case),
            // else the rest of the chunk holding `soft`, then each later chunk unless negligible.
            float kt = 0.f;
            for (int64_t c = soft / kBk; c < chunks; c++) kt = std::max(kt, ktail[(b * Hkv + hk) * chunks + c]);
            if (!negligible(kt, btail[b])) {
              for (int64_t j0 = soft - soft % kBk; j0 < j_end; j0 += kBk) {
                if (negligible(kn[j0 / kBk], bmax[b * chunks + j0 / kBk])) continue;
                run_chunk(j0, std::min(kBk, j_end - j0), soft);
              }
            }
          }
          out_tile(out + b * R.o_sb + h * R.o_sh + i0 * R.o_si, R.o_si, acc.data(), l.data(), nq, Dv, Dvp);
        }
  }
}

// RoPE tables for `positions`, theta and D, computed as rope_cpu does. The last one is kept: every
// layer of an encode asks for the same table (26 × 2 recomputations cost ~60 ms per Gemma-2 prompt).
// Shared by pointer, so calls from several threads only hold the lock for the lookup.
struct RopeTables {
  std::vector<int64_t> pos;
  float theta;
  int64_t D;
  std::vector<float> cs, sn;  // (N, D/2) each
};
std::shared_ptr<const RopeTables> rope_tables(const int64_t* positions, int64_t N, int64_t D, float theta) {
  static std::mutex mu;
  static std::shared_ptr<const RopeTables> last;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (last && last->theta == theta && last->D == D && last->pos.size() == size_t(N) && std::equal(last->pos.begin(), last->pos.end(), positions)) return last;
  }
  auto t = std::make_shared<RopeTables>();
  const int64_t half = D / 2;
  t->pos.assign(positions, positions + N);
  t->theta = theta;
  t->D = D;
  t->cs.resize(size_t(N * half));
  t->sn.resize(size_t(N * half));
  for (int64_t i = 0; i < half; i++) {
    const float inv = 1.0f / std::pow(theta, float(2 * i) / float(D));
    for (int64_t k = 0; k < N; k++) {
      const float a = float(positions[k]) * inv;
      t->cs[size_t(k * half + i)] = std::cos(a);
      t->sn[size_t(k * half + i)] = std::sin(a);
    }
  }
  std::lock_guard<std::mutex> lock(mu);
  last = t;
  return t;
}

// Rows that see no key at all (a padded query whose causal window holds only padding, or a row
// of padding alone) get the mean of every value row of their batch item, 0..N-1: the reference
// fills masked scores with finfo(f32).min instead of skipping them, so such a row's softmax is
// uniform over all N keys.
template <typename T>
void uniform_rows(T* out, const T* qkv, const int64_t* mask, int64_t B, int64_t N, int64_t Hq, int64_t Hkv, int64_t D, int64_t window) {
  const int64_t C3 = (Hq + 2 * Hkv) * D, group = Hq / Hkv;
  std::vector<int64_t> cnt(static_cast<size_t>(N + 1));
  std::vector<float> mean;
  for (int64_t b = 0; b < B; b++) {
    const int64_t* m = mask + b * N;
    cnt[0] = 0;
    for (int64_t j = 0; j < N; j++) cnt[size_t(j + 1)] = cnt[size_t(j)] + (m[j] != 0);
    mean.clear();
    for (int64_t i = 0; i < N; i++) {
      const int64_t lo = window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
      if (cnt[size_t(i + 1)] - cnt[size_t(lo)] > 0) continue;
      if (mean.empty()) {
        // (Hkv, D) means, f32 sums in key order
        mean.assign(size_t(Hkv * D), 0.f);
        for (int64_t j = 0; j < N; j++) {
          const T* v = qkv + (b * N + j) * C3 + (Hq + Hkv) * D;
          for (int64_t e = 0; e < Hkv * D; e++) mean[size_t(e)] += to_f32(v[e]);
        }
        for (float& x : mean) x /= float(N);
      }
      for (int64_t h = 0; h < Hq; h++) {
        T* o = out + (b * N + i) * Hq * D + h * D;
        const float* src = mean.data() + (h / group) * D;
        for (int64_t d = 0; d < D; d++) o[d] = from_f32<T>(src[d]);
      }
    }
  }
}

template <typename T>
void self_attention_rope_t(T* out, const T* qkv, const int64_t* positions, const int64_t* mask, int64_t B, int64_t N, int64_t Hq, int64_t Hkv, int64_t D,
                           float theta, float scale, float softcap, int64_t window) {
  // qkv (B, N, Hq + 2·Hkv, D): q heads, then k heads, then v heads of each token; out (B, N, Hq, D).
  const int64_t C3 = (Hq + 2 * Hkv) * D, Co = Hq * D;
  const AttnRows R{N * C3, D, C3, N * C3, D, C3, N * C3, D, C3, N * Co, D, Co};
  // Key padding as a key bias (0 / -inf): trailing padded keys are then never converted or read.
  std::vector<float> bias;
  if (mask) {
    bias.resize(size_t(B * N));
    for (int64_t e = 0; e < B * N; e++) bias[size_t(e)] = mask[e] != 0 ? 0.f : -INFINITY;
  }
  const auto tables = rope_tables(positions, N, D, theta);
  const RopeTab tab{tables->cs.data(), tables->sn.data()};
  attention_t(out, qkv, qkv + Hq * D, qkv + (Hq + Hkv) * D, mask ? bias.data() : nullptr, B, Hq, Hkv, N, N, D, D, N, 0, 0, scale, softcap, true, window, R,
              &tab);
  // Without a mask every query sees at least itself.
  if (mask) uniform_rows(out, qkv, mask, B, N, Hq, Hkv, D, window);
}
}  // namespace

Status attention_cpu(void* out, const void* q, const void* k, const void* v, const float* bias, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t Lk,
                     int64_t D, int64_t Dv, int64_t bias_sb, int64_t bias_sh, int64_t bias_sq, float scale, float softcap, bool causal, int64_t window,
                     DType dt) {
  // (B, H, L, D) rows, contiguous heads.
  const AttnRows R{Hq * Lq * D, Lq * D, D, Hkv * Lk * D, Lk * D, D, Hkv * Lk * Dv, Lk * Dv, Dv, Hq * Lq * Dv, Lq * Dv, Dv};
  if (!SANA_FLOAT_DISPATCH(dt, attention_t(static_cast<T*>(out), static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), bias, B, Hq, Hkv,
                                           Lq, Lk, D, Dv, bias_sb, bias_sh, bias_sq, scale, softcap, causal, window, R)))
    return "attention_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

Status attention_tokens_cpu(void* out, const void* q, const void* kv, const float* bias, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, float scale,
                            DType dt, WeightCacheSlot* kv_cache) {
  // q (B, Lq, H, D), kv (B, Lk, 2, H, D): k at kv, v H·D further; out (B, Lq, H, D).
  const int64_t C = H * D;
  const AttnRows R{Lq * C, D, C, Lk * 2 * C, D, 2 * C, Lk * 2 * C, D, 2 * C, Lq * C, D, C};
  const size_t vofs = size_t(C) * dtype_size(dt);
  // bf16 pair tiles where the CPU multiplies bf16 pairs (kept k|v only: they are built once)
  const bool pairs = kv_cache && dt == DType::BF16 && D % 2 == 0 && cpu_bf16_dot();
  KvCache* kc = kv_cache && B > 0 && H > 0 && Lk > 0 && D > 0 ? kv_cache_for(kv_cache, kv, B, H, Lk, D, dt, pairs) : nullptr;
  if (!SANA_FLOAT_DISPATCH(dt, attention_t(static_cast<T*>(out), static_cast<const T*>(q), static_cast<const T*>(kv),
                                           reinterpret_cast<const T*>(static_cast<const char*>(kv) + vofs), bias, B, H, H, Lq, Lk, D, D, Lk, 0, 0, scale, 0.f,
                                           false, 0, R, nullptr, kc)))
    return "attention_tokens_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

Status self_attention_rope_cpu(void* out, const void* qkv, const int64_t* positions, const int64_t* key_mask, int64_t B, int64_t N, int64_t Hq, int64_t Hkv,
                               int64_t D, float theta, float scale, float softcap, int64_t window, DType dt) {
  if (!SANA_FLOAT_DISPATCH(
          dt, self_attention_rope_t(static_cast<T*>(out), static_cast<const T*>(qkv), positions, key_mask, B, N, Hq, Hkv, D, theta, scale, softcap, window)))
    return "self_attention_rope_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
