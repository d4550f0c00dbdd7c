// Helpers shared by the CPU op files: typed loads/stores through float, OpenMP thresholds.
#pragma once
#include <cstdint>
#include <cstddef>
#include <cmath>
#include <algorithm>
#include "ops.h"

namespace sana::cpu {

// Below this many elements, threading costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;

template <typename T>
inline float ld(const T* p, int64_t i) {
  return to_f32(p[i]);
}
template <typename T>
inline void st(T* p, int64_t i, float v) {
  p[i] = from_f32<T>(v);
}

inline float gelu_tanh_f(float x) {
  const float k0 = 0.7978845608028654f, k1 = 0.044715f;  // sqrt(2/pi)
  return 0.5f * x * (1.0f + std::tanh(k0 * (x + k1 * x * x * x)));
}
inline float silu_f(float x) { return x / (1.0f + std::exp(-x)); }

// Converts n values of dtype dt at src to float at dst.
void to_float_row(float* dst, const void* src, int64_t n, DType dt);
// Converts n floats at src to dtype dt at dst (+offset elements).
void from_float_row(void* dst, const float* src, int64_t n, DType dt);

}  // namespace sana::cpu
