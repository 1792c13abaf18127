// bias_act: torch tensors in, kernel arguments out. Shapes and layouts were settled by gankernels/ops/bias_act.py.
#include "gankernels/bias_act.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>

#include "glue.h"
#include "ops.h"

namespace gankernels {
namespace {

void check_dim(const at::Tensor& t, int64_t dim) {
  GK_CHECK(dim >= 0 && dim < t.dim(), "bias_act: dim ", dim, " is out of range for ", t.dim(), " dimensions");
}

void check_bias(const std::optional<at::Tensor>& b, const at::Tensor& like, int64_t size) {
  if (!b.has_value()) return;
  GK_CHECK(b->device() == like.device(), "b is on ", b->device(), ", expected ", like.device());
  GK_CHECK_TYPE(b->scalar_type() == like.scalar_type(), "b has dtype ", b->scalar_type(), ", expected ",
                   like.scalar_type());
  GK_CHECK(b->dim() == 1 && b->numel() == size && b->is_contiguous(), "b must be contiguous of length ", size);
}

// The kernels' view of channel `dim` of a dense tensor: flat element i has channel (i / step) % size, with step the
// stride of `dim` (any step serves a dim of size 1).
BiasActArgs make_args(const at::Tensor& out, int64_t dim, int64_t act, double alpha, double gain, double clamp,
                      int64_t order) {
  GK_CHECK(act >= 1 && act <= 9, "bias_act: unknown activation code ", act);
  GK_CHECK(order >= 0 && order <= 2, "bias_act: order must be 0, 1 or 2, got ", order);
  GK_CHECK(out.is_non_overlapping_and_dense(), "bias_act: the output must be dense");
  BiasActArgs p;
  p.out = out.data_ptr();
  p.n = out.numel();
  p.size = out.size(dim);
  p.step = p.size > 1 ? out.stride(dim) : 1;
  p.act = static_cast<int>(act);
  p.order = static_cast<int>(order);
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  p.dtype = dtype_of(out);
  return p;
}

void launch(const BiasActArgs& p, const at::Tensor& out) {
  if (p.n == 0) return;
  run_on_device(
      out, "bias_act", [&](int threads) { bias_act_cpu(p, threads); },
      [&](void* stream) {
#ifdef GANKERNELS_WITH_CUDA
        return bias_act_cuda(p, stream);
#else
        (void)stream;
        return -1;
#endif
      });
}

}  // namespace

at::Tensor bias_act_forward(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, int64_t act,
                            double alpha, double gain, double clamp) {
  check_dim(x, dim);
  at::Tensor y = at::empty_like(x);  // x is dense: y has its strides
  if (y.numel() == 0) return y;
  check_like(x, y, "x");
  check_bias(b, y, y.size(dim));
  BiasActArgs p = make_args(y, dim, act, alpha, gain, clamp, 0);
  p.x = x.data_ptr();
  p.b = data_or_null(b);
  launch(p, y);
  return y;
}

std::tuple<at::Tensor, std::optional<at::Tensor>> bias_act_backward(
    const at::Tensor& g, const std::optional<at::Tensor>& m, const std::optional<at::Tensor>& x,
    const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& y, int64_t dim, int64_t act, double alpha,
    double gain, double clamp, int64_t order, bool want_db) {
  GK_CHECK(!want_db || order == 1, "bias_act_backward: the bias gradient is of order 1 only");
  // The gradient takes the layout of the saved tensor, so that it is never copied.
  at::Tensor out = at::empty_like(y.has_value() ? *y : x.has_value() ? *x : g);
  check_dim(out, dim);
  const int64_t size = out.size(dim);
  std::optional<at::Tensor> db;
  if (out.numel() == 0) {
    if (want_db) db = at::zeros({size}, out.options());
    return {out, db};
  }
  BiasActArgs p = make_args(out, dim, act, alpha, gain, clamp, order);
  check_like(g, out, "g");
  check_like(m, out, "m");
  check_like(x, out, "x");
  check_like(y, out, "y");
  check_bias(b, out, size);
  const int kind = bias_act_ref(p.act);
  GK_CHECK(kind != 1 || x.has_value(), "bias_act_backward: this activation needs the saved x");
  GK_CHECK(kind != 2 || y.has_value(), "bias_act_backward: this activation needs the saved y");
  GK_CHECK(clamp < 0 || y.has_value(), "bias_act_backward: clamp needs the saved y");
  GK_CHECK(order != 2 || m.has_value(), "bias_act_backward: order 2 needs m");
  p.g = g.data_ptr();
  p.m = data_or_null(m);
  p.x = data_or_null(x);
  p.b = kind == 1 ? data_or_null(b) : nullptr;
  p.y = data_or_null(y);
  if (want_db && out.is_cpu()) {  // the CPU kernel sums out per channel after its pass
    db = at::empty({size}, out.options());
    p.db = db->data_ptr();
  }
#ifdef GANKERNELS_WITH_CUDA
  // The fused bias gradient on CUDA: partial sums [n / (step * size), size, chunks], summed here.
  at::Tensor partial;
  if (want_db && out.is_cuda() && (p.db_chunks = bias_act_cuda_db_chunks(p)) > 0) {
    const auto acc = out.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    partial = at::empty({p.n / (p.step * size), size, p.db_chunks}, out.options().dtype(acc));
    p.db_partial = partial.data_ptr();
  }
#endif
  launch(p, out);
#ifdef GANKERNELS_WITH_CUDA
  if (want_db && out.is_cuda()) {
    // Without partials (rows too short for the row kernel): out's flat memory as [outer, size, step], summed.
    db = partial.defined() ? partial.sum({0, 2}).to(out.scalar_type())
                           : out.as_strided({p.n / (p.step * size), size, p.step}, {size * p.step, p.step, 1})
                                 .sum({0, 2});
  }
#endif
  return {out, db};
}

}  // namespace gankernels
