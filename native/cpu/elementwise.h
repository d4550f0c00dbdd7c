// Tile iteration over a Broadcast: the output is contiguous; the last dim is the "row". Work
// items are (row, column block of kGrain elements), so a fully collapsed 1-D op (rows = 1) still
// spreads over every thread and short rows are not one item each. Each input's start is found
// by decomposing the row index; f gets (output offset, input offsets, inner strides, length).
#pragma once
#include "vec.h"

namespace sana::cpu {

template <int NIN, typename F>
void for_each_row(const Broadcast& bc, F&& f) {
  const int nd = bc.ndim;
  const int64_t inner = nd ? bc.shape[nd - 1] : 1;
  int64_t rows = 1;
  for (int d = 0; d + 1 < nd; d++) rows *= bc.shape[d];
  const int64_t blocks = (inner + kGrain - 1) / kGrain;
  // Short rows: group several rows per item so one item is still about kGrain elements.
  const int64_t rows_per = blocks > 1 ? 1 : std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1));
  const int64_t row_items = (rows + rows_per - 1) / rows_per;
  const int64_t items = row_items * blocks;
  int64_t inner_stride[NIN];
  for (int k = 0; k < NIN; k++) inner_stride[k] = nd ? bc.stride[k][nd - 1] : 0;
#pragma omp parallel for if (items > 1) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    const int64_t rb = it / blocks, cb = it % blocks;
    const int64_t c0 = cb * kGrain, n = std::min(kGrain, inner - c0);
    for (int64_t r = rb * rows_per; r < std::min(rows, (rb + 1) * rows_per); r++) {
      int64_t off[NIN] = {};
      int64_t rem = r;
      for (int d = nd - 2; d >= 0; d--) {
        const int64_t i = rem % bc.shape[d];
        rem /= bc.shape[d];
        for (int k = 0; k < NIN; k++) off[k] += i * bc.stride[k][d];
      }
      for (int k = 0; k < NIN; k++) off[k] += c0 * inner_stride[k];
      f(r * inner + c0, off, inner_stride, n);
    }
  }
}

}  // namespace sana::cpu
