// matmul: batched a (batch, M, K) · b (batch, K, N) [or b (batch, N, K) with transB].
// oneDNN: one 3-D matmul with strided descriptors (batch broadcast through dims of 1).
// Portable: b packed per batch item into panels, then the packed GEMM.
#include "gemm.h"
#include "dnnl_util.h"
#include <string>

namespace sana {

Status matmul_cpu(void* out, const void* a, const void* b, int64_t batch, int64_t M, int64_t N, int64_t K, int64_t a_bstride, int64_t b_bstride, bool transB,
                  DType out_dt, DType dt) {
  if (!dtype_is_float(dt) || !dtype_is_float(out_dt)) return "matmul_cpu: dtypes must be f32, bf16 or f16";
  if (batch == 0 || M == 0 || N == 0) return nullptr;
#ifdef SANA_HAVE_DNNL
  if (cpu::dnnl_fast_dtype(dt) && K > 0) {
    using namespace dnnl;
    try {
      const auto wdt = cpu::dnnl_dt(dt);
      memory::desc a_md({a_bstride ? batch : 1, M, K}, wdt, memory::dims{a_bstride ? a_bstride : M * K, K, 1});
      memory::desc b_md({b_bstride ? batch : 1, K, N}, wdt,
                        transB ? memory::dims{b_bstride ? b_bstride : N * K, 1, K} : memory::dims{b_bstride ? b_bstride : K * N, N, 1});
      memory::desc o_md({batch, M, N}, cpu::dnnl_dt(out_dt), memory::format_tag::abc);
      matmul::primitive_desc pd(matmul::desc(a_md, b_md, o_md), cpu::dnnl_engine());
      memory ma(a_md, cpu::dnnl_engine(), const_cast<void*>(a)), mb(b_md, cpu::dnnl_engine(), const_cast<void*>(b)), mo(o_md, cpu::dnnl_engine(), out);
      matmul(pd).execute(cpu::dnnl_stream(), {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mo}});
      cpu::dnnl_stream().wait();
      return nullptr;
    } catch (const dnnl::error&) {
      // fall through to the portable kernel
    }
  }
#endif
  const size_t es = dtype_size(dt), oes = dtype_size(out_dt);
  std::vector<float> panels(size_t(cpu::packed_b_floats(K, N)));
  std::vector<float> af(dt == DType::F32 ? 0 : size_t(M * K));
  for (int64_t i = 0; i < batch; i++) {
    if (i == 0 || b_bstride != 0) {
      const void* bi = static_cast<const char*>(b) + size_t(i * b_bstride) * es;
      if (transB) cpu::pack_b_nk(panels.data(), bi, N, K, dt);
      else cpu::pack_b_kn(panels.data(), bi, K, N, dt);
    }
    const void* ai = static_cast<const char*>(a) + size_t(i * a_bstride) * es;
    const float* A = static_cast<const float*>(ai);
    if (dt != DType::F32) {
      cpu::to_float_row(af.data(), ai, M * K, dt);
      A = af.data();
    }
    cpu::gemm_packed(static_cast<char*>(out) + size_t(i * M * N) * oes, out_dt, N, A, K, panels.data(), M, N, K, nullptr, nullptr);
  }
  return nullptr;
}

}  // namespace sana
