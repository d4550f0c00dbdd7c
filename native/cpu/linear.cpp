// linear: x (M, K) · w (N, K)ᵀ + bias -> out (M, N).
// oneDNN path: matmul primitive with weights reordered ONCE into oneDNN's blocked layout
// (format_tag::any) and kept in the weight's cache together with the primitives (by M).
// Portable path: w packed once into f32 panels (gemm.h), x converted to f32 in scratch.
#include "gemm.h"
#include "dnnl_util.h"
#include <map>
#include <mutex>
#include <tuple>

namespace sana {
namespace {

struct LinearCache : WeightCache {
  const void* w = nullptr;
  int64_t N = 0, K = 0;
  DType dt = DType::F32;
  std::mutex mu;
  std::vector<float> panels;  // portable: (ceil(N/16), K, 16)
  // The weight's own data was freed (Storage::releaseSource): new layouts come from a packed copy.
  bool source_gone = false;
  bool drop_source() override {
    std::lock_guard<std::mutex> lock(mu);
#ifdef SANA_HAVE_DNNL
    // oneDNN's path for this dtype: any packed copy can be reordered into another layout.
    if (!dnnl_off && cpu::dnnl_fast_dtype(dt)) return source_gone = !packed.empty();
#endif
    // The portable path: the panels serve every M.
    return source_gone = !panels.empty();
  }
  size_t bytes() const override {
    size_t n = panels.size() * sizeof(float);
#ifdef SANA_HAVE_DNNL
    for (const auto& p : packed) n += p.first.get_size();
#endif
    return n;
  }
#ifdef SANA_HAVE_DNNL
  bool dnnl_off = false;
  std::vector<std::pair<dnnl::memory::desc, dnnl::memory>> packed;
  std::map<std::tuple<int64_t, bool, int>, std::pair<dnnl::matmul, dnnl::memory::desc>> prims;  // -> (primitive, weights layout)
#endif
};

std::mutex g_slot_mu;

LinearCache* cache_for(WeightCacheSlot* slot, const void* w, int64_t N, int64_t K, DType dt) {
  std::lock_guard<std::mutex> lock(g_slot_mu);
  auto* c = dynamic_cast<LinearCache*>(slot->get());
  if (!c || c->w != w || c->N != N || c->K != K || c->dt != dt) {
    if (c && c->source_gone) return nullptr;  // its data is gone: nothing to pack from
    auto fresh = std::make_unique<LinearCache>();
    fresh->w = w;
    fresh->N = N;
    fresh->K = K;
    fresh->dt = dt;
    c = fresh.get();
    *slot = std::move(fresh);
  }
  return c;
}

#ifdef SANA_HAVE_DNNL
bool linear_dnnl(LinearCache* c, void* out, const void* x, const float* bias, int64_t M, DType out_dt) {
  using namespace dnnl;
  using tag = memory::format_tag;
  const int64_t N = c->N, K = c->K;
  matmul prim;
  memory wmem;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->dnnl_off) return false;
    try {
      const auto key = std::make_tuple(M, bias != nullptr, int(out_dt));
      auto it = c->prims.find(key);
      if (it == c->prims.end()) {
        memory::desc src_md({M, K}, cpu::dnnl_dt(c->dt), tag::ab), wei_md({K, N}, cpu::dnnl_dt(c->dt), tag::any);
        memory::desc bias_md({1, N}, memory::data_type::f32, tag::ab), dst_md({M, N}, cpu::dnnl_dt(out_dt), tag::ab);
        matmul::desc d = bias ? matmul::desc(src_md, wei_md, bias_md, dst_md) : matmul::desc(src_md, wei_md, dst_md);
        matmul::primitive_desc pd(d, cpu::dnnl_engine());
        it = c->prims.emplace(key, std::make_pair(matmul(pd), pd.weights_desc())).first;
      }
      prim = it->second.first;
      const auto want = it->second.second;
      for (auto& p : c->packed)
        if (p.first == want) wmem = p.second;
      if (!wmem) {
        // w (N, K) row-major is the (K, N) matrix in "ba" order; once the weight's data is
        // released, another packed copy is the source (a reorder between two layouts).
        memory user =
            c->source_gone ? c->packed.front().second : memory(memory::desc({K, N}, cpu::dnnl_dt(c->dt), tag::ba), cpu::dnnl_engine(), const_cast<void*>(c->w));
        memory packed(want, cpu::dnnl_engine());
        reorder(user, packed).execute(cpu::dnnl_stream(), user, packed);
        cpu::dnnl_stream().wait();
        c->packed.emplace_back(want, packed);
        wmem = packed;
      }
    } catch (const dnnl::error&) {
      if (c->source_gone) throw;  // the portable path would need the released data
      c->dnnl_off = true;         // no kernel for this dtype/ISA: portable path from now on
      return false;
    }
  }
  memory::desc src_md({M, K}, cpu::dnnl_dt(c->dt), tag::ab), dst_md({M, N}, cpu::dnnl_dt(out_dt), tag::ab);
  memory src(src_md, cpu::dnnl_engine(), const_cast<void*>(x)), dst(dst_md, cpu::dnnl_engine(), out);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, dst}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(memory::desc({1, N}, memory::data_type::f32, tag::ab), cpu::dnnl_engine(), const_cast<float*>(bias)));
  prim.execute(cpu::dnnl_stream(), args);
  cpu::dnnl_stream().wait();
  return true;
}
#endif

}  // namespace

Status linear_cpu(void* out, const void* x, const void* w, const float* bias, int64_t M, int64_t N, int64_t K, DType out_dt, DType dt,
                  WeightCacheSlot* wcache) {
  if (!dtype_is_float(dt) || !dtype_is_float(out_dt)) return "linear_cpu: dtypes must be f32, bf16 or f16";
  if (M == 0 || N == 0) return nullptr;
  WeightCacheSlot local;
  LinearCache* c = cache_for(wcache ? wcache : &local, w, N, K, dt);
  if (!c) return "linear: the weight's data was released after packing for another shape or dtype";
#ifdef SANA_HAVE_DNNL
  if (cpu::dnnl_fast_dtype(dt)) {
    try {
      if (linear_dnnl(c, out, x, bias, M, out_dt)) return nullptr;
    } catch (const dnnl::error& e) {
      thread_local std::string err;
      err = std::string("linear: oneDNN failed: ") + e.what();
      return err.c_str();
    }
  }
#endif
  {
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->panels.empty() && c->source_gone) return "linear: the weight's data was released after packing; the portable path needs it";
    if (c->panels.empty()) {
      c->panels.resize(size_t(cpu::packed_b_floats(K, N)));
      cpu::pack_b_nk(c->panels.data(), w, N, K, dt);
    }
  }
  const float* A = static_cast<const float*>(x);
  if (dt != DType::F32) {
    float* xs = cpu::scratch_floats(0, size_t(M * K));
    cpu::to_float_row(xs, x, M * K, dt);
    A = xs;
  }
  cpu::gemm_packed(out, out_dt, N, A, K, c->panels.data(), M, N, K, bias, nullptr);
  return nullptr;
}

}  // namespace sana
