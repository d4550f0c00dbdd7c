// The CUDA backend's BackendOps table (native/src/backend.h): device memory through a caching
// allocator, one stream for the process, and the op pointers bound to the `<op>_cuda` twins.
// Built twice from this source: as "cuda" by nvcc and as "cuda-emu" by g++ on the host
// emulation (so the allocator and the bindings run in CI too).
#include <cstdarg>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "../src/backend.h"
#include "ops.cuh"

namespace sana {
namespace SANA_CUDA_NS {

// --- status messages ---------------------------------------------------------------------------
Status status_printf(const char* fmt, ...) {
  static thread_local char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

Status cuda_status_of(cudaError_t e, const char* op, const char* file, int line) {
  if (e == cudaSuccess) return nullptr;
  const char* base = std::strrchr(file, '/');
#ifdef SANA_CUDA_EMU
  const std::string detail = ::sana_emu::last_failure();
  return status_printf("%s: %s error %d (%s) at %s:%d%s%s", op, SANA_BACKEND_NAME, int(e), cudaGetErrorString(e), base ? base + 1 : file, line,
                       detail.empty() ? "" : ": ", detail.c_str());
#else
  const char* hint = e == cudaErrorMemoryAllocation ? " HINT: free models or use a smaller resolution/batch" : "";
  return status_printf("%s: CUDA error %d (%s) at %s:%d.%s", op, int(e), cudaGetErrorString(e), base ? base + 1 : file, line, hint);
#endif
}

Status cuda_status(const char* op, const char* file, int line) { return cuda_status_of(cudaGetLastError(), op, file, line); }

// --- caching allocator ----------------------------------------------------------------------------
// Freed blocks go back to a size-keyed cache and are reused by later allocations. Every kernel
// runs on the one stream below, so reuse is stream-ordered: a block freed after enqueueing a
// kernel that reads it is only written by work enqueued later.
class CachingAllocator {
 public:
  void* alloc(size_t bytes) {
    const size_t size = round(bytes);
    std::lock_guard<std::mutex> lk(mu_);
    auto it = free_.lower_bound(size);
    // Reuse a cached block unless it would waste more than half of itself.
    if (it != free_.end() && it->first <= 2 * size) {
      void* p = it->second;
      cached_ -= it->first;
      live_[p] = it->first;
      free_.erase(it);
      return p;
    }
    void* p = nullptr;
    if (cudaMalloc(&p, size) != cudaSuccess) {
      cudaGetLastError();
      release_locked();  // give the cache back to the driver and retry once
      if (cudaMalloc(&p, size) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
      }
    }
    live_[p] = size;
    reserved_ += size;
    return p;
  }
  void free(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lk(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours: ignore rather than corrupt the cache
    free_.emplace(it->second, p);
    cached_ += it->second;
    live_.erase(it);
  }
  void release() {
    std::lock_guard<std::mutex> lk(mu_);
    release_locked();
  }
  size_t reserved() {
    std::lock_guard<std::mutex> lk(mu_);
    return reserved_;
  }
  size_t cached() {
    std::lock_guard<std::mutex> lk(mu_);
    return cached_;
  }

 private:
  static size_t round(size_t n) {
    if (n <= 512) return 512;
    if (n <= (size_t(1) << 20)) return (n + 511) / 512 * 512;
    return (n + (size_t(2) << 20) - 1) / (size_t(2) << 20) * (size_t(2) << 20);  // 2 MiB granules
  }
  void release_locked() {
    if (free_.empty()) return;
    cudaDeviceSynchronize();  // cached blocks may still be read by queued kernels
    for (auto& kv : free_) {
      cudaFree(kv.second);
      reserved_ -= kv.first;
    }
    free_.clear();
    cached_ = 0;
  }
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> live_;
  size_t reserved_ = 0, cached_ = 0;
};

static CachingAllocator& allocator() {
  static CachingAllocator* a = new CachingAllocator();  // never destroyed: may outlive the CUDA context at exit
  return *a;
}

void* scratch_alloc(size_t bytes) { return allocator().alloc(bytes); }
void scratch_free(void* p) { allocator().free(p); }

cudaStream_t current_stream() {
  static std::once_flag once;
  static cudaStream_t stream = nullptr;
  std::call_once(once, [] {
    cudaSetDevice(0);
    if (cudaStreamCreate(&stream) != cudaSuccess) {
      cudaGetLastError();
      stream = nullptr;  // the legacy default stream still works
    }
  });
  return stream;
}

// --- availability and facts ---------------------------------------------------------------------
static const char* unavailable_reason() {
  static std::once_flag once;
  static std::string reason;
  std::call_once(once, [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      reason = std::string("cudaGetDeviceCount failed: error ") + std::to_string(int(e)) + " (" + cudaGetErrorString(e) + "); no usable NVIDIA GPU/driver";
      cudaGetLastError();
      return;
    }
    if (n == 0) {
      reason = "no CUDA device found";
      return;
    }
#ifndef SANA_CUDA_EMU
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.major < 8)
      reason = std::string("GPU ") + prop.name + " has compute capability " + std::to_string(prop.major) + "." + std::to_string(prop.minor) +
               "; the kernels need 8.0+ (bf16 mma.sync)";
#endif
  });
  return reason.c_str();
}

static const char* info_json() {
  static thread_local std::string s;
#ifdef SANA_CUDA_EMU
  auto c = ::sana_emu::counters();
  s = std::string("{\"emulated\":true,\"model\":\"CUDA kernels run on host fibers (native/cuda/emu)\",\"launches\":") + std::to_string(c.launches) +
      ",\"blocks\":" + std::to_string(c.blocks) + ",\"fiberSwitches\":" + std::to_string(c.switches) +
      ",\"reservedBytes\":" + std::to_string(allocator().reserved()) + ",\"cachedBytes\":" + std::to_string(allocator().cached()) + "}";
#else
  if (unavailable_reason()[0]) {
    s = std::string("{\"compiled\":true,\"available\":false}");
    return s.c_str();
  }
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
    cudaGetLastError();
    return "{\"compiled\":true}";
  }
  size_t fr = 0, tot = 0;
  cudaMemGetInfo(&fr, &tot);
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  std::string name;
  for (const char* c = p.name; *c; ++c)
    if (*c != '"' && *c != '\\') name += *c;
  s = std::string("{\"compiled\":true,\"gpu\":\"") + name + "\",\"computeCapability\":\"" + std::to_string(p.major) + "." + std::to_string(p.minor) +
      "\",\"sms\":" + std::to_string(p.multiProcessorCount) + ",\"totalMemory\":" + std::to_string(tot) + ",\"freeMemory\":" + std::to_string(fr) +
      ",\"runtimeVersion\":" + std::to_string(rt) + ",\"driverVersion\":" + std::to_string(drv) +
      ",\"reservedBytes\":" + std::to_string(allocator().reserved()) + ",\"cachedBytes\":" + std::to_string(allocator().cached()) + "}";
#endif
  return s.c_str();
}

// --- memory entry points --------------------------------------------------------------------------
static void* b_alloc(size_t bytes) { return allocator().alloc(bytes); }
static void b_free(void* p) { allocator().free(p); }
static Status b_upload(void* dst, const void* src, size_t bytes) {
  if (!bytes) return nullptr;
  cudaStream_t s = current_stream();
  SANA_CUDA_TRY("upload", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  SANA_CUDA_TRY("upload", cudaStreamSynchronize(s));
  return nullptr;
}
static Status b_download(void* dst, const void* src, size_t bytes) {
  if (!bytes) return nullptr;
  cudaStream_t s = current_stream();
  SANA_CUDA_TRY("download", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  SANA_CUDA_TRY("download", cudaStreamSynchronize(s));
  return nullptr;
}
static Status b_copy(void* dst, const void* src, size_t bytes) {
  if (!bytes) return nullptr;
  SANA_CUDA_TRY("copy", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, current_stream()));
  return nullptr;
}

// Binds `<op>_cuda(args..., stream)` to the stream-less signature of `<op>_cpu(args...)`; a
// twin whose argument list differs from its CPU twin fails to compile here.
template <typename Sig>
struct WithStream;
template <typename... A>
struct WithStream<Status(A...)> {
  template <Status (*F)(A..., cudaStream_t)>
  static Status call(A... a) {
    return F(a..., current_stream());
  }
};
#define SANA_TWIN(op) &WithStream<std::remove_pointer_t<decltype(&::sana::op##_cpu)>>::template call<&op##_cuda>

static const BackendOps kOps = {
    SANA_BACKEND_NAME,
#ifdef SANA_CUDA_EMU
    true,
#else
    false,
#endif
    unavailable_reason,
    info_json,
    b_alloc,
    b_free,
    b_upload,
    b_download,
    b_copy,
    nullptr,
    SANA_TWIN(fill),
    SANA_TWIN(cast),
    SANA_TWIN(permute),
    SANA_TWIN(concat),
    SANA_TWIN(slice),
    SANA_TWIN(index_select),
    SANA_TWIN(repeat_interleave),
    SANA_TWIN(unary),
    SANA_TWIN(binary),
    SANA_TWIN(ternary),
    SANA_TWIN(softmax),
    SANA_TWIN(linear),
    SANA_TWIN(matmul),
    SANA_TWIN(conv2d),
    SANA_TWIN(rmsnorm),
    SANA_TWIN(rmsnorm2d),
    SANA_TWIN(layernorm),
    SANA_TWIN(attention),
    SANA_TWIN(linear_attention),
    SANA_TWIN(rope),
    SANA_TWIN(embedding),
    SANA_TWIN(upsample_nearest),
    SANA_TWIN(upsample_bilinear),
    SANA_TWIN(pixel_shuffle),
    SANA_TWIN(layernorm_modulate),
    SANA_TWIN(dwconv3x3_glu_tokens),
    SANA_TWIN(linear_attention_tokens),
    SANA_TWIN(attention_tokens),
    SANA_TWIN(linear_residual),
    SANA_TWIN(self_attention_rope),
    SANA_TWIN(conv2d_nhwc),
    SANA_TWIN(upsample_phases_nhwc),
    SANA_TWIN(rmsnorm_act),
};
SANA_REGISTER_BACKEND(kOps);

}  // namespace SANA_CUDA_NS
}  // namespace sana
