// unary: affine, gelu_tanh, silu, relu, tanh, clamp on contiguous data. Work items of kGrain
// elements across threads; inside one, kChunk-element f32 chunks through vec.h's branch-free
// conversions and polynomial exp/tanh, compiled per ISA.
#include "vec.h"

namespace sana {
namespace {

template <typename T>
SANA_INLINE void unary_body(T* out, const T* in, int64_t n, UnaryOp op, float p0, float p1) {
  alignas(64) float buf[cpu::kChunk];
  for (int64_t c = 0; c < n; c += cpu::kChunk) {
    const int64_t m = std::min(cpu::kChunk, n - c);
    cpu::load_f32(buf, in + c, m);
    switch (op) {
      case UnaryOp::Affine:
        for (int64_t i = 0; i < m; i++) buf[i] = buf[i] * p0 + p1;
        break;
      case UnaryOp::GeluTanh:
        for (int64_t i = 0; i < m; i++) buf[i] = cpu::gelu_tanh_v(buf[i]);
        break;
      case UnaryOp::Silu:
        for (int64_t i = 0; i < m; i++) buf[i] = cpu::silu_v(buf[i]);
        break;
      case UnaryOp::Relu:
        for (int64_t i = 0; i < m; i++) buf[i] = buf[i] > 0.f ? buf[i] : 0.f;
        break;
      case UnaryOp::Tanh:
        for (int64_t i = 0; i < m; i++) buf[i] = cpu::tanh_f(buf[i]);
        break;
      case UnaryOp::Clamp:
        for (int64_t i = 0; i < m; i++) buf[i] = std::min(std::max(buf[i], p0), p1);
        break;
    }
    cpu::store_f32(out + c, buf, m);
  }
}
SANA_ISA_CLONES(unary_k, (T * out, const T* in, int64_t n, UnaryOp op, float p0, float p1), unary_body<T>(out, in, n, op, p0, p1))

template <typename T>
void unary_t(T* out, const T* in, int64_t n, UnaryOp op, float p0, float p1) {
  const auto k = unary_k_pick<T>();
  const int64_t g = cpu::grains(n);
#pragma omp parallel for if (g > 1) schedule(static)
  for (int64_t i = 0; i < g; i++) {
    const int64_t b = i * cpu::kGrain;
    k(out + b, in + b, std::min(cpu::kGrain, n - b), op, p0, p1);
  }
}

}  // namespace

Status unary_cpu(void* out, const void* in, int64_t n, UnaryOp op, float p0, float p1, DType dt) {
  if (!SANA_FLOAT_DISPATCH(dt, unary_t(static_cast<T*>(out), static_cast<const T*>(in), n, op, p0, p1))) return "unary_cpu: dtype must be f32, bf16 or f16";
  return nullptr;
}

}  // namespace sana
