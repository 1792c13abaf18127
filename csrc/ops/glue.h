// Torch glue shared by the ops: checks that keep kernels in bounds, dtype mapping, device dispatch.
// The Python layer validates user input with clear messages; these checks are the last line of defence.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>
#include <c10/util/StringUtil.h>

#include <initializer_list>
#include <optional>
#include <stdexcept>

#include "gankernels/common.h"

#ifdef GANKERNELS_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace gankernels {

// The glue's checks throw these, never c10::Error: constructing a c10::Error walks the whole C++ stack for a
// backtrace, and on the H100 machine (torch 2.11, CUDA 13 build) that walk crashed the process instead of raising
// (the crash pytorch/pytorch#117645 describes, in the unwinder's frame search). These carry the message only;
// csrc/bindings.cpp turns them into Python RuntimeError / TypeError.
struct CheckError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct CheckTypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define GK_CHECK(cond, ...) \
  if (!(cond)) throw ::gankernels::CheckError(::c10::str(__VA_ARGS__))
#define GK_CHECK_TYPE(cond, ...) \
  if (!(cond)) throw ::gankernels::CheckTypeError(::c10::str(__VA_ARGS__))

inline DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::f32;
    case at::kDouble: return DType::f64;
    case at::kHalf: return DType::f16;
    case at::kBFloat16: return DType::bf16;
    default: GK_CHECK_TYPE(false, "gankernels: unsupported dtype ", t.scalar_type());
  }
  return DType::f32;
}

// `t` must be stored exactly like `like`: same device, dtype, shape, strides, and densely.
inline void check_like(const at::Tensor& t, const at::Tensor& like, const char* name) {
  GK_CHECK(t.device() == like.device(), name, " is on ", t.device(), ", expected ", like.device());
  GK_CHECK_TYPE(t.scalar_type() == like.scalar_type(), name, " has dtype ", t.scalar_type(), ", expected ",
                   like.scalar_type());
  GK_CHECK(t.sizes() == like.sizes(), name, " has shape ", t.sizes(), ", expected ", like.sizes());
  GK_CHECK(t.is_non_overlapping_and_dense() && t.strides() == like.strides(), name,
              " must be dense with the strides of the output");
}

inline void check_like(const std::optional<at::Tensor>& t, const at::Tensor& like, const char* name) {
  if (t.has_value()) check_like(*t, like, name);
}

// `out` shares no memory with any of `inputs` (a kernel would read what it writes).
inline void check_no_overlap(const char* op, const at::Tensor& out, std::initializer_list<const at::Tensor*> inputs) {
  for (const at::Tensor* input : inputs) {
    const auto overlap = at::get_overlap_status(out, *input);
    GK_CHECK(overlap != at::MemOverlapStatus::Full && overlap != at::MemOverlapStatus::Partial, op,
             ": an output overlaps an input; the kernels would read what they write");
  }
}

inline const void* data_or_null(const std::optional<at::Tensor>& t) { return t.has_value() ? t->data_ptr() : nullptr; }

inline bool built_with_cuda() {
#ifdef GANKERNELS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

// Runs cpu_fn() on CPU tensors and cuda_fn(stream) -> cudaError_t-as-int on CUDA tensors of `t`'s device.
template <typename CpuFn, typename CudaFn>
void run_on_device(const at::Tensor& t, const char* op, CpuFn&& cpu_fn, CudaFn&& cuda_fn) {
  if (t.device().is_cpu()) {
    cpu_fn(at::get_num_threads());
    return;
  }
#ifdef GANKERNELS_WITH_CUDA
  if (t.device().is_cuda()) {
    const c10::cuda::CUDAGuard guard(t.device());
    const int err = cuda_fn(static_cast<void*>(at::cuda::getCurrentCUDAStream().stream()));
    GK_CHECK(err == 0, op, ": CUDA kernel launch failed: ", cuda_error_string(err));
    return;
  }
#endif
  (void)cuda_fn;
  GK_CHECK(false, op, ": no kernel for tensors on ", t.device(), built_with_cuda() ? "" : " (built without CUDA)");
}

}  // namespace gankernels
