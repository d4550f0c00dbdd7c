// Standalone check of the host emulation and of the heavier CUDA kernels, without Node.
// Built by cuda.cmake as `sana_cuda_selftest` (in the addon's build folder) and run by
// test/cuda/emu-selftest.test.ts; run it by hand as `native/build/sana_cuda_selftest [-v]`.
//
// Part 1 tests the launch model itself (barriers, shared memory, shuffles, atomics, error
// reporting, the mma fragment layout). Part 2 runs linear/matmul/conv2d/attention/linear attention
// kernels on shapes that are not multiples of the tiles and compares with float64 loops here.
// (Every op is also compared with its CPU twin by the TypeScript op suite.)
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../mma.cuh"
#include "../ops.cuh"

using namespace sana;
using namespace sana::cuda_emu;

static int g_fail = 0, g_checks = 0;
static bool g_verbose = false;

#define CHECK(cond, ...)                               \
  do {                                                 \
    ++g_checks;                                        \
    if (!(cond)) {                                     \
      ++g_fail;                                        \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                        \
      std::printf("\n");                               \
    }                                                  \
  } while (0)

// Compares with tolerance atol + rtol*|ref|; prints the first few mismatches.
static void expect_close(const char* what, const std::vector<float>& got, const std::vector<double>& ref, double atol, double rtol) {
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double err = std::fabs(double(got[i]) - ref[i]);
    worst = std::max(worst, err);
    if (!(err <= atol + rtol * std::fabs(ref[i]))) {
      if (bad < 5) std::printf("  %s[%zu]: got %.6g want %.6g\n", what, i, got[i], ref[i]);
      ++bad;
    }
  }
  ++g_checks;
  if (bad) {
    ++g_fail;
    std::printf("FAIL %s: %d of %zu elements off (max abs err %.3g)\n", what, bad, ref.size(), worst);
  } else if (g_verbose) {
    std::printf("ok   %s (%zu elements, max abs err %.3g)\n", what, ref.size(), worst);
  }
}

// ---------------------------------------------------------------------------------------------
// Part 1: the launch model
// ---------------------------------------------------------------------------------------------
static __global__ void reverse_kernel(int* out, const int* in) {
  __shared__ int tile[256];
  const int n = blockDim.x, base = blockIdx.x * n;
  tile[threadIdx.x] = in[base + threadIdx.x];
  __syncthreads();  // without it, threads would read slots not yet written
  out[base + threadIdx.x] = tile[n - 1 - threadIdx.x];
}

// Reads a neighbour's shared slot WITHOUT the barrier it needs: the emulation must expose it.
static __global__ void racy_shift_kernel(int* out) {
  __shared__ int tile[64];
  tile[threadIdx.x] = int(blockIdx.x * 1000 + threadIdx.x);
  out[blockIdx.x * 64 + threadIdx.x] = tile[(threadIdx.x + 63) % 64];  // missing __syncthreads()
  __syncthreads();
  tile[threadIdx.x] = -1;  // so the next block cannot read this block's values by luck
}

static __global__ void shuffle_kernel(float* sums, float* downs, float* bcast, unsigned* ballots, float* bsum) {
  __shared__ float scratch[32];
  const int t = threadIdx.x, lane = t % 32;
  float v = float(t + 1);
  sums[t] = warp_sum(v);
  float d = v;
  for (int o = 16; o > 0; o >>= 1) d += __shfl_down_sync(0xffffffffu, d, o);
  downs[t] = d;  // lane 0 holds the warp's sum; others partial sums
  bcast[t] = __shfl_sync(0xffffffffu, v, 5);
  ballots[t] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  bsum[t] = block_sum(v, scratch);
}

static __global__ void atomic_kernel(float* facc, int* iacc) {
  atomicAdd(facc, 0.5f);
  atomicAdd(iacc, 1);
}

static __global__ void deadlock_kernel(int* out) {
  if (threadIdx.x == 0) __syncwarp();
  else __syncthreads();
  out[threadIdx.x] = 1;
}

static __global__ void partial_warp_kernel(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = warp_sum(1.f);  // lanes 16..31 have exited: undefined on hardware
}

// One m16n8k16 tile: fragments loaded from row-major A (16x16) and B (16x8) as mma.cuh documents;
// `swap_a12` builds A's registers in the wrong order to show that a layout bug changes results.
static __global__ void mma_tile_kernel(float* d, const uint16_t* A, const uint16_t* B, int bf16, int swap_a12) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  uint32_t a[4], b[2];
  a[0] = ld_pair(&A[g * 16 + 2 * t]);
  a[1] = ld_pair(&A[(g + 8) * 16 + 2 * t]);
  a[2] = ld_pair(&A[g * 16 + 2 * t + 8]);
  a[3] = ld_pair(&A[(g + 8) * 16 + 2 * t + 8]);
  if (swap_a12) {
    uint32_t x = a[1];
    a[1] = a[2];
    a[2] = x;
  }
  // B is stored row-major (k, n); the fragment wants pairs along k, so pack two rows.
  auto pack = [&](int k, int n) { return uint32_t(B[k * 8 + n]) | (uint32_t(B[(k + 1) * 8 + n]) << 16); };
  b[0] = pack(2 * t, g);
  b[1] = pack(2 * t + 8, g);
  float c[4] = {1.f, 1.f, 1.f, 1.f}, r[4];
  mma_16816(r, a, b, c, bf16 != 0);
  d[g * 8 + 2 * t] = r[0];
  d[g * 8 + 2 * t + 1] = r[1];
  d[(g + 8) * 8 + 2 * t] = r[2];
  d[(g + 8) * 8 + 2 * t + 1] = r[3];
}

static void test_launch_model() {
  {
    std::vector<int> in(3 * 96), out(in.size());
    for (size_t i = 0; i < in.size(); ++i) in[i] = int(i);
    LAUNCH(3, 96, 0, nullptr, reverse_kernel)(out.data(), in.data());
    CHECK(cudaGetLastError() == cudaSuccess, "reverse launch");
    bool ok = true;
    for (int b = 0; b < 3; ++b)
      for (int i = 0; i < 96; ++i) ok = ok && out[b * 96 + i] == in[b * 96 + 95 - i];
    CHECK(ok, "__shared__ + __syncthreads reversal");
  }
  {
    // Thread i reads slot i-1: in index order that slot is already written (by luck), in reverse
    // order it is not; the odd block must therefore come out wrong.
    std::vector<int> out(2 * 64);
    LAUNCH(2, 64, 0, nullptr, racy_shift_kernel)(out.data());
    int wrong = 0;
    for (int b = 0; b < 2; ++b)
      for (int i = 1; i < 64; ++i) wrong += out[b * 64 + i] != b * 1000 + i - 1;
    CHECK(wrong > 0, "a missing __syncthreads must corrupt at least one block (it did not)");
  }
  {
    const int n = 128;
    std::vector<float> sums(n), downs(n), bcast(n), bsum(n);
    std::vector<unsigned> ballots(n);
    LAUNCH(1, n, 0, nullptr, shuffle_kernel)(sums.data(), downs.data(), bcast.data(), ballots.data(), bsum.data());
    CHECK(cudaGetLastError() == cudaSuccess, "shuffle launch");
    unsigned want_ballot = 0;
    for (int l = 0; l < 32; l += 3) want_ballot |= 1u << l;
    bool ok_sum = true, ok_down = true, ok_b = true, ok_bal = true, ok_bs = true;
    for (int t = 0; t < n; ++t) {
      int w = t / 32;
      float ws = 0;
      for (int l = 0; l < 32; ++l) ws += float(w * 32 + l + 1);
      ok_sum = ok_sum && sums[t] == ws;
      if (t % 32 == 0) ok_down = ok_down && downs[t] == ws;
      ok_b = ok_b && bcast[t] == float(w * 32 + 6);
      ok_bal = ok_bal && ballots[t] == want_ballot;
      ok_bs = ok_bs && bsum[t] == float(n * (n + 1) / 2);
    }
    CHECK(ok_sum, "__shfl_xor_sync butterfly sum");
    CHECK(ok_down, "__shfl_down_sync tree sum");
    CHECK(ok_b, "__shfl_sync broadcast");
    CHECK(ok_bal, "__ballot_sync");
    CHECK(ok_bs, "block_sum across warps");
  }
  {
    float f = 0;
    int i = 0;
    LAUNCH(dim3(3, 2), dim3(8, 4), 0, nullptr, atomic_kernel)(&f, &i);
    CHECK(f == 0.5f * 192 && i == 192, "atomics: got %g / %d", f, i);
  }
  {
    std::vector<int> out(64, 0);
    LAUNCH(1, 64, 0, nullptr, deadlock_kernel)(out.data());
    cudaError_t e = cudaGetLastError();
    CHECK(e == cudaErrorLaunchFailure && last_failure().find("deadlock") != std::string::npos, "deadlock detected (err %d, '%s')", int(e),
          last_failure().c_str());
    std::vector<float> o(32, 0);
    LAUNCH(1, 32, 0, nullptr, partial_warp_kernel)(o.data());
    e = cudaGetLastError();
    CHECK(e == cudaErrorLaunchFailure && last_failure().find("exited") != std::string::npos, "shuffle with exited lanes rejected ('%s')",
          last_failure().c_str());
    LAUNCH(1, 2048, 0, nullptr, reverse_kernel)(nullptr, nullptr);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "block of 2048 threads rejected");
  }
  for (int bf = 0; bf < 2; ++bf) {
    std::mt19937 rng(7 + bf);
    std::uniform_real_distribution<float> U(-1, 1);
    std::vector<uint16_t> A(256), B(128);
    std::vector<float> Af(256), Bf(128);
    for (int i = 0; i < 256; ++i) {
      uint16_t h = bf ? f32_to_bf16(U(rng)) : f32_to_f16(U(rng));
      A[i] = h;
      Af[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
    }
    for (int i = 0; i < 128; ++i) {
      uint16_t h = bf ? f32_to_bf16(U(rng)) : f32_to_f16(U(rng));
      B[i] = h;
      Bf[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
    }
    std::vector<double> ref(128);
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) {
        double s = 1.0;
        for (int k = 0; k < 16; ++k) s += double(Af[m * 16 + k]) * Bf[k * 8 + n];
        ref[m * 8 + n] = s;
      }
    std::vector<float> D(128);
    LAUNCH(1, 32, 0, nullptr, mma_tile_kernel)(D.data(), A.data(), B.data(), bf, 0);
    expect_close(bf ? "mma m16n8k16 bf16 fragment layout" : "mma m16n8k16 f16 fragment layout", D, ref, 1e-5, 1e-5);
    LAUNCH(1, 32, 0, nullptr, mma_tile_kernel)(D.data(), A.data(), B.data(), bf, 1);
    double diff = 0;
    for (int i = 0; i < 128; ++i) diff = std::max(diff, std::fabs(D[i] - ref[i]));
    CHECK(diff > 1e-2, "a wrong A fragment order must change the result (max diff %g)", diff);
  }
}

// ---------------------------------------------------------------------------------------------
// Part 2: kernels against float64 loops
// ---------------------------------------------------------------------------------------------
struct Buf {
  DType dt;
  std::vector<uint8_t> bytes;
  std::vector<double> val;  // the exact values stored (after rounding to dt)
  Buf(size_t n, DType d, std::mt19937& rng, float lo = -1, float hi = 1) : dt(d), bytes(n * dtype_size(d)), val(n) {
    std::uniform_real_distribution<float> U(lo, hi);
    for (size_t i = 0; i < n; ++i) {
      float f = U(rng);
      if (d == DType::F32) {
        std::memcpy(&bytes[i * 4], &f, 4);
        val[i] = f;
      } else {
        uint16_t h = d == DType::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
        std::memcpy(&bytes[i * 2], &h, 2);
        val[i] = d == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
    }
  }
  void* p() { return bytes.data(); }
};

static std::vector<float> as_f32(const std::vector<uint8_t>& b, DType d, size_t n) {
  std::vector<float> r(n);
  for (size_t i = 0; i < n; ++i) {
    if (d == DType::F32) std::memcpy(&r[i], &b[i * 4], 4);
    else {
      uint16_t h;
      std::memcpy(&h, &b[i * 2], 2);
      r[i] = d == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return r;
}
static double out_tol(DType d) { return d == DType::F32 ? 1e-5 : d == DType::BF16 ? 8e-3 : 1e-3; }

static void test_gemm(std::mt19937& rng) {
  const DType dts[3] = {DType::F32, DType::BF16, DType::F16};
  // {M, N, K}: the second set has K and N multiples of 8 (16-byte load paths), not of the tiles.
  const int64_t shapes[2][3] = {{37, 70, 45}, {37, 72, 96}};
  for (DType dt : dts)
    for (const auto& shp : shapes) {
      // linear: M, N, K not multiples of 64 / 32; f32 output with bias, then dt output
      const int64_t M = shp[0], N = shp[1], K = shp[2];
      Buf x(M * K, dt, rng), w(N * K, dt, rng);
      std::vector<float> bias(N);
      for (auto& b : bias) b = std::uniform_real_distribution<float>(-1, 1)(rng);
      std::vector<double> ref(M * N);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double s = bias[n];
          for (int64_t k = 0; k < K; ++k) s += x.val[m * K + k] * w.val[n * K + k];
          ref[m * N + n] = s;
        }
      std::vector<float> out(M * N);
      Status st = linear_cuda(out.data(), x.p(), w.p(), bias.data(), M, N, K, DType::F32, dt, nullptr, nullptr);
      CHECK(!st, "linear: %s", st ? st : "");
      const std::string tag = std::string(dtype_name(dt)) + " K" + std::to_string(K);
      expect_close(("linear " + tag).c_str(), out, ref, 1e-4, 1e-5);
      std::vector<uint8_t> o16(M * N * dtype_size(dt));
      st = linear_cuda(o16.data(), x.p(), w.p(), bias.data(), M, N, K, dt, dt, nullptr, nullptr);
      expect_close(("linear out " + tag).c_str(), as_f32(o16, dt, M * N), ref, 1e-4, out_tol(dt));

      // batched matmul, b broadcast over the batch, both layouts of b
      for (int trans = 0; trans < 2; ++trans) {
        const int64_t Bt = 3, m2 = 19, n2 = K == 96 ? 72 : 67, k2 = K == 96 ? 40 : 33;
        Buf a(Bt * m2 * k2, dt, rng), b(n2 * k2, dt, rng);
        std::vector<double> r2(Bt * m2 * n2);
        for (int64_t z = 0; z < Bt; ++z)
          for (int64_t m = 0; m < m2; ++m)
            for (int64_t n = 0; n < n2; ++n) {
              double s = 0;
              for (int64_t k = 0; k < k2; ++k) s += a.val[(z * m2 + m) * k2 + k] * (trans ? b.val[n * k2 + k] : b.val[k * n2 + n]);
              r2[(z * m2 + m) * n2 + n] = s;
            }
        std::vector<float> o2(Bt * m2 * n2);
        st = matmul_cuda(o2.data(), a.p(), b.p(), Bt, m2, n2, k2, m2 * k2, 0, trans != 0, DType::F32, dt, nullptr);
        CHECK(!st, "matmul: %s", st ? st : "");
        expect_close(((trans ? "matmul transB " : "matmul ") + tag).c_str(), o2, r2, 1e-4, 1e-5);
      }
    }
}

static void test_conv(std::mt19937& rng) {
  struct Case {
    int64_t B, Cin, H, W, Cout, KH, KW, stride, pad, groups;
  };
  const Case cases[] = {
      {2, 5, 7, 9, 6, 3, 3, 1, 1, 1},     // 3x3 same
      {1, 4, 9, 8, 70, 3, 3, 2, 1, 1},    // strided, Cout > 64
      {2, 6, 5, 5, 4, 1, 1, 1, 0, 2},     // grouped 1x1
      {1, 8, 6, 7, 8, 3, 3, 1, 1, 8},     // depthwise
      {2, 33, 6, 11, 65, 1, 1, 1, 0, 1},  // pointwise, odd sizes
      {2, 16, 4, 6, 24, 1, 1, 1, 0, 1},   // pointwise with 16-byte loads (Cin, H*W multiples of 8)
  };
  for (DType dt : {DType::F32, DType::BF16}) {
    for (const Case& c : cases) {
      const int64_t Ho = (c.H + 2 * c.pad - c.KH) / c.stride + 1, Wo = (c.W + 2 * c.pad - c.KW) / c.stride + 1;
      const int64_t Cg = c.Cin / c.groups, Og = c.Cout / c.groups;
      Buf x(c.B * c.Cin * c.H * c.W, dt, rng), w(c.Cout * Cg * c.KH * c.KW, dt, rng);
      std::vector<float> bias(c.Cout);
      for (auto& b : bias) b = std::uniform_real_distribution<float>(-1, 1)(rng);
      std::vector<double> ref(c.B * c.Cout * Ho * Wo);
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t o = 0; o < c.Cout; ++o)
          for (int64_t oy = 0; oy < Ho; ++oy)
            for (int64_t ox = 0; ox < Wo; ++ox) {
              double s = bias[o];
              int64_t g = o / Og;
              for (int64_t ci = 0; ci < Cg; ++ci)
                for (int64_t ky = 0; ky < c.KH; ++ky)
                  for (int64_t kx = 0; kx < c.KW; ++kx) {
                    int64_t iy = oy * c.stride - c.pad + ky, ix = ox * c.stride - c.pad + kx;
                    if (iy < 0 || iy >= c.H || ix < 0 || ix >= c.W) continue;
                    s += x.val[((b * c.Cin + g * Cg + ci) * c.H + iy) * c.W + ix] * w.val[((o * Cg + ci) * c.KH + ky) * c.KW + kx];
                  }
              ref[((b * c.Cout + o) * Ho + oy) * Wo + ox] = s;
            }
      std::vector<float> out(ref.size());
      Status st = conv2d_cuda(out.data(), x.p(), w.p(), bias.data(), c.B, c.Cin, c.H, c.W, c.Cout, c.KH, c.KW, c.stride, c.pad, c.groups, Ho, Wo, DType::F32,
                              dt, nullptr, nullptr);
      CHECK(!st, "conv2d: %s", st ? st : "");
      char name[128];
      std::snprintf(name, sizeof name, "conv2d %s k%lld s%lld g%lld Cout%lld", dtype_name(dt), (long long)c.KH, (long long)c.stride, (long long)c.groups,
                    (long long)c.Cout);
      expect_close(name, out, ref, 1e-4, 1e-5);
    }
  }
}

static void test_attention(std::mt19937& rng) {
  struct Case {
    int64_t B, Hq, Hkv, Lq, Lk, D, Dv;
    bool causal;
    int64_t window;
    float softcap;
    int bias;
  };
  const Case cases[] = {
      {2, 4, 2, 13, 45, 24, 24, false, 0, 0.f, 1},    // GQA + (B, Lk) key bias, Lk not a tile multiple
      {1, 2, 2, 37, 37, 72, 72, true, 0, 0.f, 0},     // causal, 3 query blocks
      {1, 4, 1, 20, 20, 128, 128, true, 5, 30.f, 2},  // sliding window + softcap + (B,1,Lq,Lk) bias, KT=16
      {1, 1, 1, 9, 70, 256, 200, false, 0, 0.f, 0},   // widest head dims
  };
  for (DType dt : {DType::F32, DType::BF16}) {
    for (const Case& c : cases) {
      Buf q(c.B * c.Hq * c.Lq * c.D, dt, rng), k(c.B * c.Hkv * c.Lk * c.D, dt, rng), v(c.B * c.Hkv * c.Lk * c.Dv, dt, rng);
      std::vector<float> bias;
      int64_t sb = 0, sh = 0, sq = 0;
      if (c.bias == 1) {
        bias.resize(c.B * c.Lk);
        for (auto& b : bias) b = std::uniform_real_distribution<float>(0, 1)(rng) < 0.3f ? -10000.f : 0.f;
        bias[0] = 0.f;
        sb = c.Lk;
      } else if (c.bias == 2) {
        bias.resize(c.B * c.Lq * c.Lk);
        for (auto& b : bias) b = std::uniform_real_distribution<float>(-2, 2)(rng);
        sb = c.Lq * c.Lk;
        sq = c.Lk;
      }
      const float scale = 1.f / std::sqrt(float(c.D));
      std::vector<double> ref(c.B * c.Hq * c.Lq * c.Dv, 0.0);
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t h = 0; h < c.Hq; ++h) {
          int64_t hk = h / (c.Hq / c.Hkv);
          for (int64_t i = 0; i < c.Lq; ++i) {
            std::vector<double> s(c.Lk, -INFINITY);
            double mx = -INFINITY;
            for (int64_t j = 0; j < c.Lk; ++j) {
              if (c.causal && j > i) continue;
              if (c.window > 0 && i - j >= c.window) continue;
              double d = 0;
              for (int64_t e = 0; e < c.D; ++e) d += q.val[((b * c.Hq + h) * c.Lq + i) * c.D + e] * k.val[((b * c.Hkv + hk) * c.Lk + j) * c.D + e];
              d *= scale;
              if (c.softcap > 0) d = c.softcap * std::tanh(d / c.softcap);
              if (c.bias) d += bias[b * sb + h * sh + i * sq + j];
              s[j] = d;
              mx = std::max(mx, d);
            }
            double l = 0;
            for (int64_t j = 0; j < c.Lk; ++j) l += s[j] == -INFINITY ? 0 : std::exp(s[j] - mx);
            for (int64_t e = 0; e < c.Dv; ++e) {
              double o = 0;
              for (int64_t j = 0; j < c.Lk; ++j)
                if (s[j] != -INFINITY) o += std::exp(s[j] - mx) * v.val[((b * c.Hkv + hk) * c.Lk + j) * c.Dv + e];
              ref[((b * c.Hq + h) * c.Lq + i) * c.Dv + e] = l > 0 ? o / l : 0;
            }
          }
        }
      std::vector<uint8_t> out(ref.size() * dtype_size(dt));
      Status st = attention_cuda(out.data(), q.p(), k.p(), v.p(), bias.empty() ? nullptr : bias.data(), c.B, c.Hq, c.Hkv, c.Lq, c.Lk, c.D, c.Dv, sb, sh, sq,
                                 scale, c.softcap, c.causal, c.window, dt, nullptr);
      CHECK(!st, "attention: %s", st ? st : "");
      char name[128];
      std::snprintf(name, sizeof name, "attention %s D%lld Lq%lld Lk%lld%s%s", dtype_name(dt), (long long)c.D, (long long)c.Lq, (long long)c.Lk,
                    c.causal ? " causal" : "", c.window ? " window" : "");
      expect_close(name, as_f32(out, dt, ref.size()), ref, 2e-5, out_tol(dt));
    }
  }
}

static void test_linear_attention(std::mt19937& rng) {
  const int64_t B = 2, H = 3, N = 600, D = 32;  // N spans two state chunks and a partial query tile
  Buf q(B * H * N * D, DType::F32, rng), k(B * H * N * D, DType::F32, rng), v(B * H * N * D, DType::F32, rng);
  for (int relu = 0; relu < 2; ++relu) {
    auto act = [&](double x) { return relu ? std::max(0.0, x) : x; };
    const float eps = relu ? 1e-15f : 1e3f;  // without ReLU the denominator can cross 0: keep it away
    std::vector<double> ref(B * H * N * D);
    for (int64_t bh = 0; bh < B * H; ++bh) {
      std::vector<double> S(D * D, 0), z(D, 0);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t a = 0; a < D; ++a) {
          double kv = act(k.val[(bh * N + n) * D + a]);
          z[a] += kv;
          for (int64_t e = 0; e < D; ++e) S[e * D + a] += v.val[(bh * N + n) * D + e] * kv;
        }
      for (int64_t n = 0; n < N; ++n) {
        double den = eps;
        for (int64_t a = 0; a < D; ++a) den += z[a] * act(q.val[(bh * N + n) * D + a]);
        for (int64_t e = 0; e < D; ++e) {
          double num = 0;
          for (int64_t a = 0; a < D; ++a) num += S[e * D + a] * act(q.val[(bh * N + n) * D + a]);
          ref[(bh * N + n) * D + e] = num / den;
        }
      }
    }
    std::vector<float> out(ref.size());
    Status st = linear_attention_cuda(out.data(), reinterpret_cast<const float*>(q.p()), reinterpret_cast<const float*>(k.p()),
                                      reinterpret_cast<const float*>(v.p()), B, H, N, D, eps, relu != 0, nullptr);
    CHECK(!st, "linearAttention: %s", st ? st : "");
    expect_close(relu ? "linearAttention relu" : "linearAttention no-relu", out, ref, 1e-5, 1e-4);
  }
}

int main(int argc, char** argv) {
  g_verbose = argc > 1 && std::strcmp(argv[1], "-v") == 0;
  std::mt19937 rng(1234);
  test_launch_model();
  test_gemm(rng);
  test_conv(rng);
  test_attention(rng);
  test_linear_attention(rng);
  auto c = ::sana_emu::counters();
  std::printf("%s: %d of %d checks failed (%llu launches, %llu blocks, %llu fiber switches)\n", g_fail ? "FAILED" : "PASSED", g_fail, g_checks,
              (unsigned long long)c.launches, (unsigned long long)c.blocks, (unsigned long long)c.switches);
  return g_fail ? 1 : 0;
}
