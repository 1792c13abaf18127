// bias_act: the launch arguments shared by the CPU and CUDA kernels, and the element math they both use.
// No torch header here: csrc/cuda/*.cu include this file and must compile with nvcc alone.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "gankernels/common.h"

namespace gankernels {

// One call of either kernel. Every tensor is dense, in one memory layout, of `n` elements; the channel of flat
// element i is (i / step) % size; b has `size` elements. Forward: out = clamp(act(x + b) * gain).
// Backward: out = g * m * K(saved) * mask (see gankernels/reference/bias_act.py, bias_act_grad).
struct BiasActArgs {
  const void* x = nullptr;  // forward input, or the saved x (swish) in the backward
  const void* b = nullptr;
  const void* y = nullptr;  // the saved output (backward only)
  const void* g = nullptr;  // incoming gradient (backward only)
  const void* m = nullptr;  // extra factor of the order-2 gradient (backward only)
  void* out = nullptr;
  int64_t n = 0, step = 1, size = 1;
  int act = 1;    // 1 linear, 2 relu, 3 lrelu, 4 tanh, 5 sigmoid, 6 elu, 7 selu, 8 softplus, 9 swish
  int order = 0;  // 0 forward, 1 gradient, 2 derivative of the gradient with respect to the saved tensor
  double alpha = 0, gain = 1, clamp = -1;  // clamp < 0: none
  DType dtype = DType::f32;
  // Order 1 on CUDA only: when set, also the bias gradient, as one partial sum of `out` per (row, chunk) of each row of
  // `step` elements (row r has channel r % size), in the compute type (double for f64, else float).
  void* db_partial = nullptr;
  int64_t db_chunks = 0;  // chunks per row, from bias_act_cuda_db_chunks
  // Order 1 on the CPU only: when set, the bias gradient itself, db[c] = the sum of out over channel c (storage type).
  void* db = nullptr;
};

// What the gradient factor is a function of: 0 nothing (linear), 1 z = x + b (swish), 2 yy = y / gain.
GK_HD int bias_act_ref(int act) { return act == 1 ? 0 : act == 9 ? 1 : 2; }

namespace detail {
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
}  // namespace detail

// act(z) for activation A.
template <int A, typename C>
GK_HD C activation(C z, C alpha) {
  using namespace detail;
  if (A == 1) return z;
  if (A == 2) return z < C(0) ? C(0) : z;  // NaN stays NaN
  if (A == 3) return z > C(0) ? z : z * alpha;
  if (A == 4) {  // tanh = e / (e + 2) with e = expm1(2z): accurate near 0, where 1 - 2 / (exp(2z) + 1) cancels
    C e = expm1_(C(2) * min_(max_(z, C(-40)), C(40)));
    return e / (e + C(2));
  }
  if (A == 5) return C(1) / (C(1) + exp_(-z));                                            // sigmoid
  // elu, selu: expm1 (exp(z) - 1 cancels near 0) computed for every z, then selected: a call on one side of a
  // conditional is control flow that keeps a CPU loop scalar
  if (A == 6) {
    const C e = expm1_(min_(z, C(0)));
    return z >= C(0) ? z : e;
  }
  if (A == 7) {
    const C e = C(kSeluAlpha) * expm1_(min_(z, C(0)));
    return C(kSeluScale) * (z > C(0) ? z : e);
  }
  if (A == 8) return max_(z, C(0)) + log1p_(exp_(-(z < C(0) ? -z : z)));  // softplus, stable
  return z / (C(1) + exp_(-z));                                           // swish
}

// ORDER 1: act'(z) written as a function of `r`; ORDER 2: d act'(z) / d(saved). r is z for swish, else
// yy = y / gain = act(z). (Order 2 with a saved y: d f1(y / gain) / dy * gain = f1'(yy).)
template <int A, int ORDER, typename C>
GK_HD C activation_grad(C r, C alpha) {
  using namespace detail;
  if (A == 1) return C(1);
  if (A == 2) return r > C(0) ? C(1) : C(0);
  if (A == 3) return r > C(0) ? C(1) : alpha;
  if (A == 4) return ORDER == 1 ? C(1) - r * r : C(-2) * r;
  if (A == 5) return ORDER == 1 ? r * (C(1) - r) : C(1) - C(2) * r;
  if (A == 6) return ORDER == 1 ? (r >= C(0) ? C(1) : r + C(1)) : (r >= C(0) ? C(0) : C(1));
  if (A == 7) {
    return ORDER == 1 ? (r > C(0) ? C(kSeluScale) : r + C(kSeluScale * kSeluAlpha)) : (r > C(0) ? C(0) : C(1));
  }
  if (A == 8) return ORDER == 1 ? -expm1_(-r) : exp_(-r);  // softplus' = 1 - exp(-y), accurate for small y
  // swish: s = sigmoid(z), sm = 1 - s = sigmoid(-z) (1 - s cancels for z >> 0); act' = s + z s sm,
  // act'' = s sm (2 + z (sm - s))
  const C s = C(1) / (C(1) + exp_(-r)), sm = C(1) / (C(1) + exp_(r));
  return ORDER == 1 ? s + r * s * sm : s * sm * (C(2) + r * (sm - s));
}

// The forward of one element: clamp(act(x + b) * gain). NaN stays NaN, as with torch.clamp.
template <int A, bool CLAMP, typename C>
GK_HD C bias_act_forward_element(C z, C alpha, C gain, C clamp) {
  C v = activation<A>(z, alpha) * gain;
  if (CLAMP) v = v > clamp ? clamp : (v < -clamp ? -clamp : v);
  return v;
}

// The gradient of one element: g (already times m), ref (x + b for swish, else the saved y), yc (the saved y,
// for the clamp mask).
template <int A, int ORDER, bool CLAMP, typename C>
GK_HD C bias_act_backward_element(C g, C ref, C yc, C alpha, C gain, C clamp) {
  const int kind = bias_act_ref(A);
  // y / gain as y * (1 / gain) (within an ulp): the reciprocal is loop-invariant, where a per-element
  // `gain != 0 ? y / gain : 0` is a select on an invariant condition that GCC 12 does not vectorise next to float16
  // loads. gain = 0: r = y * 0 (NaN for a NaN y, whose gradient torch's ops give as NaN too).
  const C inv_gain = gain != C(0) ? C(1) / gain : C(0);
  C r = kind == 2 ? ref * inv_gain : ref;
  C k = activation_grad<A, ORDER>(r, alpha);
  if (ORDER == 1 || kind == 1) k *= gain;
  C v = g * k;
  if (CLAMP) v = (yc < C(0) ? -yc : yc) < clamp ? v : C(0);  // clamped outputs pass no gradient
  return v;
}

// Calls f(std::integral_constant<int, A>{}) with the activation code A as a compile-time constant.
template <typename F>
void dispatch_activation(int act, F&& f) {
  switch (act) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    default: f(std::integral_constant<int, 9>{}); break;
  }
}

// Kernel entry points. CPU: csrc/cpu/bias_act.cpp. CUDA: csrc/cuda/bias_act.cu (returns a cudaError_t as int).
void bias_act_cpu(const BiasActArgs& args, int num_threads);
int bias_act_cuda(const BiasActArgs& args, void* stream);
// Chunks per row for the fused bias-gradient reduction of `args`, or 0 when it does not apply (rows too short).
int64_t bias_act_cuda_db_chunks(const BiasActArgs& args);

}  // namespace gankernels
