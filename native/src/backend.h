// The one dispatch table every device implements. The binding layer (ops_binding.cc) checks
// shapes/dtypes, allocates outputs through `alloc`, and calls the op pointers; a null op pointer
// means "not supported" and is what `supportsOp` reports. A backend registers itself from a
// static initialiser in its own sources:
//
//   static const sana::BackendOps kCuda = { "cuda", ... };
//   SANA_REGISTER_BACKEND(kCuda);
//
// The op pointers have exactly the signatures of native/cpu/ops.h (no stream argument): a
// device backend registers thin wrappers that pass its current stream to `<op>_cuda(..., stream)`.
#pragma once
#include <cstddef>
#include <cstdint>
#include "../cpu/ops.h"

namespace sana {

struct BackendOps {
  const char* name;      // "cpu" | "cuda" | "cuda-emu"
  bool host_accessible;  // device pointers may be read/written by the host directly
  // Returns an empty string when usable, else the reason (no GPU, driver too old...).
  const char* (*unavailable_reason)();
  // JSON object text with human-readable facts (ISA, GPU name, memory...).
  const char* (*info_json)();
  // Memory. alloc returns nullptr when out of memory. upload/download/copy are synchronous.
  void* (*alloc)(size_t bytes);
  void (*free)(void* p);
  Status (*upload)(void* dst, const void* host_src, size_t bytes);
  Status (*download)(void* host_dst, const void* src, size_t bytes);
  Status (*copy)(void* dst, const void* src, size_t bytes);
  // Optional finer capability check (e.g. bf16 on a GPU without bf16); null = "table decides".
  bool (*supports_dtype)(const char* op, DType dt);

  decltype(&fill_cpu) fill;
  decltype(&cast_cpu) cast;
  decltype(&permute_cpu) permute;
  decltype(&concat_cpu) concat;
  decltype(&slice_cpu) slice;
  decltype(&index_select_cpu) index_select;
  decltype(&repeat_interleave_cpu) repeat_interleave;
  decltype(&unary_cpu) unary;
  decltype(&binary_cpu) binary;
  decltype(&ternary_cpu) ternary;
  decltype(&softmax_cpu) softmax;
  decltype(&linear_cpu) linear;
  decltype(&matmul_cpu) matmul;
  decltype(&conv2d_cpu) conv2d;
  decltype(&rmsnorm_cpu) rmsnorm;
  decltype(&rmsnorm2d_cpu) rmsnorm2d;
  decltype(&layernorm_cpu) layernorm;
  decltype(&attention_cpu) attention;
  decltype(&linear_attention_cpu) linear_attention;
  decltype(&rope_cpu) rope;
  decltype(&embedding_cpu) embedding;
  decltype(&upsample_nearest_cpu) upsample_nearest;
  decltype(&upsample_bilinear_cpu) upsample_bilinear;
  decltype(&pixel_shuffle_cpu) pixel_shuffle;
  decltype(&layernorm_modulate_cpu) layernorm_modulate;
  decltype(&dwconv3x3_glu_tokens_cpu) dwconv3x3_glu_tokens;
  decltype(&linear_attention_tokens_cpu) linear_attention_tokens;
  decltype(&attention_tokens_cpu) attention_tokens;
  decltype(&linear_residual_cpu) linear_residual;
  decltype(&self_attention_rope_cpu) self_attention_rope;
  decltype(&conv2d_nhwc_cpu) conv2d_nhwc;
  decltype(&upsample_phases_nhwc_cpu) upsample_phases_nhwc;
  decltype(&rmsnorm_act_cpu) rmsnorm_act;
};

// Registry (implemented in registry.cc). Registration happens at load time, lookups later.
void register_backend(const BackendOps* ops);
const BackendOps* find_backend(const char* name);
int backend_count();
const BackendOps* backend_at(int i);

struct BackendRegistrar {
  explicit BackendRegistrar(const BackendOps* ops) { register_backend(ops); }
};

}  // namespace sana

#define SANA_CONCAT2(a, b) a##b
#define SANA_CONCAT(a, b) SANA_CONCAT2(a, b)
#define SANA_REGISTER_BACKEND(table) static ::sana::BackendRegistrar SANA_CONCAT(sana_backend_registrar_, __LINE__)(&(table))
