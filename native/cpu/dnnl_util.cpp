// oneDNN engine/stream singletons and the run-time ISA check (see dnnl_util.h).
#include "dnnl_util.h"
#ifdef SANA_HAVE_DNNL
#include <new>
#include "../src/host_cache.h"
#include <vector>

namespace sana::cpu {

dnnl::engine& dnnl_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}
dnnl::stream& dnnl_stream() {
  thread_local dnnl::stream s(dnnl_engine());
  return s;
}
bool dnnl_fast_dtype(DType d) {
  if (d == DType::F32) return true;
  const auto isa = dnnl::get_effective_cpu_isa();
  if (d == DType::BF16) return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  return false;  // oneDNN 2.6 has no fast f16 path on CPU: the portable kernel converts to f32
}
void* dnnl_scratch(int slot, size_t bytes) {
  thread_local std::vector<char> bufs[4];
  auto& b = bufs[slot];
  if (b.size() < bytes + 64) b.resize(bytes + 64);
  return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(b.data()) + 63) & ~uintptr_t(63));
}

PackedWeight packed_weight(const dnnl::memory::desc& md) {
  void* p = host_cache_alloc(md.get_size());
  if (!p) throw std::bad_alloc();
  return {md, dnnl::memory(md, dnnl_engine(), p), std::shared_ptr<void>(p, host_cache_free)};
}

}  // namespace sana::cpu
#endif
