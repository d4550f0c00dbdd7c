// pixel_shuffle: (B, C·r², H, W) -> (B, C, H·r, W·r); out[b,c,h*r+i,w*r+j] = x[b,c*r*r+i*r+j,h,w].
#include "common.h"
#include <cstring>

namespace sana {

Status pixel_shuffle_cpu(void* out, const void* x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t r, size_t elsize) {
  const int64_t Ho = H * r, Wo = W * r;
  auto* o = static_cast<char*>(out);
  auto* s = static_cast<const char*>(x);
#pragma omp parallel for collapse(2) if (B * C * Ho * Wo > cpu::kParallelMin) schedule(static)
  for (int64_t bc = 0; bc < B * C; bc++)
    for (int64_t oh = 0; oh < Ho; oh++) {
      const int64_t h = oh / r, i = oh % r;
      char* dst = o + size_t((bc * Ho + oh) * Wo) * elsize;
      for (int64_t ow = 0; ow < Wo; ow++) {
        const int64_t w = ow / r, j = ow % r;
        const int64_t src = ((bc * r * r + i * r + j) * H + h) * W + w;
        std::memcpy(dst + size_t(ow) * elsize, s + size_t(src) * elsize, elsize);
      }
    }
  return nullptr;
}

}  // namespace sana
