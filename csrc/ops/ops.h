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

}  // namespace gankernels
