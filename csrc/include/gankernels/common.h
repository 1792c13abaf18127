// Definitions shared by every kernel, CPU and CUDA. No torch header: nvcc compiles this alone.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define GK_HD __host__ __device__ __forceinline__
#else
#define GK_HD inline
#endif

namespace gankernels {

enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

namespace detail {

template <typename C>
GK_HD C exp_(C v) {
#ifdef __CUDA_ARCH__
  return ::exp(v);
#else
  return std::exp(v);
#endif
}

template <typename C>
GK_HD C expm1_(C v) {
#ifdef __CUDA_ARCH__
  return ::expm1(v);
#else
  return std::expm1(v);
#endif
}

template <typename C>
GK_HD C log1p_(C v) {
#ifdef __CUDA_ARCH__
  return ::log1p(v);
#else
  return std::log1p(v);
#endif
}

template <typename C>
GK_HD C min_(C a, C b) {
  return a < b ? a : b;
}

template <typename C>
GK_HD C max_(C a, C b) {
  return a > b ? a : b;
}

}  // namespace detail

// The cudaError_t of a failed launch as text (csrc/cuda/common.cu); defined only in CUDA builds.
const char* cuda_error_string(int code);

}  // namespace gankernels
