// Row iteration over a Broadcast: the output is contiguous; the last dim is the "row" and the
// rows are split across threads. Each input's row start is found by decomposing the row index.
#pragma once
#include "common.h"

namespace sana::cpu {

template <int NIN, typename F>
void for_each_row(const Broadcast& bc, F&& f) {
  const int nd = bc.ndim;
  const int64_t inner = nd ? bc.shape[nd - 1] : 1;
  int64_t rows = 1;
  for (int d = 0; d + 1 < nd; d++) rows *= bc.shape[d];
  const int64_t total = rows * inner;
#pragma omp parallel for if (total > kParallelMin) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t off[NIN] = {};
    int64_t rem = r;
    for (int d = nd - 2; d >= 0; d--) {
      const int64_t i = rem % bc.shape[d];
      rem /= bc.shape[d];
      for (int k = 0; k < NIN; k++) off[k] += i * bc.stride[k][d];
    }
    int64_t inner_stride[NIN];
    for (int k = 0; k < NIN; k++) inner_stride[k] = nd ? bc.stride[k][nd - 1] : 0;
    f(r * inner, off, inner_stride, inner);
  }
}

}  // namespace sana::cpu
