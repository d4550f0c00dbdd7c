// Run-time CPU facts: the ISA the kernels use, whether oneDNN is linked, the GEMM path.
#pragma once
#include <string>

namespace sana {
std::string cpu_isa_name();  // "avx512_core_amx", "avx512_core_bf16", "avx512", "avx2", "sse2"
std::string cpu_model_name();
std::string gemm_path_name();  // e.g. "oneDNN bf16 AMX / f32 brgemm" or "portable f32 (avx512)"
bool onednn_linked();
bool cpu_has_bf16_fast();   // AMX-BF16 or AVX512-BF16 usable now
bool cpu_has_avx512bf16();  // vdpbf16ps (with AVX-512 F/BW/VL): the CPU multiplies bf16 pairs
// cpu_has_avx512bf16() and SANA_CPU_ISA not below AVX-512 (read per call): bf16 attentionTokens
// keeps its k|v as bf16 pairs (attention.cpp); buildInfo().bf16Dot.
bool cpu_bf16_dot();
// Measured fp32 FMA throughput of all threads over about `ms` milliseconds, in GFLOP/s.
double fma_peak_gflops(double ms);
// The CPU thread setting (SANA_THREADS at load, or threads(n) from JS; 0 = OpenMP's default, all
// cores). OpenMP keeps the thread count per calling thread, and ops run on whichever Node thread
// calls them (main or worker), so every op applies the setting to its own thread first.
void set_thread_setting(int n);
int thread_setting();
void apply_thread_setting();
}  // namespace sana
