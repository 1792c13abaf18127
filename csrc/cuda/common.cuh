// Helpers shared by the CUDA kernels: dtype conversion, 16-byte packs, launch shapes. No torch header.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "gankernels/common.h"

namespace gankernels {
namespace cuda {

template <typename T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename C> __device__ __forceinline__ C to_compute(float v) { return C(v); }
template <typename C> __device__ __forceinline__ C to_compute(double v) { return C(v); }
template <typename C> __device__ __forceinline__ C to_compute(__half v) { return C(__half2float(v)); }
template <typename C> __device__ __forceinline__ C to_compute(__nv_bfloat16 v) { return C(__bfloat162float(v)); }

template <typename T, typename C> __device__ __forceinline__ T from_compute(C v) { return T(v); }
template <> __device__ __forceinline__ __half from_compute<__half, float>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_compute<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}

// VEC elements of T loaded or stored as one (up to) 16-byte access.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_pack(const T* p, int64_t i) {
  return *reinterpret_cast<const Pack<T, VEC>*>(p + i);
}

template <typename T, int VEC>
__device__ __forceinline__ void store_pack(T* p, int64_t i, const Pack<T, VEC>& v) {
  *reinterpret_cast<Pack<T, VEC>*>(p + i) = v;
}

// Calls f(T{}) with T the CUDA storage type of `dtype` (float, double, __half, __nv_bfloat16); returns its result.
template <typename F>
auto dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f64: return f(double{});
    case DType::f16: return f(__half{});
    case DType::bf16: return f(__nv_bfloat16{});
    default: return f(float{});
  }
}

inline bool aligned_to(const void* p, int bytes) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// grid_for and grid_stride_fits_int32 (launch shapes of grid-stride loops): gankernels/common.h.

}  // namespace cuda
}  // namespace gankernels
