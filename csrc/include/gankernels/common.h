// Definitions shared by every kernel, CPU and CUDA. No torch header: nvcc compiles this alone.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#ifndef __CUDA_ARCH__
#include "gankernels/vmath.h"
#endif

// Element functions, inlined into the kernels' loops. On the CPU that must not be left to GCC's inliner: a call left
// in a loop keeps it scalar, and the inliner's unit-growth limit stops inlining once a kernel file instantiates
// enough loops (adding bias_act's backward variants cut its float16 and exp-based forwards 20-80x).
#ifdef __CUDACC__
#define GK_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define GK_HD inline __attribute__((always_inline))
#else
#define GK_HD inline
#endif

namespace gankernels {

enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

// exp_ / expm1_ / log1p_: CUDA's functions on the GPU; on the CPU vmath's for float (vectorisable), libm's for double.
namespace detail {

template <typename C>
GK_HD C exp_(C v) {
#ifdef __CUDA_ARCH__
  return ::exp(v);
#else
  if constexpr (std::is_same_v<C, float>) return vmath::exp(v);  // vectorisable (vmath.h)
  else return std::exp(v);
#endif
}

template <typename C>
GK_HD C expm1_(C v) {
#ifdef __CUDA_ARCH__
  return ::expm1(v);
#else
  if constexpr (std::is_same_v<C, float>) return vmath::expm1(v);  // vectorisable (vmath.h)
  else return std::expm1(v);
#endif
}

template <typename C>
GK_HD C log1p_(C v) {
#ifdef __CUDA_ARCH__
  return ::log1p(v);
#else
  if constexpr (std::is_same_v<C, float>) return vmath::log1p(v);  // vectorisable (vmath.h)
  else return std::log1p(v);
#endif
}

// min and max that keep a NaN `a` (as torch.clamp does): a clamp must not turn a NaN activation into a number.
template <typename C>
GK_HD C min_(C a, C b) {
  return b < a ? b : a;
}

template <typename C>
GK_HD C max_(C a, C b) {
  return b > a ? b : a;
}

}  // namespace detail

// Blocks of `threads` threads for `work` items in a grid-stride loop: enough to fill any GPU, not more.
inline unsigned int grid_for(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : blocks > (int64_t(1) << 20) ? (int64_t(1) << 20) : blocks);
}

// Whether a signed 32-bit index is safe for the grid-stride loop `for (i = block * threads + thread; i < work;
// i += blocks * threads)` with grid_for(work, threads) blocks: the largest index it forms is the one that ends the
// loop, below work - 1 + blocks * threads (with 2^20 blocks of 256 threads, work above 2^31 - 2^28 = 1.88e9 wraps).
inline bool grid_stride_fits_int32(int64_t work, int threads) {
  return work - 1 + int64_t(grid_for(work, threads)) * threads <= int64_t(INT32_MAX);
}

// The cudaError_t of a failed launch as text (csrc/cuda/common.cu); defined only in CUDA builds.
const char* cuda_error_string(int code);

}  // namespace gankernels
