"""Triton kernels of grid_sample (bilinear): the forward, and (dx, dgrid) in one backward kernel.

x, y, dy and dx are addressed through strides, so NCHW and channels_last run without a copy; grid is a contiguous
[N, Ho, Wo, 2]. A program owns a block of BLOCK_P output points of one sample and a chunk of channels, walked as
[BLOCK_P, BLOCK_C] tiles: the points' coordinates and corners are computed once and reused for every channel of the
chunk. The coordinate math is torch's CPU kernel's (gankernels/reference/grid_sample.py, the same formula in torch
ops). fp16/bf16/fp32 are computed in fp32, fp64 in fp64 (no float scalar arguments: sizes are ints, constants exact).

Determinism: the forward and dgrid are deterministic (dgrid: per-chunk partial sums over the channels, reduced in a
fixed order by the launcher). dx is NOT: the backward with respect to x is a scatter (each output point adds
w_k dy to its four corner pixels) and this kernel does it with float atomic adds (tl.atomic_add) into dx (an fp32
buffer for fp16/bf16), so when several output points sample the same input pixel the order of their additions, and
so dx's last bits, can change from run to run (about 1 ulp of fp32 per colliding addition). A deterministic scatter
needs the points sorted by pixel (a sort per call for arbitrary grids); torch's CUDA grid_sample backward uses atomics
too. With torch.use_deterministic_algorithms(True), gankernels.ops.grid_sample takes dx from the reference formula.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

INT64_FROM = 2**31  # tensors with this many elements (or offsets) or more are indexed in int64
NUM_WARPS = 4  # a guess: not yet benchmarked on a GPU
# elements per [BLOCK_P, BLOCK_C] tile; the backward holds more per element (4 loads, 4 atomics, the grid sums): at 1024
# it spilled 72-992 registers on sm_80/sm_90 (tools/triton_compile_check.py), at 256 none (fp32)
TILE_FWD = 512
TILE_BWD = 256
TARGET_PROGRAMS = 4096  # channel chunks are split until about this many programs run


@triton.jit
def _clip(c, size, CD: tl.constexpr):
    """c clamped to [0, size - 1] (NaN -> 0), and whether it was strictly inside."""
    hi = (size - 1).to(CD)
    inside = (c > 0) & (c < hi)
    return tl.where(inside, c, tl.where(c >= hi, hi, 0.0)), inside


@triton.jit
def _source_index(g, size, PADDING: tl.constexpr, ALIGN: tl.constexpr, CD: tl.constexpr):
    """Grid values g -> (pixel coordinate, d coordinate / d g) along an axis of `size` pixels."""
    if ALIGN:
        scale = (size - 1).to(CD) / 2
        c = (g + 1) * scale
    else:
        scale = size.to(CD) / 2
        c = (g + 1) * scale - 0.5
    mult = tl.zeros_like(c) + scale
    if PADDING == 1:  # border
        c, inside = _clip(c, size, CD)
        mult = tl.where(inside, mult, 0.0)
    elif PADDING == 2:  # reflection about the corner pixels' centres (ALIGN) or outer edges
        if ALIGN:
            low = 0.0
            twice_span = tl.maximum(2 * (size - 1), 1).to(CD)  # (1 for one pixel: no 0 / 0; replaced below)
        else:
            low = -0.5
            twice_span = (2 * size).to(CD)
        u = c - low
        a = tl.abs(u)
        if CD == tl.float64:
            q = a / twice_span
        else:
            q = tl.math.div_rn(a, twice_span)  # IEEE division, as the reference (Triton's fp32 `/` is approximate)
        extra = a - tl.floor(q) * twice_span  # a mod twice_span; NaN for inf, NaN
        flip = extra > twice_span - extra
        sign = tl.where(flip ^ (u < 0), -1.0, 1.0)
        c, inside = _clip(tl.where(flip, twice_span - extra, extra) + low, size, CD)
        mult = tl.where(inside, sign * mult, 0.0)
        if ALIGN:  # one pixel: an empty reflection span, every point at pixel 0
            empty = size <= 1
            c = tl.where(empty, 0.0, c)
            mult = tl.where(empty, 0.0, mult)
    return c, mult


@triton.jit
def _corners(grid_ptr, n, p, p_mask, H, W, P, PADDING: tl.constexpr, ALIGN: tl.constexpr, CD: tl.constexpr):
    """Per point of the block: the distances to its cell's sides (dn, ds, dw, de), the corner pixels (x0, x1, y0, y1;
    0 where outside), their validity, and d (ix, iy) / d grid."""
    g = grid_ptr + (n * P + p) * 2
    gx = tl.load(g, mask=p_mask, other=0.0).to(CD)
    gy = tl.load(g + 1, mask=p_mask, other=0.0).to(CD)
    ix, mult_x = _source_index(gx, W, PADDING, ALIGN, CD)
    iy, mult_y = _source_index(gy, H, PADDING, ALIGN, CD)
    fx0 = tl.floor(ix)
    fy0 = tl.floor(iy)
    dw = ix - fx0
    dn = iy - fy0
    # validity compared in floating point: huge, infinite and NaN coordinates never reach an integer conversion
    vx0 = (fx0 >= 0) & (fx0 <= (W - 1).to(CD))
    vx1 = (fx0 >= -1) & (fx0 <= (W - 2).to(CD))
    vy0 = (fy0 >= 0) & (fy0 <= (H - 1).to(CD))
    vy1 = (fy0 >= -1) & (fy0 <= (H - 2).to(CD))
    x0 = tl.where(vx0, fx0, 0.0).to(tl.int32)
    x1 = tl.where(vx1, fx0 + 1, 0.0).to(tl.int32)
    y0 = tl.where(vy0, fy0, 0.0).to(tl.int32)
    y1 = tl.where(vy1, fy0 + 1, 0.0).to(tl.int32)
    return dn, 1 - dn, dw, 1 - dw, x0, x1, y0, y1, vx0, vx1, vy0, vy1, mult_x, mult_y


@triton.jit
def _program(P, C, chunk, BLOCK_P: tl.constexpr, INT64: tl.constexpr):
    """(sample n, the block's points [BLOCK_P] and mask, the chunk's channel range [c_start, c_end))."""
    pid = tl.program_id(0)
    cid = tl.program_id(1)
    if INT64:
        pid = pid.to(tl.int64)
        cid = cid.to(tl.int64)
    blocks = tl.cdiv(P, BLOCK_P)
    n = pid // blocks
    p = (pid % blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    if INT64:
        p = p.to(tl.int64)
    c_start = cid * chunk
    return n, p, p < P, c_start, tl.minimum(c_start + chunk, C)


@triton.jit(do_not_specialize=["C", "H", "W", "P", "chunk"])  # sizes of 1 must stay tensors (.to in _source_index)
def _grid_sample_fwd_kernel(
    x_ptr, grid_ptr, y_ptr, C, H, W, P, chunk, sx_n, sx_c, sx_h, sx_w, sy_n, sy_c, sy_p,
    PADDING: tl.constexpr, ALIGN: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    CD: tl.constexpr = tl.float64 if F64 else tl.float32
    n, p, p_mask, c_start, c_end = _program(P, C, chunk, BLOCK_P, INT64)
    dn, ds, dw, de, x0, x1, y0, y1, vx0, vx1, vy0, vy1, _, _ = _corners(
        grid_ptr, n, p, p_mask, H, W, P, PADDING, ALIGN, CD
    )
    if INT64:
        x0, x1, y0, y1 = x0.to(tl.int64), x1.to(tl.int64), y0.to(tl.int64), y1.to(tl.int64)
    # corner k: offset within the channel plane [BLOCK_P, 1], mask, weight; torch's order nw, ne, sw, se
    o_nw = (y0 * sx_h + x0 * sx_w)[:, None]
    o_ne = (y0 * sx_h + x1 * sx_w)[:, None]
    o_sw = (y1 * sx_h + x0 * sx_w)[:, None]
    o_se = (y1 * sx_h + x1 * sx_w)[:, None]
    m_nw = (p_mask & vy0 & vx0)[:, None]
    m_ne = (p_mask & vy0 & vx1)[:, None]
    m_sw = (p_mask & vy1 & vx0)[:, None]
    m_se = (p_mask & vy1 & vx1)[:, None]
    w_nw = (ds * de)[:, None]
    w_ne = (ds * dw)[:, None]
    w_sw = (dn * de)[:, None]
    w_se = (dn * dw)[:, None]
    x_n = x_ptr + n * sx_n
    y_n = y_ptr + n * sy_n + (p * sy_p)[:, None]
    for c0 in range(c_start, c_end, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        c_mask = (c < c_end)[None, :]
        x_c = x_n + (c * sx_c)[None, :]
        out = tl.load(x_c + o_nw, mask=m_nw & c_mask, other=0.0).to(CD) * w_nw
        out += tl.load(x_c + o_ne, mask=m_ne & c_mask, other=0.0).to(CD) * w_ne
        out += tl.load(x_c + o_sw, mask=m_sw & c_mask, other=0.0).to(CD) * w_sw
        out += tl.load(x_c + o_se, mask=m_se & c_mask, other=0.0).to(CD) * w_se
        tl.store(y_n + (c * sy_c)[None, :], out.to(y_ptr.dtype.element_ty), mask=p_mask[:, None] & c_mask)


@triton.jit(do_not_specialize=["N", "C", "H", "W", "P", "chunk"])
def _grid_sample_bwd_kernel(
    dy_ptr, x_ptr, grid_ptr, dx_ptr, partial_ptr, N, C, H, W, P, chunk,
    sx_n, sx_c, sx_h, sx_w, sd_n, sd_c, sd_p, sdx_n, sdx_c, sdx_h, sdx_w,
    PADDING: tl.constexpr, ALIGN: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr,
    WANT_X: tl.constexpr, WANT_GRID: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    # dx[corner k] += w_k dy (atomics: see the module docstring); partial[chunk, n, p] = this chunk's channel sums of
    # dy d y / d (ix, iy), times d (ix, iy) / d grid
    CD: tl.constexpr = tl.float64 if F64 else tl.float32
    n, p, p_mask, c_start, c_end = _program(P, C, chunk, BLOCK_P, INT64)
    dn, ds, dw, de, x0, x1, y0, y1, vx0, vx1, vy0, vy1, mult_x, mult_y = _corners(
        grid_ptr, n, p, p_mask, H, W, P, PADDING, ALIGN, CD
    )
    if INT64:
        x0, x1, y0, y1 = x0.to(tl.int64), x1.to(tl.int64), y0.to(tl.int64), y1.to(tl.int64)
    m_nw = (p_mask & vy0 & vx0)[:, None]
    m_ne = (p_mask & vy0 & vx1)[:, None]
    m_sw = (p_mask & vy1 & vx0)[:, None]
    m_se = (p_mask & vy1 & vx1)[:, None]
    d_n = dy_ptr + n * sd_n + (p * sd_p)[:, None]
    gx = tl.zeros([BLOCK_P], CD)
    gy = tl.zeros([BLOCK_P], CD)
    for c0 in range(c_start, c_end, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        c_mask = (c < c_end)[None, :]
        go = tl.load(d_n + (c * sd_c)[None, :], mask=p_mask[:, None] & c_mask, other=0.0).to(CD)
        if WANT_X:
            dx_c = dx_ptr + n * sdx_n + (c * sdx_c)[None, :]
            acc_ty = dx_ptr.dtype.element_ty
            tl.atomic_add(dx_c + (y0 * sdx_h + x0 * sdx_w)[:, None], (go * (ds * de)[:, None]).to(acc_ty),
                          mask=m_nw & c_mask)  # fmt: skip
            tl.atomic_add(dx_c + (y0 * sdx_h + x1 * sdx_w)[:, None], (go * (ds * dw)[:, None]).to(acc_ty),
                          mask=m_ne & c_mask)  # fmt: skip
            tl.atomic_add(dx_c + (y1 * sdx_h + x0 * sdx_w)[:, None], (go * (dn * de)[:, None]).to(acc_ty),
                          mask=m_sw & c_mask)  # fmt: skip
            tl.atomic_add(dx_c + (y1 * sdx_h + x1 * sdx_w)[:, None], (go * (dn * dw)[:, None]).to(acc_ty),
                          mask=m_se & c_mask)  # fmt: skip
        if WANT_GRID:
            x_c = x_ptr + n * sx_n + (c * sx_c)[None, :]
            v_nw = tl.load(x_c + (y0 * sx_h + x0 * sx_w)[:, None], mask=m_nw & c_mask, other=0.0).to(CD)
            v_ne = tl.load(x_c + (y0 * sx_h + x1 * sx_w)[:, None], mask=m_ne & c_mask, other=0.0).to(CD)
            v_sw = tl.load(x_c + (y1 * sx_h + x0 * sx_w)[:, None], mask=m_sw & c_mask, other=0.0).to(CD)
            v_se = tl.load(x_c + (y1 * sx_h + x1 * sx_w)[:, None], mask=m_se & c_mask, other=0.0).to(CD)
            # d y / d ix = (v_ne - v_nw) s + (v_se - v_sw) n; d y / d iy = (v_sw - v_nw) e + (v_se - v_ne) w
            gx += tl.sum(go * ((v_ne - v_nw) * ds[:, None] + (v_se - v_sw) * dn[:, None]), axis=1)
            gy += tl.sum(go * ((v_sw - v_nw) * de[:, None] + (v_se - v_ne) * dw[:, None]), axis=1)
    if WANT_GRID:
        out = partial_ptr + ((tl.program_id(1) * N + n) * P + p) * 2
        tl.store(out, gx * mult_x, mask=p_mask)
        tl.store(out + 1, gy * mult_y, mask=p_mask)


def _meta(x: torch.Tensor, p: int, numel: int, tile: int) -> tuple[dict, tuple[int, int], int]:
    """(kernel meta-parameters, launch grid, channels per program) for x [N, C, H, W] and p output points."""
    n, c = x.shape[:2]
    channels_last = x.dim() == 4 and c > 1 and x.stride(1) == 1
    block_c = min(triton.next_power_of_2(max(c, 1)), 64 if channels_last else 4)
    block_p = max(16, tile // block_c)
    point_programs = n * triton.cdiv(p, block_p)
    chunks = max(1, min(triton.cdiv(c, block_c), triton.cdiv(TARGET_PROGRAMS, max(point_programs, 1)), 65535))
    chunk = triton.cdiv(triton.cdiv(c, chunks), block_c) * block_c
    chunks = triton.cdiv(c, chunk)
    numel = max(numel, chunks * n * p * 2)  # the backward's dgrid partials
    meta = {
        "F64": x.dtype == torch.float64, "INT64": numel >= INT64_FROM, "BLOCK_P": block_p, "BLOCK_C": block_c,
        "num_warps": NUM_WARPS,
    }  # fmt: skip
    return meta, (point_programs, chunks), chunk


def _image_strides(t: torch.Tensor) -> tuple[int, int, int]:
    """(n, c, p) strides of a dense [N, C, Ho, Wo] tensor, its Ho and Wo merged into one point index p."""
    return t.stride(0), t.stride(1), t.stride(3) if t.shape[3] > 1 else t.stride(2)


def _largest(*tensors) -> int:
    """The largest element count or offset + 1 among the tensors."""
    spans = [sum((s - 1) * st for s, st in zip(t.shape, t.stride(), strict=True)) + 1 for t in tensors]
    return max(max(t.numel() for t in tensors), *spans)


def grid_sample_forward(x, grid, out, padding: int, align_corners: bool) -> None:
    """out [N, C, Ho, Wo] = bilinear samples of x [N, C, H, W] at grid [N, Ho, Wo, 2] (contiguous); x and out
    dense in one memory format; padding 0 zeros, 1 border, 2 reflection."""
    n, c, h, w = x.shape
    p = grid.shape[1] * grid.shape[2]
    if out.numel() == 0:
        return
    meta, launch, chunk = _meta(x, p, _largest(x, grid, out), TILE_FWD)
    _grid_sample_fwd_kernel[launch](
        x, grid, out, c, h, w, p, chunk, *x.stride(), *_image_strides(out),
        PADDING=padding, ALIGN=bool(align_corners), **meta,
    )  # fmt: skip


def grid_sample_backward(dy, x, grid, dx, dgrid, padding: int, align_corners: bool) -> None:
    """dx (like x) and / or dgrid (like grid, contiguous) of <dy, grid_sample(x, grid)>; None: not wanted.
    dy is dense in x's memory format."""
    n, c, h, w = x.shape
    p = grid.shape[1] * grid.shape[2]
    if dy.numel() == 0:
        for t in (dx, dgrid):
            if t is not None:
                t.zero_()
        return
    meta, launch, chunk = _meta(x, p, _largest(dy, x, grid), TILE_BWD)
    acc = None
    if dx is not None:  # atomics accumulate in fp32 (fp64 for fp64)
        acc = dx.zero_() if dx.dtype in (torch.float32, torch.float64) else torch.zeros_like(dx, dtype=torch.float32)
    partial = None
    if dgrid is not None:
        cd = torch.float64 if x.dtype == torch.float64 else torch.float32
        partial = torch.empty((launch[1], n, p, 2), dtype=cd, device=x.device)
    _grid_sample_bwd_kernel[launch](
        dy, x, grid, x if acc is None else acc, x if partial is None else partial, n, c, h, w, p, chunk,
        *x.stride(), *_image_strides(dy), *(x if acc is None else acc).stride(),
        PADDING=padding, ALIGN=bool(align_corners), WANT_X=acc is not None, WANT_GRID=partial is not None, **meta,
    )  # fmt: skip
    if acc is not None and acc is not dx:
        dx.copy_(acc)
    if partial is not None:
        dgrid.copy_(partial.sum(dim=0).reshape(dgrid.shape))
