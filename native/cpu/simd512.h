// AVX-512 helpers shared by the kernels that have an AVX-512 body for bf16 / f32 rows: tail masks,
// 16 elements of a row to f32 and back with cpu::store_f32's rounding. Only called from functions
// compiled with SANA_AVX512_TARGET (the clone that cpu::simd_isa() picks on such a CPU).
#pragma once
#include "vec.h"
#include <immintrin.h>
#include <type_traits>

#define SANA_AVX512_TARGET "avx512f,avx512vl,avx512bw,avx512dq,fma"

namespace sana {
namespace simd512 {

// The first min(left, 16) lanes (none when left <= 0).
inline __mmask16 lanes16(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1u); }

// 16 bf16 or f32 of a row as f32 (lanes off `m` zero). maskz forms: GCC 12's unmasked ones read
// an undefined vector and warn.
template <typename T>
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline __m512 load16_f32(const T* p, __mmask16 m) {
  static_assert(std::is_same_v<T, bf16_t> || std::is_same_v<T, float>);
  if constexpr (std::is_same_v<T, bf16_t>)
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm256_maskz_loadu_epi16(m, p)), 16));
  else return _mm512_maskz_loadu_ps(m, p);
}

// Lanes `m` of x into p, bit for bit cpu::store_f32: bf16 rounds to nearest even and keeps NaNs
// quiet NaNs.
template <typename T>
__attribute__((target(SANA_AVX512_TARGET), always_inline)) inline void store16_f32(T* p, __m512 x, __mmask16 m) {
  static_assert(std::is_same_v<T, bf16_t> || std::is_same_v<T, float>);
  if constexpr (std::is_same_v<T, bf16_t>) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_maskz_and_epi32(0xFFFF, _mm512_maskz_srli_epi32(0xFFFF, u, 16), _mm512_set1_epi32(1));
    const __m512i rn = _mm512_maskz_srli_epi32(0xFFFF, _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    const __m512i qn = _mm512_or_si512(_mm512_maskz_srli_epi32(0xFFFF, u, 16), _mm512_set1_epi32(0x40));
    // Narrowed in a register, then stored: the memory form of vpmovdw was ~64% of the attention
    // output tile's samples on Zen 5.
    const __m256i h = _mm512_maskz_cvtepi32_epi16(0xFFFF, _mm512_mask_blend_epi32(nan, rn, qn));
    if (m == 0xFFFF) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
    else _mm256_mask_storeu_epi16(p, m, h);
  } else {
    _mm512_mask_storeu_ps(p, m, x);
  }
}

}  // namespace simd512
}  // namespace sana
