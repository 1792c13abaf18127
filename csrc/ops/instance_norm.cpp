// instance_norm_act: torch tensors in, kernel arguments out. gankernels/ops/instance_norm.py validates user input
// with clear messages; the checks here keep the kernels in bounds whatever the caller passes. CPU tensors only (the
// GPU runs the Triton kernels, same signatures: gankernels/triton/instance_norm.py).
#include "gankernels/instance_norm.h"

#include <vector>

#include "glue.h"
#include "ops.h"

namespace gankernels {
namespace {

// `t`: a contiguous [N, C] tensor in the statistics' dtype (double for float64 x, else float) on x's device.
void check_stats(const at::Tensor& t, const at::Tensor& x, const char* name) {
  const std::vector<int64_t> nc = {x.size(0), x.size(1)};
  GK_CHECK(t.device() == x.device() && t.sizes() == at::IntArrayRef(nc) && t.is_contiguous(), "instance_norm: ", name,
           " must be a contiguous [N, C] = ", at::IntArrayRef(nc), " tensor on ", x.device(), ", got shape ",
           t.sizes());
  const auto stats = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  GK_CHECK_TYPE(t.scalar_type() == stats, "instance_norm: ", name, " has dtype ", t.scalar_type(), ", expected ",
                stats);
}

// x: [N, C, H, W] on the CPU, dense NCHW or channels_last. The arguments' fields for x and the statistics.
InstanceNormArgs make_args(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd, int64_t act,
                           double alpha) {
  GK_CHECK(x.dim() == 4, "instance_norm: x must be [N, C, H, W], got shape ", x.sizes());
  GK_CHECK(x.device().is_cpu(), "instance_norm: the compiled kernels run on CPU tensors only, got ", x.device());
  const bool nchw = x.is_contiguous();
  GK_CHECK(nchw || x.is_contiguous(at::MemoryFormat::ChannelsLast),
           "instance_norm: x must be dense, contiguous or channels_last; got strides ", x.strides());
  GK_CHECK(act >= 1 && act <= 3, "instance_norm: act must be 1 (linear), 2 (relu) or 3 (lrelu), got ", act);
  InstanceNormArgs p;
  p.n = x.size(0);
  p.c = x.size(1);
  p.hw = x.size(2) * x.size(3);
  GK_CHECK(p.hw >= 1 || x.numel() == 0, "instance_norm: x must have H * W >= 1, got shape ", x.sizes());
  p.channels_last = !nchw;
  p.dtype = dtype_of(x);
  p.act = static_cast<int>(act);
  p.alpha = alpha;
  check_stats(mean, x, "mean");
  check_stats(rstd, x, "rstd");
  p.x = x.data_ptr();
  return p;
}

// `t` must have x's shape, dtype and device, dense in the layout the kernels walk.
void check_image(const at::Tensor& t, const at::Tensor& x, bool channels_last, const char* name) {
  GK_CHECK(t.device() == x.device(), "instance_norm: ", name, " is on ", t.device(), ", expected ", x.device());
  GK_CHECK_TYPE(t.scalar_type() == x.scalar_type(), "instance_norm: ", name, " has dtype ", t.scalar_type(),
                ", expected ", x.scalar_type());
  GK_CHECK(t.sizes() == x.sizes(), "instance_norm: ", name, " has shape ", t.sizes(), ", expected ", x.sizes());
  const bool ok = channels_last ? t.is_contiguous(at::MemoryFormat::ChannelsLast) : t.is_contiguous();
  GK_CHECK(ok, "instance_norm: ", name, " must be dense in x's memory format (",
           channels_last ? "channels_last" : "contiguous", "); got strides ", t.strides());
}

// weight / bias: None, or a contiguous [C] of x's dtype on x's device.
const void* channel_vector(const std::optional<at::Tensor>& t, const at::Tensor& x, const char* name) {
  if (!t.has_value()) return nullptr;
  GK_CHECK(t->device() == x.device() && t->dim() == 1 && t->size(0) == x.size(1) && t->is_contiguous(),
           "instance_norm: ", name, " must be a contiguous [C] = [", x.size(1), "] tensor on ", x.device(),
           ", got shape ", t->sizes());
  GK_CHECK_TYPE(t->scalar_type() == x.scalar_type(), "instance_norm: ", name, " has dtype ", t->scalar_type(),
                ", expected ", x.scalar_type());
  return t->data_ptr();
}

}  // namespace

void instance_norm_forward(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                           const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                           const at::Tensor& y, const at::Tensor& mean, const at::Tensor& rstd, int64_t act,
                           double alpha, double eps) {
  InstanceNormArgs p = make_args(x, mean, rstd, act, alpha);
  GK_CHECK(eps >= 0, "instance_norm: eps must be >= 0, got ", eps);
  p.eps = eps;
  check_image(y, x, p.channels_last, "y");
  p.weight = channel_vector(weight, x, "weight");
  p.bias = channel_vector(bias, x, "bias");
  if (residual.has_value()) {
    check_image(*residual, x, p.channels_last, "residual");
    p.residual = residual->data_ptr();
  }
  if (x.numel() == 0) return;
  for (const at::Tensor* out : {&y, &mean, &rstd}) {
    check_no_overlap("instance_norm", *out, {&x});
    if (residual.has_value()) check_no_overlap("instance_norm", *out, {&*residual});
  }
  check_no_overlap("instance_norm", mean, {&rstd});
  p.y = y.data_ptr();
  p.mean = mean.data_ptr();
  p.rstd = rstd.data_ptr();
  instance_norm_forward_cpu(p, at::get_num_threads());
}

void instance_norm_backward(const at::Tensor& g, const at::Tensor& x, const std::optional<at::Tensor>& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& mean, const at::Tensor& rstd,
                            const at::Tensor& dx, const at::Tensor& dweight_partial, const at::Tensor& dbias_partial,
                            int64_t act, double alpha) {
  InstanceNormArgs p = make_args(x, mean, rstd, act, alpha);
  check_image(g, x, p.channels_last, "g");
  check_image(dx, x, p.channels_last, "dx");
  check_stats(dweight_partial, x, "dweight_partial");
  check_stats(dbias_partial, x, "dbias_partial");
  p.weight = channel_vector(weight, x, "weight");
  p.bias = channel_vector(bias, x, "bias");
  if (x.numel() == 0) return;
  for (const at::Tensor* out : {&dx, &dweight_partial, &dbias_partial}) {
    check_no_overlap("instance_norm", *out, {&g, &x, &mean, &rstd});
  }
  check_no_overlap("instance_norm", dweight_partial, {&dbias_partial, &dx});
  p.g = g.data_ptr();
  p.mean = mean.data_ptr();
  p.rstd = rstd.data_ptr();
  p.dx = dx.data_ptr();
  p.dweight_partial = dweight_partial.data_ptr();
  p.dbias_partial = dbias_partial.data_ptr();
  instance_norm_backward_cpu(p, at::get_num_threads());
}

}  // namespace gankernels
