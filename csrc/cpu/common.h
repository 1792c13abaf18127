// Helpers shared by the CPU kernels.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "gankernels/common.h"

namespace gankernels {
namespace cpu {

// Calls f(T{}) with T the CPU storage type of `dtype` (float, double, c10::Half, c10::BFloat16).
template <typename F>
void dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f64: f(double{}); break;
    case DType::f16: f(c10::Half{}); break;
    case DType::bf16: f(c10::BFloat16{}); break;
    default: f(float{}); break;
  }
}

}  // namespace cpu
}  // namespace gankernels
