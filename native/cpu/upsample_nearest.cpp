// upsample_nearest: (BC, H, W) -> (BC, H*f, W*f), each pixel repeated f×f.
#include "common.h"
#include <cstring>

namespace sana {

Status upsample_nearest_cpu(void* out, const void* x, int64_t BC, int64_t H, int64_t W, int64_t f, size_t elsize) {
  const int64_t Wo = W * f;
#pragma omp parallel for collapse(2) if (BC * H * W * f * f > cpu::kParallelMin) schedule(static)
  for (int64_t c = 0; c < BC; c++)
    for (int64_t h = 0; h < H; h++) {
      const char* src = static_cast<const char*>(x) + size_t((c * H + h) * W) * elsize;
      char* dst = static_cast<char*>(out) + size_t((c * H * f + h * f) * Wo) * elsize;
      for (int64_t w = 0; w < W; w++)
        for (int64_t r = 0; r < f; r++) std::memcpy(dst + size_t(w * f + r) * elsize, src + size_t(w) * elsize, elsize);
      for (int64_t r = 1; r < f; r++) std::memcpy(dst + size_t(r * Wo) * elsize, dst, size_t(Wo) * elsize);
    }
  return nullptr;
}

}  // namespace sana
