"""Triton kernels of minibatch_std (StyleGAN2 D's epilogue): per group-of-samples statistics, the output's copy of x
and its statistic maps; the whole gradient in one kernel.

Tensors are [N, C, H, W] addressed through strides (n, c, hw), so NCHW, channels_last and other layouts whose H and W
merge into one pixel index run without a copy. With G samples per group and M = N / G groups, sample n = g M + m is
in group m; channel part f holds channels [f c, (f + 1) c). A program owns one (group m, part f) and a chunk of its
c * H * W elements, as tiles of [G, BLOCK]: every sample of the group in registers, so the variance over the group
is exact (two-pass) per element. Tiles walk channels first for channels_last inputs (contiguous along C), pixels first
otherwise. fp16/bf16/fp32 are computed in fp32, fp64 in fp64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.minibatch_std import EPS
from ._common import INT64_FROM, compute_dtype, is_f64, load, next_pow2, scalar, scalar_arg

MAX_TILE = 4096  # elements per [G, BLOCK] tile; tests lower it to reach the multi-tile, multi-chunk paths
TILES = 8  # tiles per program: one partial sum per TILES * BLOCK elements of a (group, part)
NUM_WARPS = 4  # a guess: not yet benchmarked on a GPU


@triton.jit
def _program(chunks, F, M, G, G_BLOCK: tl.constexpr, INT64: tl.constexpr):
    """(the program's id, chunk, part f, the group's samples [G_BLOCK] and their mask)."""
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    group_part = pid // chunks  # m F + f
    g = tl.arange(0, G_BLOCK)
    if INT64:
        g = g.to(tl.int64)
    return pid, pid % chunks, group_part % F, g * M + group_part // F, g < G


@triton.jit
def _element(j, c, HW, s_c, s_hw, CL: tl.constexpr):
    """Offset of element j of a channel part (c channels x HW pixels) from the part's first channel, [1, BLOCK]."""
    if CL:
        k = j % c
        hw = j // c
    else:
        k = j // HW
        hw = j % HW
    return (k * s_c + hw * s_hw)[None, :]


@triton.jit
def _group_stats(v, mask, G, eps):
    """v [G_BLOCK, BLOCK] (0 off the mask) -> (v - mean over the group, sqrt(biased variance + eps)) per element.

    Centred twice: v - mean is off by the rounding error of the mean (up to ulp(|mean|) / 2, large beside the spread
    for offset inputs), so the mean of the first differences is taken out again (the corrected two-pass form). The
    gradient d std / dv = d / (G std) relies on sum(d) = 0: with one pass its fp32 error grew with mean / std
    (10x the reference's at mean 3, std 0.5)."""
    mean = tl.sum(v, axis=0) / G
    d = tl.where(mask, v - mean[None, :], 0.0)
    d = tl.where(mask, d - (tl.sum(d, axis=0) / G)[None, :], 0.0)
    return d, tl.sqrt(tl.sum(d * d, axis=0) / G + eps)


@triton.jit
def _minibatch_std_fwd_kernel(
    x_ptr, out_ptr, partial_ptr, G, M, F, C, c, HW, chunks, sx_n, sx_c, sx_hw, so_n, so_c, so_hw, eps,
    FINISH: tl.constexpr, CL: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr, G_BLOCK: tl.constexpr,
    BLOCK: tl.constexpr, TILES: tl.constexpr,
):  # fmt: skip
    # out[:, :C] = x for the program's elements; partial[pid] = their sum of std, or when the (group, part) is one
    # chunk (FINISH) its statistic written straight into the group's maps
    pid, chunk, f, sample, g_mask = _program(chunks, F, M, G, G_BLOCK, INT64)
    eps = scalar(eps, F64)
    x_base = x_ptr + (sample * sx_n + f * c * sx_c)[:, None]
    o_base = out_ptr + (sample * so_n + f * c * so_c)[:, None]
    j0 = chunk * (TILES * BLOCK) + tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.float64 if F64 else tl.float32)
    for t in tl.static_range(TILES):
        j = j0 + t * BLOCK
        j_mask = j < c * HW
        mask = g_mask[:, None] & j_mask[None, :]
        raw = tl.load(x_base + _element(j, c, HW, sx_c, sx_hw, CL), mask=mask, other=0.0)
        tl.store(o_base + _element(j, c, HW, so_c, so_hw, CL), raw, mask=mask)
        _, std = _group_stats(raw.to(tl.float64) if F64 else raw.to(tl.float32), mask, G, eps)
        acc += tl.where(j_mask, std, 0.0)
    if FINISH:
        stat = tl.sum(acc, axis=0) / c / HW
        value = (tl.zeros([G_BLOCK, BLOCK], acc.dtype) + stat).to(out_ptr.dtype.element_ty)
        o_map = out_ptr + (sample * so_n + (C + f) * so_c)[:, None]
        for start in range(0, HW, BLOCK):
            hw = start + tl.arange(0, BLOCK)
            tl.store(o_map + (hw * so_hw)[None, :], value, mask=g_mask[:, None] & (hw < HW)[None, :])
    else:
        tl.store(partial_ptr + pid, tl.sum(acc, axis=0))


@triton.jit
def _minibatch_std_maps_kernel(
    partial_ptr, out_ptr, M, F, C, c, HW, chunks, so_n, so_c, so_hw,
    F64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    # program (n, f): out[n, C + f, :, :] = mean over part f and the pixels of group n % M's std
    pid = tl.program_id(0).to(tl.int64)
    n = pid // F
    f = pid % F
    partial_ptr += ((n % M) * F + f) * chunks
    idx = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.float64 if F64 else tl.float32)
    for start in range(0, chunks, BLOCK):
        acc += tl.load(partial_ptr + start + idx, mask=start + idx < chunks, other=0.0)
    stat = tl.sum(acc, axis=0) / c / HW
    value = (tl.zeros([BLOCK], acc.dtype) + stat).to(out_ptr.dtype.element_ty)
    base = out_ptr + n * so_n + (C + f) * so_c
    for start in range(0, HW, BLOCK):
        hw = start + idx
        tl.store(base + hw * so_hw, value, mask=hw < HW)


@triton.jit
def _minibatch_std_bwd_kernel(
    dout_ptr, x_ptr, dx_ptr, G, M, F, C, c, HW, chunks, sx_n, sx_c, sx_hw, sd_n, sd_c, sd_hw, sdx_n, sdx_c, sdx_hw,
    eps, CL: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr, G_BLOCK: tl.constexpr, BLOCK: tl.constexpr,
    TILES: tl.constexpr,
):  # fmt: skip
    pid, chunk, f, sample, g_mask = _program(chunks, F, M, G, G_BLOCK, INT64)
    # ds = the gradient of the group's statistic: dout's map C + f summed over the group's samples and pixels
    idx = tl.arange(0, BLOCK)
    d_map = dout_ptr + (sample * sd_n + (C + f) * sd_c)[:, None]
    acc = tl.zeros([G_BLOCK, BLOCK], tl.float64 if F64 else tl.float32)
    for start in range(0, HW, BLOCK):
        hw = start + idx
        acc += load(d_map, (hw * sd_hw)[None, :], g_mask[:, None] & (hw < HW)[None, :], F64)
    coef = tl.sum(tl.sum(acc, axis=1), axis=0) / c / HW / G  # ds / (c H W G)
    # dx = dout[:, :C] + ds / (c H W) * d std / dx, d std / dx_g = (x_g - mean) / (G std)
    x_base = x_ptr + (sample * sx_n + f * c * sx_c)[:, None]
    d_base = dout_ptr + (sample * sd_n + f * c * sd_c)[:, None]
    dx_base = dx_ptr + (sample * sdx_n + f * c * sdx_c)[:, None]
    j0 = chunk * (TILES * BLOCK) + idx
    for t in tl.static_range(TILES):
        j = j0 + t * BLOCK
        mask = g_mask[:, None] & (j < c * HW)[None, :]
        d, std = _group_stats(load(x_base, _element(j, c, HW, sx_c, sx_hw, CL), mask, F64), mask, G, scalar(eps, F64))
        dx = load(d_base, _element(j, c, HW, sd_c, sd_hw, CL), mask, F64) + coef * d / std[None, :]
        tl.store(dx_base + _element(j, c, HW, sdx_c, sdx_hw, CL), dx.to(dx_ptr.dtype.element_ty), mask=mask)


def pixel_strides(t: torch.Tensor) -> tuple[int, int, int] | None:
    """(n, c, hw) strides of t [N, C, H, W] when H and W merge into one pixel index (pixel hw at hw * its stride),
    else None."""
    _, _, h, w = t.shape
    if h > 1 and w > 1 and t.stride(2) != w * t.stride(3):
        return None
    return t.stride(0), t.stride(1), t.stride(3) if w > 1 else t.stride(2)


def _launch(x: torch.Tensor, group_size: int, num_channels: int, *others: torch.Tensor):
    """Grid size, sizes and compile-time arguments; every tensor's max offset decides int64 indexing."""
    n, channels, h, w = x.shape
    hw = h * w
    c = channels // num_channels
    s_n, s_c, s_hw = pixel_strides(x)
    g_block = next_pow2(group_size)
    block = max(1, min(next_pow2(c * hw), MAX_TILE // g_block))
    tiles = min(TILES, triton.cdiv(c * hw, block))
    chunks = triton.cdiv(c * hw, tiles * block)
    reach = max(sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride(), strict=True)) for t in (x, *others))
    meta = dict(
        CL=s_c < s_hw, F64=is_f64(x), INT64=reach + tiles * block * (s_c + s_hw) >= INT64_FROM,
        G_BLOCK=g_block, BLOCK=block, TILES=tiles, num_warps=NUM_WARPS,
    )  # fmt: skip
    groups = n // group_size
    eps = scalar_arg(EPS, is_f64(x))
    return groups * num_channels * chunks, (group_size, groups, num_channels), c, hw, chunks, eps, meta


def minibatch_std_forward(x, out, group_size, num_channels):
    """out = [x, statistic maps]: x [N, C, H, W], out [N, C + F, H, W], both with pixel_strides; G = group_size
    divides N, F = num_channels divides C."""
    programs, gmf, c, hw, chunks, eps, meta = _launch(x, group_size, num_channels, out)
    partial = torch.empty(programs, dtype=compute_dtype(x), device=x.device) if chunks > 1 else out  # out: unused there
    _minibatch_std_fwd_kernel[(programs,)](
        x, out, partial, *gmf, x.shape[1], c, hw, chunks, *pixel_strides(x), *pixel_strides(out), eps,
        FINISH=chunks == 1, **meta,
    )  # fmt: skip
    if chunks == 1:  # the first kernel wrote the maps
        return
    _minibatch_std_maps_kernel[(x.shape[0] * num_channels,)](
        partial, out, gmf[1], num_channels, x.shape[1], c, hw, chunks, *pixel_strides(out),
        F64=meta["F64"], BLOCK=max(1, min(1024, next_pow2(max(chunks, hw)))), num_warps=1,
    )  # fmt: skip


def minibatch_std_backward(dout, x, dx, group_size, num_channels):
    """dx = d<dout, minibatch_std(x)>/dx; dout [N, C + F, H, W], x and dx [N, C, H, W], all with pixel_strides."""
    programs, gmf, c, hw, chunks, eps, meta = _launch(x, group_size, num_channels, dout, dx)
    _minibatch_std_bwd_kernel[(programs,)](
        dout, x, dx, *gmf, x.shape[1], c, hw, chunks, *pixel_strides(x), *pixel_strides(dout), *pixel_strides(dx),
        eps, **meta,
    )  # fmt: skip
