// upfirdn2d: torch tensors in, kernel arguments out. gankernels/ops/upfirdn2d.py validates user input with clear
// messages; the checks here keep the kernels in bounds whatever the caller passes.
#include "gankernels/upfirdn2d.h"

#include <ATen/MemoryOverlap.h>

#include <cstdlib>

#include "glue.h"
#include "ops.h"

namespace gankernels {
namespace {

constexpr int64_t kLimit = int64_t(1) << 30;  // bound on every per-axis coordinate, so kernels use int32 along an axis

// outW (or outH) of one axis, checking that all coordinates along it fit in an int32.
int64_t output_size(int64_t size, int64_t up, int64_t down, int64_t pad0, int64_t pad1, int64_t taps,
                    const char* axis) {
  GK_CHECK(up >= 1 && down >= 1 && up < kLimit && down < kLimit, "upfirdn2d: up", axis, " and down", axis,
              " must be positive, got ", up, " and ", down);
  GK_CHECK(std::llabs(pad0) < kLimit && std::llabs(pad1) < kLimit, "upfirdn2d: padding along ", axis,
              " is out of range: ", pad0, ", ", pad1);
  GK_CHECK(size < kLimit && taps < kLimit && size * up < kLimit, "upfirdn2d: the ", axis,
              " extent is too large: ", size, " x up ", up);
  const int64_t span = size * up + pad0 + pad1 - taps;  // padded upsampled length minus the filter's
  GK_CHECK(span >= 0, "upfirdn2d: along ", axis, " the padded upsampled input (", size * up + pad0 + pad1,
              ") is shorter than the filter (", taps, ")");
  const int64_t out = span / down + 1;
  GK_CHECK(size * up + std::llabs(pad0) + std::llabs(pad1) + taps + out * down < kLimit, "upfirdn2d: along ", axis,
              " the coordinates do not fit in 32 bits");
  return out;
}

}  // namespace

void upfirdn2d_forward(const at::Tensor& x, const at::Tensor& f, const at::Tensor& out, int64_t upx, int64_t upy,
                       int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                       bool flip, double gain) {
  GK_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got shape ", x.sizes());
  const DType dtype = dtype_of(x);
  const auto filter_type = dtype == DType::f64 ? at::kDouble : at::kFloat;
  GK_CHECK(f.dim() == 2 && f.size(0) >= 1 && f.size(1) >= 1,
              "upfirdn2d: f must be a non-empty [fh, fw] filter, got shape ", f.sizes());
  GK_CHECK(f.device() == x.device(), "upfirdn2d: f is on ", f.device(), ", expected ", x.device());
  GK_CHECK(f.scalar_type() == filter_type, "upfirdn2d: f has dtype ", f.scalar_type(), ", expected ", filter_type,
              " for x of dtype ", x.scalar_type());
  GK_CHECK(f.is_contiguous(), "upfirdn2d: f must be contiguous");
  GK_CHECK(out.device() == x.device(), "upfirdn2d: out is on ", out.device(), ", expected ", x.device());
  GK_CHECK(out.scalar_type() == x.scalar_type(), "upfirdn2d: out has dtype ", out.scalar_type(), ", expected ",
              x.scalar_type());

  const int64_t fh = f.size(0), fw = f.size(1);
  const int64_t out_w = output_size(x.size(3), upx, downx, padx0, padx1, fw, "x");
  const int64_t out_h = output_size(x.size(2), upy, downy, pady0, pady1, fh, "y");
  const std::vector<int64_t> expected = {x.size(0), x.size(1), out_h, out_w};
  GK_CHECK(out.sizes() == at::IntArrayRef(expected), "upfirdn2d: out has shape ", out.sizes(), ", expected ",
              at::IntArrayRef(expected));

  // Both NCHW, or both NHWC in memory. (A tensor that is both, such as C == 1, takes whichever the other allows.)
  const bool nchw = x.is_contiguous() && out.is_contiguous();
  const bool nhwc =
      x.is_contiguous(at::MemoryFormat::ChannelsLast) && out.is_contiguous(at::MemoryFormat::ChannelsLast);
  GK_CHECK(nchw || nhwc, "upfirdn2d: x and out must both be dense in one memory format (contiguous or "
              "channels_last); got strides ", x.strides(), " and ", out.strides());
  if (out.numel() == 0) return;
  for (const at::Tensor* input : {&x, &f}) {
    const auto overlap = at::get_overlap_status(out, *input);
    GK_CHECK(overlap != at::MemOverlapStatus::Full && overlap != at::MemOverlapStatus::Partial,
             "upfirdn2d: out overlaps an input; the kernels would read what they write");
  }
  if (x.numel() == 0) {  // empty image padded to a non-empty one: all zeros
    out.zero_();
    return;
  }

  Upfirdn2dArgs p;
  p.x = x.data_ptr();
  p.f = f.data_ptr();
  p.out = out.data_ptr();
  p.n = x.size(0);
  p.c = x.size(1);
  p.in_h = static_cast<int>(x.size(2));
  p.in_w = static_cast<int>(x.size(3));
  p.out_h = static_cast<int>(out_h);
  p.out_w = static_cast<int>(out_w);
  p.fh = static_cast<int>(fh);
  p.fw = static_cast<int>(fw);
  p.upx = static_cast<int>(upx);
  p.upy = static_cast<int>(upy);
  p.downx = static_cast<int>(downx);
  p.downy = static_cast<int>(downy);
  p.padx0 = static_cast<int>(padx0);
  p.padx1 = static_cast<int>(padx1);
  p.pady0 = static_cast<int>(pady0);
  p.pady1 = static_cast<int>(pady1);
  p.flip = flip;
  p.channels_last = !nchw;
  p.gain = gain;
  p.dtype = dtype;
  run_on_device(
      out, "upfirdn2d", [&](int threads) { upfirdn2d_cpu(p, threads); },
      [&](void* stream) {
#ifdef GANKERNELS_WITH_CUDA
        return upfirdn2d_cuda(p, stream);
#else
        (void)stream;
        return -1;
#endif
      });
}

}  // namespace gankernels
