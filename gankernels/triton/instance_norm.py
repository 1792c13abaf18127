"""Triton kernels of instance_norm_act: statistics, normalisation, affine, activation and residual in one kernel, and
the whole gradient (dx and the per-plane dweight / dbias partials) in another.

Each program owns BLOCK_C channels of one image and walks their H*W plane in tiles of [BLOCK_HW, BLOCK_C] elements,
addressed through strides, so both layouts run without a copy: NCHW takes BLOCK_C = 1 (one program per (n, c) plane,
contiguous along H*W), channels_last takes several channels per program (contiguous along C). A plane that fits in
one tile (ONE_PASS) is read once and kept in registers; a larger one is read twice (statistics, then output).
fp16/bf16/fp32 are computed in fp32, fp64 in fp64. Activation codes follow gankernels.reference.instance_norm.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import INT64_FROM, is_f64, load, next_pow2, scalar, scalar_arg

MAX_TILE = 4096  # elements per tile (BLOCK_HW * BLOCK_C); tests lower it to reach the multi-tile path
CL_BLOCK_C = 32  # channels per program for channels_last inputs
NUM_WARPS = 4  # 8 for tiles of 2048 elements or more (a guess: not yet benchmarked on a GPU)


@triton.jit
def _act(z, A: tl.constexpr, alpha):
    if A == 2:  # relu
        z = tl.where(z > 0, z, 0.0)
    elif A == 3:  # lrelu
        z = tl.where(z > 0, z, z * alpha)
    return z


@triton.jit
def _act_grad(g, z, A: tl.constexpr, alpha):
    # g * act'(z); act'(0) = 0 for relu and alpha for lrelu, as torch
    if A == 2:
        g = tl.where(z > 0, g, 0.0)
    elif A == 3:
        g = tl.where(z > 0, g, g * alpha)
    return g


@triton.jit
def _tile(c_stride, hw_stride, C, HW, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr, INT64: tl.constexpr):
    """(channel offsets [1, BLOCK_C] within an image, hw [BLOCK_HW], channels, their mask, the image's offset,
    n * C + c: the channels' index into the [N, C] statistics)."""
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = tl.arange(0, BLOCK_HW)
    if INT64:
        n = n.to(tl.int64)
        c = c.to(tl.int64)
        hw = hw.to(tl.int64)
    c_mask = c < C
    return c[None, :] * c_stride, hw, c, c_mask, n * C * HW, n * C + c


@triton.jit
def _affine(w_ptr, b_ptr, c, c_mask, HAS_W: tl.constexpr, HAS_B: tl.constexpr, F64: tl.constexpr):
    """weight and bias of the program's channels as [1, BLOCK_C] (1 and 0 when absent)."""
    if HAS_W:
        w = load(w_ptr, c, c_mask, F64)
    else:
        w = tl.full(c.shape, 1.0, tl.float64 if F64 else tl.float32)
    if HAS_B:
        b = load(b_ptr, c, c_mask, F64)
    else:
        b = tl.zeros(c.shape, tl.float64 if F64 else tl.float32)
    return w[None, :], b[None, :]


@triton.jit
def _instance_norm_fwd_kernel(
    x_ptr, w_ptr, b_ptr, r_ptr, y_ptr, mean_ptr, rstd_ptr,
    C, HW, c_stride, hw_stride, alpha, eps,
    A: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_R: tl.constexpr, F64: tl.constexpr,
    INT64: tl.constexpr, ONE_PASS: tl.constexpr, BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    c_offs, hw, c, c_mask, image, nc = _tile(c_stride, hw_stride, C, HW, BLOCK_C, BLOCK_HW, INT64)
    offs = c_offs + hw[:, None] * hw_stride  # the first tile, [BLOCK_HW, BLOCK_C]
    alpha, eps = scalar(alpha, F64), scalar(eps, F64)
    x_ptr += image
    y_ptr += image
    r_ptr += image
    cd = tl.float64 if F64 else tl.float32
    if ONE_PASS:  # the plane is one tile: exact two-pass statistics from registers
        mask = (hw < HW)[:, None] & c_mask[None, :]
        x = load(x_ptr, offs, mask, F64)
        mean = tl.sum(x, axis=0) / HW
        d = tl.where(mask, x - mean[None, :], 0.0)
        var = tl.sum(d * d, axis=0) / HW
    else:  # sums of x - k, k = the plane's first element: no catastrophic cancellation in E[(x-k)^2] - E[x-k]^2
        k = tl.sum(load(x_ptr, offs, (hw == 0)[:, None] & c_mask[None, :], F64), axis=0)
        s1 = tl.zeros([BLOCK_HW, BLOCK_C], cd)
        s2 = tl.zeros([BLOCK_HW, BLOCK_C], cd)
        for start in range(0, HW, BLOCK_HW):
            mask = (hw + start < HW)[:, None] & c_mask[None, :]
            o = c_offs + (hw + start)[:, None] * hw_stride
            d = tl.where(mask, load(x_ptr, o, mask, F64) - k[None, :], 0.0)
            s1 += d
            s2 += d * d
        mean_k = tl.sum(s1, axis=0) / HW  # mean - k
        var = tl.maximum(tl.sum(s2, axis=0) / HW - mean_k * mean_k, 0.0)
        mean = k + mean_k
    rstd = 1.0 / tl.sqrt(var + eps)
    tl.store(mean_ptr + nc, mean, mask=c_mask)
    tl.store(rstd_ptr + nc, rstd, mask=c_mask)

    w, b = _affine(w_ptr, b_ptr, c, c_mask, HAS_W, HAS_B, F64)
    mean = mean[None, :]
    scale = rstd[None, :] * w  # y = act((x - mean) * scale + b) + r
    if ONE_PASS:
        y = _act((x - mean) * scale + b, A, alpha)
        if HAS_R:
            y += load(r_ptr, offs, mask, F64)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        for start in range(0, HW, BLOCK_HW):
            mask = (hw + start < HW)[:, None] & c_mask[None, :]
            o = c_offs + (hw + start)[:, None] * hw_stride
            y = _act((load(x_ptr, o, mask, F64) - mean) * scale + b, A, alpha)
            if HAS_R:
                y += load(r_ptr, o, mask, F64)
            tl.store(y_ptr + o, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _instance_norm_bwd_kernel(
    g_ptr, x_ptr, w_ptr, b_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_ptr, db_ptr,
    C, HW, c_stride, hw_stride, alpha, eps,
    A: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, F64: tl.constexpr,
    INT64: tl.constexpr, ONE_PASS: tl.constexpr, BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    c_offs, hw, c, c_mask, image, nc = _tile(c_stride, hw_stride, C, HW, BLOCK_C, BLOCK_HW, INT64)
    offs = c_offs + hw[:, None] * hw_stride  # the first tile, [BLOCK_HW, BLOCK_C]
    alpha = scalar(alpha, F64)
    g_ptr += image
    x_ptr += image
    dx_ptr += image
    cd = tl.float64 if F64 else tl.float32
    mean = load(mean_ptr, nc, c_mask, F64)[None, :]
    rstd = load(rstd_ptr, nc, c_mask, F64)[None, :]
    w, b = _affine(w_ptr, b_ptr, c, c_mask, HAS_W, HAS_B, F64)
    k = rstd * w
    # xhat = (x - mean) rstd, z = xhat w + b (computed as the forward does), gz = g act'(z):
    # s_gz = sum gz (= dbias), s_gzx = sum gz xhat (= dweight)
    if ONE_PASS:
        mask = (hw < HW)[:, None] & c_mask[None, :]
        xm = load(x_ptr, offs, mask, F64) - mean
        xhat = xm * rstd
        gz = _act_grad(load(g_ptr, offs, mask, F64), xm * k + b, A, alpha)  # g = 0 off the plane: gz = 0
        s_gz = tl.sum(gz, axis=0)
        s_gzx = tl.sum(gz * xhat, axis=0)
    else:
        acc_gz = tl.zeros([BLOCK_HW, BLOCK_C], cd)
        acc_gzx = tl.zeros([BLOCK_HW, BLOCK_C], cd)
        for start in range(0, HW, BLOCK_HW):
            mask = (hw + start < HW)[:, None] & c_mask[None, :]
            o = c_offs + (hw + start)[:, None] * hw_stride
            xm = load(x_ptr, o, mask, F64) - mean
            xhat = xm * rstd
            gz = _act_grad(load(g_ptr, o, mask, F64), xm * k + b, A, alpha)
            acc_gz += gz
            acc_gzx += gz * xhat
        s_gz = tl.sum(acc_gz, axis=0)
        s_gzx = tl.sum(acc_gzx, axis=0)
    tl.store(db_ptr + nc, s_gz, mask=c_mask)
    tl.store(dw_ptr + nc, s_gzx, mask=c_mask)

    # dx = rstd w (gz - mean_hw(gz) - xhat mean_hw(gz xhat))
    m_gz = (s_gz / HW)[None, :]
    m_gzx = (s_gzx / HW)[None, :]
    if ONE_PASS:
        dx = k * (gz - m_gz - xhat * m_gzx)
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    else:
        for start in range(0, HW, BLOCK_HW):
            mask = (hw + start < HW)[:, None] & c_mask[None, :]
            o = c_offs + (hw + start)[:, None] * hw_stride
            xm = load(x_ptr, o, mask, F64) - mean
            xhat = xm * rstd
            gz = _act_grad(load(g_ptr, o, mask, F64), xm * k + b, A, alpha)
            dx = k * (gz - m_gz - xhat * m_gzx)
            tl.store(dx_ptr + o, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _launch(x: torch.Tensor, alpha: float, eps: float):
    """Grid, strides and compile-time arguments for a dense x: [N, C, H, W], NCHW or channels_last."""
    n, c, h, w = x.shape
    hw = h * w
    channels_last = c > 1 and hw > 1 and x.stride(1) == 1
    block_c = min(CL_BLOCK_C, next_pow2(c), MAX_TILE) if channels_last else 1
    block_hw = max(1, min(next_pow2(hw), MAX_TILE // block_c))
    c_stride, hw_stride = (1, c) if channels_last else (hw, 1)
    f64 = is_f64(x)
    meta = dict(
        F64=f64, INT64=x.numel() + block_hw * block_c >= INT64_FROM, ONE_PASS=hw <= block_hw,
        BLOCK_HW=block_hw, BLOCK_C=block_c, num_warps=NUM_WARPS * 2 if block_hw * block_c >= 2048 else NUM_WARPS,
    )  # fmt: skip
    sizes = (c, hw, c_stride, hw_stride, scalar_arg(alpha, f64), scalar_arg(eps, f64))
    return (n, triton.cdiv(c, block_c)), sizes, meta


def instance_norm_forward(x, weight, bias, residual, y, mean, rstd, act, alpha, eps):
    """y = act((x - mean) rstd * weight + bias) + residual; writes y and the statistics mean, rstd ([N, C]).

    x, residual, y dense in one layout; weight, bias contiguous [C] or None; act a kernel code (1 linear, 2 relu,
    3 lrelu)."""
    grid, sizes, meta = _launch(x, alpha, eps)
    _instance_norm_fwd_kernel[grid](
        x, x if weight is None else weight, x if bias is None else bias, x if residual is None else residual,
        y, mean, rstd, *sizes,
        A=act, HAS_W=weight is not None, HAS_B=bias is not None, HAS_R=residual is not None, **meta,
    )  # fmt: skip


def instance_norm_backward(g, x, weight, bias, mean, rstd, dx, dweight_partial, dbias_partial, act, alpha):
    """dx, and the per-plane partials [N, C] of dweight and dbias; see reference.instance_norm_act_grad.

    g, x, dx dense in one layout; mean, rstd, the partials contiguous [N, C] in the statistics' dtype."""
    grid, sizes, meta = _launch(x, alpha, 0.0)
    _instance_norm_bwd_kernel[grid](
        g, x, x if weight is None else weight, x if bias is None else bias, mean, rstd, dx, dweight_partial,
        dbias_partial, *sizes,
        A=act, HAS_W=weight is not None, HAS_B=bias is not None, **meta,
    )  # fmt: skip
