// oneDNN glue shared by linear/matmul/conv2d (compiled only when SANA_HAVE_DNNL is defined).
// One CPU engine per process, one stream per thread; oneDNN's exceptions are caught by callers
// and turned into Status or a fallback to the portable kernels.
#pragma once
#ifdef SANA_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#include "common.h"
#include <memory>

namespace sana::cpu {

dnnl::engine& dnnl_engine();
dnnl::stream& dnnl_stream();
inline dnnl::memory::data_type dnnl_dt(DType d) {
  switch (d) {
    case DType::F32: return dnnl::memory::data_type::f32;
    case DType::BF16: return dnnl::memory::data_type::bf16;
    case DType::F16: return dnnl::memory::data_type::f16;
    case DType::I32: return dnnl::memory::data_type::s32;
    default: return dnnl::memory::data_type::undef;
  }
}
// Whether oneDNN has a native kernel for this compute dtype on this CPU (f32 always; bf16 needs
// AVX512-BF16 or AMX; f16 needs AVX512-FP16). Decided from the run-time ISA, not the build.
bool dnnl_fast_dtype(DType d);
// Byte scratch that only grows (one per thread and slot).
void* dnnl_scratch(int slot, size_t bytes);

// A weight's packed copy, in host_cache memory (src/host_cache.cc): 2 MiB-aligned huge pages,
// and often a block just freed (a Gemma layer's released source serves the next layer's packed
// copy). A fresh 4 KiB page costs ~11 µs to fault on these VMs (0.35 GB/s): oneDNN's own
// allocation made packing Gemma-2-2B's 4 GB of bf16 weights take ~8 s, of which the copy itself
// is under 0.5 s. Freed with the weight's cache (the memory object does not own it).
struct PackedWeight {
  dnnl::memory::desc md;
  dnnl::memory mem;
  std::shared_ptr<void> buf;
};
PackedWeight packed_weight(const dnnl::memory::desc& md);

}  // namespace sana::cpu
#endif
