// Host emulation of the CUDA launch model, so that the kernels in native/cuda/*.cu run on a
// machine without a GPU (CI) and the op suite can compare them with their CPU twins.
//
// The same .cu source is compiled by the C++ compiler with -DSANA_CUDA_EMU, which makes
// common.cuh include this header instead of the CUDA runtime (cuda.cmake generates a one-line
// .cpp that #includes each .cu; by hand: `g++ -x c++ -DSANA_CUDA_EMU -c gemm.cu`). It provides:
//   - grid/block indices: every thread of a block is a fiber on the calling OS thread; blocks
//     run one after the other; between two barriers the threads of even blocks run in index
//     order and those of odd blocks in reverse, so a missing barrier corrupts some block;
//   - `__shared__` variables: `static thread_local`, so every block of a launch sees the same
//     storage, as a block on an SM does (contents are NOT reset between blocks, like hardware);
//   - `__syncthreads()` / `__syncwarp()`: fiber barriers; a deadlock (a barrier some threads
//     never reach) is reported as a launch failure instead of hanging;
//   - warp shuffles and `mma.sync` m16n8k16: warp-collective exchanges through a per-warp
//     scratch slot. The emulated mma reads each operand element from the lane and register that
//     the PTX ISA fragment layout assigns it to, so a kernel that builds fragments wrongly
//     computes wrong numbers here too. Collectives require a full, converged warp (32 live
//     lanes); anything else is reported as an error, since it is undefined on hardware;
//   - atomics (GCC builtins, so they stay correct if blocks are ever run in parallel);
//   - a small CUDA runtime API subset (cudaMalloc, cudaMemcpyAsync, streams, errors) on host
//     memory, in namespace sana_emu so it never collides with the real cudart in the same .node.
//
// Launches are written `LAUNCH(grid, block, smem, stream, kernel)(args...)`, which expands to
// `kernel<<<grid, block, smem, stream>>>(args...)` under nvcc.
#pragma once
#ifndef SANA_CUDA_EMU
#error "cuda_emu.h is only for the host emulation build (-DSANA_CUDA_EMU)"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <utility>

namespace sana_emu {

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
struct EmuStream;
using cudaStream_t = EmuStream*;

// The state a kernel sees through threadIdx & co. One per fiber.
struct ThreadState {
  uint3 tid;
  int linear;  // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
  int lane, warp;
};
struct BlockState {
  uint3 bid;
  dim3 bdim, gdim;
};
// Thread-local (not initial-exec: the module's whole TLS block, __shared__ arrays included, would
// then have to fit glibc's static TLS surplus, and dlopen() fails).
extern thread_local ThreadState* g_thread;
extern thread_local BlockState g_block;
extern thread_local unsigned char* g_dyn_smem;

// Collectives (implemented in cuda_emu.cpp).
void syncthreads();
void syncwarp(unsigned mask);
// Writes `bytes` of `v` into this lane's slot, waits for the warp, copies the slot of `src` lane
// into `out`, waits again (so no lane overwrites a slot another still reads).
void warp_exchange(const void* v, void* out, int bytes, int src_lane, unsigned mask);
// D = A·B + C for one m16n8k16 tile, with A/B packed 16-bit floats (bf16 or f16), f32 C/D.
void mma_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4], bool bf16);
// Records a kernel-side error (the launch then fails with its message).
void device_fail(const char* what);
// Message of this OS thread's last failed launch (deadlock, bad collective, device_fail).
std::string& last_failure();

// Runs `body` once per thread of every block, as described above.
void launch_impl(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const std::function<void()>& body);

template <typename... P>
struct BoundKernel {
  void (*fn)(P...);
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  template <typename... A>
  void operator()(A&&... args) const {
    // Kernel parameters are passed by value, converted once, as the CUDA ABI does.
    std::tuple<P...> params(std::forward<A>(args)...);
    auto f = fn;
    launch_impl(grid, block, smem, stream, [&]() { std::apply(f, params); });
  }
};
struct Launcher {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  template <typename... P>
  BoundKernel<P...> bind(void (*fn)(P...)) const {
    return BoundKernel<P...>{fn, grid, block, smem, stream};
  }
};

// --- runtime API subset ----------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
const char* cudaGetErrorString(cudaError_t e);
// Launches so far on this OS thread and fiber switches (for the emulation's own tests).
struct EmuCounters {
  uint64_t launches, blocks, threads, switches;
};
EmuCounters counters();

// --- device intrinsics --------------------------------------------------------------------
template <typename T>
inline T shfl_impl(T v, int src_lane, unsigned mask) {
  static_assert(sizeof(T) <= 16, "shuffle of a type wider than 16 bytes");
  T out;
  warp_exchange(&v, &out, int(sizeof(T)), src_lane, mask);
  return out;
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  int lane = g_thread->lane;
  return shfl_impl(v, (lane & ~(width - 1)) + (src & (width - 1)), mask);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  int lane = g_thread->lane, src = lane ^ lane_mask;
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;  // outside the segment: own value
  return shfl_impl(v, src, mask);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = g_thread->lane, seg = lane & ~(width - 1);
  int src = (lane - seg) + int(delta) < width ? lane + int(delta) : lane;
  return shfl_impl(v, src, mask);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  // Every lane publishes its predicate; each then reads all 32 slots.
  unsigned bits = 0;
  for (int l = 0; l < 32; ++l) {
    int p = 0;
    warp_exchange(&pred, &p, int(sizeof(int)), l, mask);
    if (p) bits |= 1u << l;
  }
  return bits;
}

inline float atomicAdd(float* p, float v) {
  float old;
  uint32_t bits0 = __atomic_load_n(reinterpret_cast<uint32_t*>(p), __ATOMIC_RELAXED);
  std::memcpy(&old, &bits0, 4);
  uint32_t expect, want;
  do {
    std::memcpy(&expect, &old, 4);
    float nv = old + v;
    std::memcpy(&want, &nv, 4);
    if (__atomic_compare_exchange_n(reinterpret_cast<uint32_t*>(p), &expect, want, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
    std::memcpy(&old, &expect, 4);
  } while (true);
}
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline int atomicMax(int* p, int v) {
  int old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
  return old;
}

using std::isfinite;
using std::isnan;
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

}  // namespace sana_emu

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __align__(n) __attribute__((aligned(n)))
#define threadIdx (::sana_emu::g_thread->tid)
#define blockIdx (::sana_emu::g_block.bid)
#define blockDim (::sana_emu::g_block.bdim)
#define gridDim (::sana_emu::g_block.gdim)
#define __syncthreads() ::sana_emu::syncthreads()
#define __syncwarp(...) ::sana_emu::syncwarp(0xffffffffu)
#define DYN_SMEM(T, name) T* name = reinterpret_cast<T*>(::sana_emu::g_dyn_smem)
#define LAUNCH(grid, block, smem, stream, ...) ::sana_emu::Launcher{dim3(grid), dim3(block), size_t(smem), (stream)}.bind(__VA_ARGS__)
