// attention: blocked softmax attention with an online softmax (flash-style). Each thread holds
// one (kBq × kBk) score tile and a (kBq × Dv) accumulator; the full Lq × Lk matrix never exists.
// Per score: s = scale·q·k; soft-cap s = cap·tanh(s/cap); s += bias; masked keys are skipped.
#include "common.h"
#include <vector>

namespace sana {
namespace {

constexpr int64_t kBq = 16, kBk = 64;

template <typename T>
void attention_t(T* out, const T* q, const T* k, const T* v, const float* bias, int64_t B, int64_t Hq, int64_t Hkv,
                 int64_t Lq, int64_t Lk, int64_t D, int64_t Dv, int64_t sb, int64_t sh, int64_t sq, float scale,
                 float softcap, bool causal, int64_t window) {
  const int64_t group = Hq / Hkv, qblocks = (Lq + kBq - 1) / kBq;
#pragma omp parallel
  {
    std::vector<float> qf(size_t(kBq * D)), kf(size_t(kBk * D)), vf(size_t(kBk * Dv)), s(size_t(kBq * kBk));
    std::vector<float> acc(size_t(kBq * Dv)), m(kBq), l(kBq);
#pragma omp for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < Hq; h++)
        for (int64_t qb = 0; qb < qblocks; qb++) {
          const int64_t i0 = qb * kBq, nq = std::min(kBq, Lq - i0);
          const int64_t hk = h / group;
          const T* qp = q + ((b * Hq + h) * Lq + i0) * D;
          const T* kp = k + (b * Hkv + hk) * Lk * D;
          const T* vp = v + (b * Hkv + hk) * Lk * Dv;
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
            for (int64_t t = 0; t < nk * D; t++) kf[t] = to_f32(kp[j0 * D + t]);
            for (int64_t t = 0; t < nk * Dv; t++) vf[t] = to_f32(vp[j0 * Dv + t]);
            for (int64_t i = 0; i < nq; i++) {
              const int64_t qi = i0 + i;
              float* srow = &s[i * kBk];
              float mx = m[i];
              for (int64_t j = 0; j < nk; j++) {
                const int64_t kj = j0 + j;
                const bool visible = (!causal || kj <= qi) && (window <= 0 || qi - kj < window);
                if (!visible) { srow[j] = -INFINITY; continue; }
                float dot = 0.f;
                const float* qr = &qf[i * D];
                const float* kr = &kf[j * D];
                for (int64_t d = 0; d < D; d++) dot += qr[d] * kr[d];
                if (softcap > 0.f) dot = softcap * std::tanh(dot / softcap);
                if (bias) dot += bias[b * sb + h * sh + qi * sq + kj];
                srow[j] = dot;
                mx = std::max(mx, dot);
              }
              if (mx == -INFINITY) continue;  // nothing visible yet (all masked or -inf bias)
              const float corr = std::exp(m[i] - mx);
              float* a = &acc[i * Dv];
              for (int64_t d = 0; d < Dv; d++) a[d] *= corr;
              float sum = 0.f;
              for (int64_t j = 0; j < nk; j++) {
                if (srow[j] == -INFINITY) continue;
                const float p = std::exp(srow[j] - mx);
                sum += p;
                const float* vr = &vf[j * Dv];
                for (int64_t d = 0; d < Dv; d++) a[d] += p * vr[d];
              }
              l[i] = l[i] * corr + sum;
              m[i] = mx;
            }
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
