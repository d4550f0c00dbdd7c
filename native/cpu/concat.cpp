// concat: inputs (outer, axis_i, inner) stacked along the middle axis.
#include "common.h"
#include <cstring>
#include <vector>

namespace sana {

Status concat_cpu(void* out, const void* const* ins, const int64_t* axis_lens, int n_in, int64_t outer, int64_t inner, size_t elsize) {
  int64_t total = 0;
  std::vector<int64_t> start(size_t(n_in) + 1, 0);
  for (int i = 0; i < n_in; i++) {
    start[i] = total;
    total += axis_lens[i];
  }
  const size_t out_row = size_t(total * inner) * elsize;
#pragma omp parallel for collapse(2) if (outer * total * inner > cpu::kParallelMin) schedule(static)
  for (int64_t o = 0; o < outer; o++)
    for (int i = 0; i < n_in; i++) {
      const size_t len = size_t(axis_lens[i] * inner) * elsize;
      std::memcpy(static_cast<char*>(out) + o * out_row + size_t(start[i] * inner) * elsize, static_cast<const char*>(ins[i]) + o * len, len);
    }
  return nullptr;
}

}  // namespace sana
