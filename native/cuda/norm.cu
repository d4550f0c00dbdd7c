// Normalisations: rmsnorm (rows), rmsnorm_act (rows, + activation and residual), rmsnorm2d (over
// channels of NCHW), layernorm (rows), layernorm + adaLN modulation (rows). CPU twins: rmsnorm_cpu,
// rmsnorm_act_cpu, rmsnorm2d_cpu, layernorm_cpu, layernorm_modulate_cpu. Statistics in f32.
#include "ops.cuh"

namespace sana {
namespace SANA_CUDA_NS {

static constexpr int kThreads = 256;

// One block per row of x (rows, C): act(rmsnorm(x)·(w + offset) + bias) [+ res]. rmsnorm passes no
// activation and no residual; rmsnorm_act no offset.
static __global__ void rmsnorm_kernel(void* out, const void* x, const void* w, const void* bias, const void* res, int64_t C, float eps, float offset, int act,
                                      int dt) {
  __shared__ float scratch[32];
  const int64_t base = int64_t(blockIdx.x) * C;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float v = ldf(x, dt, base + c);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float r = rsqrtf(ss / float(C) + eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float v = ldf(x, dt, base + c) * r;
    if (w) v *= ldf(w, dt, c) + offset;
    if (bias) v += ldf(bias, dt, c);
    if (act == int(ConvAct::Silu)) v = v / (1.f + expf(-v));
    else if (act == int(ConvAct::Relu)) v = v > 0.f ? v : 0.f;
    if (res) v += ldf(res, dt, base + c);
    stf(out, dt, base + c, v);
  }
}

Status rmsnorm_cuda(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, float offset, DType dt, cudaStream_t s) {
  if (rows == 0 || C == 0) return nullptr;
  if (rows > 0x7fffffff) return status_printf("rmsnorm: %lld rows exceed the grid limit", (long long)rows);
  LAUNCH(unsigned(rows), kThreads, 0, s, rmsnorm_kernel)(out, x, w, bias, nullptr, C, eps, offset, int(ConvAct::None), int(dt));
  return SANA_LAUNCH_STATUS("rmsnorm");
}

Status rmsnorm_act_cuda(void* out, const void* x, const void* w, const void* bias, const void* res, int64_t rows, int64_t C, float eps, ConvAct act, DType dt,
                        cudaStream_t s) {
  if (rows == 0 || C == 0) return nullptr;
  if (rows > 0x7fffffff) return status_printf("rmsnorm_act: %lld rows exceed the grid limit", (long long)rows);
  LAUNCH(unsigned(rows), kThreads, 0, s, rmsnorm_kernel)(out, x, w, bias, res, C, eps, 0.f, int(act), int(dt));
  return SANA_LAUNCH_STATUS("rmsnorm_act");
}

// x (B, C, HW): one thread per pixel walks the channels; neighbouring threads read neighbouring
// pixels of the same channel (coalesced).
static __global__ void rmsnorm2d_kernel(void* out, const void* x, const void* w, const void* bias, int64_t B, int64_t C, int64_t HW, float eps, int dt) {
  const int64_t n = B * HW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / HW, p = i % HW, base = b * C * HW + p;
    float ss = 0.f;
    for (int64_t c = 0; c < C; ++c) {
      float v = ldf(x, dt, base + c * HW);
      ss += v * v;
    }
    const float r = rsqrtf(ss / float(C) + eps);
    for (int64_t c = 0; c < C; ++c) {
      float v = ldf(x, dt, base + c * HW) * r;
      if (w) v *= ldf(w, dt, c);
      if (bias) v += ldf(bias, dt, c);
      stf(out, dt, base + c * HW, v);
    }
  }
}

Status rmsnorm2d_cuda(void* out, const void* x, const void* w, const void* bias, int64_t B, int64_t C, int64_t HW, float eps, DType dt, cudaStream_t s) {
  if (B * HW == 0 || C == 0) return nullptr;
  LAUNCH(blocks_for(B * HW, kThreads), kThreads, 0, s, rmsnorm2d_kernel)(out, x, w, bias, B, C, HW, eps, int(dt));
  return SANA_LAUNCH_STATUS("rmsnorm2d");
}

// Mean and 1/std of the row at `base`, by the whole block: two passes (mean, then centred
// variance) for accuracy.
static __device__ void row_stats(const void* x, int dt, int64_t base, int64_t C, float eps, float* scratch, float& mean, float& r) {
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += ldf(x, dt, base + c);
  mean = block_sum(s, scratch) / float(C);
  float v2 = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float d = ldf(x, dt, base + c) - mean;
    v2 += d * d;
  }
  r = rsqrtf(block_sum(v2, scratch) / float(C) + eps);
}

// One block per row.
static __global__ void layernorm_kernel(void* out, const void* x, const void* w, const void* bias, int64_t C, float eps, int dt) {
  __shared__ float scratch[32];
  const int64_t base = int64_t(blockIdx.x) * C;
  float mean, r;
  row_stats(x, dt, base, C, eps, scratch, mean, r);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float v = (ldf(x, dt, base + c) - mean) * r;
    if (w) v *= ldf(w, dt, c);
    if (bias) v += ldf(bias, dt, c);
    stf(out, dt, base + c, v);
  }
}

Status layernorm_cuda(void* out, const void* x, const void* w, const void* bias, int64_t rows, int64_t C, float eps, DType dt, cudaStream_t s) {
  if (rows == 0 || C == 0) return nullptr;
  if (rows > 0x7fffffff) return status_printf("layernorm: %lld rows exceed the grid limit", (long long)rows);
  LAUNCH(unsigned(rows), kThreads, 0, s, layernorm_kernel)(out, x, w, bias, C, eps, int(dt));
  return SANA_LAUNCH_STATUS("layernorm");
}

// adaLN: one block per row of x (B·R, C); shift/scale row of batch row / R.
static __global__ void layernorm_modulate_kernel(void* out, const void* x, const void* shift, const void* scale, int64_t R, int64_t C, int64_t mbs, float eps,
                                                 int dt) {
  __shared__ float scratch[32];
  const int64_t row = int64_t(blockIdx.x), base = row * C, mb = (row / R) * mbs;
  float mean, r;
  row_stats(x, dt, base, C, eps, scratch, mean, r);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = (ldf(x, dt, base + c) - mean) * r;
    stf(out, dt, base + c, fma_f(v, 1.0f + ldf(scale, dt, mb + c), ldf(shift, dt, mb + c)));
  }
}

Status layernorm_modulate_cuda(void* out, const void* x, const void* shift, const void* scale, int64_t B, int64_t R, int64_t C, int64_t mod_bstride, float eps,
                               DType dt, cudaStream_t s) {
  const int64_t rows = B * R;
  if (rows == 0 || C == 0) return nullptr;
  if (rows > 0x7fffffff) return status_printf("layernorm_modulate: %lld rows exceed the grid limit", (long long)rows);
  LAUNCH(unsigned(rows), kThreads, 0, s, layernorm_modulate_kernel)(out, x, shift, scale, R, C, mod_bstride, eps, int(dt));
  return SANA_LAUNCH_STATUS("layernorm_modulate");
}

}  // namespace SANA_CUDA_NS
}  // namespace sana
