// rope: HF rotate_half rotary embedding on x (BH, L, D).
// out[..., i] = x_i cos(p·f_i) - x_{i+D/2} sin(p·f_i);  out[..., i+D/2] = x_{i+D/2} cos + x_i sin,
// with f_i = 1 / theta^(2i/D) computed in f32 like transformers does.
#include "common.h"
#include <vector>

namespace sana {
namespace {

template <typename T>
void rope_t(T* out, const T* x, const int64_t* pos, int64_t BH, int64_t L, int64_t D, float theta) {
  const int64_t half = D / 2;
  std::vector<float> cs(size_t(L * half)), sn(size_t(L * half));  // (L, D/2)
  for (int64_t i = 0; i < half; i++) {
    const float inv = 1.0f / std::pow(theta, float(2 * i) / float(D));
    for (int64_t l = 0; l < L; l++) {
      const float a = float(pos[l]) * inv;
      cs[l * half + i] = std::cos(a);
      sn[l * half + i] = std::sin(a);
    }
  }
#pragma omp parallel for collapse(2) if (BH * L * D > cpu::kParallelMin) schedule(static)
  for (int64_t bh = 0; bh < BH; bh++)
    for (int64_t l = 0; l < L; l++) {
      const T* px = x + (bh * L + l) * D;
      T* po = out + (bh * L + l) * D;
      const float* c = &cs[l * half];
      const float* s = &sn[l * half];
      for (int64_t i = 0; i < half; i++) {
        const float x1 = to_f32(px[i]), x2 = to_f32(px[i + half]);
        po[i] = from_f32<T>(x1 * c[i] - x2 * s[i]);
        po[i + half] = from_f32<T>(x2 * c[i] + x1 * s[i]);
      }
    }
}

}  // namespace

Status rope_cpu(void* out, const void* x, const int64_t* positions, int64_t BH, int64_t L, int64_t D, float theta, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, rope_t(static_cast<T*>(out), static_cast<const T*>(x), positions, BH, L, D, theta)))
    return "rope_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
