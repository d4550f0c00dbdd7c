// attention: blocked softmax attention with an online softmax (flash-style). Each thread holds
// one (kBq × kBk) score tile and a (kBq × Dv) accumulator; the full Lq × Lk matrix never exists.
// Per score: s = scale·q·k; soft-cap s = cap·tanh(s/cap); s += bias; masked keys are skipped.
#include "vec.h"
#include <vector>

namespace sana {
namespace {

constexpr int64_t kBq = 32, kBk = 64;

// Register blocking with GCC vector types for the AVX-512 clones (a v16 is one zmm).
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));  // unaligned loads/stores
#define ldu(p) (*reinterpret_cast<const v16u*>(p))
#define stu(p, v) (*reinterpret_cast<v16u*>(p) = (v))

// The two register-tile bodies keep one source line per tile row (clang-format would put each
// accumulator update on its own line).
// clang-format off
// One (kBq × kBk) tile: s[i][:] = Σ_d qf[i][d] · kT[d][:] (kT = the key chunk transposed,
// kBk = 64 keys = 4 v16). Two query rows per pass: 8 accumulators, 4 key loads feed 8 FMAs.
#define SANA_QK_BODY                                                                       \
  int64_t i = 0;                                                                        \
  for (; i + 2 <= nq; i += 2) {                                                         \
    v16 a0 = {}, a1 = {}, a2 = {}, a3 = {}, b0 = {}, b1 = {}, b2 = {}, b3 = {};         \
    const float* q0 = qf + i * D;                                                       \
    const float* q1 = q0 + D;                                                           \
    for (int64_t d = 0; d < D; d++) {                                                   \
      const float* kr = kT + d * kBk;                                                   \
      const v16 k0 = ldu(kr), k1 = ldu(kr + 16), k2 = ldu(kr + 32), k3 = ldu(kr + 48);  \
      const float x = q0[d], y = q1[d];                                                 \
      a0 += x * k0; a1 += x * k1; a2 += x * k2; a3 += x * k3;                           \
      b0 += y * k0; b1 += y * k1; b2 += y * k2; b3 += y * k3;                           \
    }                                                                                   \
    float* s0 = s + i * kBk;                                                            \
    stu(s0, a0); stu(s0 + 16, a1); stu(s0 + 32, a2); stu(s0 + 48, a3);                  \
    stu(s0 + kBk, b0); stu(s0 + kBk + 16, b1); stu(s0 + kBk + 32, b2); stu(s0 + kBk + 48, b3); \
  }                                                                                     \
  for (; i < nq; i++) {                                                                 \
    v16 a0 = {}, a1 = {}, a2 = {}, a3 = {};                                             \
    for (int64_t d = 0; d < D; d++) {                                                   \
      const float* kr = kT + d * kBk;                                                   \
      const float x = qf[i * D + d];                                                    \
      a0 += x * ldu(kr); a1 += x * ldu(kr + 16); a2 += x * ldu(kr + 32); a3 += x * ldu(kr + 48); \
    }                                                                                   \
    float* s0 = s + i * kBk;                                                            \
    stu(s0, a0); stu(s0 + 16, a1); stu(s0 + 32, a2); stu(s0 + 48, a3);                  \
  }
// acc[i][:] += Σ_j p[i][j] · v[j][:]. Two rows × 64 output dims in 8 accumulators held over the
// whole key loop; the Dv % 64 remainder in 16-wide blocks, then a scalar tail.
#define SANA_PV_BODY      \
  int64_t i = 0;                                                                        \
  for (; i + 2 <= nq; i += 2) {                                                         \
    const float* p0 = s + i * kBk;                                                      \
    const float* p1 = p0 + kBk;                                                         \
    float* c0 = acc + i * Dv;                                                           \
    float* c1 = c0 + Dv;                                                                \
    int64_t d0 = 0;                                                                     \
    for (; d0 + 64 <= Dv; d0 += 64) {                                                   \
      v16 a0 = ldu(c0 + d0), a1 = ldu(c0 + d0 + 16), a2 = ldu(c0 + d0 + 32), a3 = ldu(c0 + d0 + 48); \
      v16 b0 = ldu(c1 + d0), b1 = ldu(c1 + d0 + 16), b2 = ldu(c1 + d0 + 32), b3 = ldu(c1 + d0 + 48); \
      for (int64_t j = 0; j < nk; j++) {                                                \
        const float* vr = vf + j * Dv + d0;                                             \
        const v16 v0 = ldu(vr), v1 = ldu(vr + 16), v2 = ldu(vr + 32), v3 = ldu(vr + 48); \
        const float x = p0[j], y = p1[j];                                               \
        if (x == 0.f && y == 0.f) continue; /* masked key for both rows */              \
        a0 += x * v0; a1 += x * v1; a2 += x * v2; a3 += x * v3;                         \
        b0 += y * v0; b1 += y * v1; b2 += y * v2; b3 += y * v3;                         \
      }                                                                                 \
      stu(c0 + d0, a0); stu(c0 + d0 + 16, a1); stu(c0 + d0 + 32, a2); stu(c0 + d0 + 48, a3); \
      stu(c1 + d0, b0); stu(c1 + d0 + 16, b1); stu(c1 + d0 + 32, b2); stu(c1 + d0 + 48, b3); \
    }                                                                                   \
    for (; d0 + 16 <= Dv; d0 += 16) {                                                   \
      v16 a0 = ldu(c0 + d0), b0 = ldu(c1 + d0);                                         \
      for (int64_t j = 0; j < nk; j++) {                                                \
        const v16 v0 = ldu(vf + j * Dv + d0);                                           \
        a0 += p0[j] * v0; b0 += p1[j] * v0;                                             \
      }                                                                                 \
      stu(c0 + d0, a0); stu(c1 + d0, b0);                                               \
    }                                                                                   \
    if (d0 < Dv) {  /* < 16 dims left: contiguous (vectorised) over d, keys outer */    \
      float* __restrict t0 = c0 + d0;                                                   \
      float* __restrict t1 = c1 + d0;                                                   \
      const int64_t nd = Dv - d0;                                                       \
      for (int64_t j = 0; j < nk; j++) {                                                \
        const float* __restrict vr = vf + j * Dv + d0;                                  \
        const float x = p0[j], y = p1[j];                                               \
        for (int64_t d = 0; d < nd; d++) { t0[d] += x * vr[d]; t1[d] += y * vr[d]; }    \
      }                                                                                 \
    }                                                                                   \
  }                                                                                     \
  for (; i < nq; i++) {                                                                 \
    float* __restrict a = acc + i * Dv;                                                 \
    const float* p = s + i * kBk;                                                       \
    for (int64_t j = 0; j < nk; j++) {                                                  \
      const float pj = p[j];                                                            \
      const float* __restrict vr = vf + j * Dv;                                         \
      for (int64_t d = 0; d < Dv; d++) a[d] += pj * vr[d];                              \
    }                                                                                   \
  }
// clang-format on

// Portable tile bodies for AVX2 and baseline: loops the compiler vectorises over the 64 keys (QK)
// and over Dv (PV). GCC lowers the 64-byte vector type of the tiles above through the stack
// when the ISA has no 64-byte registers, so those clones must not use it.
#define SANA_QK_SIMPLE                                         \
  for (int64_t i = 0; i < nq; i++) {                           \
    float* __restrict srow = s + i * kBk;                      \
    for (int64_t j = 0; j < kBk; j++) srow[j] = 0.f;           \
    for (int64_t d = 0; d < D; d++) {                          \
      const float qv = qf[i * D + d];                          \
      const float* __restrict kr = kT + d * kBk;               \
      for (int64_t j = 0; j < kBk; j++) srow[j] += qv * kr[j]; \
    }                                                          \
  }
#define SANA_PV_SIMPLE                                     \
  for (int64_t i = 0; i < nq; i++) {                       \
    float* __restrict a = acc + i * Dv;                    \
    const float* p = s + i * kBk;                          \
    for (int64_t j = 0; j < nk; j++) {                     \
      const float pj = p[j];                               \
      if (pj == 0.f) continue;                             \
      const float* __restrict vr = vf + j * Dv;            \
      for (int64_t d = 0; d < Dv; d++) a[d] += pj * vr[d]; \
    }                                                      \
  }

// Online-softmax update of a tile: for each row with a finite max, p = exp(s - max) (0 where
// the score is -inf, i.e. masked), rescale the accumulator row by exp(old max - new max), add
// the row sum to l. exp is a branch-free polynomial (range reduction by ln 2, degree-6
// Taylor, |rel err| < 2e-7) so the loop vectorises.
#define SANA_SOFTMAX_BODY                                                                                                              \
  for (int64_t i = 0; i < nq; i++) {                                                                                                   \
    float* __restrict row = s + i * kBk;                                                                                               \
    const float mx = mnew[i];                                                                                                          \
    if (mx == -INFINITY) {                                                                                                             \
      for (int64_t j = 0; j < kBk; j++) row[j] = 0.f;                                                                                  \
      continue;                                                                                                                        \
    }                                                                                                                                  \
    float sum = 0.f;                                                                                                                   \
    for (int64_t j = 0; j < kBk; j++) {                                                                                                \
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
      p = (t0 < -87.0f || j >= nk) ? 0.f : p * sc2;                                                                                    \
      row[j] = p;                                                                                                                      \
      sum += p;                                                                                                                        \
    }                                                                                                                                  \
    const float corr = mold[i] == -INFINITY ? 0.f : std::exp(mold[i] - mx);                                                            \
    float* __restrict a = acc + i * Dv;                                                                                                \
    for (int64_t d = 0; d < Dv; d++) a[d] *= corr;                                                                                     \
    l[i] = l[i] * corr + sum;                                                                                                          \
  }

using SmFn = void (*)(float*, float*, float*, const float*, const float*, int64_t, int64_t, int64_t);
__attribute__((target("avx512f,avx512vl,fma"))) void sm_avx512(float* s, float* acc, float* l, const float* mold, const float* mnew, int64_t nq, int64_t nk,
                                                               int64_t Dv) {
  SANA_SOFTMAX_BODY
}
__attribute__((target("avx2,fma"))) void sm_avx2(float* s, float* acc, float* l, const float* mold, const float* mnew, int64_t nq, int64_t nk, int64_t Dv) {
  SANA_SOFTMAX_BODY
}
void sm_base(float* s, float* acc, float* l, const float* mold, const float* mnew, int64_t nq, int64_t nk, int64_t Dv) { SANA_SOFTMAX_BODY }

using QkFn = void (*)(float*, const float*, const float*, int64_t, int64_t);
using PvFn = void (*)(float*, const float*, const float*, int64_t, int64_t, int64_t);
__attribute__((target("avx512f,avx512vl,fma"))) void qk_avx512(float* s, const float* qf, const float* kT, int64_t nq, int64_t D) { SANA_QK_BODY }
__attribute__((target("avx2,fma"))) void qk_avx2(float* s, const float* qf, const float* kT, int64_t nq, int64_t D) { SANA_QK_SIMPLE }
void qk_base(float* s, const float* qf, const float* kT, int64_t nq, int64_t D) { SANA_QK_SIMPLE }
__attribute__((target("avx512f,avx512vl,fma"))) void pv_avx512(float* acc, const float* s, const float* vf, int64_t nq, int64_t nk, int64_t Dv) { SANA_PV_BODY }
__attribute__((target("avx2,fma"))) void pv_avx2(float* acc, const float* s, const float* vf, int64_t nq, int64_t nk, int64_t Dv) { SANA_PV_SIMPLE }
void pv_base(float* acc, const float* s, const float* vf, int64_t nq, int64_t nk, int64_t Dv) { SANA_PV_SIMPLE }

// Scores of a tile after QK: soft-cap (vec.h's polynomial tanh), + bias, -inf outside the
// causal/window band (a contiguous key range per query, so no per-key branch), running max.
#define SANA_SCORE_BODY                                                               \
  for (int64_t i = 0; i < nq; i++) {                                                  \
    const int64_t qi = i0 + i;                                                        \
    float* __restrict srow = s + i * kBk;                                             \
    int64_t lo = 0, hi = nk;                                                          \
    if (causal) hi = std::min(hi, qi - j0 + 1);                                       \
    if (window > 0) lo = std::max<int64_t>(lo, qi - window + 1 - j0);                 \
    const float* brow = bias ? bias + qi * sq + j0 : nullptr;                         \
    float mx = m[i];                                                                  \
    if (softcap > 0.f) {                                                              \
      const float ic = 1.0f / softcap;                                                \
      for (int64_t j = 0; j < nk; j++) srow[j] = softcap * cpu::tanh_f(srow[j] * ic); \
    }                                                                                 \
    if (brow)                                                                         \
      for (int64_t j = 0; j < nk; j++) srow[j] += brow[j];                            \
    _Pragma("omp simd reduction(max : mx)") for (int64_t j = 0; j < nk; j++) {        \
      const float x = (j >= lo && j < hi) ? srow[j] : -INFINITY;                      \
      srow[j] = x;                                                                    \
      mx = mx > x ? mx : x;                                                           \
    }                                                                                 \
    mn[i] = mx;                                                                       \
  }
using ScFn = void (*)(float*, const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int64_t, float);
#define SANA_SC_PARAMS                                                                                                                              \
  (float* s, const float* bias, const float* m, float* mn, int64_t nq, int64_t nk, int64_t i0, int64_t j0, int64_t sq, bool causal, int64_t window, \
   float softcap)
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma"))) void sc_avx512 SANA_SC_PARAMS { SANA_SCORE_BODY }
__attribute__((target("avx2,fma"))) void sc_avx2 SANA_SC_PARAMS { SANA_SCORE_BODY }
void sc_base SANA_SC_PARAMS { SANA_SCORE_BODY }

struct Kernels {
  QkFn qk;
  PvFn pv;
  SmFn sm;
  ScFn sc;
};
// Per call, by vec.h's simd_isa() (cpuid, lowered by SANA_CPU_ISA for the tests).
Kernels pick_kernels() {
  switch (cpu::simd_isa()) {
    case cpu::SimdIsa::Avx512: return Kernels{qk_avx512, pv_avx512, sm_avx512, sc_avx512};
    case cpu::SimdIsa::Avx2: return Kernels{qk_avx2, pv_avx2, sm_avx2, sc_avx2};
    default: return Kernels{qk_base, pv_base, sm_base, sc_base};
  }
}

template <typename T>
void attention_t(T* out, const T* q, const T* k, const T* v, const float* bias, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t Lk, int64_t D,
                 int64_t Dv, int64_t sb, int64_t sh, int64_t sq, float scale, float softcap, bool causal, int64_t window) {
  const Kernels kKernels = pick_kernels();
  const int64_t group = Hq / Hkv, qblocks = (Lq + kBq - 1) / kBq, chunks = (Lk + kBk - 1) / kBk;
  // K converted once to f32 chunks of kBk keys, each transposed to (D, kBk) and zero-padded;
  // V converted once to f32 (B, Hkv, Lk, Dv). Shared read-only by all query blocks.
  std::vector<float> kT_all(static_cast<size_t>(B * Hkv * chunks * D * kBk));
  std::vector<float> v_all(static_cast<size_t>(B * Hkv * Lk * Dv));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bh = 0; bh < B * Hkv; bh++)
    for (int64_t c = 0; c < chunks; c++) {
      float* dst = &kT_all[((bh * chunks) + c) * D * kBk];
      const T* src = k + bh * Lk * D;
      for (int64_t j = 0; j < kBk; j++) {
        const int64_t kj = c * kBk + j;
        for (int64_t d = 0; d < D; d++) dst[d * kBk + j] = kj < Lk ? to_f32(src[kj * D + d]) : 0.f;
      }
      const int64_t n = std::min(kBk, Lk - c * kBk);
      const T* vs = v + (bh * Lk + c * kBk) * Dv;
      float* vd = &v_all[(bh * Lk + c * kBk) * Dv];
      for (int64_t t = 0; t < n * Dv; t++) vd[t] = to_f32(vs[t]);
    }
  // A key-padding bias (one row per batch: sh = sq = 0) whose trailing keys are -inf or
  // <= -1e30 (the usual "masked" fill) gives those keys a probability of exactly 0 once any key
  // is visible, so the tiles past the last visible key are skipped. A batch whose keys are all
  // masked keeps every key (its softmax is then uniform, as in the reference).
  std::vector<int64_t> key_end(static_cast<size_t>(B), Lk);
  if (bias && sh == 0 && sq == 0)
    for (int64_t b = 0; b < B; b++) {
      int64_t e = Lk;
      while (e > 0 && bias[b * sb + e - 1] <= -1e30f) e--;
      if (e > 0) key_end[b] = e;
    }
#pragma omp parallel
  {
    // Per-thread tiles: queries (kBq, D), scores (kBq, kBk), output accumulator (kBq, Dv),
    // running max (old, new) and sum per query.
    std::vector<float> qf(static_cast<size_t>(kBq * D));
    std::vector<float> sc(static_cast<size_t>(kBq * kBk)), acc(static_cast<size_t>(kBq * Dv)), m(kBq), mn(kBq), l(kBq);
#pragma omp for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < Hq; h++)
        for (int64_t qb = 0; qb < qblocks; qb++) {
          const int64_t i0 = qb * kBq, nq = std::min(kBq, Lq - i0);
          const int64_t hk = h / group;
          const T* qp = q + ((b * Hq + h) * Lq + i0) * D;
          const float* kTb = &kT_all[(b * Hkv + hk) * chunks * D * kBk];
          const float* vb = &v_all[(b * Hkv + hk) * Lk * Dv];
          for (int64_t t = 0; t < nq * D; t++) qf[t] = to_f32(qp[t]) * scale;
          std::fill(acc.begin(), acc.end(), 0.f);
          std::fill(m.begin(), m.end(), -INFINITY);
          std::fill(l.begin(), l.end(), 0.f);
          // Keys any query of this block can see.
          int64_t j_end = key_end[b], j_begin = 0;
          if (causal) j_end = std::min(j_end, i0 + nq);
          if (window > 0) j_begin = std::max<int64_t>(0, i0 - window + 1);
          for (int64_t j0 = j_begin - (j_begin % kBk); j0 < j_end; j0 += kBk) {
            const int64_t nk = std::min(kBk, j_end - j0);
            kKernels.qk(sc.data(), qf.data(), kTb + (j0 / kBk) * D * kBk, nq, D);
            kKernels.sc(sc.data(), bias ? bias + b * sb + h * sh : nullptr, m.data(), mn.data(), nq, nk, i0, j0, sq, causal, window, softcap);
            kKernels.sm(sc.data(), acc.data(), l.data(), m.data(), mn.data(), nq, nk, Dv);
            std::copy(mn.begin(), mn.begin() + nq, m.begin());
            kKernels.pv(acc.data(), sc.data(), vb + j0 * Dv, nq, nk, Dv);
          }
          T* op = out + ((b * Hq + h) * Lq + i0) * Dv;
          for (int64_t i = 0; i < nq; i++) {
            // A fully masked row has no defined softmax; it yields zeros rather than NaN.
            const float inv = l[i] > 0.f ? 1.0f / l[i] : 0.f;
            for (int64_t d = 0; d < Dv; d++) op[i * Dv + d] = from_f32<T>(acc[i * Dv + d] * inv);
          }
        }
  }
}

}  // namespace

Status attention_cpu(void* out, const void* q, const void* k, const void* v, const float* bias, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t Lk,
                     int64_t D, int64_t Dv, int64_t bias_sb, int64_t bias_sh, int64_t bias_sq, float scale, float softcap, bool causal, int64_t window,
                     DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, attention_t(static_cast<T*>(out), static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), bias, B, Hq, Hkv,
                                           Lq, Lk, D, Dv, bias_sb, bias_sh, bias_sq, scale, softcap, causal, window)))
    return "attention_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
