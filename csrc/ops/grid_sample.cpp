// grid_sample: torch tensors in, kernel arguments out. gankernels/ops/grid_sample.py validates user input with clear
// messages; the checks here keep the kernels in bounds whatever the caller passes.
#include "gankernels/grid_sample.h"

#include <vector>

#include "glue.h"
#include "ops.h"

namespace gankernels {
namespace {

// The arguments common to forward and backward: x [N, C, H, W], grid [N, Ho, Wo, 2] contiguous, same dtype/device.
GridSampleArgs make_args(const at::Tensor& x, const at::Tensor& grid, int64_t padding, bool align_corners) {
  GK_CHECK(x.dim() == 4 && x.size(2) >= 1 && x.size(3) >= 1,
           "grid_sample: x must be [N, C, H, W] with H, W >= 1, got shape ", x.sizes());
  GK_CHECK(x.device().is_cpu(), "grid_sample: the compiled kernels run on CPU tensors only, got ", x.device());
  GK_CHECK(grid.device() == x.device(), "grid_sample: grid is on ", grid.device(), ", expected ", x.device());
  GK_CHECK_TYPE(grid.scalar_type() == x.scalar_type(), "grid_sample: grid has dtype ", grid.scalar_type(),
                ", expected ", x.scalar_type());
  GK_CHECK(grid.dim() == 4 && grid.size(0) == x.size(0) && grid.size(3) == 2,
           "grid_sample: grid must be [N, Ho, Wo, 2] with N = ", x.size(0), ", got shape ", grid.sizes());
  GK_CHECK(grid.is_contiguous(), "grid_sample: grid must be contiguous");
  GK_CHECK(padding >= 0 && padding <= 2, "grid_sample: padding must be 0 (zeros), 1 (border) or 2 (reflection), got ",
           padding);
  const bool nchw = x.is_contiguous();
  GK_CHECK(nchw || x.is_contiguous(at::MemoryFormat::ChannelsLast),
           "grid_sample: x must be dense, contiguous or channels_last; got strides ", x.strides());
  GridSampleArgs p;
  p.x = x.data_ptr();
  p.grid = grid.data_ptr();
  p.n = x.size(0);
  p.c = x.size(1);
  p.h = x.size(2);
  p.w = x.size(3);
  p.ho = grid.size(1);
  p.wo = grid.size(2);
  p.padding = static_cast<GridPadding>(padding);
  p.align_corners = align_corners;
  p.channels_last = !nchw;
  p.dtype = dtype_of(x);
  return p;
}

// `t` must be [N, C, rows, cols] of x's dtype and device, dense in the layout the kernels walk.
void check_image(const at::Tensor& t, const at::Tensor& x, const GridSampleArgs& p, int64_t rows, int64_t cols,
                 const char* name) {
  GK_CHECK(t.device() == x.device(), "grid_sample: ", name, " is on ", t.device(), ", expected ", x.device());
  GK_CHECK_TYPE(t.scalar_type() == x.scalar_type(), "grid_sample: ", name, " has dtype ", t.scalar_type(),
                ", expected ", x.scalar_type());
  const std::vector<int64_t> shape = {p.n, p.c, rows, cols};
  GK_CHECK(t.sizes() == at::IntArrayRef(shape), "grid_sample: ", name, " has shape ", t.sizes(), ", expected ",
           at::IntArrayRef(shape));
  const bool ok = p.channels_last ? t.is_contiguous(at::MemoryFormat::ChannelsLast) : t.is_contiguous();
  GK_CHECK(ok, "grid_sample: ", name, " must be dense in x's memory format (",
           p.channels_last ? "channels_last" : "contiguous", "); got strides ", t.strides());
}

}  // namespace

void grid_sample_forward(const at::Tensor& x, const at::Tensor& grid, const at::Tensor& out, int64_t padding,
                         bool align_corners) {
  GridSampleArgs p = make_args(x, grid, padding, align_corners);
  check_image(out, x, p, p.ho, p.wo, "out");
  if (out.numel() == 0) return;
  check_no_overlap("grid_sample", out, {&x, &grid});
  p.y = out.data_ptr();
  grid_sample_forward_cpu(p, at::get_num_threads());
}

void grid_sample_backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& grid,
                          const std::optional<at::Tensor>& dx, const std::optional<at::Tensor>& dgrid,
                          int64_t padding, bool align_corners) {
  GridSampleArgs p = make_args(x, grid, padding, align_corners);
  check_image(dy, x, p, p.ho, p.wo, "dy");
  p.dy = dy.data_ptr();
  const bool empty = dy.numel() == 0;  // nothing sampled: zero gradients
  if (dx.has_value()) {
    check_image(*dx, x, p, p.h, p.w, "dx");
    check_no_overlap("grid_sample", *dx, {&dy, &x, &grid});
    if (empty) {
      dx->zero_();
    } else if (dx->numel()) {
      p.dx = dx->data_ptr();
    }
  }
  if (dgrid.has_value()) {
    GK_CHECK(dgrid->device() == grid.device() && dgrid->scalar_type() == grid.scalar_type() &&
                 dgrid->sizes() == grid.sizes() && dgrid->is_contiguous(),
             "grid_sample: dgrid must be a contiguous tensor like grid, got shape ", dgrid->sizes());
    check_no_overlap("grid_sample", *dgrid, {&dy, &x, &grid});
    if (empty) {
      dgrid->zero_();
    } else if (dgrid->numel()) {
      p.dgrid = dgrid->data_ptr();
    }
  }
  if (p.dx || p.dgrid) grid_sample_backward_cpu(p, at::get_num_threads());
}

}  // namespace gankernels
