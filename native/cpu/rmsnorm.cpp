// rmsnorm over the last dim: x / sqrt(mean(x²) + eps) * (w + offset) + bias, stats in f32.
// Rows are read in kChunk-element f32 chunks (vec.h); per-ISA clones take a block of rows.
#include "vec.h"

namespace sana {
namespace {

template <typename T>
SANA_INLINE void rmsnorm_body(T* out, const T* x, const T* w, const T* b, int64_t r0, int64_t r1, int64_t C, float eps, float offset) {
  alignas(64) float buf[cpu::kChunk], wb[cpu::kChunk], bb[cpu::kChunk];
  for (int64_t r = r0; r < r1; r++) {
    const T* px = x + r * C;
    float ss = 0.f;
    for (int64_t c = 0; c < C; c += cpu::kChunk) {
      const int64_t m = std::min(cpu::kChunk, C - c);
      cpu::load_f32(buf, px + c, m);
#pragma omp simd reduction(+ : ss)
      for (int64_t i = 0; i < m; i++) ss += buf[i] * buf[i];
    }
    const float inv = 1.0f / std::sqrt(ss / float(C) + eps);
    for (int64_t c = 0; c < C; c += cpu::kChunk) {
      const int64_t m = std::min(cpu::kChunk, C - c);
      cpu::load_f32(buf, px + c, m);
      for (int64_t i = 0; i < m; i++) buf[i] *= inv;
      if (w) {
        cpu::load_f32(wb, w + c, m);
        for (int64_t i = 0; i < m; i++) buf[i] *= wb[i] + offset;
      }
      if (b) {
        cpu::load_f32(bb, b + c, m);
        for (int64_t i = 0; i < m; i++) buf[i] += bb[i];
      }
      cpu::store_f32(out + r * C + c, buf, m);
    }
  }
}
SANA_ISA_CLONES(rmsnorm_k, (T * out, const T* x, const T* w, const T* b, int64_t r0, int64_t r1, int64_t C, float eps, float offset),
                rmsnorm_body<T>(out, x, w, b, r0, r1, C, eps, offset))

template <typename T>
void rmsnorm_t(T* out, const T* x, const T* w, const T* b, int64_t rows, int64_t C, float eps, float offset) {
  const auto k = rmsnorm_k_pick<T>();
  const int64_t per = std::max<int64_t>(1, cpu::kGrain / std::max<int64_t>(C, 1));  // rows per item
  const int64_t items = (rows + per - 1) / per;
#pragma omp parallel for if (items > 1) schedule(static)
  for (int64_t i = 0; i < items; i++) k(out, x, w, b, i * per, std::min(rows, (i + 1) * per), C, eps, offset);
}

}  // namespace

Status rmsnorm_cpu(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, float offset, DType dt) {
  if (!SANA_FLOAT_DISPATCH(
          dt, rmsnorm_t(static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), rows, C, eps, offset)))
    return "rmsnorm_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
