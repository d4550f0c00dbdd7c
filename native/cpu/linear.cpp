// linear: x (M, K) · w (N, K)ᵀ + bias -> out (M, N); linear_residual: the same with the DiT's
// residual epilogue, out = res + gate ⊙ (x · wᵀ + bias). One file because both share the
// packed-weight cache (a weight packed for one serves the other).
// oneDNN path: matmul primitive with weights reordered ONCE into oneDNN's blocked layout
// (format_tag::any) and kept in the weight's cache together with the primitives (by M and
// epilogue). The epilogue is oneDNN post-ops on the f32 accumulator: binary_mul by the gate row
// (f32, (1, N), per-column broadcast: one execution per gate row's block of rows) then
// binary_add of res, so the sum is rounded once. (Measured on oneDNN 2.6, bf16, Zen 4: a 3-D
// (B, T, N) primitive with a (B, 1, N) gate ran 15-25% slower than the plain 2-D GEMM; the 2-D
// per-image form costs 4-10%, about what the separate residual pass cost, in one call instead
// of two and without the intermediate tensor.)
// Portable path: w packed once into f32 panels (gemm.h), x converted to f32 in scratch; the
// epilogue runs on an f32 copy of the product.
#include "gemm.h"
#include "dnnl_util.h"
#include "vec.h"
#include <algorithm>
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
    for (const auto& p : packed) n += p.md.get_size();
#endif
    return n;
  }
#ifdef SANA_HAVE_DNNL
  bool dnnl_off = false;
  std::vector<cpu::PackedWeight> packed;
  // (M, bias, out dtype, epilogue) -> (primitive, weights layout)
  std::map<std::tuple<int64_t, bool, int, int>, std::pair<dnnl::matmul, dnnl::memory::desc>> prims;
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

// The epilogue of linear_residual: out = res + gate ⊙ (x · wᵀ + bias); gate row (m / gate_rows).
struct Epilogue {
  const void* res = nullptr;
  const void* gate = nullptr;  // null: out = res + (x · wᵀ + bias)
  int64_t gate_rows = 0;
};

// Portable epilogue: out row m = res + gate ⊙ y (y the f32 product with its bias), rounded once.
template <typename T>
SANA_INLINE void epilogue_body(T* out, const T* res, const T* gate, const float* y, int64_t n, float* r, float* g) {
  cpu::load_f32(r, res, n);
  if (gate) {
    cpu::load_f32(g, gate, n);
    for (int64_t i = 0; i < n; i++) r[i] += g[i] * y[i];
  } else {
    for (int64_t i = 0; i < n; i++) r[i] += y[i];
  }
  cpu::store_f32(out, r, n);
}
SANA_ISA_CLONES(epilogue_k, (T * out, const T* res, const T* gate, const float* y, int64_t n, float* r, float* g), epilogue_body<T>(out, res, gate, y, n, r, g))

// Rows 0..M of out/res/y; local row m is global row m + r0 of its gate block (gate row
// (m + r0) / gate_rows of `ep.gate`).
template <typename T>
void epilogue_t(T* out, const float* y, int64_t M, int64_t N, const Epilogue& ep, int64_t r0) {
  const auto k = epilogue_k_pick<T>();
  const T* res = static_cast<const T*>(ep.res);
  const T* gate = static_cast<const T*>(ep.gate);
#pragma omp parallel if (M * N > cpu::kParallelMin)
  {
    std::vector<float> r(size_t(std::min<int64_t>(N, cpu::kChunk))), g(r.size());
#pragma omp for schedule(dynamic, 8)
    for (int64_t m = 0; m < M; m++)
      for (int64_t j = 0; j < N; j += cpu::kChunk) {
        const int64_t n = std::min(cpu::kChunk, N - j);
        k(out + m * N + j, res + m * N + j, gate ? gate + ((m + r0) / ep.gate_rows) * N + j : nullptr, y + m * N + j, n, r.data(), g.data());
      }
  }
}

#ifdef SANA_HAVE_DNNL
enum EpiKind : int { kEpiNone = 0, kEpiAdd = 1, kEpiGateAdd = 2 };
// Gate blocks shorter than this run as one GEMM plus a separate epilogue pass instead of one
// post-op GEMM per block (linear_dnnl).
constexpr int64_t kSplitMinRows = 256;

// Packs w (N, K) row-major into oneDNN's AVX-512 matmul weight layouts, BA16a64b2a (bf16) and
// BA16a64b (f32), of the (K, N) matrix, when `want` is exactly one of them. oneDNN 2.6 reorders
// "ba" into these with its generic jit:uni reorder at ~0.55 GB/s: 8 s of Gemma-2-2B's first
// prompt (4 GB of bf16 weights) and 2 s of Sana-600M's first step. Both layouts are the same
// move of 4-byte units (a bf16 k-pair, or one f32): blocks of 64 n × 16 units, ordered n-block
// then k-block, inside a block unit-major, n-minor; i.e. a 16 × 64 transpose of w's rows, with
// zeros where the blocks pass N or K. Returns false (oneDNN reorders) for any other layout.
bool pack_blocked(const dnnl::memory::desc& want, const void* w, DType dt, int64_t N, int64_t K, dnnl::memory& packed) {
  using tag = dnnl::memory::format_tag;
  const bool bf16 = dt == DType::BF16;
  if (!bf16 && dt != DType::F32) return false;
  if (bf16 && K % 2 != 0) return false;
  if (want != dnnl::memory::desc({K, N}, cpu::dnnl_dt(dt), bf16 ? tag::BA16a64b2a : tag::BA16a64b)) return false;
  const int64_t Ku = bf16 ? K / 2 : K;  // 4-byte units per row of w
  const int64_t NB = (N + 63) / 64, KB = (Ku + 15) / 16;
  if (int64_t(want.get_size()) != NB * KB * 16 * 64 * 4) return false;
  const uint32_t* src = static_cast<const uint32_t*>(w);
  uint32_t* dst = static_cast<uint32_t*>(packed.get_data_handle());
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t nb = 0; nb < NB; nb++)
    for (int64_t kb = 0; kb < KB; kb++) {
      uint32_t* o = dst + (nb * KB + kb) * 16 * 64;  // (16 units, 64 n)
      const int64_t n0 = nb * 64, u0 = kb * 16, nn = std::min<int64_t>(64, N - n0), nu = std::min<int64_t>(16, Ku - u0);
      if (nn < 64 || nu < 16) std::fill(o, o + 16 * 64, 0u);
      for (int64_t b = 0; b < nn; b++) {
        const uint32_t* r = src + (n0 + b) * Ku + u0;
        for (int64_t a = 0; a < nu; a++) o[a * 64 + b] = r[a];
      }
    }
  return true;
}

// The primitive for M rows with this bias/out dtype/epilogue, and the packed weights it reads.
// Returns false when oneDNN has no kernel for the weight's dtype (the portable path takes over).
bool linear_prim(LinearCache* c, int64_t M, bool has_bias, DType out_dt, int epi, dnnl::matmul& prim, dnnl::memory& wmem) {
  using namespace dnnl;
  using tag = memory::format_tag;
  const int64_t N = c->N, K = c->K;
  std::lock_guard<std::mutex> lock(c->mu);
  if (c->dnnl_off) return false;
  try {
    const auto key = std::make_tuple(M, has_bias, int(out_dt), epi);
    auto it = c->prims.find(key);
    if (it == c->prims.end()) {
      memory::desc src_md({M, K}, cpu::dnnl_dt(c->dt), tag::ab), wei_md({K, N}, cpu::dnnl_dt(c->dt), tag::any);
      memory::desc bias_md({1, N}, memory::data_type::f32, tag::ab), dst_md({M, N}, cpu::dnnl_dt(out_dt), tag::ab);
      primitive_attr attr;
      if (epi != kEpiNone) {
        post_ops po;
        if (epi == kEpiGateAdd) po.append_binary(algorithm::binary_mul, memory::desc({1, N}, memory::data_type::f32, tag::ab));
        po.append_binary(algorithm::binary_add, dst_md);
        attr.set_post_ops(po);
      }
      matmul::desc d = has_bias ? matmul::desc(src_md, wei_md, bias_md, dst_md) : matmul::desc(src_md, wei_md, dst_md);
      matmul::primitive_desc pd(d, attr, cpu::dnnl_engine());
      it = c->prims.emplace(key, std::make_pair(matmul(pd), pd.weights_desc())).first;
    }
    prim = it->second.first;
    const auto want = it->second.second;
    for (auto& p : c->packed)
      if (p.md == want) wmem = p.mem;
    if (!wmem) {
      // w (N, K) row-major is the (K, N) matrix in "ba" order; once the weight's data is
      // released, another packed copy is the source (a reorder between two layouts).
      cpu::PackedWeight pw = cpu::packed_weight(want);
      memory packed = pw.mem;
      if (c->source_gone || !pack_blocked(want, c->w, c->dt, N, K, packed)) {
        memory user =
            c->source_gone ? c->packed.front().mem : memory(memory::desc({K, N}, cpu::dnnl_dt(c->dt), tag::ba), cpu::dnnl_engine(), const_cast<void*>(c->w));
        reorder(user, packed).execute(cpu::dnnl_stream(), user, packed);
        cpu::dnnl_stream().wait();
      }
      c->packed.push_back(std::move(pw));
      wmem = packed;
    }
  } catch (const dnnl::error&) {
    if (c->source_gone) throw;  // the portable path would need the released data
    c->dnnl_off = true;         // no kernel for this dtype/ISA: portable path from now on
    return false;
  }
  return true;
}

bool linear_dnnl(LinearCache* c, void* out, const void* x, const float* bias, int64_t M, DType out_dt, const Epilogue* ep) {
  using namespace dnnl;
  using tag = memory::format_tag;
  const int64_t N = c->N, K = c->K;
  const int epi = !ep ? kEpiNone : ep->gate ? kEpiGateAdd : kEpiAdd;
  // A gated epilogue runs once per gate row over its gate_rows rows (a (1, N) gate broadcasts
  // over the rows of one execution).
  const int64_t rows = epi == kEpiGateAdd ? std::min(M, ep->gate_rows) : M;
  if (epi == kEpiGateAdd && rows < M && rows < kSplitMinRows) {
    // Small images (a 256² latent is 64 tokens): one GEMM over all M rows into f32 scratch (it
    // stays in cache), then the epilogue as its own pass. Per image, the weight was read once
    // per image and each GEMM had too few rows to keep both cores busy: 2 × 64 rows ran 15-20%
    // slower than the 128-row product plus the pass.
    float* y = cpu::scratch_floats(7, size_t(M * N));
    if (!linear_dnnl(c, y, x, bias, M, DType::F32, nullptr)) return false;
    SANA_FLOAT_DISPATCH(out_dt, epilogue_t(static_cast<T*>(out), y, M, N, *ep, 0));
    return true;
  }
  matmul prim;
  memory wmem;
  if (!linear_prim(c, rows, bias != nullptr, out_dt, epi, prim, wmem)) return false;
  float* gate32 = nullptr;
  if (epi == kEpiGateAdd) {  // the gate rows as f32 (the post-op's per-column operand)
    const int64_t groups = (M + rows - 1) / rows;
    gate32 = cpu::scratch_floats(7, size_t(groups * N));
    cpu::to_float_row(gate32, ep->gate, groups * N, out_dt);
  }
  const size_t xes = dtype_size(c->dt), oes = dtype_size(out_dt);
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    memory::desc src_md({rows, K}, cpu::dnnl_dt(c->dt), tag::ab), dst_md({rows, N}, cpu::dnnl_dt(out_dt), tag::ab);
    memory src(src_md, cpu::dnnl_engine(), const_cast<char*>(static_cast<const char*>(x) + size_t(m0 * K) * xes));
    memory dst(dst_md, cpu::dnnl_engine(), static_cast<char*>(out) + size_t(m0 * N) * oes);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, dst}};
    if (bias) args.emplace(DNNL_ARG_BIAS, memory(memory::desc({1, N}, memory::data_type::f32, tag::ab), cpu::dnnl_engine(), const_cast<float*>(bias)));
    int po = 0;
    if (epi == kEpiGateAdd)
      args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(po++) | DNNL_ARG_SRC_1,
                   memory(memory::desc({1, N}, memory::data_type::f32, tag::ab), cpu::dnnl_engine(), gate32 + (m0 / rows) * N));
    if (epi != kEpiNone)
      args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(po++) | DNNL_ARG_SRC_1,
                   memory(dst_md, cpu::dnnl_engine(), const_cast<char*>(static_cast<const char*>(ep->res) + size_t(m0 * N) * oes)));
    prim.execute(cpu::dnnl_stream(), args);
  }
  cpu::dnnl_stream().wait();
  return true;
}
#endif

Status linear_any(void* out, const void* x, const void* w, const float* bias, int64_t M, int64_t N, int64_t K, DType out_dt, DType dt, WeightCacheSlot* wcache,
                  const Epilogue* ep) {
  if (!dtype_is_float(dt) || !dtype_is_float(out_dt)) return "linear_cpu: dtypes must be f32, bf16 or f16";
  if (M == 0 || N == 0) return nullptr;
  WeightCacheSlot local;
  LinearCache* c = cache_for(wcache ? wcache : &local, w, N, K, dt);
  if (!c) return "linear: the weight's data was released after packing for another shape or dtype";
#ifdef SANA_HAVE_DNNL
  if (cpu::dnnl_fast_dtype(dt)) {
    try {
      if (linear_dnnl(c, out, x, bias, M, out_dt, ep)) return nullptr;
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
  if (!ep) {
    cpu::gemm_packed(out, out_dt, N, A, K, c->panels.data(), M, N, K, bias, nullptr);
    return nullptr;
  }
  // The product + bias in f32 for blocks of rows (a bounded scratch), then the epilogue on them.
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(M, (int64_t(1) << 20) / std::max<int64_t>(N, 1)));
  float* y = cpu::scratch_floats(7, size_t(rows * N));
  const size_t oes = dtype_size(out_dt);
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    const int64_t mr = std::min(rows, M - m0);
    cpu::gemm_packed(y, DType::F32, N, A + m0 * K, K, c->panels.data(), mr, N, K, bias, nullptr);
    Epilogue e = *ep;
    e.res = static_cast<const char*>(ep->res) + size_t(m0 * N) * oes;
    // gate rows are per block of gate_rows rows: shift the gate so that local row 0 maps to m0
    if (ep->gate) e.gate = static_cast<const char*>(ep->gate) + size_t((m0 / ep->gate_rows) * N) * oes;
    SANA_FLOAT_DISPATCH(
        out_dt, epilogue_t(reinterpret_cast<T*>(static_cast<char*>(out) + size_t(m0 * N) * oes), y, mr, N, e, m0 % std::max<int64_t>(ep->gate_rows, 1)));
  }
  return nullptr;
}

}  // namespace

Status linear_cpu(void* out, const void* x, const void* w, const float* bias, int64_t M, int64_t N, int64_t K, DType out_dt, DType dt,
                  WeightCacheSlot* wcache) {
  return linear_any(out, x, w, bias, M, N, K, out_dt, dt, wcache, nullptr);
}

Status linear_residual_cpu(void* out, const void* x, const void* w, const float* bias, const void* res, const void* gate, int64_t M, int64_t N, int64_t K,
                           int64_t gate_rows, DType out_dt, DType dt, WeightCacheSlot* wcache) {
  if (gate && gate_rows <= 0) return "linear_residual_cpu: gate_rows must be positive";
  Epilogue ep;
  ep.res = res;
  ep.gate = gate;
  ep.gate_rows = gate_rows;
  return linear_any(out, x, w, bias, M, N, K, out_dt, dt, wcache, &ep);
}

}  // namespace sana
