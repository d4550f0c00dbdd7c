// linear_attention: Sana's ReLU linear attention in f32, per (b, h):
//   kv (D, D) = Σ_j v_j ⊗ relu(k_j),  ks (D) = Σ_j relu(k_j)
//   out_i = kv · relu(q_i) / (ks · relu(q_i) + eps)
// linear_attention_tokens_cpu: the same on token-major qkv in its own dtype (see ops.h).
#include "vec.h"
#include <vector>

namespace sana {
namespace {

// One (b, h) of token-major qkv (B, N, 3C), C = H·D: q/k/v rows of head h at channel h·D, C + h·D,
// 2C + h·D of each token; out (B, N, C). Rows are converted to f32 (d values each) on load, so
// the state pass reads k and v once and the apply pass q once; compiled per ISA (vec.h).
template <typename T>
SANA_INLINE void la_tokens_body(T* out, const T* qkv, int64_t b, int64_t h, int64_t N, int64_t H, int64_t D, float eps, bool relu, float* kv, float* ks,
                                float* kr, float* vr, float* qr) {
  const int64_t C = H * D;
  const T* base = qkv + b * N * 3 * C + h * D;
  std::fill(kv, kv + D * D, 0.f);
  std::fill(ks, ks + D, 0.f);
  for (int64_t j = 0; j < N; j++) {
    cpu::load_f32(kr, base + j * 3 * C + C, D);
    cpu::load_f32(vr, base + j * 3 * C + 2 * C, D);
    if (relu)
      for (int64_t e = 0; e < D; e++) kr[e] = kr[e] > 0.f ? kr[e] : 0.f;
    for (int64_t e = 0; e < D; e++) ks[e] += kr[e];
    for (int64_t e = 0; e < D; e++) {  // kv[e][d] += relu(k)[e] · v[d]: (Dk, Dv)
      const float ke = kr[e];
      float* __restrict row = kv + e * D;
      for (int64_t d = 0; d < D; d++) row[d] += ke * vr[d];
    }
  }
  for (int64_t i = 0; i < N; i++) {
    cpu::load_f32(qr, base + i * 3 * C, D);
    if (relu)
      for (int64_t e = 0; e < D; e++) qr[e] = qr[e] > 0.f ? qr[e] : 0.f;
    float den = 0.f;
    for (int64_t e = 0; e < D; e++) den += ks[e] * qr[e];
    const float inv = 1.0f / (den + eps);
    float* __restrict o = vr;  // the v row buffer is free now: o (Dv) = Σ_e kv[e] · q[e]
    for (int64_t d = 0; d < D; d++) o[d] = 0.f;
    for (int64_t e = 0; e < D; e++) {
      const float qe = qr[e];
      const float* row = kv + e * D;
      for (int64_t d = 0; d < D; d++) o[d] += row[d] * qe;
    }
    for (int64_t d = 0; d < D; d++) o[d] *= inv;
    cpu::store_f32(out + (b * N + i) * C + h * D, o, D);
  }
}
SANA_ISA_CLONES(la_tokens_k,
                (T * out, const T* qkv, int64_t b, int64_t h, int64_t N, int64_t H, int64_t D, float eps, bool relu, float* kv, float* ks, float* kr, float* vr,
                 float* qr),
                la_tokens_body<T>(out, qkv, b, h, N, H, D, eps, relu, kv, ks, kr, vr, qr))

template <typename T>
void la_tokens_t(T* out, const T* qkv, int64_t B, int64_t N, int64_t H, int64_t D, float eps, bool relu) {
  const auto k = la_tokens_k_pick<T>();
#pragma omp parallel
  {
    std::vector<float> kv(static_cast<size_t>(D * D)), ks(static_cast<size_t>(D)), kr(static_cast<size_t>(D)), vr(static_cast<size_t>(D)),
        qr(static_cast<size_t>(D));
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < B * H; bh++) k(out, qkv, bh / H, bh % H, N, H, D, eps, relu, kv.data(), ks.data(), kr.data(), vr.data(), qr.data());
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
