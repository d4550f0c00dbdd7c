// Element-wise ops: fill, cast, unary activations, broadcast binary/ternary ops, row softmax.
// CPU twins: native/cpu (fill_cpu, cast_cpu, unary_cpu, binary_cpu, ternary_cpu, softmax_cpu).
#include "ops.cuh"

namespace sana {
namespace SANA_CUDA_NS {

static constexpr int kThreads = 256;

SANA_DEV float gelu_tanh_f(float x) {
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
}
SANA_DEV float silu_f(float x) { return x / (1.f + expf(-x)); }

// --- fill / cast ------------------------------------------------------------------------------
static __global__ void fill_kernel(void* out, int64_t n, double value, int dt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (dt == kI32) static_cast<int32_t*>(out)[i] = int32_t(value);
    else if (dt == kI64) static_cast<int64_t*>(out)[i] = int64_t(value);
    else stf(out, dt, i, float(value));
  }
}

Status fill_cuda(void* out, int64_t n, double value, DType dt, cudaStream_t s) {
  if (n == 0) return nullptr;
  LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, fill_kernel)(out, n, value, int(dt));
  return SANA_LAUNCH_STATUS("fill");
}

static __global__ void cast_kernel(void* out, const void* in, int64_t n, int odt, int idt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    bool iint = idt == kI32 || idt == kI64, oint = odt == kI32 || odt == kI64;
    if (iint && oint) {
      int64_t v = idt == kI32 ? int64_t(static_cast<const int32_t*>(in)[i]) : static_cast<const int64_t*>(in)[i];
      if (odt == kI32) static_cast<int32_t*>(out)[i] = int32_t(v);
      else static_cast<int64_t*>(out)[i] = v;
    } else if (iint) {
      float v = idt == kI32 ? float(static_cast<const int32_t*>(in)[i]) : float(static_cast<const int64_t*>(in)[i]);
      stf(out, odt, i, v);
    } else {
      float v = ldf(in, idt, i);
      // Truncation as static_cast; non-finite values become 0 (as the CPU twin does).
      if (!isfinite(v)) v = 0.f;
      if (odt == kI32) static_cast<int32_t*>(out)[i] = int32_t(v);
      else if (odt == kI64) static_cast<int64_t*>(out)[i] = int64_t(v);
      else stf(out, odt, i, v);
    }
  }
}

Status cast_cuda(void* out, const void* in, int64_t n, DType out_dt, DType in_dt, cudaStream_t s) {
  if (n == 0) return nullptr;
  LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, cast_kernel)(out, in, n, int(out_dt), int(in_dt));
  return SANA_LAUNCH_STATUS("cast");
}

// --- unary ------------------------------------------------------------------------------------
static __global__ void unary_kernel(void* out, const void* in, int64_t n, int op, float p0, float p1, int dt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float x = ldf(in, dt, i), y;
    switch (op) {
      case int(UnaryOp::Affine): y = x * p0 + p1; break;
      case int(UnaryOp::GeluTanh): y = gelu_tanh_f(x); break;
      case int(UnaryOp::Silu): y = silu_f(x); break;
      case int(UnaryOp::Relu): y = x > 0.f ? x : 0.f; break;
      case int(UnaryOp::Tanh): y = tanhf(x); break;
      default: y = fminf(fmaxf(x, p0), p1); break;  // Clamp
    }
    stf(out, dt, i, y);
  }
}

Status unary_cuda(void* out, const void* in, int64_t n, UnaryOp op, float p0, float p1, DType dt, cudaStream_t s) {
  if (n == 0) return nullptr;
  LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, unary_kernel)(out, in, n, int(op), p0, p1, int(dt));
  return SANA_LAUNCH_STATUS("unary");
}

// --- broadcast binary / ternary -----------------------------------------------------------------
// Offsets of flat output index i in inputs 0..nin-1, from the Broadcast strides.
SANA_DEV void bc_offsets(const Broadcast& bc, int64_t i, int nin, int64_t off[3]) {
  off[0] = off[1] = off[2] = 0;
  for (int d = bc.ndim - 1; d >= 0; --d) {
    int64_t c = i % bc.shape[d];
    i /= bc.shape[d];
    for (int k = 0; k < nin; ++k) off[k] += c * bc.stride[k][d];
  }
}

static __global__ void binary_kernel(void* out, const void* a, const void* b, Broadcast bc, int64_t n, int op, int dt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    bc_offsets(bc, i, 2, off);
    float x = ldf(a, dt, off[0]), y = ldf(b, dt, off[1]), r;
    switch (op) {
      case int(BinaryOp::Add): r = x + y; break;
      case int(BinaryOp::Sub): r = x - y; break;
      case int(BinaryOp::Mul): r = x * y; break;
      case int(BinaryOp::Div): r = x / y; break;
      case int(BinaryOp::GluSilu): r = x * silu_f(y); break;
      default: r = x * gelu_tanh_f(y); break;  // GluGelu
    }
    stf(out, dt, i, r);
  }
}

static int64_t bc_numel(const Broadcast* bc) {
  int64_t n = 1;
  for (int d = 0; d < bc->ndim; ++d) n *= bc->shape[d];
  return n;
}

Status binary_cuda(void* out, const void* a, const void* b, const Broadcast* bc, BinaryOp op, DType dt, cudaStream_t s) {
  int64_t n = bc_numel(bc);
  if (n == 0) return nullptr;
  LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, binary_kernel)(out, a, b, *bc, n, int(op), int(dt));
  return SANA_LAUNCH_STATUS("binary");
}

static __global__ void ternary_kernel(void* out, const void* a, const void* b, const void* c, Broadcast bc, int64_t n, int op, int dt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    bc_offsets(bc, i, 3, off);
    float x = ldf(a, dt, off[0]), y = ldf(b, dt, off[1]), z = ldf(c, dt, off[2]);
    // Modulate: x * (1 + scale) + shift with (a, b, c) = (x, shift, scale).
    // AddGated: h + gate * y with (a, b, c) = (h, gate, y).
    float r = op == int(TernaryOp::Modulate) ? x * (1.f + z) + y : x + y * z;
    stf(out, dt, i, r);
  }
}

Status ternary_cuda(void* out, const void* a, const void* b, const void* c, const Broadcast* bc, TernaryOp op, DType dt, cudaStream_t s) {
  int64_t n = bc_numel(bc);
  if (n == 0) return nullptr;
  LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, ternary_kernel)(out, a, b, c, *bc, n, int(op), int(dt));
  return SANA_LAUNCH_STATUS("ternary");
}

// --- softmax over the last dim: one block per row ------------------------------------------------
static constexpr int kSoftmaxThreads = 128;

static __global__ void softmax_kernel(void* out, const void* x, int64_t C, int dt) {
  __shared__ float scratch[32];
  const int64_t base = int64_t(blockIdx.x) * C;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, ldf(x, dt, base + c));
  // block max via the sum helper's pattern (max instead of sum)
  m = warp_max(m);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = m;
  __syncthreads();
  float t = int(threadIdx.x % 32) < int(blockDim.x / 32) ? scratch[threadIdx.x % 32] : -INFINITY;
  m = warp_max(t);
  __syncthreads();
  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) sum += expf(ldf(x, dt, base + c) - m);
  sum = block_sum(sum, scratch);
  const float inv = 1.f / sum;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) stf(out, dt, base + c, expf(ldf(x, dt, base + c) - m) * inv);
}

Status softmax_cuda(void* out, const void* x, int64_t rows, int64_t C, DType dt, cudaStream_t s) {
  if (rows == 0 || C == 0) return nullptr;
  if (rows > 0x7fffffff) return status_printf("softmax: %lld rows exceed the grid limit", (long long)rows);
  LAUNCH(unsigned(rows), kSoftmaxThreads, 0, s, softmax_kernel)(out, x, C, int(dt));
  return SANA_LAUNCH_STATUS("softmax");
}

}  // namespace SANA_CUDA_NS
}  // namespace sana
