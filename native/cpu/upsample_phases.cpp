// upsample_phases_nhwc: the interleave step of a nearest-2× upsample + 3×3 conv computed at low
// resolution. Each output parity phase (i, j) of conv3x3(upsample2x(x)) only sees a 2×2 window of
// x, so the model runs one 2×2 conv (padding 1) with 4C outputs, phase p = 2i + j in channels
// [pC, (p+1)C), on x itself (4/9 of the FLOPs) and this op places the phases; the DC-AE decoder's
// pixel-shuffle shortcut (repeat_interleave(x) then pixel_shuffle) is added on the way.
#include "vec.h"

namespace sana {
namespace {

// One output row (b, oh): per output pixel the phase's C values of y plus, when 4/rep is whole,
// the shortcut as a stride-(4/rep) gather from offset p/rep ((4c + p)/rep = c·4/rep + p/rep),
// in kChunk-element f32 chunks so the conversions and the add vectorise.
template <typename T>
SANA_INLINE void phases_row_body(T* dst, const T* y, const T* x, int64_t b, int64_t oh, int64_t H, int64_t W, int64_t C, int64_t Cx) {
  alignas(64) float buf[cpu::kChunk], sb[cpu::kChunk];
  const int64_t h = oh / 2, i = oh % 2, rep = x ? 4 * C / Cx : 1;
  const bool strided = x && 4 % rep == 0;
  for (int64_t ow = 0; ow < 2 * W; ow++) {
    const int64_t w = ow / 2, j = ow % 2, p = 2 * i + j;
    const T* ys = y + ((b * (H + 1) + h + i) * (W + 1) + w + j) * 4 * C + p * C;
    T* d = dst + ow * C;
    const T* xs = x ? x + ((b * H + h) * W + w) * Cx : nullptr;
    for (int64_t c = 0; c < C; c += cpu::kChunk) {
      const int64_t m = std::min(cpu::kChunk, C - c);
      cpu::load_f32(buf, ys + c, m);
      if (strided) {
        cpu::gather_f32(sb, xs + c * (4 / rep) + p / rep, 4 / rep, m);
        for (int64_t k = 0; k < m; k++) buf[k] += sb[k];
      } else if (x) {
        for (int64_t k = 0; k < m; k++) buf[k] += to_f32(xs[(4 * (c + k) + p) / rep]);
      }
      cpu::store_f32(d + c, buf, m);
    }
  }
}
SANA_ISA_CLONES(phases_row, (T * dst, const T* y, const T* x, int64_t b, int64_t oh, int64_t H, int64_t W, int64_t C, int64_t Cx),
                phases_row_body<T>(dst, y, x, b, oh, H, W, C, Cx))

template <typename T>
void phases_t(T* out, const T* y, const T* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t Cx) {
  const auto k = phases_row_pick<T>();
#pragma omp parallel for collapse(2) if (B * H * W * C * 4 > cpu::kParallelMin) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t oh = 0; oh < 2 * H; oh++) k(out + (b * 2 * H + oh) * 2 * W * C, y, x, b, oh, H, W, C, Cx);
}

}  // namespace

Status upsample_phases_nhwc_cpu(void* out, const void* y, const void* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t Cx, DType dt) {
  if (x && (Cx <= 0 || (4 * C) % Cx)) return "upsample_phases_nhwc_cpu: 4·C must be a multiple of the shortcut's channels";
  if (!SANA_FLOAT_DISPATCH(dt, phases_t(static_cast<T*>(out), static_cast<const T*>(y), static_cast<const T*>(x), B, H, W, C, Cx)))
    return "upsample_phases_nhwc_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
