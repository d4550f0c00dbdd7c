// binary: add, sub, mul, div, a*silu(b), a*gelu_tanh(b), with b broadcast against a.
// Each row segment goes through kChunk-element f32 chunks (vec.h), compiled per ISA.
#include "elementwise.h"

namespace sana {
namespace {

template <typename T>
SANA_INLINE void binary_body(T* out, const T* a, int64_t sa, const T* b, int64_t sb, int64_t n, BinaryOp op) {
  alignas(64) float x[cpu::kChunk], y[cpu::kChunk];
  for (int64_t c = 0; c < n; c += cpu::kChunk) {
    const int64_t m = std::min(cpu::kChunk, n - c);
    cpu::gather_f32(x, a + c * sa, sa, m);
    cpu::gather_f32(y, b + c * sb, sb, m);
    switch (op) {
      case BinaryOp::Add:
        for (int64_t i = 0; i < m; i++) x[i] = x[i] + y[i];
        break;
      case BinaryOp::Sub:
        for (int64_t i = 0; i < m; i++) x[i] = x[i] - y[i];
        break;
      case BinaryOp::Mul:
        for (int64_t i = 0; i < m; i++) x[i] = x[i] * y[i];
        break;
      case BinaryOp::Div:
        for (int64_t i = 0; i < m; i++) x[i] = x[i] / y[i];
        break;
      case BinaryOp::GluSilu:
        for (int64_t i = 0; i < m; i++) x[i] = x[i] * cpu::silu_v(y[i]);
        break;
      case BinaryOp::GluGelu:
        for (int64_t i = 0; i < m; i++) x[i] = x[i] * cpu::gelu_tanh_v(y[i]);
        break;
    }
    cpu::store_f32(out + c, x, m);
  }
}
SANA_ISA_CLONES(binary_k, (T * out, const T* a, int64_t sa, const T* b, int64_t sb, int64_t n, BinaryOp op), binary_body<T>(out, a, sa, b, sb, n, op))

template <typename T>
void binary_t(T* out, const T* a, const T* b, const Broadcast& bc, BinaryOp op) {
  const auto k = binary_k_pick<T>();
  cpu::for_each_row<2>(bc, [&](int64_t o, const int64_t* off, const int64_t* is, int64_t n) { k(out + o, a + off[0], is[0], b + off[1], is[1], n, op); });
}

}  // namespace

Status binary_cpu(void* out, const void* a, const void* b, const Broadcast* bc, BinaryOp op, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, binary_t(static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), *bc, op)))
    return "binary_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
