// upfirdn2d: the launch arguments shared by the CPU and CUDA kernels, and the polyphase tap arithmetic they both use.
// No torch header here: csrc/cuda/*.cu include this file and must compile with nvcc alone.
//
// Semantics (NVlabs upfirdn2d): U = x upsampled by zero insertion (U[u, v] = x[u / upy, v / upx] when both divide
// exactly and are in range, else 0), padded by (padx0, padx1, pady0, pady1) (negative: cropped), correlated with f'
// (f flipped in both axes unless `flip`), times gain, every down-th pixel kept:
//   out[n, c, oy, ox] = gain * sum_{ky, kx} U[oy * downy + ky - pady0, ox * downx + kx - padx0] * f'[ky, kx]
//   outW = (W * upx + padx0 + padx1 - fw) / downx + 1, likewise outH.
#pragma once

#include <cstdint>

#include "gankernels/common.h"

namespace gankernels {

// One call of either kernel. x and out are dense [N, C, H, W] tensors, both NCHW (contiguous) or both channels_last
// (NHWC in memory); f is a row-major [fh, fw] float32 filter (float64 when dtype is f64). The glue guarantees that
// every coordinate computed along one axis (input, upsampled, padded or output) fits in an int32.
struct Upfirdn2dArgs {
  const void* x = nullptr;
  const void* f = nullptr;
  void* out = nullptr;
  int64_t n = 0, c = 0;
  int in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int fh = 1, fw = 1;
  int upx = 1, upy = 1, downx = 1, downy = 1;
  int padx0 = 0, padx1 = 0, pady0 = 0, pady1 = 0;
  bool flip = false;
  bool channels_last = false;
  double gain = 1;
  DType dtype = DType::f32;
};

namespace detail {

GK_HD int pos_mod(int a, int m) {
  const int r = a % m;
  return r < 0 ? r + m : r;
}

GK_HD int64_t floor_div64(int64_t a, int64_t b) {  // b > 0
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

GK_HD int64_t ceil_div64(int64_t a, int64_t b) { return -floor_div64(-a, b); }  // b > 0

GK_HD constexpr int gcd_(int a, int b) { return b == 0 ? a : gcd_(b, a % b); }

}  // namespace detail

// The taps of output coordinate o along one axis that land on real (not zero-inserted) samples: input i0 + j meets
// filter tap k0 + j * up (of f', the correlation weights) for j in [0, n).
struct AxisTaps {
  int i0 = 0, k0 = 0, n = 0;
};

GK_HD AxisTaps axis_taps(int o, int up, int down, int pad0, int taps) {
  AxisTaps t;
  const int base = o * down - pad0;          // position in U of tap 0
  t.k0 = detail::pos_mod(-base, up);         // first tap with (base + k) % up == 0
  t.i0 = (base + t.k0) / up;                 // exact division: the input sample under that tap
  t.n = t.k0 < taps ? (taps - t.k0 + up - 1) / up : 0;
  return t;
}

// The same taps restricted to inputs in [0, size): j runs over [j0, j1).
GK_HD void clip_taps(const AxisTaps& t, int size, int& j0, int& j1) {
  j0 = t.i0 < 0 ? -t.i0 : 0;
  j1 = t.n < size - t.i0 ? t.n : size - t.i0;
  if (j1 < j0) j1 = j0;
}

// Kernel entry points. CPU: csrc/cpu/upfirdn2d.cpp. CUDA: csrc/cuda/upfirdn2d.cu (returns a cudaError_t as int).
void upfirdn2d_cpu(const Upfirdn2dArgs& args, int num_threads);
int upfirdn2d_cuda(const Upfirdn2dArgs& args, void* stream);

}  // namespace gankernels
