// rmsnorm over the last dim: x / sqrt(mean(x²) + eps) * (w + offset) + bias, stats in f32.
// rmsnorm_act is the same pass with an optional SiLU/ReLU and residual before the one rounding:
// the channels-last DC-AE blocks' norm tail (norm → + input, norm_out → ReLU), which would be two
// or three full passes over a stage-0 map as separate ops.
// Rows are read in kChunk-element f32 chunks (vec.h); per-ISA clones take a block of rows.
#include "vec.h"

namespace sana {
namespace {

// out = act(rmsnorm(x)·(w + offset) + b) [+ res]; act 0 none, ConvAct::Silu, ConvAct::Relu.
template <typename T>
SANA_INLINE void rmsnorm_body(T* out, const T* x, const T* w, const T* b, const T* res, int64_t r0, int64_t r1, int64_t C, float eps, float offset, int act) {
  alignas(64) float buf[cpu::kChunk], pb[cpu::kChunk];
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
        cpu::load_f32(pb, w + c, m);
        for (int64_t i = 0; i < m; i++) buf[i] *= pb[i] + offset;
      }
      if (b) {
        cpu::load_f32(pb, b + c, m);
        for (int64_t i = 0; i < m; i++) buf[i] += pb[i];
      }
      if (act == int(ConvAct::Silu))
        for (int64_t i = 0; i < m; i++) buf[i] = cpu::silu_v(buf[i]);
      else if (act == int(ConvAct::Relu))
        for (int64_t i = 0; i < m; i++) buf[i] = std::max(buf[i], 0.f);
      if (res) {
        cpu::load_f32(pb, res + r * C + c, m);
        for (int64_t i = 0; i < m; i++) buf[i] += pb[i];
      }
      cpu::store_f32(out + r * C + c, buf, m);
    }
  }
}
SANA_ISA_CLONES(rmsnorm_k, (T * out, const T* x, const T* w, const T* b, const T* res, int64_t r0, int64_t r1, int64_t C, float eps, float offset, int act),
                rmsnorm_body<T>(out, x, w, b, res, r0, r1, C, eps, offset, act))

template <typename T>
void rmsnorm_t(T* out, const T* x, const T* w, const T* b, const T* res, int64_t rows, int64_t C, float eps, float offset, int act) {
  const auto k = rmsnorm_k_pick<T>();
  const int64_t per = std::max<int64_t>(1, cpu::kGrain / std::max<int64_t>(C, 1));  // rows per item
  const int64_t items = (rows + per - 1) / per;
#pragma omp parallel for if (items > 1) schedule(dynamic)
  for (int64_t i = 0; i < items; i++) k(out, x, w, b, res, i * per, std::min(rows, (i + 1) * per), C, eps, offset, act);
}

}  // namespace

Status rmsnorm_cpu(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, float offset, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, rmsnorm_t(static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias),
                                         static_cast<const T*>(nullptr), rows, C, eps, offset, int(ConvAct::None))))
    return "rmsnorm_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

Status rmsnorm_act_cpu(void* out, const void* x, const void* w, const void* bias, const void* res, int64_t rows, int64_t C, float eps, ConvAct act, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, rmsnorm_t(static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias),
                                         static_cast<const T*>(res), rows, C, eps, 0.f, int(act))))
    return "rmsnorm_act_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
