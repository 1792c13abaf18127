"""Triton kernels of bias_act: one pass over the flat memory of a dense tensor (any layout).

The channel of flat element i is (i // step) % size (see gankernels.ops._common.inner_step). fp16/bf16 are
computed in fp32, fp64 in fp64. Activation codes follow gankernels.reference.bias_act.ACTIVATIONS.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference import bias_act as ref

ACTIVATIONS = ref.ACTIVATIONS
SELU_SCALE = tl.constexpr(ref.SELU_SCALE)  # globals read inside @triton.jit must be constexpr
SELU_ALPHA = tl.constexpr(ref.SELU_ALPHA)

BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _act(z, A: tl.constexpr, alpha):
    # forward activations; z = x + b
    if A == 1:  # linear
        r = z
    elif A == 2:  # relu
        r = tl.where(z > 0, z, 0.0)
    elif A == 3:  # lrelu
        r = tl.where(z > 0, z, z * alpha)
    elif A == 4:  # tanh = 1 - 2 / (exp(2z) + 1), saturating for large |z|
        r = 1.0 - 2.0 / (tl.exp(2.0 * tl.minimum(tl.maximum(z, -40.0), 40.0)) + 1.0)
    elif A == 5:  # sigmoid
        r = 1.0 / (1.0 + tl.exp(-z))
    elif A == 6:  # elu
        r = tl.where(z >= 0, z, tl.exp(tl.minimum(z, 0.0)) - 1.0)
    elif A == 7:  # selu
        r = SELU_SCALE * tl.where(z > 0, z, SELU_ALPHA * (tl.exp(tl.minimum(z, 0.0)) - 1.0))
    elif A == 8:  # softplus = max(z, 0) + log(1 + exp(-|z|))
        r = tl.maximum(z, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(z)))
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
            r = tl.where(ref > 0, SELU_SCALE, ref + SELU_SCALE * SELU_ALPHA)
        else:
            r = tl.where(ref > 0, 0.0, 1.0)
    elif A == 8:
        r = 1.0 - tl.exp(-ref) if ORDER == 1 else tl.exp(-ref)
    else:  # swish: s = sigmoid(z); act' = s + z s (1 - s); act'' = s (1 - s) (2 + z (1 - 2 s))
        s = 1.0 / (1.0 + tl.exp(-ref))
        r = s + ref * s * (1.0 - s) if ORDER == 1 else s * (1.0 - s) * (2.0 + ref * (1.0 - 2.0 * s))
    return r


@triton.jit
def _offsets(BLOCK: tl.constexpr, INT64: tl.constexpr):
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    return pid * BLOCK + tl.arange(0, BLOCK)


@triton.jit
def _load(ptr, offs, mask, F64: tl.constexpr):
    v = tl.load(ptr + offs, mask=mask, other=0.0)
    return v.to(tl.float64) if F64 else v.to(tl.float32)


@triton.jit
def _scalars(params_ptr, alpha, gain, clamp, F64: tl.constexpr):
    # fp64 runs read exact float64 scalars from a tensor; Triton passes Python floats as fp32.
    if F64:
        alpha = tl.load(params_ptr)
        gain = tl.load(params_ptr + 1)
        clamp = tl.load(params_ptr + 2)
    return alpha, gain, clamp


@triton.jit
def _bias_act_fwd_kernel(
    x_ptr, b_ptr, y_ptr, params_ptr, n, step, size, alpha, gain, clamp,
    A: tl.constexpr, HAS_B: tl.constexpr, HAS_CLAMP: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    offs = _offsets(BLOCK, INT64)
    mask = offs < n
    alpha, gain, clamp = _scalars(params_ptr, alpha, gain, clamp, F64)
    z = _load(x_ptr, offs, mask, F64)
    if HAS_B:
        z += _load(b_ptr, (offs // step) % size, mask, F64)  # channel of flat element i: (i // step) % size
    y = _act(z, A, alpha) * gain
    if HAS_CLAMP:
        y = tl.where(y > clamp, clamp, tl.where(y < -clamp, -clamp, y))  # NaN stays NaN, as torch.clamp
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bias_act_bwd_kernel(
    g_ptr, m_ptr, x_ptr, b_ptr, y_ptr, out_ptr, params_ptr, n, step, size, alpha, gain, clamp,
    A: tl.constexpr, REF: tl.constexpr, ORDER: tl.constexpr, HAS_M: tl.constexpr, HAS_B: tl.constexpr,
    HAS_CLAMP: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    offs = _offsets(BLOCK, INT64)
    mask = offs < n
    alpha, gain, clamp = _scalars(params_ptr, alpha, gain, clamp, F64)
    g = _load(g_ptr, offs, mask, F64)
    if HAS_M:
        g *= _load(m_ptr, offs, mask, F64)
    if REF == 1:  # saved x: the factor is a function of z = x + b
        ref = _load(x_ptr, offs, mask, F64)
        if HAS_B:
            ref += _load(b_ptr, (offs // step) % size, mask, F64)
    elif REF == 2:  # saved y: of yy = y / gain = act(z)
        ref = _load(y_ptr, offs, mask, F64)
        ref = ref / gain if gain != 0 else ref * 0.0
    else:
        ref = g
    k = _act_grad(ref, A, ORDER, alpha)
    if ORDER == 1 or REF == 1:
        k = k * gain  # order 2 with a saved y needs no gain: d f1(y / gain) / dy * gain = f1'(yy)
    out = g * k
    if HAS_CLAMP:
        yc = _load(y_ptr, offs, mask, F64)
        out = tl.where(tl.abs(yc) < clamp, out, 0.0)  # clamped outputs pass no gradient
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


# what the gradient kernel reads its factor from, by activation code: 0 nothing, 1 saved x, 2 saved y
_REF_BY_INDEX = {spec.index: {"": 0, "x": 1, "y": 2}[spec.ref] for spec in ACTIVATIONS.values()}


def _common(t: torch.Tensor, alpha: float, gain: float, clamp: float):
    f64 = t.dtype == torch.float64
    params = torch.tensor([alpha, gain, clamp], dtype=torch.float64, device=t.device) if f64 else t
    n = t.numel()
    grid = (triton.cdiv(n, BLOCK),)
    return dict(F64=f64, INT64=n + BLOCK >= 2**31, BLOCK=BLOCK, num_warps=NUM_WARPS), params, n, grid


def bias_act_forward(x, b, y, step, size, act, alpha, gain, clamp):
    """y = clamp(act(x + b) * gain); all tensors dense and in one layout, b: [size] or None."""
    meta, params, n, grid = _common(x, alpha, gain, clamp)
    _bias_act_fwd_kernel[grid](
        x, x if b is None else b, y, params, n, step, size, alpha, gain, clamp,
        A=act, HAS_B=b is not None, HAS_CLAMP=clamp >= 0, **meta,
    )  # fmt: skip


def bias_act_backward(g, m, x, b, y, out, step, size, act, alpha, gain, clamp, order, want_db=False):
    """out = g * m * K(saved) * mask; see gankernels.reference.bias_act.bias_act_grad.

    Returns None: no fused bias-gradient partials here (the caller reduces `out`)."""
    meta, params, n, grid = _common(out, alpha, gain, clamp)
    ref = _REF_BY_INDEX[act]
    _bias_act_bwd_kernel[grid](
        g, g if m is None else m, g if x is None else x, g if b is None else b, g if y is None else y, out,
        params, n, step, size, alpha, gain, clamp,
        A=act, REF=ref, ORDER=order, HAS_M=m is not None, HAS_B=b is not None and ref == 1,
        HAS_CLAMP=clamp >= 0, **meta,
    )  # fmt: skip
