// float16 and bfloat16 storage types for the CPU kernels whose conversions vectorise.
//
// c10::Half and c10::BFloat16 convert correctly but element by element: c10's float -> bfloat16 tests for NaN with a
// branch, and its float16 conversions are bit manipulations with branches for subnormals, infinities and NaN, so a
// loop that loads or stores them stays scalar (benchmarks/NOTES.md: the kernels lost 5-12x to torch's vectorised ops in
// these dtypes). The same conversions here are branch-free integer and float operations that GCC vectorises at every
// instruction-set level (isa.h), and give the same bits as c10's: round to nearest even, NaN kept (float16 keeps the
// sign and the quiet bit, as c10: 0x7e00 | sign; bfloat16 gives 0x7fc0, as c10), overflow to infinity, subnormals exact
// (tests/ops/test_low_precision_rounding.py checks both against torch). Layout: one uint16_t, as c10's types, so the
// tensors' memory is read as is.
#pragma once

#include <cstdint>
#include <cstring>

#include "gankernels/common.h"  // GK_HD: always inlined into the loops

namespace gankernels {
namespace cpu {

GK_HD float float_of_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

GK_HD uint32_t bits_of_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

// float16 bits -> float, exact. Normals, infinities and NaN: the exponent and mantissa fields moved into float
// position with the exponent biased by 224 (so float16's top exponent 31 lands on float's 255), then scaled by
// 2^-112, which rebiases the finite values and leaves inf / NaN as they are. Subnormals (m 2^-24): m placed in the low
// mantissa bits of 0.5, minus 0.5. One select, no branch.
GK_HD float half_to_float(uint16_t h) {
  const uint32_t two_w = uint32_t(h) << 17;  // exponent and mantissa at the top, the sign shifted out
  const float normal = float_of_bits((two_w >> 4) + (224u << 23)) * 0x1.0p-112f;
  const float subnormal = float_of_bits((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t magnitude = two_w < (1u << 27) ? bits_of_float(subnormal) : bits_of_float(normal);
  return float_of_bits(magnitude | ((uint32_t(h) & 0x8000u) << 16));
}

// float -> float16 bits, round to nearest even: normals by integer rounding of the mantissa, subnormals (and zero) by
// one float addition of 2^-1 (the FPU rounds to nearest even), >= 65520 to infinity, NaN to 0x7e00 (with the sign).
GK_HD uint16_t float_to_half(float f) {
  uint32_t u = bits_of_float(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  constexpr uint32_t kInf = 255u << 23, kHalfMax = (127u + 16u) << 23, kMagic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  const uint32_t big = u > kInf ? 0x7e00u : 0x7c00u;
  const uint32_t small = bits_of_float(float_of_bits(u) + float_of_bits(kMagic)) - kMagic;
  const uint32_t normal = (u + ((15u - 127u) << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  const uint32_t magnitude = u >= kHalfMax ? big : u < (113u << 23) ? small : normal;
  return uint16_t(magnitude | (sign >> 16));
}

// bfloat16 bits <-> float: the top half of the float; round to nearest even, NaN to 0x7fc0.
GK_HD float bfloat16_to_float(uint16_t b) { return float_of_bits(uint32_t(b) << 16); }

GK_HD uint16_t float_to_bfloat16(float f) {
  const uint32_t u = bits_of_float(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return uint16_t((u & 0x7fffffffu) > 0x7f800000u ? 0x7fc0u : rounded);
}

struct Half {
  uint16_t bits = 0;
  Half() = default;
  GK_HD Half(float f) : bits(float_to_half(f)) {}  // NOLINT: implicit, as c10::Half
  GK_HD operator float() const { return half_to_float(bits); }
};

struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  GK_HD BFloat16(float f) : bits(float_to_bfloat16(f)) {}  // NOLINT: implicit, as c10::BFloat16
  GK_HD operator float() const { return bfloat16_to_float(bits); }
};

static_assert(sizeof(Half) == 2 && sizeof(BFloat16) == 2, "the storage types must be 16 bits");

}  // namespace cpu
}  // namespace gankernels
