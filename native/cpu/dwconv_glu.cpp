// dwconv3x3_glu_tokens: the depthwise 3×3 + GLU of Sana's GLUMBConv, on token-major activations.
//
// The model keeps activations as tokens (B, N = H·W, C). The NCHW depthwise conv needed a permute
// to (B, 2F, H, W), two channel slices, a separate gluMul and a permute back: five passes over
// 2F-wide tensors around a conv that itself ran at ~3 GFLOP/s. Here one pass reads u once and
// writes the (B, N, F) result: channels are contiguous, so the 3×3 taps are vector FMAs across
// 16 channels with the 9 value and 9 gate weights held in registers.
//
// Work item = (image b, block of kCB value channels + the matching kCB gate channels). Input rows
// are converted to f32 (and passed through SiLU when asked) once into a 3-row ring buffer with a
// zero column on each side; every output row then reads its three rows from there.
#include "vec.h"
#include "simd512.h"
#include <immintrin.h>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

namespace sana {
namespace {

constexpr int64_t kCB = 64;         // value channels per item (gate channels: as many)
constexpr int64_t kV = 16;          // floats per vector
constexpr int64_t kRowW = 2 * kCB;  // floats per grid position in a ring row: kCB values, then kCB gates
// 64-byte GCC vector (zmm on AVX-512, two ymm on AVX2, four xmm on the baseline); aligned(4)
// makes dereferences unaligned loads, the buffers are plain vectors.
typedef float vf __attribute__((vector_size(64), aligned(4)));

constexpr int64_t kTaps = 2 * 9 * kCB;  // floats of one channel block's taps: value [tap][lane], then gate

// w (2F, 1, 3, 3) as f32 taps per channel block, [tap][lane] for the value then the gate half,
// lanes past F zero: kept on w's storage. Each item rebuilt its block's taps from strided w
// reads, and a small grid has few positions per item to spread that over (64 at 256²).
struct DwTaps : WeightCache {
  const void* w = nullptr;
  int64_t F = 0;
  DType dt = DType::F32;
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> taps;  // (blocks, kTaps), 64-byte aligned for the vector loads
  size_t bytes() const override { return size_t((F + kCB - 1) / kCB * kTaps) * sizeof(float); }
};

// Taps of channel block c0 of w into t (kTaps floats).
template <typename T>
void fill_taps(float* t, const T* w, int64_t c0, int64_t F) {
  const int64_t cw = std::min(kCB, F - c0);
  for (int tap = 0; tap < 9; tap++)
    for (int64_t j = 0; j < kCB; j++) {
      t[tap * kCB + j] = j < cw ? to_f32(w[(c0 + j) * 9 + tap]) : 0.f;
      t[9 * kCB + tap * kCB + j] = j < cw ? to_f32(w[(F + c0 + j) * 9 + tap]) : 0.f;
    }
}

std::mutex g_taps_mu;
template <typename T>
const float* taps_for(WeightCacheSlot* slot, const T* w, int64_t F, DType dt) {
  std::lock_guard<std::mutex> lock(g_taps_mu);
  auto* c = dynamic_cast<DwTaps*>(slot->get());
  if (c && c->w == w && c->F == F && c->dt == dt) return c->taps.get();
  auto fresh = std::make_unique<DwTaps>();
  fresh->w = w, fresh->F = F, fresh->dt = dt;
  const int64_t blocks = (F + kCB - 1) / kCB;
  fresh->taps.reset(static_cast<float*>(std::aligned_alloc(64, size_t(blocks * kTaps) * sizeof(float))));  // (kTaps · 4 is a multiple of 64)
  if (!fresh->taps) throw std::bad_alloc();
  for (int64_t k = 0; k < blocks; k++) fill_taps(fresh->taps.get() + k * kTaps, w, k * kCB, F);
  const float* t = fresh->taps.get();
  *slot = std::move(fresh);
  return t;
}

struct Scratch {
  std::vector<float> ring, acc;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// SiLU on AVX-512 for the clone that has it: vec.h's exp polynomial (same constants and range
// reduction) without its overflow/NaN selects, and 1 / (1 + e) as a 14-bit reciprocal plus one
// Newton step (relative error ~2^-27) instead of a division: the three SiLUs per output (value and
// gate inputs, the GLU gate) were most of this kernel, the divisions alone about a third.
// x > 88: exp(-x) underflows to ~0 → x; x < -87: e ≈ 2e38, 1/(1 + e) → 0 → -0 (true value
// below 1e-36 in magnitude); NaN stays NaN.
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline __m512 silu16(__m512 x) {
  const __m512 nx = _mm512_sub_ps(_mm512_setzero_ps(), x);
  const __m512 xc = _mm512_mask_min_ps(nx, 0xffff, _mm512_mask_max_ps(nx, 0xffff, nx, _mm512_set1_ps(-87.33f)), _mm512_set1_ps(88.3f));
  const __m512 shift = _mm512_set1_ps(12582912.0f);
  const __m512 big = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), shift);
  const __m512 n = _mm512_sub_ps(big, shift);
  const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), xc));
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.98412698e-4f), r, _mm512_set1_ps(1.38888889e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.33333333e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.16666667e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.66666667e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(big), _mm512_castps_si512(shift)), _mm512_set1_epi32(127));
  const __m512 ex = _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_mask_slli_epi32(e, 0xffff, e, 23)));  // e^-x
  const __m512 d = _mm512_add_ps(ex, _mm512_set1_ps(1.0f));
  __m512 rc = _mm512_mask_rcp14_ps(d, 0xffff, d);
  rc = _mm512_fmadd_ps(rc, _mm512_fnmadd_ps(d, rc, _mm512_set1_ps(1.0f)), rc);
  return _mm512_mul_ps(x, rc);
}
// The AVX-512 ends of a row for bf16 and f32, each conversion fused with its SiLU. Converting
// into a buffer and then running a SiLU pass over it made each vector a load of a just-made store:
// at 1024² a third of this kernel's samples sat on the output's re-read after glu's masked stores.
// (Functions, not always-inline helpers: those cannot be inlined into the ISA-neutral body.)
// One ring position: p[j] = act(src[j]), p[kCB + j] = act(src[F + j]) for j < n, lanes from n
// to the next multiple of 16 zero. Value and gate interleaved: each SiLU is a long dependency
// chain.
template <typename T>
__attribute__((target(SANA_AVX512_TARGET))) void fill16(float* p, const T* src, int64_t F, int64_t n, bool silu) {
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = simd512::lanes16(n - j);
    const __m512 x = simd512::load16_f32(src + j, m), y = simd512::load16_f32(src + F + j, m);
    _mm512_storeu_ps(p + j, silu ? silu16(x) : x);  // silu(0) = 0 keeps the unused lanes zero
    _mm512_storeu_ps(p + kCB + j, silu ? silu16(y) : y);
  }
}
// out[j] = a[j] · silu(g[j]) for j < n, rounded once to T.
template <typename T>
__attribute__((target(SANA_AVX512_TARGET))) void glu_store16(T* out, const float* a, const float* g, int64_t n) {
  for (int64_t j = 0; j < n; j += 16)
    simd512::store16_f32(out + j, _mm512_mul_ps(_mm512_loadu_ps(a + j), silu16(_mm512_loadu_ps(g + j))), simd512::lanes16(n - j));
}
// f16 (converted by the generic loops): p[j] = silu(p[j]); a[j] = a[j] · silu(g[j]), j < n.
__attribute__((target(SANA_AVX512_TARGET))) void silu_row16(float* p, int64_t n) {
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = simd512::lanes16(n - j);
    _mm512_mask_storeu_ps(p + j, m, silu16(_mm512_maskz_loadu_ps(m, p + j)));
  }
}
__attribute__((target(SANA_AVX512_TARGET))) void glu_row16(float* a, const float* g, int64_t n) {
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = simd512::lanes16(n - j);
    _mm512_mask_storeu_ps(a + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + j), silu16(_mm512_maskz_loadu_ps(m, g + j))));
  }
}
template <typename T>
constexpr bool kAvx512Rows = std::is_same_v<T, bf16_t> || std::is_same_v<T, float>;

// Input row ih (zeros outside the grid) into ring row r: act(u[b, ih, iw, c0 + j]) and
// act(u[b, ih, iw, F + c0 + j]) at position iw + 1. (A function, not a lambda: lambdas would not
// inherit the ISA of the clone that calls them.)
template <bool Avx512, typename T>
SANA_INLINE void ring_fill(float* r, const T* u, int64_t ih, int64_t b, int64_t c0, int64_t cw, int64_t H, int64_t W, int64_t F, bool pre_silu) {
  for (int64_t iw = 0; iw < W; iw++) {
    float* p = r + (iw + 1) * kRowW;
    if (ih < 0 || ih >= H) {
      std::fill(p, p + cw, 0.f);
      std::fill(p + kCB, p + kCB + cw, 0.f);
      continue;
    }
    const T* src = u + ((b * H * W + ih * W + iw) * 2 * F + c0);
    if constexpr (Avx512 && kAvx512Rows<T>) {
      fill16(p, src, F, cw, pre_silu);
      continue;
    }
    cpu::load_f32(p, src, cw);
    cpu::load_f32(p + kCB, src + F, cw);
    if (pre_silu) {
      if constexpr (Avx512) {
        silu_row16(p, cw);
        silu_row16(p + kCB, cw);
      } else {
        for (int64_t j = 0; j < cw; j++) p[j] = cpu::silu_v(p[j]);
        for (int64_t j = 0; j < cw; j++) p[kCB + j] = cpu::silu_v(p[kCB + j]);
      }
    }
  }
}

// Asks for input row ih's value and gate lines of this item (cw channels at each of W positions)
// ahead of ring_fill. Positions are 2F channels apart (11.5 KB for Sana-600M): no hardware
// prefetcher follows that stride across pages, and the GEMM that wrote u has pushed it out of L2,
// so unprefetched each line is a full-latency miss (a 256² step's dwconv ran at ~60% of its
// L2-resident speed). Into L2, three rows ahead: measured faster than into L1 two rows ahead at
// 1024², where the ring alone (3 × (W + 2) × 128 floats, 52 KB at W = 32) outgrows L1.
template <typename T>
SANA_INLINE void prefetch_row(const T* u, int64_t ih, int64_t b, int64_t c0, int64_t cw, int64_t H, int64_t W, int64_t F) {
  if (ih < 0 || ih >= H) return;
  const int64_t bytes = cw * int64_t(sizeof(T));
  for (int64_t iw = 0; iw < W; iw++) {
    const char* src = reinterpret_cast<const char*>(u + ((b * H * W + ih * W + iw) * 2 * F + c0));
    for (int64_t o = 0; o < bytes; o += 64) {
      __builtin_prefetch(src + o, 0, 2);
      __builtin_prefetch(src + F * int64_t(sizeof(T)) + o, 0, 2);
    }
  }
}

// taps: this item's block of taps (kTaps floats, fill_taps).
template <bool Avx512, typename T>
SANA_INLINE void dwglu_body(T* out, const T* u, const float* taps, const float* bias, int64_t b, int64_t c0, int64_t H, int64_t W, int64_t F, bool pre_silu) {
  const int64_t cw = std::min(kCB, F - c0), N = H * W;
  const int64_t rowf = (W + 2) * kRowW;  // floats per ring row
  Scratch& s = scratch();
  if (int64_t(s.ring.size()) < 3 * rowf) s.ring.resize(size_t(3 * rowf));
  if (int64_t(s.acc.size()) < W * kRowW) s.acc.resize(size_t(W * kRowW));
  float* ring = s.ring.data();
  float* acc = s.acc.data();
  // Zero padding columns (0 and W+1) and lanes past cw stay zero: only [0, cw) of the interior
  // positions is ever written below.
  std::fill(ring, ring + 3 * rowf, 0.f);

  const float(*wv)[kCB] = reinterpret_cast<const float(*)[kCB]>(taps);
  const float(*wg)[kCB] = reinterpret_cast<const float(*)[kCB]>(taps + 9 * kCB);
  alignas(64) float bv[kCB], bg[kCB];
  for (int64_t j = 0; j < kCB; j++) {
    bv[j] = bias && j < cw ? bias[c0 + j] : 0.f;
    bg[j] = bias && j < cw ? bias[F + c0 + j] : 0.f;
  }

  float* const slots[3] = {ring, ring + rowf, ring + 2 * rowf};
#define SANA_SLOT(ih) slots[((ih) + 3) % 3]
  prefetch_row(u, 0, b, c0, cw, H, W, F);
  prefetch_row(u, 1, b, c0, cw, H, W, F);
  prefetch_row(u, 2, b, c0, cw, H, W, F);
  ring_fill<Avx512>(SANA_SLOT(-1), u, -1, b, c0, cw, H, W, F, pre_silu);
  ring_fill<Avx512>(SANA_SLOT(0), u, 0, b, c0, cw, H, W, F, pre_silu);
  for (int64_t oh = 0; oh < H; oh++) {
    prefetch_row(u, oh + 3, b, c0, cw, H, W, F);
    ring_fill<Avx512>(SANA_SLOT(oh + 1), u, oh + 1, b, c0, cw, H, W, F, pre_silu);
    const float* r0 = SANA_SLOT(oh - 1);
    const float* r1 = SANA_SLOT(oh);
    const float* r2 = SANA_SLOT(oh + 1);
    for (int64_t g = 0; g * kV < cw; g++) {
      const int64_t o = g * kV;
      const vf v0 = *(const vf*)&wv[0][o], v1 = *(const vf*)&wv[1][o], v2 = *(const vf*)&wv[2][o];
      const vf v3 = *(const vf*)&wv[3][o], v4 = *(const vf*)&wv[4][o], v5 = *(const vf*)&wv[5][o];
      const vf v6 = *(const vf*)&wv[6][o], v7 = *(const vf*)&wv[7][o], v8 = *(const vf*)&wv[8][o];
      const vf g0 = *(const vf*)&wg[0][o], g1 = *(const vf*)&wg[1][o], g2 = *(const vf*)&wg[2][o];
      const vf g3 = *(const vf*)&wg[3][o], g4 = *(const vf*)&wg[4][o], g5 = *(const vf*)&wg[5][o];
      const vf g6 = *(const vf*)&wg[6][o], g7 = *(const vf*)&wg[7][o], g8 = *(const vf*)&wg[8][o];
      const vf bvv = *(const vf*)&bv[o], bgv = *(const vf*)&bg[o];
      for (int64_t ow = 0; ow < W; ow++) {
        // position ow + kw of the padded row is input column ow + kw - 1
#define SANA_TAP(R, KW) (*(const vf*)((R) + (ow + (KW)) * kRowW + o))
#define SANA_TAPG(R, KW) (*(const vf*)((R) + (ow + (KW)) * kRowW + kCB + o))
        vf av = bvv + v0 * SANA_TAP(r0, 0) + v1 * SANA_TAP(r0, 1) + v2 * SANA_TAP(r0, 2);
        av += v3 * SANA_TAP(r1, 0) + v4 * SANA_TAP(r1, 1) + v5 * SANA_TAP(r1, 2);
        av += v6 * SANA_TAP(r2, 0) + v7 * SANA_TAP(r2, 1) + v8 * SANA_TAP(r2, 2);
        vf ag = bgv + g0 * SANA_TAPG(r0, 0) + g1 * SANA_TAPG(r0, 1) + g2 * SANA_TAPG(r0, 2);
        ag += g3 * SANA_TAPG(r1, 0) + g4 * SANA_TAPG(r1, 1) + g5 * SANA_TAPG(r1, 2);
        ag += g6 * SANA_TAPG(r2, 0) + g7 * SANA_TAPG(r2, 1) + g8 * SANA_TAPG(r2, 2);
#undef SANA_TAP
#undef SANA_TAPG
        *(vf*)(acc + ow * kRowW + o) = av;
        *(vf*)(acc + ow * kRowW + kCB + o) = ag;
      }
    }
    // value · silu(gate), rounded once into out[b, oh, ow, c0 .. c0 + cw)
    for (int64_t ow = 0; ow < W; ow++) {
      float* a = acc + ow * kRowW;
      T* o = out + ((b * N + oh * W + ow) * F + c0);
      if constexpr (Avx512 && kAvx512Rows<T>) {
        glu_store16(o, a, a + kCB, cw);
      } else {
        if constexpr (Avx512) glu_row16(a, a + kCB, cw);
        else
          for (int64_t j = 0; j < cw; j++) a[j] = a[j] * cpu::silu_v(a[kCB + j]);
        cpu::store_f32(o, a, cw);
      }
    }
  }
#undef SANA_SLOT
}
// The three ISA clones (as SANA_ISA_CLONES, but the AVX-512 one takes the intrinsic SiLU).
#define SANA_DWGLU_PARAMS (T * out, const T* u, const float* taps, const float* bias, int64_t b, int64_t c0, int64_t H, int64_t W, int64_t F, bool pre_silu)
template <typename T>
__attribute__((target(SANA_AVX512_TARGET))) void dwglu_k_avx512 SANA_DWGLU_PARAMS {
  dwglu_body<true, T>(out, u, taps, bias, b, c0, H, W, F, pre_silu);
}
template <typename T>
__attribute__((target("avx2,fma"))) void dwglu_k_avx2 SANA_DWGLU_PARAMS {
  dwglu_body<false, T>(out, u, taps, bias, b, c0, H, W, F, pre_silu);
}
template <typename T>
void dwglu_k_base SANA_DWGLU_PARAMS {
  dwglu_body<false, T>(out, u, taps, bias, b, c0, H, W, F, pre_silu);
}
template <typename T>
auto dwglu_k_pick() {
  switch (cpu::simd_isa()) {
    case cpu::SimdIsa::Avx512: return &dwglu_k_avx512<T>;
    case cpu::SimdIsa::Avx2: return &dwglu_k_avx2<T>;
    default: return &dwglu_k_base<T>;
  }
}

template <typename T>
void dwglu_t(T* out, const T* u, const T* w, const float* bias, int64_t B, int64_t H, int64_t W, int64_t F, bool pre_silu, DType dt, WeightCacheSlot* w_cache) {
  const auto k = dwglu_k_pick<T>();
  const int64_t blocks = (F + kCB - 1) / kCB, items = B * blocks;
  // Without a slot (no storage to keep them on), the taps live for this call only.
  WeightCacheSlot local;
  const float* taps = taps_for(w_cache ? w_cache : &local, w, F, dt);
  // One item is H·W·2·kCB·9 multiply-adds (≥ 0.1 ms at Sana's 16×16 grid): always worth a thread.
#pragma omp parallel for if (items > 1 && B * H * W * F > cpu::kParallelMin) schedule(dynamic)
  for (int64_t it = 0; it < items; it++) k(out, u, taps + (it % blocks) * kTaps, bias, it / blocks, (it % blocks) * kCB, H, W, F, pre_silu);
}

}  // namespace

Status dwconv3x3_glu_tokens_cpu(void* out, const void* u, const void* w, const float* bias, int64_t B, int64_t H, int64_t W, int64_t F, bool pre_silu, DType dt,
                                WeightCacheSlot* w_cache) {
  if (B == 0 || H == 0 || W == 0 || F == 0) return nullptr;
  if (!SANA_FLOAT_DISPATCH(dt, dwglu_t(static_cast<T*>(out), static_cast<const T*>(u), static_cast<const T*>(w), bias, B, H, W, F, pre_silu, dt, w_cache)))
    return "dwconv3x3_glu_tokens_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
