// The CPU backend's dispatch table: host memory and the functions of native/cpu/ops.h.
#include "backend.h"
#include "cpuinfo.h"
#include "host_cache.h"
#include <cstdlib>
#include <cstring>
#include <string>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace sana {
namespace {

void* host_alloc(size_t n) { return host_cache_alloc(n); }
void host_free(void* p) { host_cache_free(p); }
Status host_copy(void* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n);
  return nullptr;
}
const char* always_available() { return ""; }

const char* cpu_info_json() {
  // Rebuilt per call: the thread count follows the current setting (SANA_THREADS / threads(n)).
  static const std::string fixed = "{\"isa\":\"" + cpu_isa_name() + "\",\"onednn\":" + (onednn_linked() ? "true" : "false") + ",\"gemm\":\"" +
                                   gemm_path_name() + "\",\"cpu\":\"" + cpu_model_name() + "\"";
  int threads = 1;
#ifdef _OPENMP
  apply_thread_setting();
  threads = omp_get_max_threads();
#endif
  thread_local std::string json;
  json = fixed + ",\"threads\":" + std::to_string(threads) + "}";
  return json.c_str();
}

const BackendOps kCpu = {
    "cpu",
    true,
    always_available,
    cpu_info_json,
    host_alloc,
    host_free,
    host_copy,
    host_copy,
    host_copy,
    nullptr,
    fill_cpu,
    cast_cpu,
    permute_cpu,
    concat_cpu,
    slice_cpu,
    index_select_cpu,
    repeat_interleave_cpu,
    unary_cpu,
    binary_cpu,
    ternary_cpu,
    softmax_cpu,
    linear_cpu,
    matmul_cpu,
    conv2d_cpu,
    rmsnorm_cpu,
    rmsnorm2d_cpu,
    layernorm_cpu,
    attention_cpu,
    linear_attention_cpu,
    rope_cpu,
    embedding_cpu,
    upsample_nearest_cpu,
    upsample_bilinear_cpu,
    pixel_shuffle_cpu,
    layernorm_modulate_cpu,
    dwconv3x3_glu_tokens_cpu,
    linear_attention_tokens_cpu,
    attention_tokens_cpu,
    linear_residual_cpu,
    self_attention_rope_cpu,
    conv2d_nhwc_cpu,
    upsample_phases_nhwc_cpu,
    rmsnorm_act_cpu,
};
SANA_REGISTER_BACKEND(kCpu);

}  // namespace
}  // namespace sana
