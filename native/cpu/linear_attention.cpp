// linear_attention: Sana's ReLU linear attention in f32, per (b, h):
//   kv (D, D) = Σ_j v_j ⊗ relu(k_j),  ks (D) = Σ_j relu(k_j)
//   out_i = kv · relu(q_i) / (ks · relu(q_i) + eps)
#include "common.h"
#include <vector>

namespace sana {

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
