// exp, expm1 and log1p of float in branch-free, inlinable forms, so that a CPU loop calling them vectorises (libm's
// are calls, which keep the loop scalar). Within 1.6 ulp of the correctly rounded result over every finite float
// (checked against double libm on every 7th float: exp 1.0 ulp, expm1 1.6, log1p 1.4); inf, -inf and NaN as libm.
// Cody-Waite range reduction and Cephes' expf / logf polynomials. CPU only: the CUDA kernels use CUDA's functions.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__GNUC__)
#define GK_VM inline __attribute__((always_inline))
#else
#define GK_VM inline
#endif

namespace gankernels {
namespace vmath {

GK_VM float from_bits(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

GK_VM int32_t to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

// x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 in two parts, so that n ln2 is exact enough);
// 2^n = s1 s2, two normal floats (2^n alone is subnormal or infinite for some n that exp still needs). x is clamped
// to [-104, 88.8] first: exp is 0 below and inf above either way (NaN stays NaN).
GK_VM float reduce(float x, float& r, float& s1, float& s2) {
  x = x < -104.0f ? -104.0f : x;
  x = x > 88.8f ? 88.8f : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const int32_t ni = int32_t(n == n ? n : 0.0f), n1 = ni >> 1, n2 = ni - n1;  // NaN: r is NaN, the result too
  s1 = from_bits((n1 + 127) << 23);
  s2 = from_bits((n2 + 127) << 23);
  return n;
}

// exp(r) - 1 = r + r^2 P(r) for |r| <= ln2 / 2, without adding the 1 (accurate for small r).
GK_VM float expm1_reduced(float r) {
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * (r * r) + r;
}

GK_VM float exp(float x) {
  float r, s1, s2;
  reduce(x, r, s1, s2);
  return ((expm1_reduced(r) + 1.0f) * s1) * s2;
}

GK_VM float expm1(float x) {
  float r, s1, s2;
  const float n = reduce(x, r, s1, s2);
  const float e = expm1_reduced(r);
  // n = 0: e itself (near 0, where exp(x) - 1 would cancel); n > 24 (x > 16.6): exp(x), the 1 being below its
  // rounding (and 2^n - 1 overflowing first at n = 128); else 2^n e + (2^n - 1).
  return n == 0.0f ? e : n > 24.0f ? ((e + 1.0f) * s1) * s2 : (e * s1) * s2 + (s1 * s2 - 1.0f);
}

GK_VM float log1p(float u) {
  const float w = 1.0f + u;
  // w = 2^e m with m in [sqrt(1/2), sqrt(2)), from the bits; f = m - 1 in [-0.29, 0.41]
  const int32_t offset = to_bits(w) - 0x3f3504f3;  // 0x3f3504f3: sqrt(1/2)
  const float e = float(offset >> 23);
  const float f = from_bits((offset & 0x007fffff) + 0x3f3504f3) - 1.0f;
  const float c = (u - (w - 1.0f)) / w;  // what rounding 1 + u lost of u: log(w + d) = log(w) + d / w
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z + e * -2.12194440e-4f - 0.5f * z;
  const float v = (f + y + c) + e * 0.693359375f;
  // the bit split needs a finite w > 0: log1p(inf) = inf, log1p(-1) = -inf, below -1 (and NaN) NaN
  return w == INFINITY ? w : w == 0.0f ? -INFINITY : (w < 0.0f || u != u) ? NAN : v;
}

}  // namespace vmath
}  // namespace gankernels
