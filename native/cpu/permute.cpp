// permute: general strided copy (bytes), out contiguous in the permuted order.
#include "common.h"
#include <cstring>

namespace sana {

Status permute_cpu(void* out, const void* in, int ndim, const int64_t* in_shape, const int32_t* perm, size_t elsize) {
  // in strides (elements), then the strides seen from the output's index order.
  int64_t in_stride[kMaxDims], out_shape[kMaxDims], src_stride[kMaxDims];
  int64_t acc = 1;
  for (int d = ndim - 1; d >= 0; d--) { in_stride[d] = acc; acc *= in_shape[d]; }
  const int64_t n = acc;
  for (int d = 0; d < ndim; d++) { out_shape[d] = in_shape[perm[d]]; src_stride[d] = in_stride[perm[d]]; }
  if (n == 0) return nullptr;
  // Rows of the innermost output dim; copied element by element (stride may be > 1).
  const int64_t inner = ndim ? out_shape[ndim - 1] : 1, inner_stride = ndim ? src_stride[ndim - 1] : 1;
  const int64_t rows = n / inner;
  auto* o = static_cast<char*>(out);
  auto* s = static_cast<const char*>(in);
#pragma omp parallel for if (n > cpu::kParallelMin) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t rem = r, off = 0;
    for (int d = ndim - 2; d >= 0; d--) { off += (rem % out_shape[d]) * src_stride[d]; rem /= out_shape[d]; }
    char* dst = o + size_t(r * inner) * elsize;
    if (inner_stride == 1) { std::memcpy(dst, s + size_t(off) * elsize, size_t(inner) * elsize); continue; }
    switch (elsize) {
      case 2: for (int64_t j = 0; j < inner; j++) reinterpret_cast<uint16_t*>(dst)[j] = reinterpret_cast<const uint16_t*>(s)[off + j * inner_stride]; break;
      case 4: for (int64_t j = 0; j < inner; j++) reinterpret_cast<uint32_t*>(dst)[j] = reinterpret_cast<const uint32_t*>(s)[off + j * inner_stride]; break;
      case 8: for (int64_t j = 0; j < inner; j++) reinterpret_cast<uint64_t*>(dst)[j] = reinterpret_cast<const uint64_t*>(s)[off + j * inner_stride]; break;
      default: for (int64_t j = 0; j < inner; j++) std::memcpy(dst + j * elsize, s + size_t(off + j * inner_stride) * elsize, elsize);
    }
  }
  return nullptr;
}

}  // namespace sana
