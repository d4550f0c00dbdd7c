// Shape ops as byte movers (dtype-agnostic, element size 1/2/4/8): permute, concat, slice,
// index_select, repeat_interleave, nearest upsampling, pixel shuffle.
// CPU twins: native/cpu (permute_cpu, concat_cpu, slice_cpu, index_select_cpu,
// repeat_interleave_cpu, upsample_nearest_cpu, pixel_shuffle_cpu).
#include "ops.cuh"

namespace sana {
namespace SANA_CUDA_NS {

static constexpr int kThreads = 256;

// Copies one element of `elsize` bytes; elsize is uniform across the launch.
SANA_DEV void copy_el(void* dst, int64_t di, const void* src, int64_t si, int elsize) {
  switch (elsize) {
    case 8: static_cast<uint64_t*>(dst)[di] = static_cast<const uint64_t*>(src)[si]; break;
    case 4: static_cast<uint32_t*>(dst)[di] = static_cast<const uint32_t*>(src)[si]; break;
    case 2: static_cast<uint16_t*>(dst)[di] = static_cast<const uint16_t*>(src)[si]; break;
    default: static_cast<uint8_t*>(dst)[di] = static_cast<const uint8_t*>(src)[si]; break;
  }
}
static bool elsize_ok(size_t e) { return e == 1 || e == 2 || e == 4 || e == 8; }

// --- permute: out coords -> in offset through permuted strides -----------------------------------
struct PermuteDesc {
  int ndim;
  int64_t out_shape[kMaxDims];
  int64_t in_stride[kMaxDims];  // stride in `in` of output dim d (= in stride of dim perm[d])
};

static __global__ void permute_kernel(void* out, const void* in, PermuteDesc p, int64_t n, int elsize) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, off = 0;
    for (int d = p.ndim - 1; d >= 0; --d) {
      off += (rem % p.out_shape[d]) * p.in_stride[d];
      rem /= p.out_shape[d];
    }
    copy_el(out, i, in, off, elsize);
  }
}

Status permute_cuda(void* out, const void* in, int ndim, const int64_t* in_shape, const int32_t* perm, size_t elsize, cudaStream_t s) {
  if (ndim > kMaxDims || !elsize_ok(elsize)) return status_printf("permute: unsupported rank %d / element size %zu", ndim, elsize);
  PermuteDesc p;
  p.ndim = ndim;
  int64_t stride[kMaxDims], n = 1;
  int64_t st = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    stride[d] = st;
    st *= in_shape[d];
  }
  for (int d = 0; d < ndim; ++d) {
    p.out_shape[d] = in_shape[perm[d]];
    p.in_stride[d] = stride[perm[d]];
    n *= p.out_shape[d];
  }
  if (n == 0) return nullptr;
  LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, permute_kernel)(out, in, p, n, int(elsize));
  return SANA_LAUNCH_STATUS("permute");
}

// --- 2-D strided copy: the building block of slice and concat ---------------------------------------
// dst[r * dst_ld + c] = src[r * src_ld + c] for r < rows, c < cols (elements).
static __global__ void copy2d_kernel(void* dst, int64_t dst_ld, const void* src, int64_t src_ld, int64_t rows, int64_t cols, int elsize) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / cols, c = i % cols;
    copy_el(dst, r * dst_ld + c, src, r * src_ld + c, elsize);
  }
}

static Status copy2d(void* dst, int64_t dst_ld, const void* src, int64_t src_ld, int64_t rows, int64_t cols, size_t elsize, cudaStream_t s, const char* op) {
  if (rows * cols == 0) return nullptr;
  LAUNCH(blocks_for(rows * cols, kThreads), kThreads, 0, s, copy2d_kernel)(dst, dst_ld, src, src_ld, rows, cols, int(elsize));
  return SANA_LAUNCH_STATUS(op);
}

Status concat_cuda(void* out, const void* const* ins, const int64_t* axis_lens, int n_in, int64_t outer, int64_t inner, size_t elsize, cudaStream_t s) {
  if (!elsize_ok(elsize)) return status_printf("concat: unsupported element size %zu", elsize);
  int64_t total = 0;
  for (int i = 0; i < n_in; ++i) total += axis_lens[i];
  int64_t off = 0;
  for (int i = 0; i < n_in; ++i) {
    // (outer, len_i * inner) block into columns [off, off + len_i) * inner of (outer, total * inner)
    void* dst = static_cast<char*>(out) + size_t(off * inner) * elsize;
    if (Status st = copy2d(dst, total * inner, ins[i], axis_lens[i] * inner, outer, axis_lens[i] * inner, elsize, s, "concat")) return st;
    off += axis_lens[i];
  }
  return nullptr;
}

Status slice_cuda(void* out, const void* in, int64_t outer, int64_t axis_len, int64_t inner, int64_t start, int64_t len, size_t elsize, cudaStream_t s) {
  if (!elsize_ok(elsize)) return status_printf("slice: unsupported element size %zu", elsize);
  const void* src = static_cast<const char*>(in) + size_t(start * inner) * elsize;
  return copy2d(out, len * inner, src, axis_len * inner, outer, len * inner, elsize, s, "slice");
}

// --- gathers along an axis: in (outer, axis_len, inner) -> out (outer, n_out, inner) -------------------
// Source row j of output row i: idx[i] when idx is given, else i / repeats (repeat_interleave).
static __global__ void gather_axis_kernel(void* out, const void* in, const int64_t* idx, int64_t repeats, int64_t outer, int64_t axis_len, int64_t n_out,
                                          int64_t inner, int elsize) {
  const int64_t n = outer * n_out * inner;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t t = i % inner, r = (i / inner) % n_out, o = i / (inner * n_out);
    int64_t j = idx ? idx[r] : r / repeats;
    copy_el(out, i, in, (o * axis_len + j) * inner + t, elsize);
  }
}

Status index_select_cuda(void* out, const void* in, const int64_t* idx, int64_t n_idx, int64_t outer, int64_t axis_len, int64_t inner, size_t elsize,
                         cudaStream_t s) {
  if (!elsize_ok(elsize)) return status_printf("indexSelect: unsupported element size %zu", elsize);
  int64_t n = outer * n_idx * inner;
  if (n == 0) return nullptr;
  // idx is a host array (ops.h): stage it in device scratch, ordered on the stream.
  void* d_idx = scratch_alloc(size_t(n_idx) * sizeof(int64_t));
  if (!d_idx) return "indexSelect: out of device memory for the index list";
  cudaError_t e = cudaMemcpyAsync(d_idx, idx, size_t(n_idx) * sizeof(int64_t), cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) {
    LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, gather_axis_kernel)
    (out, in, static_cast<const int64_t*>(d_idx), int64_t(1), outer, axis_len, n_idx, inner, int(elsize));
  }
  // The copy above is synchronous for pageable host memory, so the host array may go away now;
  // the scratch block is returned to the stream-ordered cache.
  scratch_free(d_idx);
  if (e != cudaSuccess) return cuda_status_of(e, "indexSelect", __FILE__, __LINE__);
  return SANA_LAUNCH_STATUS("indexSelect");
}

Status repeat_interleave_cuda(void* out, const void* in, int64_t outer, int64_t axis_len, int64_t inner, int64_t repeats, size_t elsize, cudaStream_t s) {
  if (!elsize_ok(elsize)) return status_printf("repeatInterleave: unsupported element size %zu", elsize);
  int64_t n = outer * axis_len * repeats * inner;
  if (n == 0) return nullptr;
  LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, gather_axis_kernel)
  (out, in, static_cast<const int64_t*>(nullptr), repeats, outer, axis_len, axis_len * repeats, inner, int(elsize));
  return SANA_LAUNCH_STATUS("repeatInterleave");
}

// --- spatial byte movers ------------------------------------------------------------------------------
static __global__ void upsample_nearest_kernel(void* out, const void* x, int64_t BC, int64_t H, int64_t W, int64_t f, int elsize) {
  const int64_t Ho = H * f, Wo = W * f, n = BC * Ho * Wo;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t ox = i % Wo, oy = (i / Wo) % Ho, bc = i / (Wo * Ho);
    copy_el(out, i, x, (bc * H + oy / f) * W + ox / f, elsize);
  }
}

Status upsample_nearest_cuda(void* out, const void* x, int64_t BC, int64_t H, int64_t W, int64_t factor, size_t elsize, cudaStream_t s) {
  if (!elsize_ok(elsize)) return status_printf("upsampleNearest: unsupported element size %zu", elsize);
  int64_t n = BC * H * W * factor * factor;
  if (n == 0) return nullptr;
  LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, upsample_nearest_kernel)(out, x, BC, H, W, factor, int(elsize));
  return SANA_LAUNCH_STATUS("upsampleNearest");
}

static __global__ void pixel_shuffle_kernel(void* out, const void* x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t r, int elsize) {
  const int64_t Ho = H * r, Wo = W * r, n = B * C * Ho * Wo;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t ox = i % Wo, oy = (i / Wo) % Ho, c = (i / (Wo * Ho)) % C, b = i / (Wo * Ho * C);
    // out[b, c, y*r + dy, x*r + dx] = in[b, c*r*r + dy*r + dx, y, x]
    int64_t ci = c * r * r + (oy % r) * r + (ox % r);
    copy_el(out, i, x, ((b * C * r * r + ci) * H + oy / r) * W + ox / r, elsize);
  }
}

Status pixel_shuffle_cuda(void* out, const void* x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t r, size_t elsize, cudaStream_t s) {
  if (!elsize_ok(elsize)) return status_printf("pixelShuffle: unsupported element size %zu", elsize);
  int64_t n = B * C * H * W * r * r;
  if (n == 0) return nullptr;
  LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, pixel_shuffle_kernel)(out, x, B, C, H, W, r, int(elsize));
  return SANA_LAUNCH_STATUS("pixelShuffle");
}

}  // namespace SANA_CUDA_NS
}  // namespace sana
