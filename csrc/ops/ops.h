// The functions that csrc/bindings.cpp exposes as gankernels._C, one block per op.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace gankernels {

// bias_act (csrc/ops/bias_act.cpp)
// Forward: returns y = clamp(act(x + b) * gain), in x's layout (x dense), b broadcast along `dim`.
at::Tensor bias_act_forward(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, int64_t act,
                            double alpha, double gain, double clamp);
// Gradient (order 1 or 2): returns (out, db) with out in the layout of the saved tensor (y, else x, else g) and,
// when want_db (order 1), db[c] = the sum of out over channel c, in out's dtype; else db is None.
std::tuple<at::Tensor, std::optional<at::Tensor>> bias_act_backward(
    const at::Tensor& g, const std::optional<at::Tensor>& m, const std::optional<at::Tensor>& x,
    const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& y, int64_t dim, int64_t act, double alpha,
    double gain, double clamp, int64_t order, bool want_db);

// upfirdn2d (csrc/ops/upfirdn2d.cpp)
void upfirdn2d_forward(const at::Tensor& x, const at::Tensor& f, const at::Tensor& out, int64_t upx, int64_t upy,
                       int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                       bool flip, double gain);

// grid_sample (csrc/ops/grid_sample.cpp): bilinear; padding 0 zeros, 1 border, 2 reflection. CPU tensors only.
void grid_sample_forward(const at::Tensor& x, const at::Tensor& grid, const at::Tensor& out, int64_t padding,
                         bool align_corners);
void grid_sample_backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& grid,
                          const std::optional<at::Tensor>& dx, const std::optional<at::Tensor>& dgrid,
                          int64_t padding, bool align_corners);

// instance_norm_act (csrc/ops/instance_norm.cpp): act 1 linear, 2 relu, 3 lrelu. CPU tensors only; the same signatures
// as the Triton kernels (gankernels/triton/instance_norm.py). Forward writes y and the statistics mean, rstd [N, C];
// backward writes dx and the per-plane partials [N, C] of dweight and dbias.
void instance_norm_forward(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                           const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                           const at::Tensor& y, const at::Tensor& mean, const at::Tensor& rstd, int64_t act,
                           double alpha, double eps);
void instance_norm_backward(const at::Tensor& g, const at::Tensor& x, const std::optional<at::Tensor>& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& mean, const at::Tensor& rstd,
                            const at::Tensor& dx, const at::Tensor& dweight_partial, const at::Tensor& dbias_partial,
                            int64_t act, double alpha);

}  // namespace gankernels
