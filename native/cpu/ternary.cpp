// ternary: modulate x*(1+scale)+shift and gated residual h + gate*y, operands broadcast.
// Each row segment goes through kChunk-element f32 chunks (vec.h), compiled per ISA.
#include "elementwise.h"

namespace sana {
namespace {

template <typename T>
SANA_INLINE void ternary_body(T* out, const T* a, int64_t sa, const T* b, int64_t sb, const T* c, int64_t sc, int64_t n, TernaryOp op) {
  alignas(64) float x[cpu::kChunk], y[cpu::kChunk], z[cpu::kChunk];
  for (int64_t j = 0; j < n; j += cpu::kChunk) {
    const int64_t m = std::min(cpu::kChunk, n - j);
    cpu::gather_f32(x, a + j * sa, sa, m);
    cpu::gather_f32(y, b + j * sb, sb, m);
    cpu::gather_f32(z, c + j * sc, sc, m);
    if (op == TernaryOp::Modulate) {
      for (int64_t i = 0; i < m; i++) x[i] = x[i] * (1.0f + z[i]) + y[i];  // a = x, b = shift, c = scale
    } else {
      for (int64_t i = 0; i < m; i++) x[i] = x[i] + y[i] * z[i];  // a = h, b = gate, c = y
    }
    cpu::store_f32(out + j, x, m);
  }
}
SANA_ISA_CLONES(ternary_k, (T * out, const T* a, int64_t sa, const T* b, int64_t sb, const T* c, int64_t sc, int64_t n, TernaryOp op),
                ternary_body<T>(out, a, sa, b, sb, c, sc, n, op))

template <typename T>
void ternary_t(T* out, const T* a, const T* b, const T* c, const Broadcast& bc, TernaryOp op) {
  const auto k = ternary_k_pick<T>();
  cpu::for_each_row<3>(
      bc, [&](int64_t o, const int64_t* off, const int64_t* is, int64_t n) { k(out + o, a + off[0], is[0], b + off[1], is[1], c + off[2], is[2], n, op); });
}

}  // namespace

Status ternary_cpu(void* out, const void* a, const void* b, const void* c, const Broadcast* bc, TernaryOp op, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, ternary_t(static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), static_cast<const T*>(c), *bc, op)))
    return "ternary_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
