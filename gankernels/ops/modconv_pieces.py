"""The three fused pieces of StyleGAN2's modulated convolution, each a torch custom op with a fused, differentiable
backward, and their public functions.

    gankernels::modulated_conv2d_dcoefs    (weight, styles) -> d [N, O]; never builds [N, O, I, kh, kw]
    gankernels::modulated_conv2d_weights   (weight, styles, d) -> weight * styles * d [N, O, I, kh, kw], written once
    gankernels::modulated_conv2d_epilogue  (y, d, noise, bias) -> clamp(act(y d + noise + bias) gain), one pass
  and their gradients gankernels::modulated_conv2d_{dcoefs,weights,epilogue}_backward, one fused kernel each
  (gankernels.triton.modulated_conv2d), whose own backward is autograd through the reference formulas, so every
  order of gradient is exact (path length differentiates the generator twice).

Public: demodulation_coefficients, modulated_weights, modulated_conv2d_epilogue (gankernels.ops.modulated_conv2d
puts them together). Eager calls run the same impl / setup / backward through torch.autograd.Functions (see
_common.eager_function).
"""

from __future__ import annotations

import torch

from .. import backend as _backend
from ..reference import modulated_conv2d as ref
from ..reference.bias_act import ACTIVATIONS
from ._common import (
    call,
    check_float_tensor,
    check_real,
    check_same,
    dense,
    eager_function,
    kernels,
    memory_format,
    through_reference,
)

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


def _empty_like(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, memory_format=memory_format(t))


def _contiguous(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous()


def _absent(like: torch.Tensor) -> torch.Tensor:
    """The placeholder output of a gradient whose input is None (custom ops return tensors only)."""
    return like.new_empty([0])


# ----------------------------------------------------------------------------------------------------------------
# Demodulation coefficients: d [N, O] from weight [O, I, kh, kw] and styles [N, I] (one dtype, contiguous)


def _dcoefs_impl(weight: torch.Tensor, styles: torch.Tensor, backend: str) -> torch.Tensor:
    weight, styles = weight.contiguous(), styles.contiguous()
    if backend == "ref":
        return ref.demodulation_coefficients(weight, styles)
    d = styles.new_empty([styles.shape[0], weight.shape[0]])
    if d.numel():
        kernels(backend, OP).dcoefs_forward(styles, weight, d)
    return d


_dcoefs_op = torch.library.custom_op("gankernels::modulated_conv2d_dcoefs", _dcoefs_impl, mutates_args=())


@_dcoefs_op.register_fake
def _(weight, styles, backend):
    return styles.new_empty([styles.shape[0], weight.shape[0]])


def _dcoefs_setup(ctx, inputs, output):
    weight, styles, backend = inputs
    ctx.save_for_backward(weight, styles, output)
    ctx.backend = backend


def _dcoefs_backward(ctx, gd):
    weight, styles, d = ctx.saved_tensors
    dweight, dstyles = call(_dcoefs_grad_op, _DcoefsGradFn, gd, weight, styles, d, ctx.backend, ctx=ctx)
    needs = ctx.needs_input_grad
    return (dweight if needs[0] else None), (dstyles if needs[1] else None), None


_dcoefs_op.register_autograd(_dcoefs_backward, setup_context=_dcoefs_setup)
_DcoefsFn = eager_function("_DcoefsFn", _dcoefs_impl, _dcoefs_setup, _dcoefs_backward)


def _dcoefs_grad_impl(
    gd: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, dcoefs: torch.Tensor, backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    gd, weight, styles, dcoefs = (t.contiguous() for t in (gd, weight, styles, dcoefs))
    if backend == "ref":
        return ref.demodulation_coefficients_grad(gd, weight, styles, dcoefs)
    dweight, dstyles = weight.new_empty(weight.shape), styles.new_empty(styles.shape)
    if gd.numel() and weight.numel():
        kernels(backend, OP).dcoefs_backward(gd, styles, weight, dcoefs, dstyles, dweight)
    else:
        dweight.zero_(), dstyles.zero_()
    return dweight, dstyles


_dcoefs_grad_op = torch.library.custom_op(
    "gankernels::modulated_conv2d_dcoefs_backward", _dcoefs_grad_impl, mutates_args=()
)


@_dcoefs_grad_op.register_fake
def _(gd, weight, styles, dcoefs, backend):
    return weight.new_empty(weight.shape), styles.new_empty(styles.shape)


def _grad_op_setup(n_tensors: int):
    """setup_context of a gradient op: saves its first n_tensors inputs, keeps the rest as parameters."""

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:n_tensors])
        ctx.params = inputs[n_tensors:-1]  # all but the backend: the reference formula's arguments
        ctx.set_materialize_grads(False)

    return setup


def _grad_op_backward(formula, n_tensors: int):
    """backward of a gradient op: autograd through the reference `formula` (see through_reference)."""

    def backward(ctx, *grad_outputs):
        grads = through_reference(formula, ctx.saved_tensors, ctx.needs_input_grad, grad_outputs, ctx.params)
        return (*grads, *[None] * (len(ctx.needs_input_grad) - n_tensors))

    return backward


_setup, _backward = _grad_op_setup(4), _grad_op_backward(ref.demodulation_coefficients_grad, 4)
_dcoefs_grad_op.register_autograd(_backward, setup_context=_setup)
_DcoefsGradFn = eager_function("_DcoefsGradFn", _dcoefs_grad_impl, _setup, _backward)


# ----------------------------------------------------------------------------------------------------------------
# Per-sample weights: weight [O, I, kh, kw] * styles[n, i] * d[n, o] -> [N, O, I, kh, kw] in `dtype`


def _weights_impl(
    weight: torch.Tensor, styles: torch.Tensor, dcoefs: torch.Tensor | None, dtype: torch.dtype, backend: str
) -> torch.Tensor:
    weight, styles, dcoefs = weight.contiguous(), styles.contiguous(), _contiguous(dcoefs)
    if backend == "ref":
        return ref.modulated_weights(weight, styles, dcoefs).to(dtype)
    out = weight.new_empty([styles.shape[0], *weight.shape], dtype=dtype)
    if out.numel():
        kernels(backend, OP).weights_forward(weight, styles, dcoefs, out)
    return out


_weights_op = torch.library.custom_op("gankernels::modulated_conv2d_weights", _weights_impl, mutates_args=())


@_weights_op.register_fake
def _(weight, styles, dcoefs, dtype, backend):
    return weight.new_empty([styles.shape[0], *weight.shape], dtype=dtype)


def _weights_setup(ctx, inputs, output):
    weight, styles, dcoefs, _, backend = inputs
    ctx.save_for_backward(weight, styles, dcoefs)
    ctx.backend = backend


def _weights_backward(ctx, g):
    weight, styles, dcoefs = ctx.saved_tensors
    dweight, dstyles, ddcoefs = call(_weights_grad_op, _WeightsGradFn, g, weight, styles, dcoefs, ctx.backend, ctx=ctx)
    needs = ctx.needs_input_grad
    ddcoefs = ddcoefs if dcoefs is not None and needs[2] else None
    return (dweight if needs[0] else None), (dstyles if needs[1] else None), ddcoefs, None, None


_weights_op.register_autograd(_weights_backward, setup_context=_weights_setup)
_WeightsFn = eager_function("_WeightsFn", _weights_impl, _weights_setup, _weights_backward)


def _weights_grad_impl(
    g: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, dcoefs: torch.Tensor | None, backend: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g, weight, styles, dcoefs = g.contiguous(), weight.contiguous(), styles.contiguous(), _contiguous(dcoefs)
    if backend == "ref":
        dweight, dstyles, ddcoefs = ref.modulated_weights_grad(g, weight, styles, dcoefs)
        dweight, dstyles = dweight.to(weight.dtype), dstyles.to(styles.dtype)
    else:
        dweight = weight.new_empty(weight.shape)
        if g.numel():
            dstyles, ddcoefs = kernels(backend, OP).weights_backward(g, weight, styles, dcoefs, dweight)
        else:
            dweight.zero_()
            dstyles = styles.new_zeros(styles.shape)
            ddcoefs = None if dcoefs is None else torch.zeros_like(dcoefs)
        dstyles = dstyles.to(styles.dtype)
    ddcoefs = _absent(weight) if dcoefs is None else ddcoefs.to(dcoefs.dtype)
    return dweight, dstyles, ddcoefs


_weights_grad_op = torch.library.custom_op(
    "gankernels::modulated_conv2d_weights_backward", _weights_grad_impl, mutates_args=()
)


@_weights_grad_op.register_fake
def _(g, weight, styles, dcoefs, backend):
    ddcoefs = _absent(weight) if dcoefs is None else dcoefs.new_empty(dcoefs.shape)
    return weight.new_empty(weight.shape), styles.new_empty(styles.shape), ddcoefs


_setup, _backward = _grad_op_setup(4), _grad_op_backward(ref.modulated_weights_grad, 4)
_weights_grad_op.register_autograd(_backward, setup_context=_setup)
_WeightsGradFn = eager_function("_WeightsGradFn", _weights_grad_impl, _setup, _backward)


# ----------------------------------------------------------------------------------------------------------------
# Epilogue: out = clamp(act(y d[n, o] + noise + bias[o]) gain) over y [N, O, H, W]; noise [Nn, 1, H, W], Nn in {1, N}


def _epilogue_impl(
    y: torch.Tensor,
    dcoefs: torch.Tensor | None,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    act: str,
    alpha: float,
    gain: float,
    clamp: float,
    backend: str,
) -> torch.Tensor:
    y = dense(y)
    dcoefs, noise, bias = _contiguous(dcoefs), _contiguous(noise), _contiguous(bias)
    if backend == "ref":
        out = ref.epilogue(y, dcoefs, noise, bias, act, alpha, gain, clamp)
        return out.clone() if out is y else out.contiguous(memory_format=memory_format(y))
    out = _empty_like(y)
    if out.numel():
        index = ACTIVATIONS[act].index
        kernels(backend, OP).epilogue_forward(y, dcoefs, noise, bias, out, index, alpha, gain, clamp)
    return out


_epilogue_op = torch.library.custom_op("gankernels::modulated_conv2d_epilogue", _epilogue_impl, mutates_args=())


@_epilogue_op.register_fake
def _(y, dcoefs, noise, bias, act, alpha, gain, clamp, backend):
    return _empty_like(y)


def _epilogue_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:4])  # y, dcoefs, noise, bias: the backward recomputes z (no saved output)
    ctx.params = inputs[4:]


def _epilogue_backward(ctx, g):
    saved = ctx.saved_tensors
    grads = call(_epilogue_grad_op, _EpilogueGradFn, g, *saved, *ctx.params, ctx=ctx)
    needs = ctx.needs_input_grad
    grads = [gi if needs[i] and saved[i] is not None else None for i, gi in enumerate(grads)]
    return (*grads, None, None, None, None, None)


_epilogue_op.register_autograd(_epilogue_backward, setup_context=_epilogue_setup)
_EpilogueFn = eager_function("_EpilogueFn", _epilogue_impl, _epilogue_setup, _epilogue_backward)


def _epilogue_grad_impl(
    g: torch.Tensor,
    y: torch.Tensor,
    dcoefs: torch.Tensor | None,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    act: str,
    alpha: float,
    gain: float,
    clamp: float,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    y = dense(y)
    g = dense(g, memory_format(y))
    dcoefs, noise, bias = _contiguous(dcoefs), _contiguous(noise), _contiguous(bias)
    if backend == "ref":
        dy, ddcoefs, dnoise, dbias = ref.epilogue_grad(g, y, dcoefs, noise, bias, act, alpha, gain, clamp)
        dy = dy.contiguous(memory_format=memory_format(y))
        ddcoefs, dnoise, dbias = (None if t is None else t.clone() for t in (ddcoefs, dnoise, dbias))  # no aliasing
    else:
        dy = _empty_like(y)
        if y.numel():
            index = ACTIVATIONS[act].index
            ddcoefs, dnoise, dbias = kernels(backend, OP).epilogue_backward(
                g, y, dcoefs, noise, bias, dy, index, alpha, gain, clamp
            )
            if dnoise is not None:  # [N, H W] -> noise's [Nn, 1, H, W]
                dnoise = dnoise.reshape(y.shape[0], 1, *y.shape[2:]).sum_to_size(noise.shape)
        else:
            ddcoefs, dnoise, dbias = (None if t is None else torch.zeros_like(t) for t in (dcoefs, noise, bias))
    ddcoefs, dnoise, dbias = (
        _absent(y) if t is None else dt.to(t.dtype) for t, dt in ((dcoefs, ddcoefs), (noise, dnoise), (bias, dbias))
    )
    return dy, ddcoefs, dnoise, dbias


_epilogue_grad_op = torch.library.custom_op(
    "gankernels::modulated_conv2d_epilogue_backward", _epilogue_grad_impl, mutates_args=()
)


@_epilogue_grad_op.register_fake
def _(g, y, dcoefs, noise, bias, act, alpha, gain, clamp, backend):
    return (_empty_like(y), *(_absent(y) if t is None else t.new_empty(t.shape) for t in (dcoefs, noise, bias)))


_setup, _backward = _grad_op_setup(5), _grad_op_backward(ref.epilogue_grad, 5)
_epilogue_grad_op.register_autograd(_backward, setup_context=_setup)
_EpilogueGradFn = eager_function("_EpilogueGradFn", _epilogue_grad_impl, _setup, _backward)


# ----------------------------------------------------------------------------------------------------------------
# Public API


def _check_pair(weight, styles):
    check_float_tensor(weight, "weight")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D [O, I, kh, kw], got shape {list(weight.shape)}")
    check_float_tensor(styles, "styles")
    check_same(styles, weight, "styles", "weight", dtype=False)
    if styles.dim() != 2 or styles.shape[1] != weight.shape[1]:
        raise ValueError(f"styles must have shape [N, I] with I = weight.shape[1] = {weight.shape[1]}, "
                         f"got {list(styles.shape)}")  # fmt: skip
    dtype = torch.promote_types(weight.dtype, styles.dtype)
    return weight.to(dtype), styles.to(dtype)


def _check_dcoefs(dcoefs, n: int, o: int, like: torch.Tensor, like_name: str):
    if dcoefs is None:
        return
    check_float_tensor(dcoefs, "dcoefs")
    check_same(dcoefs, like, "dcoefs", like_name, dtype=False)
    if list(dcoefs.shape) != [n, o]:
        raise ValueError(f"dcoefs must have shape [N, O] = {[n, o]}, got {list(dcoefs.shape)}")


def demodulation_coefficients(weight, styles):
    """StyleGAN2's demodulation coefficients d[n, o] = (sum_{i, kh, kw} (weight[o, i] styles[n, i])^2 + 1e-8)^(-1/2).

    weight: [O, I, kh, kw]; styles: [N, I]. Returns [N, O] in their promoted dtype. On the triton backend one fused
    kernel (an [N, I] x [I, O] reduction: no [N, O, I, kh, kw] tensor); elsewhere the reference formula. Differentiable
    to any order."""
    weight, styles = _check_pair(weight, styles)
    name = resolve_backend(weight.device.type)
    if name == "ref":
        return ref.demodulation_coefficients(weight, styles)
    return call(_dcoefs_op, _DcoefsFn, weight, styles, name)


def modulated_weights(weight, styles, dcoefs=None, dtype=None):
    """Per-sample weights w[n, o, i, kh, kw] = weight[o, i, kh, kw] styles[n, i] dcoefs[n, o] (dcoefs None: 1).

    weight: [O, I, kh, kw]; styles: [N, I]; dcoefs: [N, O] or None. Returns [N, O, I, kh, kw] in `dtype` (default: the
    promoted dtype of weight and styles), written once on the triton backend. Differentiable to any order."""
    weight, styles = _check_pair(weight, styles)
    _check_dcoefs(dcoefs, styles.shape[0], weight.shape[0], weight, "weight")
    dtype = weight.dtype if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    dcoefs = None if dcoefs is None else dcoefs.to(weight.dtype)
    name = resolve_backend(weight.device.type)
    if name == "ref":
        return ref.modulated_weights(weight, styles, dcoefs).to(dtype)
    return call(_weights_op, _WeightsFn, weight, styles, dcoefs, dtype, name)


def _check_noise(noise, shape) -> None:
    shape = list(shape)
    try:
        broadcast = list(torch.broadcast_shapes(noise.shape, shape))
    except RuntimeError:
        broadcast = None
    if broadcast != shape:
        raise ValueError(f"noise of shape {list(noise.shape)} does not broadcast to the output shape {shape}")


def _noise_planes(noise, shape):
    """noise (broadcastable to [N, O, H, W]) as a differentiable view [Nn, 1, H, W], Nn in {1, N}; None when it varies
    along the channels (no StyleGAN2 layer does that: the caller adds it unfused)."""
    dims = [1] * (4 - noise.dim()) + list(noise.shape)
    if dims[1] != 1:
        return None
    return noise.reshape(dims).expand(dims[0], 1, shape[2], shape[3])


def _epilogue(y, dcoefs, noise, bias, act, alpha, gain, clamp, backend):
    """The fused epilogue on validated, defaulted arguments (clamp < 0: none)."""
    if noise is not None:
        planes = _noise_planes(noise, y.shape)
        if planes is None:
            y = _epilogue(y, dcoefs, None, None, "linear", 0.0, 1.0, -1.0, backend) + noise.to(y.dtype)
            return _epilogue(y, None, None, bias, act, alpha, gain, clamp, backend)
        noise = planes.to(y.dtype)
    bias = None if bias is None else bias.to(y.dtype)
    if dcoefs is None and noise is None and bias is None and act == "linear" and gain == 1 and clamp < 0:
        return y
    return call(_epilogue_op, _EpilogueFn, dense(y), dcoefs, noise, bias, act, alpha, gain, clamp, backend)


def _check_epilogue(act, gain, clamp):
    if not isinstance(act, str):
        raise TypeError(f"act must be a str, got {type(act).__name__}")
    if act not in ACTIVATIONS:
        raise ValueError(f"act: unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    check_real(gain, "gain", allow_none=True)
    if check_real(clamp, "clamp", allow_none=True) is not None and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")


def _defaults(act, alpha, gain, clamp):
    spec = ACTIVATIONS[act]
    alpha = spec.alpha if alpha is None else float(alpha)
    gain = spec.gain if gain is None else float(gain)
    return alpha, gain, -1.0 if clamp is None else float(clamp)


def modulated_conv2d_epilogue(y, dcoefs=None, noise=None, bias=None, act="linear", alpha=None, gain=None, clamp=None):
    """The epilogue of a StyleGAN2 layer in one pass: clamp(act(y dcoefs[n, o] + noise + bias[o], alpha) gain).

    y: [N, O, H, W] (NCHW or channels_last: the output keeps it); dcoefs: [N, O] or None; noise: broadcastable to y
    (e.g. [N, 1, H, W] or [H, W]) or None; bias: [O] or None. act, alpha, gain (None: the activation's defaults) and
    clamp (None: none) as gankernels.ops.bias_act. Differentiable to any order with respect to y, dcoefs, noise and
    bias. On the triton backend one fused kernel forward and one backward; elsewhere the reference formula."""
    check_float_tensor(y, "y")
    if y.dim() != 4:
        raise ValueError(f"y must be 4-D [N, O, H, W], got shape {list(y.shape)}")
    _check_dcoefs(dcoefs, y.shape[0], y.shape[1], y, "y")
    if noise is not None:
        check_float_tensor(noise, "noise")
        check_same(noise, y, "noise", "y", dtype=False)
        _check_noise(noise, y.shape)
    if bias is not None:
        check_float_tensor(bias, "bias")
        check_same(bias, y, "bias", "y", dtype=False)
        if bias.dim() != 1 or bias.shape[0] != y.shape[1]:
            raise ValueError(f"bias must have shape [O] = [{y.shape[1]}], got {list(bias.shape)}")
    _check_epilogue(act, gain, clamp)
    check_real(alpha, "alpha", allow_none=True)
    alpha, gain, clamp = _defaults(act, alpha, gain, clamp)
    name = resolve_backend(y.device.type)
    if name == "ref":
        return ref.epilogue(y, dcoefs, noise, None if bias is None else bias.to(y.dtype), act, alpha, gain, clamp)
    return _epilogue(y, dcoefs, noise, bias, act, alpha, gain, clamp, name)
