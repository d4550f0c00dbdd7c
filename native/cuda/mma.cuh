// The tensor-core wrapper: one m16n8k16 mma.sync with f32 accumulators, bf16 or f16 operands.
// Fragment layout (PTX ISA, lane = 4*groupID + tig):
//   A 16x16 row-major:  a[0] = A[g][2t..2t+1]    a[1] = A[g+8][2t..2t+1]
//                       a[2] = A[g][2t+8..2t+9]  a[3] = A[g+8][2t+8..2t+9]
//   B 16x8 ("col"):     b[0] = B[2t..2t+1][g]    b[1] = B[2t+8..2t+9][g]
//   C/D 16x8 f32:       c[0], c[1] = C[g][2t], C[g][2t+1];  c[2], c[3] = C[g+8][2t], C[g+8][2t+1]
// Under emulation, sana_emu::mma_m16n8k16 gathers the warp's registers and computes exactly this.
#pragma once
#include "common.cuh"

namespace sana {
namespace SANA_CUDA_NS {

// Two consecutive 16-bit elements as one 32-bit register (lower index in the low half).
SANA_DEV uint32_t ld_pair(const uint16_t* p) {
#ifdef SANA_CUDA_EMU
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#else
  return *reinterpret_cast<const uint32_t*>(p);
#endif
}

// 16-byte vector of 8 halves; global loads of it must be 16-byte aligned (checked by the emulation,
// a fault on hardware).
#ifdef SANA_CUDA_EMU
struct alignas(16) Vec16 {
  uint32_t x, y, z, w;
};
SANA_DEV Vec16 ld_vec16(const uint16_t* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16) ::sana_emu::device_fail("misaligned 16-byte load");
  Vec16 v;
  std::memcpy(&v, p, 16);
  return v;
}
SANA_DEV void st_vec16(uint16_t* p, const Vec16& v) {
  if (reinterpret_cast<uintptr_t>(p) % 16) ::sana_emu::device_fail("misaligned 16-byte store");
  std::memcpy(p, &v, 16);
}
#else
using Vec16 = uint4;
SANA_DEV Vec16 ld_vec16(const uint16_t* p) { return *reinterpret_cast<const uint4*>(p); }
SANA_DEV void st_vec16(uint16_t* p, const Vec16& v) { *reinterpret_cast<uint4*>(p) = v; }
#endif

SANA_DEV void mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4], bool bf16) {
#ifdef SANA_CUDA_EMU
  ::sana_emu::mma_m16n8k16(d, a, b, c, bf16);
#else
  if (bf16) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
  }
#endif
}

}  // namespace SANA_CUDA_NS
}  // namespace sana
