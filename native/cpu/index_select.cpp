// index_select: gathers rows idx[] of the middle axis of (outer, axis_len, inner).
#include "common.h"
#include <cstring>

namespace sana {

Status index_select_cpu(void* out, const void* in, const int64_t* idx, int64_t n_idx, int64_t outer, int64_t axis_len, int64_t inner, size_t elsize) {
  const size_t piece = size_t(inner) * elsize;
#pragma omp parallel for collapse(2) if (outer * n_idx * inner > cpu::kParallelMin) schedule(static)
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < n_idx; i++)
      std::memcpy(static_cast<char*>(out) + size_t(o * n_idx + i) * piece, static_cast<const char*>(in) + size_t(o * axis_len + idx[i]) * piece, piece);
  return nullptr;
}

}  // namespace sana
