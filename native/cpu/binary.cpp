// binary: add, sub, mul, div, a*silu(b), a*gelu_tanh(b), with b broadcast against a.
#include "elementwise.h"

namespace sana {
namespace {

template <typename T, typename F>
void run(T* out, const T* a, const T* b, const Broadcast& bc, F f) {
  cpu::for_each_row<2>(bc, [&](int64_t o, const int64_t* off, const int64_t* is, int64_t n) {
    const T* pa = a + off[0];
    const T* pb = b + off[1];
    if (is[0] == 1 && is[1] == 1) {
      for (int64_t j = 0; j < n; j++) out[o + j] = from_f32<T>(f(to_f32(pa[j]), to_f32(pb[j])));
    } else if (is[0] == 1 && is[1] == 0) {
      const float vb = to_f32(pb[0]);
      for (int64_t j = 0; j < n; j++) out[o + j] = from_f32<T>(f(to_f32(pa[j]), vb));
    } else {
      for (int64_t j = 0; j < n; j++) out[o + j] = from_f32<T>(f(to_f32(pa[j * is[0]]), to_f32(pb[j * is[1]])));
    }
  });
}

template <typename T>
void binary_t(T* out, const T* a, const T* b, const Broadcast& bc, BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: run(out, a, b, bc, [](float x, float y) { return x + y; }); break;
    case BinaryOp::Sub: run(out, a, b, bc, [](float x, float y) { return x - y; }); break;
    case BinaryOp::Mul: run(out, a, b, bc, [](float x, float y) { return x * y; }); break;
    case BinaryOp::Div: run(out, a, b, bc, [](float x, float y) { return x / y; }); break;
    case BinaryOp::GluSilu: run(out, a, b, bc, [](float x, float y) { return x * cpu::silu_f(y); }); break;
    case BinaryOp::GluGelu: run(out, a, b, bc, [](float x, float y) { return x * cpu::gelu_tanh_f(y); }); break;
  }
}

}  // namespace

Status binary_cpu(void* out, const void* a, const void* b, const Broadcast* bc, BinaryOp op, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, binary_t(static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), *bc, op)))
    return "binary_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
