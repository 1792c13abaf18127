"""Pure-PyTorch bilinear grid_sample: the oracle of gankernels.ops.grid_sample and its fallback.

torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode, align_corners) for x [N, C, H, W] and
grid [N, Ho, Wo, 2] (grid[..., 0] is x / width, grid[..., 1] is y / height, both in [-1, 1] across the image), written
as unnormalize, the padding transform, floor, the four corner weights and masked gathers, so that autograd
differentiates it to any order. float16 / bfloat16 are computed in float32, float64 in float64. No argument checks
(gankernels.ops validates).

The coordinate arithmetic follows torch's CPU kernel (aten/src/ATen/native/cpu/GridSamplerKernel.cpp), so values and
first-order gradients equal torch's, and so do non-finite coordinates where torch defines them:
- zeros: every tap of a point whose coordinate is +-inf or NaN lies outside the image; its weights are NaN, so its
  output is NaN (as torch on CPU), it adds nothing to dx, and its grid gradient is NaN in the other coordinate.
  Points far outside (but finite) give 0.
- border: +inf clamps to the last pixel, -inf and NaN to the first (torch's forward on CPU); the clamped coordinate's
  gradient is 0 (torch's backward crashes on NaN here: ours gives 0).
- reflection: +-inf and NaN reflect to NaN, which clamps to the first pixel, gradient 0 (torch's forward; its backward
  crashes). Finite points reflect exactly while |coordinate| / (2 size) is exactly representable; beyond that the
  reflected position is rounding noise, clamped into the image, as in torch.
A clamped coordinate has gradient 0 at the image border itself (torch: the borders count as out of bounds).
"""

from __future__ import annotations

import torch

PADDING_MODES = ("zeros", "border", "reflection")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16 / bfloat16, else `dtype`."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def unnormalize(g: torch.Tensor, size: int, align_corners: bool) -> tuple[torch.Tensor, float]:
    """Grid values in [-1, 1] -> pixel coordinates along an axis of `size` pixels, and d coordinate / d g."""
    if align_corners:  # -1 and 1 are the centres of the corner pixels
        scale = (size - 1) / 2
        return (g + 1) * scale, scale
    scale = size / 2  # -1 and 1 are the outer edges of the corner pixels
    return (g + 1) * scale - 0.5, scale


def _clip(c: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """c clamped to [0, size - 1] (NaN -> 0), and the mask where it passed through (strictly inside)."""
    hi = size - 1
    inside = (c > 0) & (c < hi)
    bound = (c >= hi).to(c.dtype) * hi  # hi above, 0 below and for NaN; no gradient
    return torch.where(inside, c, bound), inside


def _reflect(c: torch.Tensor, size: int, align_corners: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """c reflected about the image borders (the corner pixels' centres, or edges without align_corners), and the
    sign of d reflected / d c (NaN and +-inf give NaN)."""
    low, twice_span = (0.0, 2.0 * (size - 1)) if align_corners else (-0.5, 2.0 * size)
    u = c - low
    a = u.abs()
    extra = a - torch.trunc(a / twice_span) * twice_span  # a mod twice_span
    flip = extra > twice_span - extra  # in the second, mirrored half of the period
    sign = torch.where(flip ^ (u < 0), -1.0, 1.0).to(c.dtype)
    return torch.where(flip, twice_span - extra, extra) + low, sign


def source_index(
    g: torch.Tensor, size: int, padding_mode: str, align_corners: bool
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Grid values g along one axis -> (pixel coordinate, differentiable in g; d coordinate / d g, a constant)."""
    c, scale = unnormalize(g, size, align_corners)
    if padding_mode == "zeros":
        return c, scale
    if padding_mode == "reflection":
        if align_corners and size <= 1:  # an empty reflection span: every point is pixel 0
            return torch.zeros_like(c), torch.zeros_like(c)
        c, sign = _reflect(c, size, align_corners)
        c, inside = _clip(c, size)
        return c, torch.where(inside, sign * scale, 0.0).to(c.dtype)
    c, inside = _clip(c, size)  # border
    return c, inside.to(c.dtype) * scale


def _taps(grid: torch.Tensor, h: int, w: int, padding_mode: str, align_corners: bool):
    """Per output point p (flattened Ho Wo): the coordinates, the interpolation terms and the four corners.

    grid [N, Ho, Wo, 2] in the compute dtype. Returns (terms, corners, mult): terms = (n, s, w, e) [N, P], the
    distances from the point to its cell's north, south, west and east sides; corners = [(weight [N, P], flat index
    [N, P] int64, valid [N, P] bool)] for nw, ne, sw, se; mult = (d ix / d grid_x, d iy / d grid_y), constants."""
    n_batch = grid.shape[0]
    ix, mult_x = source_index(grid[..., 0].reshape(n_batch, -1), w, padding_mode, align_corners)
    iy, mult_y = source_index(grid[..., 1].reshape(n_batch, -1), h, padding_mode, align_corners)
    x0 = torch.floor(ix).detach()
    y0 = torch.floor(iy).detach()
    dw = ix - x0  # distance to the west side
    de = 1 - dw
    dn = iy - y0
    ds = 1 - dn
    # validity compared in floating point, so huge, infinite and NaN coordinates never reach an integer conversion
    vx = ((x0 >= 0) & (x0 <= w - 1), (x0 >= -1) & (x0 <= w - 2))  # x0, x0 + 1 inside
    vy = ((y0 >= 0) & (y0 <= h - 1), (y0 >= -1) & (y0 <= h - 2))
    xs = (torch.where(vx[0], x0, 0).long(), torch.where(vx[1], x0 + 1, 0).long())
    ys = (torch.where(vy[0], y0, 0).long(), torch.where(vy[1], y0 + 1, 0).long())
    weights = ((ds * de, ds * dw), (dn * de, dn * dw))  # [row][col]: nw, ne / sw, se
    corners = [(weights[r][q], ys[r] * w + xs[q], vy[r] & vx[q]) for r in (0, 1) for q in (0, 1)]
    return (dn, ds, dw, de), corners, (mult_x, mult_y)


def _gather(xf: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """xf [N, C, H W] at index [N, P] -> [N, C, P], 0 where not valid."""
    vals = torch.gather(xf, 2, index[:, None, :].expand(-1, xf.shape[1], -1))
    return torch.where(valid[:, None, :], vals, 0)


def grid_sample(x: torch.Tensor, grid: torch.Tensor, padding_mode: str = "zeros", align_corners: bool = False):
    """Bilinear sample of x [N, C, H, W] at grid [N, Ho, Wo, 2] -> [N, C, Ho, Wo] in x's dtype (contiguous)."""
    n, c, h, w = x.shape
    ho, wo = grid.shape[1:3]
    cd = compute_dtype(x.dtype)
    _, corners, _ = _taps(grid.to(cd), h, w, padding_mode, align_corners)
    xf = x.to(cd).reshape(n, c, h * w)
    out = None
    for weight, index, valid in corners:  # (nw v_nw) + (ne v_ne) + (sw v_sw) + (se v_se), torch's order
        term = _gather(xf, index, valid) * weight[:, None, :]
        out = term if out is None else out + term
    return out.reshape(n, c, ho, wo).to(x.dtype)


def grid_sample_grad(
    dy: torch.Tensor,
    x: torch.Tensor,
    grid: torch.Tensor,
    padding_mode: str = "zeros",
    align_corners: bool = False,
    want_x: bool = True,
    want_grid: bool = True,
):
    """(dx [N, C, H, W], dgrid [N, Ho, Wo, 2]): the gradients of <dy, grid_sample(x, grid)>, written out in torch ops
    (differentiable again). dy: [N, C, Ho, Wo]. An entry not wanted is None.

    dx scatters dy times each corner's weight onto the valid corners; with v the masked corner values,
    dgrid_x = mult_x sum_c dy ((v_ne - v_nw) s + (v_se - v_sw) n), dgrid_y = mult_y sum_c dy ((v_sw - v_nw) e +
    (v_se - v_ne) w), mult the derivative of the padding transform (0 where a coordinate was clamped)."""
    n, c, h, w = x.shape
    cd = compute_dtype(x.dtype)
    (dn, ds, dw, de), corners, (mult_x, mult_y) = _taps(grid.to(cd), h, w, padding_mode, align_corners)
    go = dy.to(cd).reshape(n, c, -1)
    dx = dgrid = None
    if want_x:
        index = torch.cat([ix for _, ix, _ in corners], dim=1)[:, None, :].expand(-1, c, -1)
        src = torch.cat([torch.where(v[:, None, :], go * wt[:, None, :], 0) for wt, _, v in corners], dim=2)
        dx = torch.zeros(n, c, h * w, dtype=cd, device=x.device).scatter_add(2, index, src)
        dx = dx.reshape(n, c, h, w).to(x.dtype)
    if want_grid:
        xf = x.to(cd).reshape(n, c, h * w)
        v_nw, v_ne, v_sw, v_se = (_gather(xf, ix, v) for _, ix, v in corners)
        gx = (go * ((v_ne - v_nw) * ds[:, None] + (v_se - v_sw) * dn[:, None])).sum(dim=1)
        gy = (go * ((v_sw - v_nw) * de[:, None] + (v_se - v_ne) * dw[:, None])).sum(dim=1)
        dgrid = torch.stack([gx * mult_x, gy * mult_y], dim=-1).reshape(grid.shape).to(grid.dtype)
    return dx, dgrid
