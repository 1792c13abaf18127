// grid_sample (bilinear): the launch arguments of the CPU kernels and the coordinate arithmetic they share.
// No torch header here (see common.h).
//
// Semantics: torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode, align_corners) for 4-D x, with
// the coordinate math of torch's CPU kernel (gankernels/reference/grid_sample.py is the same formula in torch ops):
//   ix = unnormalize(grid[n, i, j, 0], W), then the padding transform (zeros: none; border: clamp to [0, W - 1];
//   reflection: mirror at the borders, then clamp), likewise iy with H; y = sum over the 4 corners of w_k x[corner].
#pragma once

#include <cstdint>

#include "gankernels/common.h"

namespace gankernels {

enum class GridPadding : int { zeros = 0, border = 1, reflection = 2 };

// x, y, dy and dx are dense [N, C, H, W] / [N, C, Ho, Wo] tensors, all NCHW or all channels_last (NHWC in memory);
// grid and dgrid are contiguous [N, Ho, Wo, 2]. All of x's dtype. Backward: dx and/or dgrid (nullptr: not wanted).
struct GridSampleArgs {
  const void* x = nullptr;
  const void* grid = nullptr;
  const void* dy = nullptr;
  void* y = nullptr;
  void* dx = nullptr;
  void* dgrid = nullptr;
  int64_t n = 0, c = 0, h = 0, w = 0, ho = 0, wo = 0;
  GridPadding padding = GridPadding::zeros;
  bool align_corners = false;
  bool channels_last = false;
  DType dtype = DType::f32;
};

// One axis of `size` pixels: grid value -> pixel coordinate, and d coordinate / d grid value.
template <typename C>
struct GridAxis {
  int64_t size;
  GridPadding padding;
  bool align_corners;

  GK_HD C coordinate(C g, C& mult) const {
    const C scale = align_corners ? C(size - 1) / 2 : C(size) / 2;
    C c = align_corners ? (g + 1) * scale : (g + 1) * scale - C(0.5);
    mult = scale;
    if (padding == GridPadding::zeros) return c;
    C sign = 1;
    if (padding == GridPadding::reflection) {
      if (align_corners && size <= 1) {  // an empty reflection span: pixel 0
        mult = 0;
        return 0;
      }
      const C low = align_corners ? C(0) : C(-0.5);
      const C twice_span = align_corners ? C(2 * (size - 1)) : C(2 * size);
      const C u = c - low;
      const C a = std::fabs(u);
      const C whole = std::trunc(a / twice_span) * twice_span;
      const C extra = a - whole;                       // a mod twice_span (NaN for +-inf, NaN)
      const bool flip = extra > twice_span - extra;    // in the mirrored half of the period
      sign = (flip != (u < 0)) ? C(-1) : C(1);
      c = (flip ? twice_span - extra : extra) + low;
    }
    const C hi = C(size - 1);
    const bool inside = c > 0 && c < hi;             // strictly: the borders themselves get gradient 0, as torch
    mult = inside ? sign * scale : C(0);
    return inside ? c : (c >= hi ? hi : C(0));       // NaN -> 0
  }
};

// The four corners of a point: flat pixel indices (y * W + x; 0 when outside), weights, and a validity bit each
// (nw 1, ne 2, sw 4, se 8), plus the distances to the cell's sides for the grid gradient.
template <typename C>
struct GridTaps {
  int64_t index[4];
  C weight[4];
  int mask;
  C dn, ds, dw, de;
};

template <typename C>
GK_HD GridTaps<C> grid_taps(C ix, C iy, int64_t h, int64_t w) {
  GridTaps<C> t;
  const C x0 = std::floor(ix), y0 = std::floor(iy);
  t.dw = ix - x0;
  t.de = 1 - t.dw;
  t.dn = iy - y0;
  t.ds = 1 - t.dn;
  t.weight[0] = t.ds * t.de;
  t.weight[1] = t.ds * t.dw;
  t.weight[2] = t.dn * t.de;
  t.weight[3] = t.dn * t.dw;
  // validity compared in floating point: huge, infinite and NaN coordinates never reach an integer conversion
  const bool vx0 = x0 >= 0 && x0 <= C(w - 1), vx1 = x0 >= -1 && x0 <= C(w - 2);
  const bool vy0 = y0 >= 0 && y0 <= C(h - 1), vy1 = y0 >= -1 && y0 <= C(h - 2);
  const int64_t xi0 = vx0 ? int64_t(x0) : 0, xi1 = vx1 ? int64_t(x0) + 1 : 0;
  const int64_t yi0 = vy0 ? int64_t(y0) : 0, yi1 = vy1 ? int64_t(y0) + 1 : 0;
  t.index[0] = yi0 * w + xi0;
  t.index[1] = yi0 * w + xi1;
  t.index[2] = yi1 * w + xi0;
  t.index[3] = yi1 * w + xi1;
  t.mask = (vy0 && vx0 ? 1 : 0) | (vy0 && vx1 ? 2 : 0) | (vy1 && vx0 ? 4 : 0) | (vy1 && vx1 ? 8 : 0);
  return t;
}

// Kernel entry points (csrc/cpu/grid_sample.cpp).
void grid_sample_forward_cpu(const GridSampleArgs& args, int num_threads);
void grid_sample_backward_cpu(const GridSampleArgs& args, int num_threads);

}  // namespace gankernels
