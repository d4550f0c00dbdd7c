// upsample_bilinear: PyTorch align_corners=False, no antialias. Source coordinate
// (dst + 0.5) * in/out - 0.5, clamped at 0; the upper neighbour is clamped to the edge.
#include "common.h"
#include <vector>

namespace sana {
namespace {

struct Tap {
  int64_t i0, i1;
  float l0, l1;
};

std::vector<Tap> taps(int64_t in, int64_t out) {
  std::vector<Tap> t(static_cast<size_t>(out));
  const float scale = float(in) / float(out);
  for (int64_t o = 0; o < out; o++) {
    float src = scale * (float(o) + 0.5f) - 0.5f;
    if (src < 0.f) src = 0.f;
    const int64_t i0 = std::min(int64_t(src), in - 1);
    const int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
    const float l1 = src - float(i0);
    t[o] = {i0, i1, 1.0f - l1, l1};
  }
  return t;
}

template <typename T>
void bilinear_t(T* out, const T* x, int64_t BC, int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
  const auto th = taps(H, Ho), tw = taps(W, Wo);
#pragma omp parallel for collapse(2) if (BC * Ho * Wo > cpu::kParallelMin) schedule(static)
  for (int64_t c = 0; c < BC; c++)
    for (int64_t oh = 0; oh < Ho; oh++) {
      const Tap& a = th[oh];
      const T* r0 = x + (c * H + a.i0) * W;
      const T* r1 = x + (c * H + a.i1) * W;
      T* po = out + (c * Ho + oh) * Wo;
      for (int64_t ow = 0; ow < Wo; ow++) {
        const Tap& b = tw[ow];
        const float v = a.l0 * (b.l0 * to_f32(r0[b.i0]) + b.l1 * to_f32(r0[b.i1])) + a.l1 * (b.l0 * to_f32(r1[b.i0]) + b.l1 * to_f32(r1[b.i1]));
        po[ow] = from_f32<T>(v);
      }
    }
}

}  // namespace

Status upsample_bilinear_cpu(void* out, const void* x, int64_t BC, int64_t H, int64_t W, int64_t Ho, int64_t Wo, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, bilinear_t(static_cast<T*>(out), static_cast<const T*>(x), BC, H, W, Ho, Wo)))
    return "upsample_bilinear_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
