// layernorm over the last dim: biased variance, two-pass in f32 for stability.
#include "common.h"

namespace sana {
namespace {

template <typename T>
void layernorm_t(T* out, const T* x, const T* w, const T* b, int64_t rows, int64_t C, float eps) {
#pragma omp parallel for if (rows * C > cpu::kParallelMin) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const T* px = x + r * C;
    float mean = 0.f;
    for (int64_t j = 0; j < C; j++) mean += to_f32(px[j]);
    mean /= float(C);
    float var = 0.f;
    for (int64_t j = 0; j < C; j++) { const float d = to_f32(px[j]) - mean; var += d * d; }
    const float inv = 1.0f / std::sqrt(var / float(C) + eps);
    for (int64_t j = 0; j < C; j++) {
      float v = (to_f32(px[j]) - mean) * inv;
      if (w) v *= to_f32(w[j]);
      if (b) v += to_f32(b[j]);
      out[r * C + j] = from_f32<T>(v);
    }
  }
}

}  // namespace

Status layernorm_cpu(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, layernorm_t(static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), rows, C, eps)))
    return "layernorm_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
