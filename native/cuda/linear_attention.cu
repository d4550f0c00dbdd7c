// Sana's ReLU linear attention (f32): q, k, v (B, H, N, D) ->
//   out_n = (sum_m v_m relu(k_m)^T) relu(q_n) / (sum_m relu(k_m) . relu(q_n) + eps).
// Two kernels per call, O(N D^2) work, no N x N matrix:
//   1. la_state_kernel: token chunks of every (b, h) accumulate S = sum v k^T (D x D) and
//      z = sum k (D) into an f32 workspace with atomicAdd (several blocks per head keep the GPU
//      busy when B*H is small);
//   2. la_apply_kernel: each block stages S, z and a tile of queries in shared memory.
// linear_attention_tokens_cuda runs the same kernels on token-major qkv (B, N, 3·H·D) in any float
// dtype, writing (B, N, H·D). CPU twins: linear_attention_cpu, linear_attention_tokens_cpu.
#include "ops.cuh"

namespace sana {
namespace SANA_CUDA_NS {

static constexpr int kThreads = 256, kMaxD = 64, kTok = 32, kChunk = 512;

// Where element (b, h, n, d) of q, k, v (one layout, three bases) and of out lives, in elements:
// (B, H, N, D) f32 for linear_attention_cuda; token-major (B, N, 3, H, D) in dt for
// linear_attention_tokens_cuda (out (B, N, H, D)).
struct LaLayout {
  int64_t H, sb, sh, sn;  // inputs
  int64_t osb, osh, osn;  // out
  int dt;                 // dtype of inputs and out
  SANA_DEV int64_t in(int64_t bh, int64_t n) const { return (bh / H) * sb + (bh % H) * sh + n * sn; }
  SANA_DEV int64_t out(int64_t bh, int64_t n) const { return (bh / H) * osb + (bh % H) * osh + n * osn; }
};

static __global__ void la_state_kernel(float* ws, const void* k, const void* v, LaLayout L, int64_t N, int64_t D, int relu) {
  __shared__ float Ks[kTok][kMaxD];
  __shared__ float Vs[kTok][kMaxD];
  const int64_t bh = blockIdx.y, n_begin = int64_t(blockIdx.x) * kChunk;
  const int64_t n_end = n_begin + kChunk < N ? n_begin + kChunk : N;
  const int64_t E = D * D + D;                                             // S (dv, dk) row-major, then z (dk)
  constexpr int kAcc = (kMaxD * kMaxD + kMaxD + kThreads - 1) / kThreads;  // entries per thread, at most
  float acc[kAcc];
  SANA_UNROLL
  for (int r = 0; r < kAcc; ++r) acc[r] = 0.f;
  for (int64_t t0 = n_begin; t0 < n_end; t0 += kTok) {
    for (int e = threadIdx.x; e < kTok * D; e += kThreads) {
      int64_t tt = e / D, d = e % D, n = t0 + tt;
      float kv = 0.f, vv = 0.f;
      if (n < n_end) {
        kv = ldf(k, L.dt, L.in(bh, n) + d);
        vv = ldf(v, L.dt, L.in(bh, n) + d);
        if (relu) kv = kv > 0.f ? kv : 0.f;
      }
      Ks[tt][d] = kv;
      Vs[tt][d] = vv;
    }
    __syncthreads();
    SANA_UNROLL
    for (int r = 0; r < kAcc; ++r) {
      int64_t e = threadIdx.x + int64_t(r) * kThreads;
      if (e >= E) continue;
      float sum = 0.f;
      if (e < D * D) {
        int64_t dv = e / D, dk = e % D;
        for (int tt = 0; tt < kTok; ++tt) sum = fma_f(Vs[tt][dv], Ks[tt][dk], sum);
      } else {
        int64_t dk = e - D * D;
        for (int tt = 0; tt < kTok; ++tt) sum += Ks[tt][dk];
      }
      acc[r] += sum;
    }
    __syncthreads();
  }
  SANA_UNROLL
  for (int r = 0; r < kAcc; ++r) {
    int64_t e = threadIdx.x + int64_t(r) * kThreads;
    if (e < E) atomicAdd(&ws[bh * E + e], acc[r]);
  }
}

static __global__ void la_apply_kernel(void* out, const void* q, const float* ws, LaLayout L, int64_t N, int64_t D, float eps, int relu) {
  __shared__ float S[kMaxD * kMaxD + kMaxD];
  __shared__ float Qs[kTok][kMaxD];
  const int64_t bh = blockIdx.y, n0 = int64_t(blockIdx.x) * kTok, E = D * D + D;
  for (int64_t e = threadIdx.x; e < E; e += kThreads) S[e] = ws[bh * E + e];
  for (int e = threadIdx.x; e < kTok * D; e += kThreads) {
    int64_t tt = e / D, d = e % D, n = n0 + tt;
    float qv = n < N ? ldf(q, L.dt, L.in(bh, n) + d) : 0.f;
    Qs[tt][d] = relu && qv < 0.f ? 0.f : qv;
  }
  __syncthreads();
  const float* z = S + D * D;
  for (int e = threadIdx.x; e < kTok * D; e += kThreads) {
    int64_t tt = e / D, dv = e % D, n = n0 + tt;
    if (n >= N) continue;
    float num = 0.f, den = 0.f;
    for (int64_t dk = 0; dk < D; ++dk) {
      num = fma_f(S[dv * D + dk], Qs[tt][dk], num);
      den = fma_f(z[dk], Qs[tt][dk], den);
    }
    stf(out, L.dt, L.out(bh, n) + dv, num / (den + eps));
  }
}

static Status la_run(void* out, const void* q, const void* k, const void* v, const LaLayout& L, int64_t B, int64_t N, int64_t D, float eps, bool relu,
                     cudaStream_t s) {
  const int64_t H = L.H;
  if (D > kMaxD) return status_printf("linearAttention: head dim %lld exceeds %d", (long long)D, kMaxD);
  if (B * H * N * D == 0) return nullptr;
  if (B * H > 65535) return status_printf("linearAttention: B*H = %lld exceeds the grid limit", (long long)(B * H));
  const size_t ws_bytes = sizeof(float) * size_t(B * H * (D * D + D));
  float* ws = static_cast<float*>(scratch_alloc(ws_bytes));
  if (!ws) return "linearAttention: out of device memory for the (B, H, D, D+1) state";
  Status st = nullptr;
  cudaError_t e = cudaMemsetAsync(ws, 0, ws_bytes, s);
  if (e != cudaSuccess) st = cuda_status_of(e, "linearAttention", __FILE__, __LINE__);
  if (!st) {
    LAUNCH(dim3(unsigned(cdiv(N, kChunk)), unsigned(B * H)), kThreads, 0, s, la_state_kernel)(ws, k, v, L, N, D, relu ? 1 : 0);
    st = SANA_LAUNCH_STATUS("linearAttention (state)");
  }
  if (!st) {
    LAUNCH(dim3(unsigned(cdiv(N, kTok)), unsigned(B * H)), kThreads, 0, s, la_apply_kernel)(out, q, ws, L, N, D, eps, relu ? 1 : 0);
    st = SANA_LAUNCH_STATUS("linearAttention (apply)");
  }
  scratch_free(ws);  // stream-ordered: later work on this stream reuses it after these kernels
  return st;
}

Status linear_attention_cuda(float* out, const float* q, const float* k, const float* v, int64_t B, int64_t H, int64_t N, int64_t D, float eps, bool relu,
                             cudaStream_t s) {
  const LaLayout L{H, H * N * D, N * D, D, H * N * D, N * D, D, int(DType::F32)};
  return la_run(out, q, k, v, L, B, N, D, eps, relu, s);
}

Status linear_attention_tokens_cuda(void* out, const void* qkv, int64_t B, int64_t N, int64_t H, int64_t D, float eps, bool relu, DType dt, cudaStream_t s) {
  const int64_t C = H * D;  // q at channel 0, k at C, v at 2C of each token's 3C
  const LaLayout L{H, N * 3 * C, D, 3 * C, N * C, D, C, int(dt)};
  const size_t es = dtype_size(dt);
  const char* base = static_cast<const char*>(qkv);
  return la_run(out, base, base + size_t(C) * es, base + size_t(2 * C) * es, L, B, N, D, eps, relu, s);
}

}  // namespace SANA_CUDA_NS
}  // namespace sana
