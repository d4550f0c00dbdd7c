// Softmax attention, flash-style: keys and values stream through shared memory in tiles and each
// query keeps an online-softmax state (running max m, running sum l, output accumulator o) in
// registers, so no Lq x Lk score matrix exists anywhere. GQA, soft-capping, additive bias,
// causal masking and sliding windows are handled in the score step.
// CPU twins: attention_cpu, attention_tokens_cpu, self_attention_rope_cpu (one kernel: the layouts
// differ only in row strides, AttnDesc's q/k/v/o strides; self_attention_rope adds RoPE on the q and
// k loads and a pass for queries that see no key).
//
// Block: 4 warps, each owning kQPW consecutive queries; lane j scores key j of the tile; output
// channel d of a query lives in lane d % 32, register d / 32 (Dv <= 256).
#include "ops.cuh"
#include <cmath>
#include <vector>

namespace sana {
namespace SANA_CUDA_NS {

static constexpr int kWarps = 4, kQPW = 2, kMaxD = 256, kMaxR = kMaxD / 32;

struct AttnDesc {
  int64_t Hq, Hkv, Lq, Lk, D, Dv;
  // Row (b, head, i) of q, k, v, out starts at element b·sb + head·sh + i·si of its tensor.
  int64_t q_sb, q_sh, q_si, k_sb, k_sh, k_sj, v_sb, v_sh, v_sj, o_sb, o_sh, o_si;
  int64_t bias_sb, bias_sh, bias_sq;
  float scale, softcap;
  int causal;
  int64_t window;
  int KT;  // keys per tile (16 or 32)
  int dt;
  // RoPE tables (N, D/2) indexed by token, applied to q and k as they are loaded; null: none.
  const float* rope_cs;
  const float* rope_sn;
};

// Element d of row `base` rotated as rope_cpu does (x_i c - x_{i+D/2} s | x_{i+D/2} c + x_i s), rounded
// to the tensor's dtype like the separate rope op's output.
static SANA_DEV float ld_roped(const void* x, int dt, int64_t base, int64_t d, int64_t D, const float* cs, const float* sn, int64_t t) {
  const float v = ldf(x, dt, base + d);
  if (!cs) return v;
  const int64_t half = D / 2, i = d < half ? d : d - half;
  const float c = cs[t * half + i], s = sn[t * half + i];
  const float p = ldf(x, dt, base + (d < half ? d + half : d - half));
  const float r = d < half ? v * c - p * s : v * c + p * s;
  if (dt == kF32) return r;
  return dt == kBF16 ? bf16_bits_to_f32(f32_to_bf16_bits(r)) : f16_bits_to_f32(f32_to_f16_bits(r));
}

static __global__ void __launch_bounds__(kWarps * 32) attention_kernel(void* out, const void* q, const void* k, const void* v, const float* bias, AttnDesc a) {
  DYN_SMEM(float, smem);
  const int KT = a.KT;
  const int64_t D = a.D, Dv = a.Dv;
  float* Ks = smem;                    // [KT][D + 1] (+1: lanes reading row j avoid bank conflicts)
  float* Vs = Ks + KT * (D + 1);       // [KT][Dv]
  float* Qs = Vs + KT * Dv;            // [kWarps * kQPW][D]
  float* Ps = Qs + kWarps * kQPW * D;  // [kWarps][32]: a warp's probabilities for one query
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / (a.Hq / a.Hkv);
  const int64_t q_first = int64_t(blockIdx.x) * kWarps * kQPW;
  const int64_t q_last = (q_first + kWarps * kQPW < a.Lq ? q_first + kWarps * kQPW : a.Lq) - 1;
  const int64_t qbase = b * a.q_sb + h * a.q_sh, kbase = b * a.k_sb + hk * a.k_sh, vbase = b * a.v_sb + hk * a.v_sh, obase = b * a.o_sb + h * a.o_sh;

  for (int e = tid; e < kWarps * kQPW * D; e += blockDim.x) {
    int64_t qi = e / D, d = e % D, i = q_first + qi;
    Qs[e] = i < a.Lq ? ld_roped(q, a.dt, qbase + i * a.q_si, d, D, a.rope_cs, a.rope_sn, i) : 0.f;
  }
  float m[kQPW], l[kQPW], o[kQPW][kMaxR];
  SANA_UNROLL
  for (int qi = 0; qi < kQPW; ++qi) {
    m[qi] = -INFINITY;
    l[qi] = 0.f;
    SANA_UNROLL
    for (int r = 0; r < kMaxR; ++r) o[qi][r] = 0.f;
  }
  // Key range any query of this block can see.
  int64_t kend = a.causal ? (q_last + 1 < a.Lk ? q_last + 1 : a.Lk) : a.Lk;
  int64_t kstart = a.window > 0 && q_first - a.window + 1 > 0 ? q_first - a.window + 1 : 0;
  __syncthreads();

  for (int64_t j0 = kstart; j0 < kend; j0 += KT) {
    for (int e = tid; e < KT * D; e += blockDim.x) {
      int64_t jj = e / D, d = e % D, j = j0 + jj;
      Ks[jj * (D + 1) + d] = j < a.Lk ? ld_roped(k, a.dt, kbase + j * a.k_sj, d, D, a.rope_cs, a.rope_sn, j) : 0.f;
    }
    for (int e = tid; e < KT * Dv; e += blockDim.x) {
      int64_t jj = e / Dv, d = e % Dv, j = j0 + jj;
      Vs[e] = j < a.Lk ? ldf(v, a.dt, vbase + j * a.v_sj + d) : 0.f;
    }
    __syncthreads();
    SANA_UNROLL
    for (int qi = 0; qi < kQPW; ++qi) {
      const int64_t i = q_first + warp * kQPW + qi;
      if (i >= a.Lq) continue;  // warp-uniform
      const int64_t j = j0 + lane;
      bool valid = lane < KT && j < a.Lk && (!a.causal || j <= i) && (a.window <= 0 || i - j < a.window);
      float s = -INFINITY;
      if (valid) {
        const float* qrow = Qs + (warp * kQPW + qi) * D;
        const float* krow = Ks + lane * (D + 1);
        float dot = 0.f;
        for (int64_t d = 0; d < D; ++d) dot = fma_f(qrow[d], krow[d], dot);
        s = dot * a.scale;
        if (a.softcap > 0.f) s = a.softcap * tanhf(s / a.softcap);
        if (bias) s += bias[b * a.bias_sb + h * a.bias_sh + i * a.bias_sq + j];
        if (s == -INFINITY) valid = false;  // a -inf bias masks the key
      }
      const float m_new = fmaxf(m[qi], warp_max(s));
      if (m_new == -INFINITY) continue;  // nothing visible yet (warp-uniform after the reduction)
      const float p = valid ? expf(s - m_new) : 0.f;
      const float alpha = expf(m[qi] - m_new);
      l[qi] = l[qi] * alpha + warp_sum(p);
      m[qi] = m_new;
      SANA_UNROLL
      for (int r = 0; r < kMaxR; ++r) o[qi][r] *= alpha;
      // Every lane needs every p_j: one shared-memory broadcast per key instead of KT shuffles.
      Ps[warp * 32 + lane] = p;
      __syncwarp();
      for (int jj = 0; jj < KT; ++jj) {
        const float pj = Ps[warp * 32 + jj];
        const float* vrow = Vs + jj * Dv;
        SANA_UNROLL
        for (int r = 0; r < kMaxR; ++r) {
          const int64_t d = lane + 32 * r;
          if (d < Dv) o[qi][r] = fma_f(pj, vrow[d], o[qi][r]);
        }
      }
      __syncwarp();  // before the next query overwrites Ps
    }
    __syncthreads();
  }
  SANA_UNROLL
  for (int qi = 0; qi < kQPW; ++qi) {
    const int64_t i = q_first + warp * kQPW + qi;
    if (i >= a.Lq) continue;
    // A query that sees no key at all gets zeros (rather than 0/0).
    const float inv = l[qi] > 0.f ? 1.f / l[qi] : 0.f;
    SANA_UNROLL
    for (int r = 0; r < kMaxR; ++r) {
      const int64_t d = lane + 32 * r;
      if (d < Dv) stf(out, a.dt, obase + i * a.o_si + d, o[qi][r] * inv);
    }
  }
}

// Checks the sizes, fills the rest of the descriptor and launches; `a` holds the dims and strides.
static Status launch_attention(void* out, const void* q, const void* k, const void* v, const float* bias, int64_t B, AttnDesc a, cudaStream_t s,
                               const char* op) {
  const int64_t D = a.D, Dv = a.Dv;
  if (D > kMaxD || Dv > kMaxD) return status_printf("%s: head dims D=%lld Dv=%lld exceed %d", op, (long long)D, (long long)Dv, kMaxD);
  if (a.Hkv <= 0 || a.Hq % a.Hkv != 0) return status_printf("%s: Hq=%lld is not a multiple of Hkv=%lld", op, (long long)a.Hq, (long long)a.Hkv);
  if (B * a.Hq * a.Lq * Dv == 0) return nullptr;
  if (B > 65535 || a.Hq > 65535) return status_printf("%s: B=%lld or H=%lld exceed the grid limit", op, (long long)B, (long long)a.Hq);
  a.KT = D + Dv <= 192 ? 32 : 16;  // keeps shared memory under the 48 KiB default
  size_t smem = sizeof(float) * size_t(a.KT * (D + 1) + a.KT * Dv + kWarps * kQPW * D + kWarps * 32);
  dim3 grid(unsigned(cdiv(a.Lq, kWarps * kQPW)), unsigned(a.Hq), unsigned(B));
  LAUNCH(grid, kWarps * 32, smem, s, attention_kernel)(out, q, k, v, bias, a);
  return SANA_LAUNCH_STATUS(op);
}

Status attention_cuda(void* out, const void* q, const void* k, const void* v, const float* bias, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t Lk,
                      int64_t D, int64_t Dv, int64_t bias_sb, int64_t bias_sh, int64_t bias_sq, float scale, float softcap, bool causal, int64_t window,
                      DType dt, cudaStream_t s) {
  AttnDesc a;
  a.Hq = Hq;
  a.Hkv = Hkv;
  a.Lq = Lq;
  a.Lk = Lk;
  a.D = D;
  a.Dv = Dv;
  // (B, H, L, D) rows, contiguous heads.
  a.q_sb = Hq * Lq * D, a.q_sh = Lq * D, a.q_si = D;
  a.k_sb = Hkv * Lk * D, a.k_sh = Lk * D, a.k_sj = D;
  a.v_sb = Hkv * Lk * Dv, a.v_sh = Lk * Dv, a.v_sj = Dv;
  a.o_sb = Hq * Lq * Dv, a.o_sh = Lq * Dv, a.o_si = Dv;
  a.bias_sb = bias_sb;
  a.bias_sh = bias_sh;
  a.bias_sq = bias_sq;
  a.scale = scale;
  a.softcap = softcap;
  a.causal = causal ? 1 : 0;
  a.window = window;
  a.dt = int(dt);
  a.rope_cs = a.rope_sn = nullptr;
  return launch_attention(out, q, k, v, bias, B, a, s, "attention");
}

// kv_cache is unused: the kernel reads k and v straight from kv into shared memory per tile.
Status attention_tokens_cuda(void* out, const void* q, const void* kv, const float* bias, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, float scale,
                             DType dt, WeightCacheSlot*, cudaStream_t s) {
  // q (B, Lq, H, D), kv (B, Lk, 2, H, D): k at kv, v H·D elements further; out (B, Lq, H, D).
  const int64_t C = H * D;
  AttnDesc a;
  a.Hq = a.Hkv = H;
  a.Lq = Lq;
  a.Lk = Lk;
  a.D = a.Dv = D;
  a.q_sb = Lq * C, a.q_sh = D, a.q_si = C;
  a.k_sb = a.v_sb = Lk * 2 * C, a.k_sh = a.v_sh = D, a.k_sj = a.v_sj = 2 * C;
  a.o_sb = Lq * C, a.o_sh = D, a.o_si = C;
  a.bias_sb = Lk;
  a.bias_sh = a.bias_sq = 0;
  a.scale = scale;
  a.softcap = 0.f;
  a.causal = 0;
  a.window = 0;
  a.dt = int(dt);
  a.rope_cs = a.rope_sn = nullptr;
  const void* v = static_cast<const char*>(kv) + size_t(C) * (dt == DType::F32 ? 4 : 2);
  return launch_attention(out, q, kv, v, bias, B, a, s, "attentionTokens");
}

// Queries that see no key (rows listed in `rows`, as b·N + i): the mean of all N value rows of their
// batch item, per head; one block per (row, head), one thread per channel.
static __global__ void uniform_rows_kernel(void* out, const void* v, const int64_t* rows, int64_t N, int64_t Hq, int64_t Hkv, int64_t D, int64_t v_sj, int dt) {
  const int64_t r = rows[blockIdx.x], b = r / N, h = blockIdx.y, hk = h / (Hq / Hkv);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float sum = 0.f;
    for (int64_t j = 0; j < N; ++j) sum += ldf(v, dt, (b * N + j) * v_sj + hk * D + d);
    stf(out, dt, r * Hq * D + h * D + d, sum / float(N));
  }
}

Status self_attention_rope_cuda(void* out, const void* qkv, const int64_t* positions, const int64_t* key_mask, int64_t B, int64_t N, int64_t Hq, int64_t Hkv,
                                int64_t D, float theta, float scale, float softcap, int64_t window, DType dt, cudaStream_t s) {
  const char* op = "selfAttentionRope";
  if (D % 2) return status_printf("%s: head dim %lld is odd", op, (long long)D);
  if (B * N * Hq * D == 0) return nullptr;
  // qkv (B, N, Hq + 2·Hkv, D): q heads, k heads, v heads per token; out (B, N, Hq, D).
  const int64_t C3 = (Hq + 2 * Hkv) * D, Co = Hq * D, half = D / 2;
  // Host-side tables as rope_cpu computes them, the key bias (0 / -inf) and the rows that see no key.
  std::vector<float> tab(size_t(2 * N * half));
  for (int64_t i = 0; i < half; i++) {
    const float inv = 1.0f / std::pow(theta, float(2 * i) / float(D));
    for (int64_t t = 0; t < N; t++) {
      const float ang = float(positions[t]) * inv;
      tab[size_t(t * half + i)] = std::cos(ang);
      tab[size_t(N * half + t * half + i)] = std::sin(ang);
    }
  }
  std::vector<float> bias;
  std::vector<int64_t> empty;
  if (key_mask) {
    bias.resize(size_t(B * N));
    for (int64_t e = 0; e < B * N; e++) bias[size_t(e)] = key_mask[e] != 0 ? 0.f : -INFINITY;
    for (int64_t b = 0; b < B; b++) {
      int64_t last = -1;  // the latest visible key at or before i
      for (int64_t i = 0; i < N; i++) {
        if (key_mask[b * N + i] != 0) last = i;
        if (last < 0 || (window > 0 && i - last >= window)) empty.push_back(b * N + i);
      }
    }
  }
  const size_t tab_bytes = tab.size() * sizeof(float), bias_bytes = bias.size() * sizeof(float), rows_bytes = empty.size() * sizeof(int64_t);
  char* scratch = static_cast<char*>(scratch_alloc(tab_bytes + bias_bytes + rows_bytes));
  if (!scratch) return "selfAttentionRope: out of device memory for the RoPE tables and mask";
  float* d_tab = reinterpret_cast<float*>(scratch);
  float* d_bias = bias.empty() ? nullptr : reinterpret_cast<float*>(scratch + tab_bytes);
  int64_t* d_rows = reinterpret_cast<int64_t*>(scratch + tab_bytes + bias_bytes);
  cudaError_t e = cudaMemcpyAsync(d_tab, tab.data(), tab_bytes, cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess && d_bias) e = cudaMemcpyAsync(d_bias, bias.data(), bias_bytes, cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess && !empty.empty()) e = cudaMemcpyAsync(d_rows, empty.data(), rows_bytes, cudaMemcpyHostToDevice, s);
  Status st = nullptr;
  if (e == cudaSuccess) {
    AttnDesc a;
    a.Hq = Hq;
    a.Hkv = Hkv;
    a.Lq = a.Lk = N;
    a.D = a.Dv = D;
    a.q_sb = a.k_sb = a.v_sb = N * C3;
    a.q_sh = a.k_sh = a.v_sh = D;
    a.q_si = a.k_sj = a.v_sj = C3;
    a.o_sb = N * Co, a.o_sh = D, a.o_si = Co;
    a.bias_sb = N;
    a.bias_sh = a.bias_sq = 0;
    a.scale = scale;
    a.softcap = softcap;
    a.causal = 1;
    a.window = window;
    a.dt = int(dt);
    a.rope_cs = d_tab;
    a.rope_sn = d_tab + N * half;
    const size_t es = dt == DType::F32 ? 4 : 2;
    const char* base = static_cast<const char*>(qkv);
    st = launch_attention(out, base, base + size_t(Hq * D) * es, base + size_t((Hq + Hkv) * D) * es, d_bias, B, a, s, op);
    if (!st && !empty.empty()) {
      dim3 grid(unsigned(empty.size()), unsigned(Hq));
      LAUNCH(grid, 128, 0, s, uniform_rows_kernel)(out, base + size_t((Hq + Hkv) * D) * es, d_rows, N, Hq, Hkv, D, C3, int(dt));
      st = SANA_LAUNCH_STATUS(op);
    }
  }
  scratch_free(scratch);
  if (e != cudaSuccess) return cuda_status_of(e, op, __FILE__, __LINE__);
  return st;
}

}  // namespace SANA_CUDA_NS
}  // namespace sana
