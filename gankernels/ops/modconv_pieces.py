"""The three fused pieces of StyleGAN2's modulated convolution, each a torch custom op with a fused, differentiable
backward, and their public functions.

    gankernels::modulated_conv2d_dcoefs    (weight, styles) -> d [N, O]; never builds [N, O, I, kh, kw]
    gankernels::modulated_conv2d_weights   (weight, styles, d) -> weight * styles * d [N, O, I, kh, kw], written once
    gankernels::modulated_conv2d_epilogue  (y, d, noise, bias) -> clamp(act(y d + noise + bias) gain), one pass
  and their gradients gankernels::modulated_conv2d_{dcoefs,weights,epilogue}_backward, one fused kernel each
  (gankernels.triton.modulated_conv2d), whose own backward is autograd through the reference formulas, so every
  order of gradient is exact (path length differentiates the generator twice).

Public: demodulation_coefficients, modulated_weights, modulated_conv2d_epilogue (gankernels.ops.modulated_conv2d
puts them together). Each op is declared through _define (eager Function, custom op, vmap rule).
"""

from __future__ import annotations

import torch

from .. import backend as _backend
from ..reference import modulated_conv2d as ref
from ..reference.bias_act import ACTIVATIONS
from ._common import (
    check_4d,
    check_act,
    check_float_tensor,
    check_on,
    check_real,
    check_same,
    check_shaped,
    contiguous,
    dense,
    empty_like,
    kernels,
    memory_format,
)
from ._define import define_forward_op, define_gradient_op

OP = "modulated_conv2d"  # the backend op name: kernels in gankernels.triton.modulated_conv2d


def resolve_backend(device_type: str) -> str:
    """The path that runs modulated_conv2d on `device_type` tensors: "triton" (fused kernels) or "ref" (composed).

    A forced "triton" (gankernels.set_backend / use_backend / GANKERNELS_BACKEND) runs the fused kernels, on CPU
    tensors too under TRITON_INTERPRET=1 (RuntimeError when triton cannot run here). Any other forced backend ("ref",
    "cpu", "cuda") runs the composed path, whose ops honour that choice (on CPU: the C++ bias_act and upfirdn2d).
    Automatic: the fused kernels on CUDA tensors when Triton is available, else the composed path.
    """
    # Why fused on CUDA by default: bytes moved, not a measurement (no GPU run of these kernels exists yet; benchmark
    # before trusting it). With y = the conv output [N, O, H, W], the non-grouped epilogue reads y once and writes
    # once, where the composed path makes three passes (y * d, + noise, bias_act: 6 element accesses, 3x the traffic);
    # its backward reads g and y and writes dy (3 accesses) with d d, d noise and d bias reduced on the way, where the
    # composed backward makes about five passes (~10 accesses). The demodulation coefficients never build the
    # [N, O, I, kh, kw] modulated weight (composed: w and w^2, each written and read once).
    return _backend.resolve_triton_op(OP, device_type)


def _absent(like: torch.Tensor) -> torch.Tensor:
    """The placeholder output of a gradient whose input is None (custom ops return tensors only)."""
    return like.new_empty([0])


def _grad_in_dtype(grad: torch.Tensor | None, t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The gradient output for the optional input t: grad in t's dtype, or _absent(like) when t is None."""
    return _absent(like) if t is None else grad.to(t.dtype)


def _empty_grad(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The fake of _grad_in_dtype: an empty tensor like t, or _absent(like) when t is None."""
    return _absent(like) if t is None else t.new_empty(t.shape)


def _per_sample(tensors: tuple[int, ...], noise_at: int, outputs: int = 1, unless_false: int | None = None):
    """vmap spec of an op whose tensors at positions `tensors` are per sample (axis 0) and whose argument `noise_at`
    is noise planes [Nn, 1, H, W] or None: per sample when Nn = N, broadcast (axis None) when Nn = 1. Vmapped planes
    (5-D here) may be either, and an output is a [0] placeholder where argument `unless_false` is false: then the op
    runs once per vmapped index."""

    def spec(*args):
        noise = args[noise_at]
        if noise is not None and noise.dim() != 4 or unless_false is not None and not args[unless_false]:
            return None
        folds = set(tensors) | ({noise_at} if noise is not None and noise.shape[0] > 1 else set())
        return [0 if i in folds else None for i in range(len(args))], [0] * outputs

    return spec


# Each piece is two ops: a forward op whose backward is one call of its gradient op (define_forward_op), and that
# gradient op, whose own backward is autograd through the reference formula (define_gradient_op): exact to any order.
# A gradient op's outputs include a sum over the batch (the shared weight's or the bias's gradient): no vmap fold.
# Every impl takes its backend last; "ref" runs the reference formula instead of the kernels (so the ops can be
# opchecked without triton).


# ----------------------------------------------------------------------------------------------------------------
# Demodulation coefficients: d [N, O] from weight [O, I, kh, kw] and styles [N, I] (one dtype, contiguous)


def _dcoefs_grad_impl(gd, weight, styles, dcoefs, backend):
    gd, weight, styles, dcoefs = contiguous(gd, weight, styles, dcoefs)
    if backend == "ref":
        return ref.demodulation_coefficients_grad(gd, weight, styles, dcoefs)
    dweight, dstyles = _dcoefs_grad_fake(gd, weight, styles, dcoefs, backend)
    if gd.numel() and weight.numel():
        kernels(backend, OP).dcoefs_backward(gd, styles, weight, dcoefs, dstyles, dweight)
    else:
        dweight.zero_(), dstyles.zero_()
    return dweight, dstyles


def _dcoefs_grad_fake(gd, weight, styles, dcoefs, backend):
    return weight.new_empty(weight.shape), styles.new_empty(styles.shape)


def _dcoefs_impl(weight, styles, backend):
    weight, styles = weight.contiguous(), styles.contiguous()
    if backend == "ref":
        return ref.demodulation_coefficients(weight, styles)
    d = _dcoefs_fake(weight, styles, backend)
    if d.numel():
        kernels(backend, OP).dcoefs_forward(styles, weight, d)
    return d


def _dcoefs_fake(weight, styles, backend):
    return styles.new_empty([styles.shape[0], weight.shape[0]])


_dcoefs_grad_op = define_gradient_op("modulated_conv2d_dcoefs_backward",
    "(Tensor gd, Tensor weight, Tensor styles, Tensor dcoefs, str backend) -> (Tensor, Tensor)",
    _dcoefs_grad_impl, fake=_dcoefs_grad_fake, formula=ref.demodulation_coefficients_grad, saved=4)  # fmt: skip
_dcoefs_op = define_forward_op("modulated_conv2d_dcoefs", "(Tensor weight, Tensor styles, str backend) -> Tensor",
    _dcoefs_impl, fake=_dcoefs_fake, gradient=_dcoefs_grad_op, saved=2, save_output=True,
    vmap=([None, 0, None], [0]))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Per-sample weights: weight [O, I, kh, kw] * styles[n, i] * d[n, o] -> [N, O, I, kh, kw] in `dtype`


def _weights_grad_impl(g, weight, styles, dcoefs, backend):
    g, weight, styles, dcoefs = contiguous(g, weight, styles, dcoefs)
    if backend == "ref":
        dweight, dstyles, ddcoefs = ref.modulated_weights_grad(g, weight, styles, dcoefs)
        dweight = dweight.to(weight.dtype)
    elif g.numel():
        dweight = weight.new_empty(weight.shape)
        dstyles, ddcoefs = kernels(backend, OP).weights_backward(g, weight, styles, dcoefs, dweight)
    else:
        dweight, dstyles = torch.zeros_like(weight), torch.zeros_like(styles)
        ddcoefs = None if dcoefs is None else torch.zeros_like(dcoefs)
    return dweight, dstyles.to(styles.dtype), _grad_in_dtype(ddcoefs, dcoefs, weight)


def _weights_grad_fake(g, weight, styles, dcoefs, backend):
    return weight.new_empty(weight.shape), styles.new_empty(styles.shape), _empty_grad(dcoefs, weight)


def _weights_impl(weight, styles, dcoefs, dtype, backend):
    weight, styles, dcoefs = contiguous(weight, styles, dcoefs)
    if backend == "ref":
        return ref.modulated_weights(weight, styles, dcoefs).to(dtype)
    out = _weights_fake(weight, styles, dcoefs, dtype, backend)
    if out.numel():
        kernels(backend, OP).weights_forward(weight, styles, dcoefs, out)
    return out


def _weights_fake(weight, styles, dcoefs, dtype, backend):
    return weight.new_empty([styles.shape[0], *weight.shape], dtype=dtype)


_weights_grad_op = define_gradient_op("modulated_conv2d_weights_backward",
    "(Tensor g, Tensor weight, Tensor styles, Tensor? dcoefs, str backend) -> (Tensor, Tensor, Tensor)",
    _weights_grad_impl, fake=_weights_grad_fake, formula=ref.modulated_weights_grad, saved=4)  # fmt: skip
_weights_op = define_forward_op("modulated_conv2d_weights",
    "(Tensor weight, Tensor styles, Tensor? dcoefs, ScalarType dtype, str backend) -> Tensor",
    _weights_impl, fake=_weights_fake, gradient=_weights_grad_op, saved=3, params=slice(-1, None),  # backend, not dtype
    vmap=([None, 0, 0, None, None], [0]))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Epilogue: out = clamp(act(y d[n, o] + noise + bias[o]) gain) over y [N, O, H, W]; noise [Nn, 1, H, W], Nn in {1, N}


def _epilogue_grad_impl(g, y, dcoefs, noise, bias, act, alpha, gain, clamp, backend):
    y = dense(y)
    g = dense(g, memory_format(y))
    dcoefs, noise, bias = contiguous(dcoefs, noise, bias)
    if backend == "ref":
        dy, ddcoefs, dnoise, dbias = ref.epilogue_grad(g, y, dcoefs, noise, bias, act, alpha, gain, clamp)
        dy = dy.contiguous(memory_format=memory_format(y))
        ddcoefs, dnoise, dbias = (None if t is None else t.clone() for t in (ddcoefs, dnoise, dbias))  # no aliasing
    else:
        dy = empty_like(y)
        if y.numel():
            index = ACTIVATIONS[act].index
            ddcoefs, dnoise, dbias = kernels(backend, OP).epilogue_backward(
                g, y, dcoefs, noise, bias, dy, index, alpha, gain, clamp
            )
            if dnoise is not None:  # [N, H W] -> noise's [Nn, 1, H, W]
                dnoise = dnoise.reshape(y.shape[0], 1, *y.shape[2:]).sum_to_size(noise.shape)
        else:
            ddcoefs, dnoise, dbias = (None if t is None else torch.zeros_like(t) for t in (dcoefs, noise, bias))
    return dy, _grad_in_dtype(ddcoefs, dcoefs, y), _grad_in_dtype(dnoise, noise, y), _grad_in_dtype(dbias, bias, y)


def _epilogue_grad_fake(g, y, dcoefs, noise, bias, act, alpha, gain, clamp, backend):
    return empty_like(y), _empty_grad(dcoefs, y), _empty_grad(noise, y), _empty_grad(bias, y)


def _epilogue_impl(y, dcoefs, noise, bias, act, alpha, gain, clamp, backend):
    y = dense(y)
    dcoefs, noise, bias = contiguous(dcoefs, noise, bias)
    if backend == "ref":
        out = ref.epilogue(y, dcoefs, noise, bias, act, alpha, gain, clamp)
        return out.clone() if out is y else out.contiguous(memory_format=memory_format(y))
    out = empty_like(y)
    if out.numel():
        index = ACTIVATIONS[act].index
        kernels(backend, OP).epilogue_forward(y, dcoefs, noise, bias, out, index, alpha, gain, clamp)
    return out


def _epilogue_fake(y, *params):
    return empty_like(y)


# the gradient op takes g, then the forward's arguments
_EPILOGUE_ARGS = "Tensor y, Tensor? dcoefs, Tensor? noise, Tensor? bias, str act, float alpha, float gain, float clamp"
_epilogue_grad_op = define_gradient_op("modulated_conv2d_epilogue_backward",
    f"(Tensor g, {_EPILOGUE_ARGS}, str backend) -> (Tensor, Tensor, Tensor, Tensor)",
    _epilogue_grad_impl, fake=_epilogue_grad_fake, formula=ref.epilogue_grad, saved=5)  # fmt: skip
# the backward recomputes z from the saved y, dcoefs, noise, bias (no saved output)
_epilogue_op = define_forward_op("modulated_conv2d_epilogue", f"({_EPILOGUE_ARGS}, str backend) -> Tensor",
    _epilogue_impl, fake=_epilogue_fake, gradient=_epilogue_grad_op, saved=4,
    vmap=_per_sample((0, 1), 2))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Argument checks, shared with modulated_conv2d and fused_conv2d


def _check_noise(noise, shape, to: str = "the output shape") -> None:
    """noise (None, or a tensor checked by check_on) broadcasts to `shape` (written `to`)."""
    if noise is None:
        return
    shape = list(shape)
    try:
        broadcast = list(torch.broadcast_shapes(noise.shape, shape))
    except RuntimeError:
        broadcast = None
    if broadcast != shape:
        raise ValueError(f"noise of shape {list(noise.shape)} does not broadcast to {to} {shape}")


def _check_epilogue(act, gain, clamp, alpha=None) -> None:
    check_act(act, ACTIVATIONS)
    check_real(gain, "gain", allow_none=True)
    if check_real(clamp, "clamp", allow_none=True) is not None and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    check_real(alpha, "alpha", allow_none=True)


def _defaults(act, alpha, gain, clamp):
    spec = ACTIVATIONS[act]
    alpha = spec.alpha if alpha is None else float(alpha)
    gain = spec.gain if gain is None else float(gain)
    return alpha, gain, -1.0 if clamp is None else float(clamp)


def _check_pair(weight, styles):
    check_4d(weight, "weight", "[O, I, kh, kw]")
    check_float_tensor(styles, "styles")
    check_same(styles, weight, "styles", "weight", dtype=False)
    if styles.dim() != 2 or styles.shape[1] != weight.shape[1]:
        raise ValueError(f"styles must have shape [N, I] with I = weight.shape[1] = {weight.shape[1]}, "
                         f"got {list(styles.shape)}")  # fmt: skip
    dtype = torch.promote_types(weight.dtype, styles.dtype)
    return weight.to(dtype), styles.to(dtype)


# ----------------------------------------------------------------------------------------------------------------
# Public API


def demodulation_coefficients(weight, styles):
    """StyleGAN2's demodulation coefficients d[n, o] = (sum_{i, kh, kw} (weight[o, i] styles[n, i])^2 + 1e-8)^(-1/2).

    weight: [O, I, kh, kw]; styles: [N, I]. Returns [N, O] in their promoted dtype. On the triton backend one fused
    kernel (an [N, I] x [I, O] reduction: no [N, O, I, kh, kw] tensor); elsewhere the reference formula. Differentiable
    to any order."""
    weight, styles = _check_pair(weight, styles)
    name = resolve_backend(weight.device.type)
    if name == "ref":
        return ref.demodulation_coefficients(weight, styles)
    return _dcoefs_op(weight, styles, name)


def modulated_weights(weight, styles, dcoefs=None, dtype=None):
    """Per-sample weights w[n, o, i, kh, kw] = weight[o, i, kh, kw] styles[n, i] dcoefs[n, o] (dcoefs None: 1).

    weight: [O, I, kh, kw]; styles: [N, I]; dcoefs: [N, O] or None. Returns [N, O, I, kh, kw] in `dtype` (default: the
    promoted dtype of weight and styles), written once on the triton backend. Differentiable to any order."""
    weight, styles = _check_pair(weight, styles)
    check_shaped(dcoefs, "dcoefs", [styles.shape[0], weight.shape[0]], "[N, O]", weight, "weight")
    dtype = weight.dtype if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    dcoefs = None if dcoefs is None else dcoefs.to(weight.dtype)
    name = resolve_backend(weight.device.type)
    if name == "ref":
        return ref.modulated_weights(weight, styles, dcoefs).to(dtype)
    return _weights_op(weight, styles, dcoefs, dtype, name)


def _noise_planes(noise, h: int, w: int):
    """noise (broadcastable to [N, O, H, W]) as a differentiable view [Nn, 1, H, W], Nn in {1, N}; None when it varies
    along the channels (no StyleGAN2 layer does that: the caller adds it unfused)."""
    dims = [1] * (4 - noise.dim()) + list(noise.shape)
    if dims[1] != 1:
        return None
    return noise.reshape(dims).expand(dims[0], 1, h, w)


def _epilogue(y, dcoefs, noise, bias, act, alpha, gain, clamp, backend):
    """The fused epilogue on validated, defaulted arguments (clamp < 0: none)."""
    if noise is not None:
        planes = _noise_planes(noise, *y.shape[2:])
        if planes is None:
            y = _epilogue(y, dcoefs, None, None, "linear", 0.0, 1.0, -1.0, backend) + noise.to(y.dtype)
            return _epilogue(y, None, None, bias, act, alpha, gain, clamp, backend)
        noise = planes.to(y.dtype)
    bias = None if bias is None else bias.to(y.dtype)
    if dcoefs is None and noise is None and bias is None and act == "linear" and gain == 1 and clamp < 0:
        return y
    return _epilogue_op(dense(y), dcoefs, noise, bias, act, alpha, gain, clamp, backend)


def modulated_conv2d_epilogue(y, dcoefs=None, noise=None, bias=None, act="linear", alpha=None, gain=None, clamp=None):
    """The epilogue of a StyleGAN2 layer in one pass: clamp(act(y dcoefs[n, o] + noise + bias[o], alpha) gain).

    y: [N, O, H, W] (NCHW or channels_last: the output keeps it); dcoefs: [N, O] or None; noise: broadcastable to y
    (e.g. [N, 1, H, W] or [H, W]) or None; bias: [O] or None. act, alpha, gain (None: the activation's defaults) and
    clamp (None: none) as gankernels.ops.bias_act. Differentiable to any order with respect to y, dcoefs, noise and
    bias. On the triton backend one fused kernel forward and one backward; elsewhere the reference formula."""
    check_4d(y, "y", "[N, O, H, W]")
    check_shaped(dcoefs, "dcoefs", y.shape[:2], "[N, O]", y, "y")
    check_on(noise, "noise", y, "y")
    _check_noise(noise, y.shape)
    check_shaped(bias, "bias", [y.shape[1]], "[O]", y, "y")
    _check_epilogue(act, gain, clamp, alpha)
    alpha, gain, clamp = _defaults(act, alpha, gain, clamp)
    name = resolve_backend(y.device.type)
    if name == "ref":
        return ref.epilogue(y, dcoefs, noise, None if bias is None else bias.to(y.dtype), act, alpha, gain, clamp)
    return _epilogue(y, dcoefs, noise, bias, act, alpha, gain, clamp, name)
