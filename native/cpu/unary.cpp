// unary: affine, gelu_tanh, silu, relu, tanh, clamp on contiguous data.
#include "common.h"

namespace sana {
namespace {

template <typename T, typename F>
void map(T* out, const T* in, int64_t n, F f) {
#pragma omp parallel for if (n > cpu::kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = from_f32<T>(f(to_f32(in[i])));
}

template <typename T>
void unary_t(T* out, const T* in, int64_t n, UnaryOp op, float p0, float p1) {
  switch (op) {
    case UnaryOp::Affine: map(out, in, n, [=](float x) { return x * p0 + p1; }); break;
    case UnaryOp::GeluTanh: map(out, in, n, cpu::gelu_tanh_f); break;
    case UnaryOp::Silu: map(out, in, n, cpu::silu_f); break;
    case UnaryOp::Relu: map(out, in, n, [](float x) { return x > 0.f ? x : 0.f; }); break;
    case UnaryOp::Tanh: map(out, in, n, [](float x) { return std::tanh(x); }); break;
    case UnaryOp::Clamp: map(out, in, n, [=](float x) { return std::min(std::max(x, p0), p1); }); break;
  }
}

}  // namespace

Status unary_cpu(void* out, const void* in, int64_t n, UnaryOp op, float p0, float p1, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, unary_t(static_cast<T*>(out), static_cast<const T*>(in), n, op, p0, p1)))
    return "unary_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
