// permute: strided copy (bytes) into the permuted, contiguous output.
// When the output's innermost dim is not the input's innermost one (a transpose), the two dims
// are copied in 32×32 tiles so that both reads and writes stay within a few cache lines.
#include "common.h"
#include <cstring>

namespace sana {
namespace {

template <typename E>
void transpose_tiles(E* out, const E* in, int ndim, const int64_t* os, const int64_t* src_stride, int jd) {
  constexpr int64_t kT = 32;
  const int last = ndim - 1;
  const int64_t nj = os[jd], nl = os[last], ls = src_stride[last];
  int64_t out_stride[kMaxDims];
  int64_t acc = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    out_stride[d] = acc;
    acc *= os[d];
  }
  const int64_t total = acc, outer = total / (nj * nl);
  const int64_t tj = (nj + kT - 1) / kT, tl = (nl + kT - 1) / kT;
#pragma omp parallel for collapse(3) if (total > cpu::kParallelMin) schedule(static)
  for (int64_t o = 0; o < outer; o++)
    for (int64_t a0 = 0; a0 < tj; a0++)
      for (int64_t c0 = 0; c0 < tl; c0++) {
        // decompose o over the dims other than jd and last
        int64_t rem = o, src = 0, dst = 0;
        for (int d = ndim - 2; d >= 0; d--) {
          if (d == jd) continue;
          const int64_t i = rem % os[d];
          rem /= os[d];
          src += i * src_stride[d];
          dst += i * out_stride[d];
        }
        const int64_t aend = std::min(nj, (a0 + 1) * kT), cend = std::min(nl, (c0 + 1) * kT);
        for (int64_t a = a0 * kT; a < aend; a++) {
          E* po = out + dst + a * out_stride[jd];
          const E* pi = in + src + a;  // src_stride[jd] == 1
          for (int64_t c = c0 * kT; c < cend; c++) po[c] = pi[c * ls];
        }
      }
}

template <typename E>
void gather_rows(E* out, const E* in, int ndim, const int64_t* os, const int64_t* src_stride, int64_t n) {
  const int64_t inner = os[ndim - 1], is = src_stride[ndim - 1], rows = n / inner;
#pragma omp parallel for if (n > cpu::kParallelMin) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t rem = r, off = 0;
    for (int d = ndim - 2; d >= 0; d--) {
      off += (rem % os[d]) * src_stride[d];
      rem /= os[d];
    }
    E* dst = out + r * inner;
    if (is == 1) std::memcpy(dst, in + off, size_t(inner) * sizeof(E));
    else
      for (int64_t j = 0; j < inner; j++) dst[j] = in[off + j * is];
  }
}

template <typename E>
void permute_t(void* out, const void* in, int ndim, const int64_t* os, const int64_t* src_stride, int64_t n) {
  auto* o = static_cast<E*>(out);
  auto* s = static_cast<const E*>(in);
  int jd = -1;
  for (int d = 0; d < ndim - 1; d++)
    if (src_stride[d] == 1 && os[d] > 1) jd = d;
  if (ndim >= 2 && src_stride[ndim - 1] != 1 && jd >= 0) transpose_tiles(o, s, ndim, os, src_stride, jd);
  else gather_rows(o, s, ndim, os, src_stride, n);
}

}  // namespace

Status permute_cpu(void* out, const void* in, int ndim, const int64_t* in_shape, const int32_t* perm, size_t elsize) {
  int64_t in_stride[kMaxDims] = {}, out_shape[kMaxDims] = {}, src_stride[kMaxDims] = {};
  int64_t acc = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    in_stride[d] = acc;
    acc *= in_shape[d];
  }
  const int64_t n = acc;
  if (n == 0) return nullptr;
  if (ndim == 0) {
    std::memcpy(out, in, elsize);
    return nullptr;
  }
  for (int d = 0; d < ndim; d++) {
    out_shape[d] = in_shape[perm[d]];
    src_stride[d] = in_stride[perm[d]];
  }
  switch (elsize) {
    case 1: permute_t<uint8_t>(out, in, ndim, out_shape, src_stride, n); break;
    case 2: permute_t<uint16_t>(out, in, ndim, out_shape, src_stride, n); break;
    case 4: permute_t<uint32_t>(out, in, ndim, out_shape, src_stride, n); break;
    case 8: permute_t<uint64_t>(out, in, ndim, out_shape, src_stride, n); break;
    default: return "permute_cpu: element size must be 1, 2, 4 or 8 bytes";
  }
  return nullptr;
}

}  // namespace sana
