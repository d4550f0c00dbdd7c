// Vectorisable building blocks for the element-wise, norm and cast kernels.
//
// Every helper is a plain loop over a small f32 chunk, force-inlined, with no libm calls and no
// data-dependent branches, so that GCC vectorises it for whatever ISA the CALLER is compiled
// for. A kernel file writes its body once as an always-inline template, then instantiates it
// three times with SANA_ISA_CLONES (AVX-512, AVX2+FMA, baseline) and picks one per call with
// `simd_isa()` (cpuid, the same feature bits the portable GEMM checks; SANA_CPU_ISA=avx2|base
// forces a lower path, which the tests use to cover every variant on one machine).
#pragma once
#include "common.h"
#include <cstdlib>
#include <cstring>

#define SANA_INLINE inline __attribute__((always_inline))

namespace sana::cpu {

enum class SimdIsa { Base = 0, Avx2 = 1, Avx512 = 2 };

// The best ISA the CPU has, lowered by $SANA_CPU_ISA ("avx2" or "base"); read on every call so a
// test can switch it between ops (it costs one getenv per op call, not per element).
inline SimdIsa simd_isa() {
  static const SimdIsa hw = (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")) ? SimdIsa::Avx512
                            : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))                                             ? SimdIsa::Avx2
                                                                                                                                            : SimdIsa::Base;
  const char* e = std::getenv("SANA_CPU_ISA");
  SimdIsa want = hw;
  if (e && !std::strcmp(e, "avx2")) want = SimdIsa::Avx2;
  else if (e && (!std::strcmp(e, "base") || !std::strcmp(e, "sse2"))) want = SimdIsa::Base;
  return want < hw ? want : hw;
}
inline const char* simd_isa_name(SimdIsa i) { return i == SimdIsa::Avx512 ? "avx512" : i == SimdIsa::Avx2 ? "avx2" : "base"; }

// Elements per chunk: 4 KiB of f32 per operand keeps every staging buffer in L1.
constexpr int64_t kChunk = 1024;
// Elements per OpenMP work item for streaming kernels (~100 µs of work at memory speed).
constexpr int64_t kGrain = 1 << 14;

SANA_INLINE float bitsf(uint32_t u) {
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
SANA_INLINE uint32_t fbits(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  return u;
}

// ---- dtype <-> f32 for a chunk ---------------------------------------------------------------
// bf16 -> f32 is a 16-bit shift; f32 -> bf16 rounds to nearest-even (add 0x7fff + lsb, shift),
// NaNs stay quiet NaNs; both branch-free so they vectorise. f16 keeps the exact scalar path.
SANA_INLINE void load_f32(float* __restrict d, const float* __restrict s, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] = s[i];
}
SANA_INLINE void load_f32(float* __restrict d, const bf16_t* __restrict s, int64_t n) {
  const uint16_t* __restrict h = reinterpret_cast<const uint16_t*>(s);
  for (int64_t i = 0; i < n; i++) d[i] = bitsf(uint32_t(h[i]) << 16);
}
SANA_INLINE void load_f32(float* __restrict d, const f16_t* __restrict s, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] = f16_to_f32(s[i].bits);
}
SANA_INLINE void store_f32(float* __restrict d, const float* __restrict s, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] = s[i];
}
SANA_INLINE void store_f32(bf16_t* __restrict d, const float* __restrict s, int64_t n) {
  uint16_t* __restrict h = reinterpret_cast<uint16_t*>(d);
  for (int64_t i = 0; i < n; i++) {
    const uint32_t u = fbits(s[i]);
    const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t q = (u >> 16) | 0x40u;
    h[i] = uint16_t((u & 0x7fffffffu) > 0x7f800000u ? q : r);
  }
}
SANA_INLINE void store_f32(f16_t* __restrict d, const float* __restrict s, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] = f16_t{f32_to_f16(s[i])};
}
// Strided or broadcast (stride 0) gather of n elements into f32.
template <typename T>
SANA_INLINE void gather_f32(float* __restrict d, const T* __restrict s, int64_t stride, int64_t n) {
  if (stride == 1) {
    load_f32(d, s, n);
    return;
  }
  if (stride == 0) {
    const float v = to_f32(s[0]);
    for (int64_t i = 0; i < n; i++) d[i] = v;
    return;
  }
  for (int64_t i = 0; i < n; i++) d[i] = to_f32(s[i * stride]);
}

// ---- transcendental functions ------------------------------------------------------------------
// exp(x): x = n·ln2 + r, |r| <= ln2/2 (ln2 split in a hi part exact in float and a lo part), then
// the degree-7 Taylor polynomial of e^r (truncation < 6e-9 relative) and 2^n built in the
// exponent bits. Rounding to n uses the 1.5·2^23 trick (the build has no -ffast-math).
// Results: x > 88.72 -> +inf, x < -87.33 -> 0 (no subnormal outputs), NaN -> NaN.
SANA_INLINE float exp_f(float x) {
  const float xc = x < -87.33f ? -87.33f : (x > 88.3f ? 88.3f : x);
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.98412698e-4f;
  p = p * r + 1.38888889e-3f;
  p = p * r + 8.33333333e-3f;
  p = p * r + 4.16666667e-2f;
  p = p * r + 1.66666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float e = p * bitsf(uint32_t(int32_t(n) + 127) << 23);
  return x > 88.72f ? INFINITY : (x < -87.33f ? 0.0f : (x != x ? x : e));
}
// tanh(x): odd Taylor series through x^11 for |x| < 0.3 (next term < 2e-9 relative there),
// else sign(x)·(1 - t)/(1 + t) with t = e^(-2|x|), where 1 - t >= 0.45 so no cancellation.
SANA_INLINE float tanh_f(float x) {
  const float a = __builtin_fabsf(x);
  const float t = exp_f(-2.0f * a);
  const float big = (1.0f - t) / (1.0f + t);
  const float x2 = x * x;
  float p = -1382.0f / 155925.0f;
  p = p * x2 + 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  const float small = x + x * x2 * p;
  const float mag = a < 0.3f ? __builtin_fabsf(small) : big;
  return bitsf(fbits(mag) | (fbits(x) & 0x80000000u));  // odd, and tanh(-0) = -0
}
SANA_INLINE float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }
SANA_INLINE float silu_v(float x) { return x * sigmoid_f(x); }
// gelu_tanh(x) = 0.5·x·(1 + tanh(u)) = x·sigmoid(2u), u = sqrt(2/pi)·(x + 0.044715·x³): one exp.
SANA_INLINE float gelu_tanh_v(float x) {
  const float u2 = 1.5957691216057308f * (x + 0.044715f * x * x * x);
  return x / (1.0f + exp_f(-u2));
}

// Number of kGrain-sized work items for n elements (at least 1).
inline int64_t grains(int64_t n) { return (n + kGrain - 1) / kGrain; }

}  // namespace sana::cpu

// Defines the templates NAME_avx512<T>, NAME_avx2<T> and NAME_base<T>, each running CALL (an
// always-inline template body) compiled for that ISA, and NAME_pick<T>() returning the one
// simd_isa() allows. OpenMP stays in the (ISA-neutral) caller; a clone handles one work item.
#define SANA_ISA_CLONES(NAME, PARAMS, CALL)                                                     \
  template <typename T>                                                                         \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma"))) void NAME##_avx512 PARAMS { \
    CALL;                                                                                       \
  }                                                                                             \
  template <typename T>                                                                         \
  __attribute__((target("avx2,fma"))) void NAME##_avx2 PARAMS {                                 \
    CALL;                                                                                       \
  }                                                                                             \
  template <typename T>                                                                         \
  void NAME##_base PARAMS {                                                                     \
    CALL;                                                                                       \
  }                                                                                             \
  template <typename T>                                                                         \
  auto NAME##_pick() {                                                                          \
    switch (::sana::cpu::simd_isa()) {                                                          \
      case ::sana::cpu::SimdIsa::Avx512: return &NAME##_avx512<T>;                              \
      case ::sana::cpu::SimdIsa::Avx2: return &NAME##_avx2<T>;                                  \
      default: return &NAME##_base<T>;                                                          \
    }                                                                                           \
  }
