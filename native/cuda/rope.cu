// Rotary embedding, HF rotate_half convention. CPU twin: rope_cpu.
#include "ops.cuh"

namespace sana {
namespace SANA_CUDA_NS {

static constexpr int kThreads = 256;

// x (BH, L, D): for i < D/2, out[i] = x[i] cos - x[i + D/2] sin, out[i + D/2] = x[i + D/2] cos + x[i] sin,
// angle = pos * theta^(-2i/D).
static __global__ void rope_kernel(void* out, const void* x, const int64_t* pos, int64_t BH, int64_t L, int64_t D, float theta, int dt) {
  const int64_t half = D / 2, n = BH * L * half;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    int64_t i = e % half, row = e / half, l = row % L;
    float inv_freq = 1.f / powf(theta, float(2 * i) / float(D));
    float ang = float(pos[l]) * inv_freq, c = cosf(ang), s = sinf(ang);
    int64_t base = row * D;
    float x1 = ldf(x, dt, base + i), x2 = ldf(x, dt, base + i + half);
    stf(out, dt, base + i, x1 * c - x2 * s);
    stf(out, dt, base + i + half, x2 * c + x1 * s);
  }
}

Status rope_cuda(void* out, const void* x, const int64_t* positions, int64_t BH, int64_t L, int64_t D, float theta, DType dt, cudaStream_t s) {
  if (D % 2) return status_printf("rope: head dim %lld is odd", (long long)D);
  if (BH * L * D == 0) return nullptr;
  void* d_pos = scratch_alloc(size_t(L) * sizeof(int64_t));
  if (!d_pos) return "rope: out of device memory for the positions";
  cudaError_t e = cudaMemcpyAsync(d_pos, positions, size_t(L) * sizeof(int64_t), cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) {
    LAUNCH(blocks_for(BH * L * (D / 2), kThreads), kThreads, 0, s, rope_kernel)(out, x, static_cast<const int64_t*>(d_pos), BH, L, D, theta, int(dt));
  }
  scratch_free(d_pos);
  if (e != cudaSuccess) return cuda_status_of(e, "rope", __FILE__, __LINE__);
  return SANA_LAUNCH_STATUS("rope");
}

}  // namespace SANA_CUDA_NS
}  // namespace sana
