// The functions that csrc/bindings.cpp exposes as gankernels._C, one block per op.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace gankernels {

// bias_act (csrc/ops/bias_act.cpp)
void bias_act_forward(const at::Tensor& x, const std::optional<at::Tensor>& b, const at::Tensor& y, int64_t step,
                      int64_t size, int64_t act, double alpha, double gain, double clamp);
void bias_act_backward(const at::Tensor& g, const std::optional<at::Tensor>& m, const std::optional<at::Tensor>& x,
                       const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& y, const at::Tensor& out,
                       int64_t step, int64_t size, int64_t act, double alpha, double gain, double clamp,
                       int64_t order);

}  // namespace gankernels
