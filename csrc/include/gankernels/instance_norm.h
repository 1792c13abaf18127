// instance_norm_act: the launch arguments of the CPU kernels. No torch header here (see common.h).
//
// Semantics (gankernels/reference/instance_norm.py is the same formula in torch ops), per (n, c) plane of H W pixels:
//   mean, var = the plane's mean and biased variance; rstd = 1 / sqrt(var + eps); xhat = (x - mean) rstd;
//   z = xhat w[c] + b[c] (w = 1, b = 0 when absent); y = act(z) + residual (act: 1 linear, 2 relu, 3 lrelu(alpha)).
//   Backward, for g = dL/dy: gz = g act'(z) (act'(0) = 0 for relu, alpha for lrelu, as torch);
//   per plane s_gz = sum gz, s_gzx = sum gz xhat (the partials of dbias, dweight);
//   dx = rstd w (gz - s_gz / HW - xhat s_gzx / HW).
#pragma once

#include <cstdint>

#include "gankernels/common.h"

namespace gankernels {

// x, y, residual, g and dx are dense [N, C, H, W] tensors, all NCHW or all channels_last (NHWC in memory), of one
// dtype; weight, bias: contiguous [C] of that dtype or nullptr; mean, rstd, dweight_partial, dbias_partial:
// contiguous [N, C] in the statistics' dtype (double for float64 x, else float).
struct InstanceNormArgs {
  const void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;
  const void* residual = nullptr;
  const void* g = nullptr;
  void* y = nullptr;
  void* dx = nullptr;
  void* mean = nullptr;  // written by the forward, read by the backward
  void* rstd = nullptr;
  void* dweight_partial = nullptr;
  void* dbias_partial = nullptr;
  int64_t n = 0, c = 0, hw = 0;
  int act = 1;
  double alpha = 0.0, eps = 1e-5;
  bool channels_last = false;
  DType dtype = DType::f32;
};

// csrc/cpu/instance_norm.cpp: forward writes y, mean, rstd; backward writes dx and the two partials.
void instance_norm_forward_cpu(const InstanceNormArgs& args, int num_threads);
void instance_norm_backward_cpu(const InstanceNormArgs& args, int num_threads);

}  // namespace gankernels
