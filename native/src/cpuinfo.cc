// Run-time CPU feature detection (cpuid through GCC builtins, oneDNN's ISA when linked) and the
// FMA peak kernel used by the benchmark to express GEMM speed as a fraction of the machine.
#include "cpuinfo.h"
#include "../cpu/vec.h"
#include <cpuid.h>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef SANA_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace sana {

static int initial_thread_setting() {
  const char* s = std::getenv("SANA_THREADS");
  if (!s || !*s) return 0;
  char* end = nullptr;
  const long n = std::strtol(s, &end, 10);
  return (end && *end == '\0' && n > 0 && n <= 4096) ? int(n) : 0;
}
static std::atomic<int> g_threads{initial_thread_setting()};

void set_thread_setting(int n) { g_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }
int thread_setting() { return g_threads.load(std::memory_order_relaxed); }
void apply_thread_setting() {
#ifdef _OPENMP
  // The value this thread last applied: omp_set_num_threads only when the setting changed.
  thread_local int applied = 0;
  const int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0 && n != applied) {
    omp_set_num_threads(n);
    applied = n;
  }
#endif
}

bool onednn_linked() {
#ifdef SANA_HAVE_DNNL
  return true;
#else
  return false;
#endif
}

static bool builtin_has(const char* f) {
  __builtin_cpu_init();
  if (!std::strcmp(f, "avx512f")) return __builtin_cpu_supports("avx512f");
  if (!std::strcmp(f, "avx2")) return __builtin_cpu_supports("avx2");
  if (!std::strcmp(f, "fma")) return __builtin_cpu_supports("fma");
  return false;
}

std::string cpu_isa_name() {
#ifdef SANA_HAVE_DNNL
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    default: break;
  }
#endif
  if (builtin_has("avx512f")) return "avx512";
  if (builtin_has("avx2") && builtin_has("fma")) return "avx2";
  return "sse2";
}

bool cpu_has_avx512bf16() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return builtin_has("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __get_cpuid_count(7, 1, &a, &b, &c, &d) &&
           (a & (1u << 5));
  }();
  return ok;
}

bool cpu_bf16_dot() { return cpu_has_avx512bf16() && cpu::simd_isa() == cpu::SimdIsa::Avx512; }

bool cpu_has_bf16_fast() {
  const auto isa = cpu_isa_name();
  return isa == "avx512_core_amx" || isa == "avx512_core_bf16";
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      std::string s = p == std::string::npos ? line : line.substr(p + 2);
      for (auto& ch : s)
        if (ch == '"' || ch == '\\') ch = ' ';
      return s;
    }
  return "unknown";
}

std::string gemm_path_name() {
  const std::string portable = builtin_has("avx512f") ? "avx512" : builtin_has("avx2") ? "avx2+fma" : "sse2";
  if (onednn_linked()) return std::string("oneDNN (f32") + (cpu_has_bf16_fast() ? ", bf16 native" : ", bf16 via f32") + ")";
  return "portable packed f32 (" + portable + ")";
}

// 12 independent FMA chains of the widest vector hide the 4-cycle latency on both FMA ports;
// 12 registers fit the 16 of AVX2 and the 32 of AVX-512 without spilling.
#define SANA_FMA_BODY(V, LANES)                                    \
  V a[12];                                                         \
  for (int i = 0; i < 12; i++) a[i] = (V){} + seed * float(i + 1); \
  const V m = (V){} + 0.999999f, c = (V){} + 1e-7f;                \
  for (int64_t t = 0; t < iters; t++)                              \
    for (int i = 0; i < 12; i++) a[i] = a[i] * m + c;              \
  float s = 0;                                                     \
  for (int i = 0; i < 12; i++) s += a[i][0] + a[i][LANES - 1];     \
  return s;

typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
__attribute__((target("avx512f,fma"))) static float fma_avx512(int64_t iters, float seed) { SANA_FMA_BODY(v16f, 16) }
__attribute__((target("avx2,fma"))) static float fma_avx2(int64_t iters, float seed) { SANA_FMA_BODY(v8f, 8) }
static float fma_base(int64_t iters, float seed) { SANA_FMA_BODY(v4f, 4) }

// Lanes per FMA of the chosen kernel (flops per FMA = 2 × lanes).
static int fma_lanes = 0;
static float fma_chains(int64_t iters, float seed) {
  if (builtin_has("avx512f")) {
    fma_lanes = 16;
    return fma_avx512(iters, seed);
  }
  if (builtin_has("avx2") && builtin_has("fma")) {
    fma_lanes = 8;
    return fma_avx2(iters, seed);
  }
  fma_lanes = 4;
  return fma_base(iters, seed);
}

double fma_peak_gflops(double ms) {
  using clk = std::chrono::steady_clock;
  int64_t iters = 1 << 16;
  // Calibrate on one thread so the timed run lasts about `ms`.
  for (;;) {
    const auto t0 = clk::now();
    volatile float sink = fma_chains(iters, 1.0f);
    (void)sink;
    const double dt = std::chrono::duration<double, std::milli>(clk::now() - t0).count();
    if (dt > ms / 4 || iters > (int64_t(1) << 40)) {
      iters = int64_t(double(iters) * ms / std::max(dt, 1e-3));
      break;
    }
    iters *= 4;
  }
  int threads = 1;
  const auto t0 = clk::now();
#pragma omp parallel
  {
#ifdef _OPENMP
#pragma omp single
    threads = omp_get_num_threads();
#endif
    volatile float sink = fma_chains(iters, 1.0f);
    (void)sink;
  }
  const double sec = std::chrono::duration<double>(clk::now() - t0).count();
  return double(threads) * double(iters) * 12.0 * double(fma_lanes) * 2.0 / sec / 1e9;
}

}  // namespace sana
