// rmsnorm over the last dim: x / sqrt(mean(x²) + eps) * (w + offset) + bias, stats in f32.
#include "common.h"

namespace sana {
namespace {

template <typename T>
void rmsnorm_t(T* out, const T* x, const T* w, const T* b, int64_t rows, int64_t C, float eps, float offset) {
#pragma omp parallel for if (rows * C > cpu::kParallelMin) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const T* px = x + r * C;
    float ss = 0.f;
    for (int64_t j = 0; j < C; j++) { const float v = to_f32(px[j]); ss += v * v; }
    const float inv = 1.0f / std::sqrt(ss / float(C) + eps);
    for (int64_t j = 0; j < C; j++) {
      float v = to_f32(px[j]) * inv;
      if (w) v *= to_f32(w[j]) + offset;
      if (b) v += to_f32(b[j]);
      out[r * C + j] = from_f32<T>(v);
    }
  }
}

}  // namespace

Status rmsnorm_cpu(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, float offset, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, rmsnorm_t(static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), rows, C, eps, offset)))
    return "rmsnorm_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
