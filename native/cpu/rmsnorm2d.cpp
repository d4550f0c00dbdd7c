// rmsnorm2d: RMS over the channels of NCHW at each pixel (DC-AE RMSNorm2d).
// x (B, C, HW): statistics are accumulated channel by channel into a per-pixel f32 row so the
// reads stay contiguous along HW.
#include "common.h"
#include <vector>

namespace sana {
namespace {

template <typename T>
void rmsnorm2d_t(T* out, const T* x, const T* w, const T* bias, int64_t B, int64_t C, int64_t HW, float eps) {
  constexpr int64_t kTile = 256;  // pixels per work item
  const int64_t tiles = (HW + kTile - 1) / kTile;
#pragma omp parallel for collapse(2) if (B * C * HW > cpu::kParallelMin) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < tiles; t++) {
      const int64_t p0 = t * kTile, np = std::min(kTile, HW - p0);
      float ss[kTile] = {};
      const T* xb = x + b * C * HW + p0;
      for (int64_t c = 0; c < C; c++)
        for (int64_t p = 0; p < np; p++) {
          const float v = to_f32(xb[c * HW + p]);
          ss[p] += v * v;
        }
      for (int64_t p = 0; p < np; p++) ss[p] = 1.0f / std::sqrt(ss[p] / float(C) + eps);
      T* ob = out + b * C * HW + p0;
      for (int64_t c = 0; c < C; c++) {
        const float wc = w ? to_f32(w[c]) : 1.0f, bc = bias ? to_f32(bias[c]) : 0.0f;
        for (int64_t p = 0; p < np; p++) ob[c * HW + p] = from_f32<T>(to_f32(xb[c * HW + p]) * ss[p] * wc + bc);
      }
    }
}

}  // namespace

Status rmsnorm2d_cpu(void* out, const void* x, const void* w, const void* bias, int64_t B, int64_t C, int64_t HW, float eps, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt,
                           rmsnorm2d_t(static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), B, C, HW, eps)))
    return "rmsnorm2d_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
