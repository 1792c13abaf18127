// Helpers shared by the CPU kernels.
#pragma once

#include <type_traits>

#include "gankernels/common.h"
#include "half.h"

namespace gankernels {
namespace cpu {

// Calls f(T{}) with T the CPU storage type of `dtype`: float, double, or half.h's Half and BFloat16 (the same bits as
// c10's, converted in vectorisable form).
template <typename F>
void dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f64: f(double{}); break;
    case DType::f16: f(Half{}); break;
    case DType::bf16: f(BFloat16{}); break;
    default: f(float{}); break;
  }
}

// out = T(v), for a kernel's stores: Half / BFloat16 get their bits assigned directly. A loop under `omp simd` that
// builds a Half temporary is not vectorised by GCC 12 ("more than one data ref in stmt": the temporary's copy).
template <typename T, typename C>
GK_HD void store(T& out, C v) {
  if constexpr (std::is_same_v<T, Half>) {
    out.bits = float_to_half(float(v));
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    out.bits = float_to_bfloat16(float(v));
  } else {
    out = T(v);
  }
}

}  // namespace cpu
}  // namespace gankernels
