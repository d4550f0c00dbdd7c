// attention: blocked softmax attention with an online softmax (flash-style). Each thread holds
// one (kBq × kBk) score tile and a (kBq × Dv) accumulator; the full Lq × Lk matrix never exists.
// Per score: s = scale·q·k; soft-cap s = cap·tanh(s/cap); s += bias; masked keys are skipped.
#include "common.h"
#include <vector>

namespace sana {
namespace {

constexpr int64_t kBq = 32, kBk = 64;

// One (kBq × kBk) tile: s[i][j] = Σ_d qf[i][d] · kT[d][j], vectorised over the 64 keys (kT is
// the key chunk transposed), compiled for AVX-512, AVX2+FMA and baseline, picked by cpuid.
#define SANA_QK_BODY                                                   \
  for (int64_t i = 0; i < nq; i++) {                                   \
    float* __restrict srow = s + i * kBk;                              \
    for (int64_t j = 0; j < kBk; j++) srow[j] = 0.f;                   \
    for (int64_t d = 0; d < D; d++) {                                  \
      const float qv = qf[i * D + d];                                  \
      const float* __restrict kr = kT + d * kBk;                       \
      for (int64_t j = 0; j < kBk; j++) srow[j] += qv * kr[j];         \
    }                                                                  \
  }
// acc[i][:] += Σ_j p[i][j] · v[j][:], vectorised over Dv.
#define SANA_PV_BODY                                                   \
  for (int64_t i = 0; i < nq; i++) {                                   \
    float* __restrict a = acc + i * Dv;                                \
    const float* p = s + i * kBk;                                      \
    for (int64_t j = 0; j < nk; j++) {                                 \
      const float pj = p[j];                                           \
      if (pj == 0.f) continue;                                         \
      const float* __restrict vr = vf + j * Dv;                        \
      for (int64_t d = 0; d < Dv; d++) a[d] += pj * vr[d];             \
    }                                                                  \
  }

// Online-softmax update of a tile: for each row with a finite max, p = exp(s - max) (0 where
// the score is -inf, i.e. masked), rescale the accumulator row by exp(old max - new max), add
// the row sum to l. exp is a branch-free polynomial (range reduction by ln 2, degree-6
// Taylor, |rel err| < 2e-7) so the loop vectorises.
#define SANA_SOFTMAX_BODY                                                              \
  for (int64_t i = 0; i < nq; i++) {                                                   \
    float* __restrict row = s + i * kBk;                                               \
    const float mx = mnew[i];                                                          \
    if (mx == -INFINITY) { for (int64_t j = 0; j < kBk; j++) row[j] = 0.f; continue; } \
    float sum = 0.f;                                                                   \
    for (int64_t j = 0; j < kBk; j++) {                                                \
      const float x = row[j];                                                          \
      float t = x - mx;                                                                \
      t = t < -87.0f ? -87.0f : t;                                                     \
      const float n = (t * 1.44269504f + 12582912.0f) - 12582912.0f;                  \
      const float r = (t - n * 0.693145752f) - n * 1.42860677e-6f;                     \
      float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f + r * 0.00138888892f))))); \
      const int32_t bits = (int32_t(n) + 127) << 23;                                   \
      float sc2;                                                                       \
      __builtin_memcpy(&sc2, &bits, 4);                                                \
      p = (x == -INFINITY || j >= nk) ? 0.f : p * sc2;                                 \
      row[j] = p;                                                                      \
      sum += p;                                                                        \
    }                                                                                  \
    const float corr = mold[i] == -INFINITY ? 0.f : std::exp(mold[i] - mx);            \
    float* __restrict a = acc + i * Dv;                                                \
    for (int64_t d = 0; d < Dv; d++) a[d] *= corr;                                     \
    l[i] = l[i] * corr + sum;                                                          \
  }

using SmFn = void (*)(float*, float*, float*, const float*, const float*, int64_t, int64_t, int64_t);
__attribute__((target("avx512f,avx512vl,fma"))) void sm_avx512(float* s, float* acc, float* l, const float* mold, const float* mnew, int64_t nq, int64_t nk, int64_t Dv) { SANA_SOFTMAX_BODY }
__attribute__((target("avx2,fma"))) void sm_avx2(float* s, float* acc, float* l, const float* mold, const float* mnew, int64_t nq, int64_t nk, int64_t Dv) { SANA_SOFTMAX_BODY }
void sm_base(float* s, float* acc, float* l, const float* mold, const float* mnew, int64_t nq, int64_t nk, int64_t Dv) { SANA_SOFTMAX_BODY }

using QkFn = void (*)(float*, const float*, const float*, int64_t, int64_t);
using PvFn = void (*)(float*, const float*, const float*, int64_t, int64_t, int64_t);
__attribute__((target("avx512f,avx512vl,fma"))) void qk_avx512(float* s, const float* qf, const float* kT, int64_t nq, int64_t D) { SANA_QK_BODY }
__attribute__((target("avx2,fma"))) void qk_avx2(float* s, const float* qf, const float* kT, int64_t nq, int64_t D) { SANA_QK_BODY }
void qk_base(float* s, const float* qf, const float* kT, int64_t nq, int64_t D) { SANA_QK_BODY }
__attribute__((target("avx512f,avx512vl,fma"))) void pv_avx512(float* acc, const float* s, const float* vf, int64_t nq, int64_t nk, int64_t Dv) { SANA_PV_BODY }
__attribute__((target("avx2,fma"))) void pv_avx2(float* acc, const float* s, const float* vf, int64_t nq, int64_t nk, int64_t Dv) { SANA_PV_BODY }
void pv_base(float* acc, const float* s, const float* vf, int64_t nq, int64_t nk, int64_t Dv) { SANA_PV_BODY }

struct Kernels { QkFn qk; PvFn pv; SmFn sm; };
const Kernels kKernels = [] {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return Kernels{qk_avx512, pv_avx512, sm_avx512};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Kernels{qk_avx2, pv_avx2, sm_avx2};
  return Kernels{qk_base, pv_base, sm_base};
}();

template <typename T>
void attention_t(T* out, const T* q, const T* k, const T* v, const float* bias, int64_t B, int64_t Hq, int64_t Hkv,
                 int64_t Lq, int64_t Lk, int64_t D, int64_t Dv, int64_t sb, int64_t sh, int64_t sq, float scale,
                 float softcap, bool causal, int64_t window) {
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
          int64_t j_end = Lk, j_begin = 0;
          if (causal) j_end = std::min(Lk, i0 + nq);
          if (window > 0) j_begin = std::max<int64_t>(0, i0 - window + 1);
          for (int64_t j0 = j_begin - (j_begin % kBk); j0 < j_end; j0 += kBk) {
            const int64_t nk = std::min(kBk, j_end - j0);
            kKernels.qk(sc.data(), qf.data(), kTb + (j0 / kBk) * D * kBk, nq, D);
            // scores -> soft-cap, bias, mask (-inf); running max per row
            for (int64_t i = 0; i < nq; i++) {
              const int64_t qi = i0 + i;
              float* srow = &sc[i * kBk];
              float mx = m[i];
              const float* brow = bias ? bias + b * sb + h * sh + qi * sq + j0 : nullptr;
              for (int64_t j = 0; j < nk; j++) {
                const int64_t kj = j0 + j;
                const bool visible = (!causal || kj <= qi) && (window <= 0 || qi - kj < window);
                if (!visible) { srow[j] = -INFINITY; continue; }
                float x = srow[j];
                if (softcap > 0.f) x = softcap * std::tanh(x / softcap);
                if (brow) x += brow[j];
                srow[j] = x;
                mx = std::max(mx, x);
              }
              mn[i] = mx;
            }
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

Status attention_cpu(void* out, const void* q, const void* k, const void* v, const float* bias, int64_t B, int64_t Hq,
                     int64_t Hkv, int64_t Lq, int64_t Lk, int64_t D, int64_t Dv, int64_t bias_sb, int64_t bias_sh,
                     int64_t bias_sq, float scale, float softcap, bool causal, int64_t window, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, attention_t(static_cast<T*>(out), static_cast<const T*>(q), static_cast<const T*>(k),
                                           static_cast<const T*>(v), bias, B, Hq, Hkv, Lq, Lk, D, Dv, bias_sb, bias_sh,
                                           bias_sq, scale, softcap, causal, window)))
    return "attention_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
