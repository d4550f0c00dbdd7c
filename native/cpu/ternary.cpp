// ternary: modulate x*(1+scale)+shift and gated residual h + gate*y, operands broadcast.
#include "elementwise.h"

namespace sana {
namespace {

template <typename T, typename F>
void run(T* out, const T* a, const T* b, const T* c, const Broadcast& bc, F f) {
  cpu::for_each_row<3>(bc, [&](int64_t o, const int64_t* off, const int64_t* is, int64_t n) {
    const T* pa = a + off[0];
    const T* pb = b + off[1];
    const T* pc = c + off[2];
    for (int64_t j = 0; j < n; j++)
      out[o + j] = from_f32<T>(f(to_f32(pa[j * is[0]]), to_f32(pb[j * is[1]]), to_f32(pc[j * is[2]])));
  });
}

template <typename T>
void ternary_t(T* out, const T* a, const T* b, const T* c, const Broadcast& bc, TernaryOp op) {
  switch (op) {
    case TernaryOp::Modulate: run(out, a, b, c, bc, [](float x, float shift, float scale) { return x * (1.0f + scale) + shift; }); break;
    case TernaryOp::AddGated: run(out, a, b, c, bc, [](float h, float gate, float y) { return h + gate * y; }); break;
  }
}

}  // namespace

Status ternary_cpu(void* out, const void* a, const void* b, const void* c, const Broadcast* bc, TernaryOp op, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, ternary_t(static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), static_cast<const T*>(c), *bc, op)))
    return "ternary_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
