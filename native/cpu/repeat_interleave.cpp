// repeat_interleave: each row of the middle axis repeated `repeats` times in place.
#include "common.h"
#include <cstring>

namespace sana {

Status repeat_interleave_cpu(void* out, const void* in, int64_t outer, int64_t axis_len, int64_t inner, int64_t repeats, size_t elsize) {
  const size_t piece = size_t(inner) * elsize;
#pragma omp parallel for collapse(2) if (outer * axis_len * repeats * inner > cpu::kParallelMin) schedule(static)
  for (int64_t o = 0; o < outer; o++)
    for (int64_t a = 0; a < axis_len; a++) {
      const char* src = static_cast<const char*>(in) + size_t(o * axis_len + a) * piece;
      char* dst = static_cast<char*>(out) + size_t((o * axis_len + a) * repeats) * piece;
      for (int64_t r = 0; r < repeats; r++) std::memcpy(dst + r * piece, src, piece);
    }
  return nullptr;
}

}  // namespace sana
