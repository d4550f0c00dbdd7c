// layernorm over the last dim: biased variance, two-pass in f32 for stability. Each pass reads
// the row in kChunk-element f32 chunks (vec.h) so bf16 rows convert with vector shifts; the
// clones (per ISA) take a block of rows, OpenMP splits the rows.
#include "vec.h"

namespace sana {
namespace {

// Mean and 1/std of one row (biased variance, two passes for stability); `buf` is kChunk floats.
template <typename T>
SANA_INLINE void row_stats(const T* px, int64_t C, float eps, float* buf, float& mean, float& inv) {
  float sum = 0.f;
  for (int64_t c = 0; c < C; c += cpu::kChunk) {
    const int64_t m = std::min(cpu::kChunk, C - c);
    cpu::load_f32(buf, px + c, m);
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < m; i++) sum += buf[i];
  }
  mean = sum / float(C);
  float var = 0.f;
  for (int64_t c = 0; c < C; c += cpu::kChunk) {
    const int64_t m = std::min(cpu::kChunk, C - c);
    cpu::load_f32(buf, px + c, m);
#pragma omp simd reduction(+ : var)
    for (int64_t i = 0; i < m; i++) {
      const float d = buf[i] - mean;
      var += d * d;
    }
  }
  inv = 1.0f / std::sqrt(var / float(C) + eps);
}

template <typename T>
SANA_INLINE void layernorm_body(T* out, const T* x, const T* w, const T* b, int64_t r0, int64_t r1, int64_t C, float eps) {
  alignas(64) float buf[cpu::kChunk], wb[cpu::kChunk], bb[cpu::kChunk];
  for (int64_t r = r0; r < r1; r++) {
    const T* px = x + r * C;
    float mean, inv;
    row_stats(px, C, eps, buf, mean, inv);
    for (int64_t c = 0; c < C; c += cpu::kChunk) {
      const int64_t m = std::min(cpu::kChunk, C - c);
      cpu::load_f32(buf, px + c, m);
      for (int64_t i = 0; i < m; i++) buf[i] = (buf[i] - mean) * inv;
      if (w) {
        cpu::load_f32(wb, w + c, m);
        for (int64_t i = 0; i < m; i++) buf[i] *= wb[i];
      }
      if (b) {
        cpu::load_f32(bb, b + c, m);
        for (int64_t i = 0; i < m; i++) buf[i] += bb[i];
      }
      cpu::store_f32(out + r * C + c, buf, m);
    }
  }
}
SANA_ISA_CLONES(layernorm_k, (T * out, const T* x, const T* w, const T* b, int64_t r0, int64_t r1, int64_t C, float eps),
                layernorm_body<T>(out, x, w, b, r0, r1, C, eps))

template <typename T>
void layernorm_t(T* out, const T* x, const T* w, const T* b, int64_t rows, int64_t C, float eps) {
  const auto k = layernorm_k_pick<T>();
  const int64_t per = std::max<int64_t>(1, cpu::kGrain / std::max<int64_t>(C, 1));  // rows per item
  const int64_t items = (rows + per - 1) / per;
#pragma omp parallel for if (items > 1) schedule(dynamic)
  for (int64_t i = 0; i < items; i++) k(out, x, w, b, i * per, std::min(rows, (i + 1) * per), C, eps);
}

// layernorm without affine, then adaLN modulation: out = norm(x) * (1 + scale) + shift, rounded
// once (the separate layernorm + modulate rounded the normalised row to the dtype in between and
// read and wrote it twice). Rows [r0, r1) of x (B·R, C); row r uses shift/scale of batch r / R.
template <typename T>
SANA_INLINE void ln_mod_body(T* out, const T* x, const T* shift, const T* scale, int64_t r0, int64_t r1, int64_t R, int64_t C, int64_t mbs, float eps) {
  alignas(64) float buf[cpu::kChunk], sh[cpu::kChunk], sc[cpu::kChunk];
  for (int64_t r = r0; r < r1; r++) {
    const T* px = x + r * C;
    const T* psh = shift + (r / R) * mbs;
    const T* psc = scale + (r / R) * mbs;
    float mean, inv;
    row_stats(px, C, eps, buf, mean, inv);
    for (int64_t c = 0; c < C; c += cpu::kChunk) {
      const int64_t m = std::min(cpu::kChunk, C - c);
      cpu::load_f32(buf, px + c, m);
      cpu::load_f32(sh, psh + c, m);
      cpu::load_f32(sc, psc + c, m);
      for (int64_t i = 0; i < m; i++) buf[i] = ((buf[i] - mean) * inv) * (1.0f + sc[i]) + sh[i];
      cpu::store_f32(out + r * C + c, buf, m);
    }
  }
}
SANA_ISA_CLONES(ln_mod_k, (T * out, const T* x, const T* shift, const T* scale, int64_t r0, int64_t r1, int64_t R, int64_t C, int64_t mbs, float eps),
                ln_mod_body<T>(out, x, shift, scale, r0, r1, R, C, mbs, eps))

template <typename T>
void ln_mod_t(T* out, const T* x, const T* shift, const T* scale, int64_t B, int64_t R, int64_t C, int64_t mbs, float eps) {
  const auto k = ln_mod_k_pick<T>();
  const int64_t rows = B * R;
  const int64_t per = std::max<int64_t>(1, cpu::kGrain / std::max<int64_t>(C, 1));  // rows per item
  const int64_t items = (rows + per - 1) / per;
#pragma omp parallel for if (items > 1) schedule(dynamic)
  for (int64_t i = 0; i < items; i++) k(out, x, shift, scale, i * per, std::min(rows, (i + 1) * per), R, C, mbs, eps);
}

}  // namespace

Status layernorm_modulate_cpu(void* out, const void* x, const void* shift, const void* scale, int64_t B, int64_t R, int64_t C, int64_t mod_bstride, float eps,
                              DType dt) {
  if (!SANA_FLOAT_DISPATCH(
          dt, ln_mod_t(static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(shift), static_cast<const T*>(scale), B, R, C, mod_bstride, eps)))
    return "layernorm_modulate_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

Status layernorm_cpu(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt,
                           layernorm_t(static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), rows, C, eps)))
    return "layernorm_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
