"""Triton kernels of bias_act: one pass over the flat memory of a dense tensor (any layout).

The channel of flat element i is (i // step) % size, step the tensor's stride along `dim` (`_channels`, as the C++
glue's make_args). fp16/bf16 are computed in fp32, fp64 in fp64. Activation codes follow
gankernels.reference.bias_act.ACTIVATIONS; their math is gankernels.triton._common's (activation, activation_grad),
shared with the modulated conv and fused conv epilogues.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    INT64_FROM,
    REF_BY_INDEX,
    activation_gain_clamp,
    activation_grad,
    block_offsets,
    is_f64,
    launch_meta,
    load,
    scalar,
    scalar_arg,
)

BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _bias_act_fwd_kernel(
    x_ptr, b_ptr, y_ptr, n, step, size, alpha, gain, clamp,
    A: tl.constexpr, HAS_B: tl.constexpr, HAS_CLAMP: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n
    z = load(x_ptr, offs, mask, F64)
    if HAS_B:
        z += load(b_ptr, (offs // step) % size, mask, F64)  # channel of flat element i: (i // step) % size
    y = activation_gain_clamp(z, scalar(alpha, F64), scalar(gain, F64), scalar(clamp, F64), A, HAS_CLAMP)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bias_act_bwd_kernel(
    g_ptr, m_ptr, x_ptr, b_ptr, y_ptr, out_ptr, n, step, size, alpha, gain, clamp,
    A: tl.constexpr, REF: tl.constexpr, ORDER: tl.constexpr, HAS_M: tl.constexpr, HAS_B: tl.constexpr,
    HAS_CLAMP: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n
    alpha, gain, clamp = scalar(alpha, F64), scalar(gain, F64), scalar(clamp, F64)
    g = load(g_ptr, offs, mask, F64)
    if HAS_M:
        g *= load(m_ptr, offs, mask, F64)
    if REF == 1:  # saved x: the factor is a function of z = x + b
        ref = load(x_ptr, offs, mask, F64)
        if HAS_B:
            ref += load(b_ptr, (offs // step) % size, mask, F64)
    elif REF == 2:  # saved y: of yy = y / gain = act(z)
        ref = load(y_ptr, offs, mask, F64)
        ref = ref / gain if gain != 0 else ref * 0.0
    else:
        ref = g
    k = activation_grad(ref, A, ORDER, alpha)
    if ORDER == 1 or REF == 1:
        k = k * gain  # order 2 with a saved y needs no gain: d f1(y / gain) / dy * gain = f1'(yy)
    out = g * k
    if HAS_CLAMP:
        yc = load(y_ptr, offs, mask, F64)
        out = tl.where(tl.abs(yc) < clamp, out, 0.0)  # clamped outputs pass no gradient
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


def _launch(t: torch.Tensor, alpha: float, gain: float, clamp: float):
    f64 = is_f64(t)
    n = t.numel()
    scalars = (scalar_arg(alpha, f64), scalar_arg(gain, f64), scalar_arg(clamp, f64))
    return dict(BLOCK=BLOCK, **launch_meta(t, n + BLOCK, NUM_WARPS, INT64_FROM)), scalars, n, (triton.cdiv(n, BLOCK),)


def _channels(t: torch.Tensor, dim: int) -> tuple[int, int]:
    """(step, size): flat element i of dense t has channel (i // step) % size along `dim` (any step serves size 1)."""
    size = t.shape[dim]
    return (t.stride(dim) if size > 1 else 1), size


def bias_act_forward(x, b, dim, act, alpha, gain, clamp):
    """y = clamp(act(x + b) * gain) in x's layout; x dense, b: [x.shape[dim]] or None."""
    y = torch.empty_like(x)
    step, size = _channels(x, dim)
    if y.numel():
        meta, scalars, n, grid = _launch(x, alpha, gain, clamp)
        _bias_act_fwd_kernel[grid](
            x, x if b is None else b, y, n, step, size, *scalars,
            A=act, HAS_B=b is not None, HAS_CLAMP=clamp >= 0, **meta,
        )  # fmt: skip
    return y


def bias_act_backward(g, m, x, b, y, dim, act, alpha, gain, clamp, order, want_db):
    """(out, db): out = g * m * K(saved) * mask (see gankernels.reference.bias_act.bias_act_grad) in the saved
    tensor's layout, every given tensor dense in it; with want_db, db[c] = out summed over channel c, else None."""
    out = torch.empty_like(y if y is not None else x if x is not None else g)
    step, size = _channels(out, dim)
    if out.numel():
        meta, scalars, n, grid = _launch(out, alpha, gain, clamp)
        ref = REF_BY_INDEX[act]
        _bias_act_bwd_kernel[grid](
            g, g if m is None else m, g if x is None else x, g if b is None else b, g if y is None else y, out,
            n, step, size, *scalars,
            A=act, REF=ref, ORDER=order, HAS_M=m is not None, HAS_B=b is not None and ref == 1,
            HAS_CLAMP=clamp >= 0, **meta,
        )  # fmt: skip
    if not want_db:
        return out, None
    if not out.numel():
        return out, out.new_zeros([size])
    rows = out.as_strided((out.numel() // (step * size), size, step), (size * step, step, 1))  # its flat memory
    return out, rows.sum((0, 2))
