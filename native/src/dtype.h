// Element types shared by every backend, and the scalar conversions between them.
// Conversions are bit-exact IEEE round-to-nearest-even, written by hand so that the portable
// build needs no F16C/AVX512-BF16 instructions.
#pragma once
#include <cstdint>
#include <cstring>
#include <cstddef>

namespace sana {

enum class DType : int32_t { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, I64 = 4 };

inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32:
    case DType::I32: return 4;
    case DType::BF16:
    case DType::F16: return 2;
    case DType::I64: return 8;
  }
  return 0;
}
inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
  }
  return "?";
}
inline bool dtype_is_float(DType d) { return d == DType::F32 || d == DType::BF16 || d == DType::F16; }

// Storage types for the 16-bit floats: raw bits, so templates can tell them apart.
struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                         // nearest-even
  return uint16_t(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return bits_to_f32(sign);
    // subnormal: value = man * 2^-24
    float v = float(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}
inline uint16_t f32_to_f16(float f) {
  uint32_t u = f32_to_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);   // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow -> inf (>= 65520)
  if (a < 0x38800000u) {                                  // subnormal or zero in f16
    if (a < 0x33000000u) return sign;                     // < 2^-25 rounds to 0
    uint32_t exp = a >> 23, man = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exp;  // 14..24 (value = man * 2^(exp-150))
    uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return uint16_t(sign | r);
  }
  uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);
  return uint16_t(sign | (r >> 13));
}

// Loads/stores through float, the accumulation type of every kernel.
inline float to_f32(float v) { return v; }
inline float to_f32(bf16_t v) { return bf16_to_f32(v.bits); }
inline float to_f32(f16_t v) { return f16_to_f32(v.bits); }
template <typename T>
inline T from_f32(float v);
template <>
inline float from_f32<float>(float v) {
  return v;
}
template <>
inline bf16_t from_f32<bf16_t>(float v) {
  return bf16_t{f32_to_bf16(v)};
}
template <>
inline f16_t from_f32<f16_t>(float v) {
  return f16_t{f32_to_f16(v)};
}

}  // namespace sana

// Calls BODY with `T` bound to the C++ type of float dtype DT; returns false for non-floats.
#define SANA_FLOAT_DISPATCH(DT, ...) \
  [&]() -> bool {                    \
    switch (DT) {                    \
      case ::sana::DType::F32: {     \
        using T = float;             \
        __VA_ARGS__;                 \
        return true;                 \
      }                              \
      case ::sana::DType::BF16: {    \
        using T = ::sana::bf16_t;    \
        __VA_ARGS__;                 \
        return true;                 \
      }                              \
      case ::sana::DType::F16: {     \
        using T = ::sana::f16_t;     \
        __VA_ARGS__;                 \
        return true;                 \
      }                              \
      default: return false;         \
    }                                \
  }()
