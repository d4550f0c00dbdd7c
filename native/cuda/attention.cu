// Softmax attention, flash-style: keys and values stream through shared memory in tiles and each
// query keeps an online-softmax state (running max m, running sum l, output accumulator o) in
// registers, so no Lq x Lk score matrix exists anywhere. GQA, soft-capping, additive bias,
// causal masking and sliding windows are handled in the score step.
// CPU twins: attention_cpu, attention_tokens_cpu (one kernel: the two layouts differ only in row
// strides, AttnDesc's q/k/v/o strides).
//
// Block: 4 warps, each owning kQPW consecutive queries; lane j scores key j of the tile; output
// channel d of a query lives in lane d % 32, register d / 32 (Dv <= 256).
#include "ops.cuh"

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
};

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
    Qs[e] = i < a.Lq ? ldf(q, a.dt, qbase + i * a.q_si + d) : 0.f;
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
      Ks[jj * (D + 1) + d] = j < a.Lk ? ldf(k, a.dt, kbase + j * a.k_sj + d) : 0.f;
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
  return launch_attention(out, q, k, v, bias, B, a, s, "attention");
}

Status attention_tokens_cuda(void* out, const void* q, const void* kv, const float* bias, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, float scale,
                             DType dt, cudaStream_t s) {
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
  const void* v = static_cast<const char*>(kv) + size_t(C) * (dt == DType::F32 ? 4 : 2);
  return launch_attention(out, q, kv, v, bias, B, a, s, "attentionTokens");
}

}  // namespace SANA_CUDA_NS
}  // namespace sana
