// softmax over the last dim, f32 accumulation, max-subtracted.
#include "common.h"
#include <vector>

namespace sana {
namespace {

template <typename T>
void softmax_t(T* out, const T* x, int64_t rows, int64_t C) {
#pragma omp parallel
  {
    std::vector<float> buf(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const T* px = x + r * C;
      float mx = -INFINITY;
      for (int64_t j = 0; j < C; j++) {
        buf[j] = to_f32(px[j]);
        mx = std::max(mx, buf[j]);
      }
      float sum = 0.f;
      for (int64_t j = 0; j < C; j++) {
        buf[j] = std::exp(buf[j] - mx);
        sum += buf[j];
      }
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < C; j++) out[r * C + j] = from_f32<T>(buf[j] * inv);
    }
  }
}

}  // namespace

Status softmax_cpu(void* out, const void* x, int64_t rows, int64_t C, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, softmax_t(static_cast<T*>(out), static_cast<const T*>(x), rows, C))) return "softmax_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
