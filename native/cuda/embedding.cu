// Embedding lookup with an id range check. CPU twin: embedding_cpu.
#include "ops.cuh"

namespace sana {
namespace SANA_CUDA_NS {

static constexpr int kThreads = 256;

// Rows of table (V, D) by id; an out-of-range id writes zeros and raises *bad (reported after).
static __global__ void embedding_kernel(void* out, const void* table, const void* ids, int64_t n_ids, int64_t V, int64_t D, int dt, int ids_dt, int* bad) {
  const int64_t n = n_ids * D;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = e / D, d = e % D;
    int64_t id = ids_dt == kI32 ? int64_t(static_cast<const int32_t*>(ids)[r]) : static_cast<const int64_t*>(ids)[r];
    if (id < 0 || id >= V) {
      if (d == 0) atomicMax(bad, 1);
      stf(out, dt, e, 0.f);
      continue;
    }
    stf(out, dt, e, ldf(table, dt, id * D + d));
  }
}

Status embedding_cuda(void* out, const void* table, const void* ids, int64_t n_ids, int64_t V, int64_t D, DType dt, DType ids_dt, cudaStream_t s) {
  if (ids_dt != DType::I32 && ids_dt != DType::I64) return status_printf("embedding: ids must be i32 or i64, got %s", dtype_name(ids_dt));
  if (n_ids * D == 0) return nullptr;
  int* bad = static_cast<int*>(scratch_alloc(sizeof(int)));
  if (!bad) return "embedding: out of device memory";
  int h_bad = 0;
  cudaError_t e = cudaMemsetAsync(bad, 0, sizeof(int), s);
  Status st = nullptr;
  if (e == cudaSuccess) {
    LAUNCH(blocks_for(n_ids * D, kThreads), kThreads, 0, s, embedding_kernel)(out, table, ids, n_ids, V, D, int(dt), int(ids_dt), bad);
    st = SANA_LAUNCH_STATUS("embedding");
    // The id check needs the flag on the host: one small synchronous read.
    if (!st) e = cudaMemcpyAsync(&h_bad, bad, sizeof(int), cudaMemcpyDeviceToHost, s);
    if (!st && e == cudaSuccess) e = cudaStreamSynchronize(s);
  }
  scratch_free(bad);
  if (st) return st;
  if (e != cudaSuccess) return cuda_status_of(e, "embedding", __FILE__, __LINE__);
  if (h_bad) return status_printf("embedding: an id is outside the table's %lld rows", (long long)V);
  return nullptr;
}

}  // namespace SANA_CUDA_NS
}  // namespace sana
