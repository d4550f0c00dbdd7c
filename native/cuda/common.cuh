// Shared by every CUDA op file. The same source builds two ways:
//   nvcc                      -> namespace sana::cuda_real, real kernels, `<<<>>>` launches
//   g++ -DSANA_CUDA_EMU (.cu included from a generated .cpp) -> namespace sana::cuda_emu, the
//                                host emulation of emu/cuda_emu.h runs the very same kernels.
// Kernels see dtypes as runtime ints (DType values) and convert through f32 on load/store, so
// each kernel is instantiated once, not once per dtype combination (CI compiles on 2 cores).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cmath>
#include "../cpu/ops.h"  // Status, DType, op enums

#ifdef SANA_CUDA_EMU
#include "emu/cuda_emu.h"
#define SANA_CUDA_NS cuda_emu
#define SANA_DEV inline
#define SANA_BACKEND_NAME "cuda-emu"
#else
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#define SANA_CUDA_NS cuda_real
#define SANA_DEV __device__ __forceinline__
#define SANA_BACKEND_NAME "cuda"
#define LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<(grid), (block), (smem), (stream)>>>
#define DYN_SMEM(T, name)                                         \
  extern __shared__ __align__(16) unsigned char sana_dyn_smem_[]; \
  T* name = reinterpret_cast<T*>(sana_dyn_smem_)
#endif

// Full unrolling of fixed-trip loops over register arrays: without it nvcc indexes those arrays
// dynamically and puts them in local memory (ptxas -v showed 64-128 byte stack frames).
#ifdef SANA_CUDA_EMU
#define SANA_UNROLL
#else
#define SANA_UNROLL _Pragma("unroll")
#endif

namespace sana {
namespace SANA_CUDA_NS {

#ifdef SANA_CUDA_EMU
using namespace ::sana_emu;
#endif

// DType as the kernels see it (same values as sana::DType).
enum : int { kF32 = 0, kBF16 = 1, kF16 = 2, kI32 = 3, kI64 = 4 };

SANA_DEV float bf16_bits_to_f32(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
SANA_DEV uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                         // nearest-even
  return uint16_t(u >> 16);
}
#ifdef SANA_CUDA_EMU
SANA_DEV float f16_bits_to_f32(uint16_t h) { return ::sana::f16_to_f32(h); }
SANA_DEV uint16_t f32_to_f16_bits(float f) { return ::sana::f32_to_f16(f); }
#else
SANA_DEV float f16_bits_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }
SANA_DEV uint16_t f32_to_f16_bits(float f) { return __half_as_ushort(__float2half_rn(f)); }
#endif

// Fused multiply-add. The emulation computes it unfused (a*b + c, one extra rounding): without
// -mfma (the addon must load on any x86-64) fmaf is a libm call that dominated the emulation's
// run time. The twin tests' tolerances are far above the 1-ulp difference.
#ifdef SANA_CUDA_EMU
SANA_DEV float fma_f(float a, float b, float c) { return a * b + c; }
#else
SANA_DEV float fma_f(float a, float b, float c) { return fmaf(a, b, c); }
#endif

// Element i of a float tensor of runtime dtype dt, as f32.
SANA_DEV float ldf(const void* p, int dt, int64_t i) {
  if (dt == kF32) return static_cast<const float*>(p)[i];
  uint16_t h = static_cast<const uint16_t*>(p)[i];
  return dt == kBF16 ? bf16_bits_to_f32(h) : f16_bits_to_f32(h);
}
SANA_DEV void stf(void* p, int dt, int64_t i, float v) {
  if (dt == kF32) static_cast<float*>(p)[i] = v;
  else if (dt == kBF16) static_cast<uint16_t*>(p)[i] = f32_to_bf16_bits(v);
  else static_cast<uint16_t*>(p)[i] = f32_to_f16_bits(v);
}

SANA_DEV float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
SANA_DEV float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024). `scratch` holds 32 floats.
// Every thread gets the result. Leaves scratch reusable after return.
SANA_DEV float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nw ? scratch[lane] : 0.f;
  t = warp_sum(t);
  __syncthreads();
  return t;
}

inline unsigned blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  // Grid-stride loops cover the rest; this cap keeps gridDim.x legal and launches cheap.
  return unsigned(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}
inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Turns the last launch/runtime error into the Status of ops.h (a message with op, file, line).
Status cuda_status(const char* op, const char* file, int line);
Status cuda_status_of(cudaError_t e, const char* op, const char* file, int line);
#define SANA_LAUNCH_STATUS(op) ::sana::SANA_CUDA_NS::cuda_status((op), __FILE__, __LINE__)
#define SANA_CUDA_TRY(op, expr)                                                                       \
  do {                                                                                                \
    cudaError_t e_ = (expr);                                                                          \
    if (e_ != cudaSuccess) return ::sana::SANA_CUDA_NS::cuda_status_of(e_, (op), __FILE__, __LINE__); \
  } while (0)
// Thread-local message buffer for Status values built at run time.
Status status_printf(const char* fmt, ...);

// Device scratch from the backend's caching allocator (host arrays copied for a kernel).
void* scratch_alloc(size_t bytes);
void scratch_free(void* p);
cudaStream_t current_stream();

}  // namespace SANA_CUDA_NS
}  // namespace sana
