"""Triton kernels of bias_act: one pass over the flat memory of a dense tensor (any layout).

The channel of flat element i is (i // step) % size (see gankernels.ops._common.inner_step). fp16/bf16 are
computed in fp32, fp64 in fp64. Activation codes follow gankernels.reference.bias_act.ACTIVATIONS.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference import bias_act as ref
from ._common import block_offsets, const, expm1, is_f64, launch_meta, load, log1p, scalar, scalar_arg

ACTIVATIONS = ref.ACTIVATIONS
# globals read inside @triton.jit must be constexpr; `const` makes them exact in fp64
SELU_SCALE = tl.constexpr(ref.SELU_SCALE)
SELU_ALPHA = tl.constexpr(ref.SELU_ALPHA)

BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _act(z, A: tl.constexpr, alpha):
    # forward activations; z = x + b. expm1 / log1p where exp(z) - 1 or log(1 + e) would cancel.
    if A == 1:  # linear
        r = z
    elif A == 2:  # relu
        r = tl.where(z > 0, z, 0.0)
    elif A == 3:  # lrelu
        r = tl.where(z > 0, z, z * alpha)
    elif A == 4:  # tanh = -sign(z) t / (t + 2), t = expm1(-2 |z|) in (-1, 0]: no cancellation near 0, no overflow
        t = expm1(-2.0 * tl.abs(z))
        r = -t / (t + 2.0)
        r = tl.where(z < 0, -r, r)
    elif A == 5:  # sigmoid
        r = 1.0 / (1.0 + tl.exp(-z))
    elif A == 6:  # elu
        r = tl.where(z >= 0, z, expm1(tl.minimum(z, 0.0)))
    elif A == 7:  # selu
        r = const(SELU_SCALE, z) * tl.where(z > 0, z, const(SELU_ALPHA, z) * expm1(tl.minimum(z, 0.0)))
    elif A == 8:  # softplus = max(z, 0) + log1p(exp(-|z|))
        r = tl.maximum(z, 0.0) + log1p(tl.exp(-tl.abs(z)))
    else:  # swish = z * sigmoid(z)
        r = z / (1.0 + tl.exp(-z))
    return r


@triton.jit
def _act_grad(ref, A: tl.constexpr, ORDER: tl.constexpr, alpha):
    # ORDER 1: act'(z); ORDER 2: d act'(z) / d(saved). `ref` is z for swish, else yy = y / gain.
    if A == 1:
        r = tl.full(ref.shape, 1.0, ref.dtype)
    elif A == 2:
        r = tl.where(ref > 0, 1.0, 0.0)
    elif A == 3:
        r = tl.where(ref > 0, 1.0, alpha)
    elif A == 4:
        r = 1.0 - ref * ref if ORDER == 1 else -2.0 * ref
    elif A == 5:
        r = ref * (1.0 - ref) if ORDER == 1 else 1.0 - 2.0 * ref
    elif A == 6:
        if ORDER == 1:
            r = tl.where(ref >= 0, 1.0, ref + 1.0)
        else:
            r = tl.where(ref >= 0, 0.0, 1.0)
    elif A == 7:
        if ORDER == 1:
            r = tl.where(ref > 0, const(SELU_SCALE, ref), ref + const(SELU_SCALE * SELU_ALPHA, ref))
        else:
            r = tl.where(ref > 0, 0.0, 1.0)
    elif A == 8:  # softplus' = 1 - exp(-y), as -expm1(-y): accurate where y is small (z << 0)
        r = -expm1(-ref) if ORDER == 1 else tl.exp(-ref)
    else:  # swish: s = sigmoid(z), sm = 1 - s = sigmoid(-z) (not 1 - s: it cancels for z >> 0);
        # act' = s + z s sm; act'' = s sm (2 + z (sm - s))
        s = 1.0 / (1.0 + tl.exp(-ref))
        sm = 1.0 / (1.0 + tl.exp(ref))
        r = s + ref * s * sm if ORDER == 1 else s * sm * (2.0 + ref * (sm - s))
    return r


@triton.jit
def _act_gain_clamp(z, alpha, gain, clamp, A: tl.constexpr, HAS_CLAMP: tl.constexpr):
    """clamp(act(z) gain, -clamp, clamp): the forward epilogue of bias_act, modulated_conv2d and fused_conv2d."""
    v = _act(z, A, alpha) * gain
    if HAS_CLAMP:
        v = tl.where(v > clamp, clamp, tl.where(v < -clamp, -clamp, v))  # NaN stays NaN, as torch.clamp
    return v


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
    y = _act_gain_clamp(z, scalar(alpha, F64), scalar(gain, F64), scalar(clamp, F64), A, HAS_CLAMP)
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
    k = _act_grad(ref, A, ORDER, alpha)
    if ORDER == 1 or REF == 1:
        k = k * gain  # order 2 with a saved y needs no gain: d f1(y / gain) / dy * gain = f1'(yy)
    out = g * k
    if HAS_CLAMP:
        yc = load(y_ptr, offs, mask, F64)
        out = tl.where(tl.abs(yc) < clamp, out, 0.0)  # clamped outputs pass no gradient
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


# what the gradient kernel reads its factor from, by activation code: 0 nothing, 1 saved x, 2 saved y
_REF_BY_INDEX = {spec.index: {"": 0, "x": 1, "y": 2}[spec.ref] for spec in ACTIVATIONS.values()}


def _launch(t: torch.Tensor, alpha: float, gain: float, clamp: float):
    f64 = is_f64(t)
    n = t.numel()
    scalars = (scalar_arg(alpha, f64), scalar_arg(gain, f64), scalar_arg(clamp, f64))
    return dict(BLOCK=BLOCK, **launch_meta(t, n + BLOCK, NUM_WARPS)), scalars, n, (triton.cdiv(n, BLOCK),)


def bias_act_forward(x, b, y, step, size, act, alpha, gain, clamp):
    """y = clamp(act(x + b) * gain); all tensors dense and in one layout, b: [size] or None."""
    meta, scalars, n, grid = _launch(x, alpha, gain, clamp)
    _bias_act_fwd_kernel[grid](
        x, x if b is None else b, y, n, step, size, *scalars,
        A=act, HAS_B=b is not None, HAS_CLAMP=clamp >= 0, **meta,
    )  # fmt: skip


def bias_act_backward(g, m, x, b, y, out, step, size, act, alpha, gain, clamp, order, want_db=False):
    """out = g * m * K(saved) * mask; see gankernels.reference.bias_act.bias_act_grad.

    Returns None: no fused bias-gradient partials here (the caller reduces `out`)."""
    meta, scalars, n, grid = _launch(out, alpha, gain, clamp)
    ref = _REF_BY_INDEX[act]
    _bias_act_bwd_kernel[grid](
        g, g if m is None else m, g if x is None else x, g if b is None else b, g if y is None else y, out,
        n, step, size, *scalars,
        A=act, REF=ref, ORDER=order, HAS_M=m is not None, HAS_B=b is not None and ref == 1,
        HAS_CLAMP=clamp >= 0, **meta,
    )  # fmt: skip
