// fill and cast: element conversions between the five dtypes. Float<->float casts go through
// vec.h's chunk conversions (branch-free bf16 shift / nearest-even rounding), cloned per ISA.
#include "vec.h"

namespace sana {
namespace {

template <typename S>
inline double load_any(const S* p, int64_t i) {
  return double(to_f32(p[i]));
}
template <>
inline double load_any<int32_t>(const int32_t* p, int64_t i) {
  return double(p[i]);
}
template <>
inline double load_any<int64_t>(const int64_t* p, int64_t i) {
  return double(p[i]);
}

template <typename D>
inline void store_any(D* p, int64_t i, double v) {
  p[i] = from_f32<D>(float(v));
}
// Float -> integer casts truncate toward zero like PyTorch's .to(int).
template <>
inline void store_any<int32_t>(int32_t* p, int64_t i, double v) {
  p[i] = std::isfinite(v) ? int32_t(v) : 0;
}
template <>
inline void store_any<int64_t>(int64_t* p, int64_t i, double v) {
  p[i] = std::isfinite(v) ? int64_t(v) : 0;
}

template <typename D, typename S>
void cast_loop(D* out, const S* in, int64_t n) {
#pragma omp parallel for if (n > cpu::kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; i++) store_any<D>(out, i, load_any<S>(in, i));
}
// i64 -> i64 and friends must not go through double (exactness above 2^53).
template <>
void cast_loop<int64_t, int32_t>(int64_t* out, const int32_t* in, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = in[i];
}
template <>
void cast_loop<int32_t, int64_t>(int32_t* out, const int64_t* in, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = int32_t(in[i]);
}

template <typename D>
void cast_from(D* out, const void* in, int64_t n, DType in_dt) {
  switch (in_dt) {
    case DType::F32: cast_loop(out, static_cast<const float*>(in), n); break;
    case DType::BF16: cast_loop(out, static_cast<const bf16_t*>(in), n); break;
    case DType::F16: cast_loop(out, static_cast<const f16_t*>(in), n); break;
    case DType::I32: cast_loop(out, static_cast<const int32_t*>(in), n); break;
    case DType::I64: cast_loop(out, static_cast<const int64_t*>(in), n); break;
  }
}

// Float-to-float cast of n elements: S -> f32 chunk -> D.
template <typename D, typename S>
SANA_INLINE void fcast_body(D* out, const S* in, int64_t n) {
  alignas(64) float buf[cpu::kChunk];
  for (int64_t c = 0; c < n; c += cpu::kChunk) {
    const int64_t m = std::min(cpu::kChunk, n - c);
    cpu::load_f32(buf, in + c, m);
    cpu::store_f32(out + c, buf, m);
  }
}
// T here is the pair <D, S> packed as D(*)(S): SANA_ISA_CLONES takes one type parameter.
template <typename F>
struct CastPair;
template <typename D, typename S>
struct CastPair<D(S)> {
  using Out = D;
  using In = S;
};
SANA_ISA_CLONES(fcast_k, (typename CastPair<T>::Out * out, const typename CastPair<T>::In* in, int64_t n),
                (fcast_body<typename CastPair<T>::Out, typename CastPair<T>::In>(out, in, n)))

template <typename D, typename S>
void fcast(void* out, const void* in, int64_t n) {
  const auto k = fcast_k_pick<D(S)>();
  const int64_t g = cpu::grains(n);
#pragma omp parallel for if (g > 1) schedule(static)
  for (int64_t i = 0; i < g; i++) {
    const int64_t b = i * cpu::kGrain;
    k(static_cast<D*>(out) + b, static_cast<const S*>(in) + b, std::min(cpu::kGrain, n - b));
  }
}
template <typename D>
bool fcast_from(void* out, const void* in, int64_t n, DType in_dt) {
  switch (in_dt) {
    case DType::F32: fcast<D, float>(out, in, n); return true;
    case DType::BF16: fcast<D, bf16_t>(out, in, n); return true;
    case DType::F16: fcast<D, f16_t>(out, in, n); return true;
    default: return false;
  }
}

}  // namespace

Status cast_cpu(void* out, const void* in, int64_t n, DType out_dt, DType in_dt) {
  if (out_dt == in_dt) {
    std::memcpy(out, in, size_t(n) * dtype_size(in_dt));
    return nullptr;
  }
  switch (out_dt) {
    case DType::F32:
      if (fcast_from<float>(out, in, n, in_dt)) return nullptr;
      break;
    case DType::BF16:
      if (fcast_from<bf16_t>(out, in, n, in_dt)) return nullptr;
      break;
    case DType::F16:
      if (fcast_from<f16_t>(out, in, n, in_dt)) return nullptr;
      break;
    default: break;
  }
  switch (out_dt) {
    case DType::F32: cast_from(static_cast<float*>(out), in, n, in_dt); break;
    case DType::BF16: cast_from(static_cast<bf16_t*>(out), in, n, in_dt); break;
    case DType::F16: cast_from(static_cast<f16_t*>(out), in, n, in_dt); break;
    case DType::I32: cast_from(static_cast<int32_t*>(out), in, n, in_dt); break;
    case DType::I64: cast_from(static_cast<int64_t*>(out), in, n, in_dt); break;
  }
  return nullptr;
}

Status fill_cpu(void* out, int64_t n, double value, DType dt) {
  auto run = [&](auto* p, auto v) {
#pragma omp parallel for if (n > cpu::kParallelMin) schedule(static)
    for (int64_t i = 0; i < n; i++) p[i] = v;
  };
  switch (dt) {
    case DType::F32: run(static_cast<float*>(out), float(value)); break;
    case DType::BF16: run(static_cast<uint16_t*>(out), f32_to_bf16(float(value))); break;
    case DType::F16: run(static_cast<uint16_t*>(out), f32_to_f16(float(value))); break;
    case DType::I32: run(static_cast<int32_t*>(out), int32_t(value)); break;
    case DType::I64: run(static_cast<int64_t*>(out), int64_t(value)); break;
  }
  return nullptr;
}

namespace cpu {
void to_float_row(float* dst, const void* src, int64_t n, DType dt) {
  switch (dt) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); break;
    case DType::BF16: fcast_k_pick<float(bf16_t)>()(dst, static_cast<const bf16_t*>(src), n); break;
    case DType::F16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
      break;
    }
    case DType::I32: {
      auto* s = static_cast<const int32_t*>(src);
      for (int64_t i = 0; i < n; i++) dst[i] = float(s[i]);
      break;
    }
    case DType::I64: {
      auto* s = static_cast<const int64_t*>(src);
      for (int64_t i = 0; i < n; i++) dst[i] = float(s[i]);
      break;
    }
  }
}
void from_float_row(void* dst, const float* src, int64_t n, DType dt) {
  switch (dt) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); break;
    case DType::BF16: fcast_k_pick<bf16_t(float)>()(static_cast<bf16_t*>(dst), src, n); break;
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; i++) d[i] = f32_to_f16(src[i]);
      break;
    }
    case DType::I32: {
      auto* d = static_cast<int32_t*>(dst);
      for (int64_t i = 0; i < n; i++) d[i] = int32_t(src[i]);
      break;
    }
    case DType::I64: {
      auto* d = static_cast<int64_t*>(dst);
      for (int64_t i = 0; i < n; i++) d[i] = int64_t(src[i]);
      break;
    }
  }
}
}  // namespace cpu
}  // namespace sana
