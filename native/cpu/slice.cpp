// slice: rows [start, start+len) of the middle axis of (outer, axis_len, inner).
#include "common.h"
#include <cstring>

namespace sana {

Status slice_cpu(void* out, const void* in, int64_t outer, int64_t axis_len, int64_t inner, int64_t start, int64_t len, size_t elsize) {
  const size_t row = size_t(len * inner) * elsize, src_row = size_t(axis_len * inner) * elsize;
#pragma omp parallel for if (outer * len * inner > cpu::kParallelMin) schedule(static)
  for (int64_t o = 0; o < outer; o++)
    std::memcpy(static_cast<char*>(out) + o * row, static_cast<const char*>(in) + o * src_row + size_t(start * inner) * elsize, row);
  return nullptr;
}

}  // namespace sana
