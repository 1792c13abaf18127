"""conv2d and conv_transpose2d differentiable to any order, the `no_weight_gradients` switch, and conv2d_resample.

Two torch custom ops carry the work: `gankernels::conv2d` (a convolution or transposed convolution, by torch's
kernels) and `gankernels::conv2d_weight_grad` (its weight gradient, by torch.ops.aten.convolution_backward with
an output mask that asks for the weight only). Their autograd formulas are again these two ops:

    y  = conv(x, w)                 dx = conv^T(dy, w)          dw = W(dy, x)
    dW = W(dy, x) is bilinear:      d(dy) = conv(x, g)          dx = conv^T(dy, g)     (g = dL/d(dW))

so gradients of every order (R1, WGAN-GP, path length) run on them, as NVlabs' conv2d_gradfix, on public
PyTorch APIs only. While `no_weight_gradients()` is active the backward skips dw, so the inner autograd.grad of a
penalty with respect to the images computes no weight gradient. Fake implementations run torch's own meta
kernels, so torch.compile sees the exact shapes and strides. Inside compiled code the switch is ignored: the
backward is traced once, ahead of time, and must stay correct whenever it runs.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..reference.conv2d import resample_padding
from ._common import check_4d, check_float_tensor, check_int_at_least, check_same, check_shaped, int_pair, memory_format
from ._define import define_op
from .upfirdn2d import _parse_padding, upfirdn2d

# A global, not thread-local: the autograd engine runs the backward of CUDA tensors on threads of its own.
_weight_gradients_disabled = False


@contextlib.contextmanager
def no_weight_gradients(disable=True):
    """Context manager: while active (and `disable` is True), backward passes through gankernels' conv2d,
    conv_transpose2d, conv2d_resample and modulated_conv2d compute no weight gradient (it is None).

    Use it around the inner `torch.autograd.grad(..., images, create_graph=True)` of an R1 penalty, as NVlabs'
    conv2d_gradfix.no_weight_gradients. Only gradients that lead to parameters alone are skipped: a weight that is a
    parameter or derived from exactly one (a view, `weight * weight_gain`); a weight computed from several tensors
    (modulated_conv2d with fused_modconv=True: weight * styles, which depend on ws) keeps its gradient, so path length
    stays exact on such layers (see skip_weight_gradient).
    It is read when the backward runs; a torch.compile'd graph traces its backward ahead of time, so there the
    switch is ignored and weight gradients are always computed (never wrong).
    """
    global _weight_gradients_disabled
    previous = _weight_gradients_disabled
    if disable:
        _weight_gradients_disabled = True
    try:
        yield
    finally:
        _weight_gradients_disabled = previous


def weight_gradients_disabled() -> bool:
    """Whether `no_weight_gradients()` is active."""
    return _weight_gradients_disabled


def skip_weight_gradient(weight: torch.Tensor | None) -> bool:
    """Whether a backward may leave out the gradient with respect to `weight`: no_weight_gradients() is active (and
    not ignored by tracing) and `weight` is a parameter or is derived from exactly one (a view, a scaled or cast copy:
    NVlabs' `weight * weight_gain`), so the gradient reaches parameters only. A weight computed from several tensors
    (the per-sample weights of a fused modulated conv: weight * styles) keeps its gradient, which may lead to the
    tensor the penalty differentiates (ws under path length): skipping it would silently drop that path."""
    if not _weight_gradients_disabled or torch.compiler.is_compiling():
        return False
    return weight is None or _from_one_leaf(weight.grad_fn)


def _from_one_leaf(node, limit: int = 16) -> bool:
    """The autograd graph from `node` is a chain (each node has at most one input requiring grad) ending at a leaf."""
    while node is not None and limit > 0:
        inputs = [n for n, _ in node.next_functions if n is not None]
        if not inputs:  # an AccumulateGrad: the leaf
            return True
        if len(inputs) > 1:
            return False
        node, limit = inputs[0], limit - 1
    return node is None


# ----------------------------------------------------------------------------------------------------------------
# Custom ops. After its tensors each takes the convolution's params, _PARAMS, in the order of torch's
# aten.convolution and aten.convolution_backward (the "params" that a backward keeps in ctx.params and passes on).
# Their types are infer_schema's for list[int] and int: SymInt, symbolic sizes under torch.compile's dynamic shapes.

_PARAMS = (
    "SymInt[] stride, SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups"
)


# On CPU, torch's convolutions run on oneDNN, whose fixed cost per call (~30 us forward, ~80 us backward) is most of
# a small convolution's time: ATen's native kernels run those 2-7x faster, and lose from a few million multiply-adds
# (benchmarks/NOTES.md, "Small convolutions on CPU"). So a float32 NCHW convolution of fewer multiply-adds than this
# runs with oneDNN switched off for the call (torch.backends.mkldnn.enabled: a process-wide flag, so a convolution on
# another thread meanwhile may take the native kernels too: the same result to float rounding).
NATIVE_CONV_MAX_MACS = 2**21


def _on_cpu(run, dy, x, weight, *args):
    """run(*[dy], x, weight, *args) (dy None: left out), small CPU convolutions on ATen's native kernels."""
    tensors = (x, weight) if dy is None else (dy, x, weight)
    if not (
        x.is_cpu
        and x.dtype == torch.float32
        and x.numel() * weight.numel() < NATIVE_CONV_MAX_MACS * x.shape[1]  # N H W x O (C / groups) kh kw, stride 1
        and all(memory_format(t) == torch.contiguous_format for t in tensors)  # channels_last: oneDNN's layouts
        and torch.backends.mkldnn.enabled
        and not torch.backends.flags_frozen()  # after torch.backends.disable_global_flags() only flags() may set it
    ):
        return run(*tensors, *args)
    torch.backends.mkldnn.enabled = False
    try:
        return run(*tensors, *args)
    finally:
        torch.backends.mkldnn.enabled = True


def _torch_conv(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    if transposed:
        return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def _conv(x, weight, *args):
    return _on_cpu(_torch_conv, None, x, weight, *args)


def _conv2d_setup(ctx, inputs, output):
    x, weight = inputs[:2]
    needs_x, needs_w = ctx.needs_input_grad[:2]
    ctx.save_for_backward(x if needs_w else None, weight if needs_x or needs_w else None)
    ctx.input_shape = x.shape
    ctx.params = inputs[3:]


def _conv2d_backward(ctx, dy):
    x, weight = ctx.saved_tensors
    needs = ctx.needs_input_grad
    dx = dw = db = None
    want_w = needs[1] and not skip_weight_gradient(weight)
    if needs[0] and want_w:  # one convolution_backward for both (the usual training step)
        dx, dw = _conv2d_grads(dy, x, weight, *ctx.params, ctx=ctx)
    elif needs[0]:
        dx = _input_grad(dy, weight, ctx.input_shape, ctx.params, ctx)
    elif want_w:
        dw = _conv2d_weight_grad(dy, x, weight, *ctx.params, ctx=ctx)
    if needs[2]:
        db = dy.sum(dim=(0, 2, 3))
    return dx, dw, db, None, None, None, None, None, None


# The fake is torch's own meta kernels (through _torch_conv: no size test on symbolic shapes): the exact output shape
# and memory format. Images fold into the batch under vmap when the weight and bias are shared.
_conv2d = define_op("conv2d", f"(Tensor x, Tensor weight, Tensor? bias, {_PARAMS}) -> Tensor", _conv, fake=_torch_conv,
                    setup_context=_conv2d_setup, backward=_conv2d_backward, vmap=([0] + [None] * 8, [0]))  # fmt: skip


def _input_grad(dy, weight, input_shape, params, ctx):
    """dL/dx of y = conv(x, weight) given dy: the transposed convolution (of the transposed one: the plain one)."""
    stride, padding, dilation, transposed, output_padding, groups = params
    if not transposed:
        # the output_padding that makes conv^T(dy) exactly as large as x (rows the strided conv never read)
        span = _span(weight, dilation)
        extra = [input_shape[i + 2] - ((dy.shape[i + 2] - 1) * stride[i] - 2 * padding[i] + span[i]) for i in range(2)]
        return _conv2d(dy, weight, None, stride, padding, dilation, True, extra, groups, ctx=ctx)
    dx = _conv2d(dy, weight, None, stride, padding, dilation, False, [0, 0], groups, ctx=ctx)
    if dx.shape[2] != input_shape[2] or dx.shape[3] != input_shape[3]:  # output_padding >= stride (dilation > stride)
        dx = dx[:, :, : input_shape[2], : input_shape[3]]
    return dx


def _torch_weight_grad(dy, x, weight, *params):
    """dL/dweight of y = conv(x, weight) given dy = dL/dy. `weight` gives the shape and layout, not values."""
    return torch.ops.aten.convolution_backward(dy, x, weight, None, *params, [False, True, False])[1]


def _weight_grad(dy, x, weight, *params):
    return _on_cpu(_torch_weight_grad, dy, x, weight, *params)


def _weight_grad_setup(ctx, inputs, output):
    dy, x = inputs[:2]
    needs_dy, needs_x = ctx.needs_input_grad[:2]
    ctx.save_for_backward(dy if needs_x else None, x if needs_dy else None)
    ctx.input_shape = x.shape
    ctx.params = inputs[3:]


def _weight_grad_backward(ctx, g):
    dy, x = ctx.saved_tensors
    needs = ctx.needs_input_grad
    ddy = dx = None
    if needs[0]:  # dW is linear in dy: d<g, W(dy, x)>/d(dy) = conv(x, g)
        ddy = _conv2d(x, g, None, *ctx.params, ctx=ctx)
    if needs[1]:  # and linear in x: d<g, W(dy, x)>/dx = conv^T(dy, g)
        dx = _input_grad(dy, g, ctx.input_shape, ctx.params, ctx)
    return ddy, dx, None, None, None, None, None, None, None


# The weight gradient sums over the batch: under vmap it runs once per vmapped index.
_conv2d_weight_grad = define_op("conv2d_weight_grad", f"(Tensor dy, Tensor x, Tensor weight, {_PARAMS}) -> Tensor",
                                _weight_grad, fake=_torch_weight_grad, setup_context=_weight_grad_setup,
                                backward=_weight_grad_backward)  # fmt: skip


def _grads(dy, x, weight, *params):
    """(dL/dx, dL/dweight) of y = conv(x, weight) given dy, in one torch.ops.aten.convolution_backward call: on CPU
    (oneDNN) one call is ~10% cheaper than the input and weight gradients apart (DCGAN step, benchmarks/NOTES.md)."""
    return _on_cpu(_torch_grads, dy, x, weight, *params)


def _torch_grads(dy, x, weight, *params):
    dx, dw, _ = torch.ops.aten.convolution_backward(dy, x, weight, None, *params, [True, True, False])
    return dx, dw


def _grads_setup(ctx, inputs, output):
    dy, x, weight = inputs[:3]
    ctx.save_for_backward(dy, x, weight)
    ctx.input_shape = x.shape
    ctx.params = inputs[3:]


def _grads_backward(ctx, gdx, gdw):
    """dx = conv^T(dy, weight) is bilinear in (dy, weight), dw = W(dy, x) in (dy, x): the adjoints are convolutions
    again (gankernels ops, so any order works)."""
    dy, x, weight = ctx.saved_tensors
    needs = ctx.needs_input_grad
    ddy = dx = dweight = None
    if needs[0]:
        parts = []
        if gdx is not None:  # <gdx, conv^T(dy, w)> = <conv(gdx, w), dy>
            parts.append(_conv2d(gdx, weight, None, *ctx.params, ctx=ctx))
        if gdw is not None:  # <gdw, W(dy, x)> = <conv(x, gdw), dy>
            parts.append(_conv2d(x, gdw, None, *ctx.params, ctx=ctx))
        ddy = sum(parts) if parts else None
    if needs[1] and gdw is not None:
        dx = _input_grad(dy, gdw, ctx.input_shape, ctx.params, ctx)
    if needs[2] and gdx is not None:  # <gdx, conv^T(dy, w)> = <w, W(dy, gdx)>
        dweight = _conv2d_weight_grad(dy, gdx, weight, *ctx.params, ctx=ctx)
    return ddy, dx, dweight, None, None, None, None, None, None


_conv2d_grads = define_op("conv2d_grads", f"(Tensor dy, Tensor x, Tensor weight, {_PARAMS}) -> (Tensor, Tensor)",
                          _grads, fake=_torch_grads, setup_context=_grads_setup, backward=_grads_backward)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Argument checks


def _check_conv_args(input, weight, bias, groups, transposed: bool) -> tuple[torch.Tensor, bool, int]:
    """conv2d's (transposed: conv_transpose2d's) tensors and groups. Returns (input as 4-D, whether it was 3-D,
    groups)."""
    check_float_tensor(input, "input")
    if input.dim() not in (3, 4):
        raise ValueError(f"input must be 4-D [N, C, H, W] (or 3-D [C, H, W]), got shape {list(input.shape)}")
    x = input.unsqueeze(0) if input.dim() == 3 else input
    groups = check_int_at_least(groups, "groups", 1)
    check_4d(weight, "weight", "[O, I, kh, kw]")
    check_same(weight, x, "weight", "input")
    if weight.shape[0] % groups != 0:
        raise ValueError(f"weight.shape[0]={weight.shape[0]} is not divisible by groups={groups}")
    out_channels = weight.shape[1] * groups if transposed else weight.shape[0]
    check_shaped(bias, "bias", [out_channels], "[O]", x, "input", dtype=True)
    if transposed and x.shape[1] != weight.shape[0]:
        raise ValueError(f"input has {x.shape[1]} channels but weight.shape[0] is {weight.shape[0]}")
    if not transposed and x.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"input has {x.shape[1]} channels but weight expects weight.shape[1] * groups = {weight.shape[1] * groups}"
        )
    return x, input.dim() == 3, groups


def _span(weight, dilation) -> list[int]:
    """The dilated kernel's size [dy (kh - 1) + 1, dx (kw - 1) + 1]."""
    return [dilation[i] * (weight.shape[i + 2] - 1) + 1 for i in range(2)]


# ----------------------------------------------------------------------------------------------------------------
# Public API


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d, differentiable to any order, honouring no_weight_gradients().

    input: [N, C, H, W] (or [C, H, W]); weight: [O, C // groups, kh, kw]; bias: [O] or None. stride, dilation:
    int or (sy, sx), default 1; padding: int, (py, px) or "valid" / "same", default 0; groups default 1.
    Returns [N, O, (H + 2 py - dy (kh - 1) - 1) // sy + 1, (W + 2 px - dx (kw - 1) - 1) // sx + 1].
    """
    x, unbatched, groups = _check_conv_args(input, weight, bias, groups, transposed=False)
    stride = int_pair(stride, "stride", 1)
    dilation = int_pair(dilation, "dilation", 1)
    if isinstance(padding, str):
        x, padding = _string_padding(x, weight, padding, stride, dilation)
    padding = int_pair(padding, "padding", 0)
    return _checked_conv2d(x, weight, bias, stride, padding, dilation, groups, unbatched)


def _checked_conv2d(x, weight, bias, stride, padding, dilation, groups, unbatched=False):
    """conv2d on arguments whose types and shapes are valid, the int pairs parsed: refuses an empty output."""
    span = _span(weight, dilation)
    if x.shape[2] + 2 * padding[0] < span[0] or x.shape[3] + 2 * padding[1] < span[1]:
        raise ValueError(f"input of size {list(x.shape[2:])} padded by {padding} is smaller than the dilated kernel "
                         f"{span}; the output would be empty")  # fmt: skip
    y = _conv2d(x, weight, bias, stride, padding, dilation, False, [0, 0], groups)
    return y.squeeze(0) if unbatched else y


def _string_padding(x, weight, padding: str, stride, dilation):
    """padding "valid" (none) or "same" (output as large as the input; an odd total adds the extra row and column
    at the end, as torch)."""
    if padding == "valid":
        return x, [0, 0]
    if padding != "same":
        raise ValueError(f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    if stride != [1, 1]:
        raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
    total = [s - 1 for s in _span(weight, dilation)]
    if total[0] % 2 or total[1] % 2:
        x = F.pad(x, [0, total[1] % 2, 0, total[0] % 2])
    return x, [total[0] // 2, total[1] // 2]


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """torch.nn.functional.conv_transpose2d, differentiable to any order, honouring no_weight_gradients().

    input: [N, C, H, W] (or [C, H, W]); weight: [C, O // groups, kh, kw]; bias: [O] or None. stride, padding,
    output_padding, dilation: int or (y, x), defaults 1, 0, 0, 1; output_padding < max(stride, dilation).
    Returns [N, O, (H - 1) sy - 2 py + dy (kh - 1) + opy + 1, (W - 1) sx - 2 px + dx (kw - 1) + opx + 1].
    """
    x, unbatched, groups = _check_conv_args(input, weight, bias, groups, transposed=True)
    stride = int_pair(stride, "stride", 1)
    padding = int_pair(padding, "padding", 0)
    output_padding = int_pair(output_padding, "output_padding", 0)
    dilation = int_pair(dilation, "dilation", 1)
    span = _span(weight, dilation)
    for i in range(2):
        if output_padding[i] >= max(stride[i], dilation[i]):
            raise ValueError(f"output_padding={output_padding} must be smaller than stride or dilation")
        if (x.shape[i + 2] - 1) * stride[i] - 2 * padding[i] + span[i] + output_padding[i] < 1:
            raise ValueError(f"padding={padding} leaves an empty output for an input of size {list(x.shape[2:])}")
    y = _conv2d(x, weight, bias, stride, padding, dilation, True, output_padding, groups)
    return y.squeeze(0) if unbatched else y


def _conv2d_wrapper(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):  # conv2d correlates; convolving flips the kernel
        w = w.flip([2, 3])
    if transpose:
        return conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    # x, w and groups are checked by conv2d_resample, stride and padding computed by it: conv2d's remaining check only
    # (its full validation again is ~5 us a call, a StyleGAN2 layer's conv at small sizes: benchmarks/NOTES.md)
    padding = [padding, padding] if isinstance(padding, int) else list(padding)
    return _checked_conv2d(x, w, None, [stride, stride], padding, [1, 1], groups)


def _check_resample_args(x, w, f, up, down, groups):
    check_4d(x, "x")
    check_4d(w, "w", "[O, C // groups, kh, kw]")
    check_same(w, x, "w", "x")
    if f is not None:
        check_float_tensor(f, "f")
        if f.dim() not in (1, 2) or f.numel() == 0:
            raise ValueError(f"f must be a non-empty 1-D (separable) or 2-D filter, got shape {list(f.shape)}")
    up = check_int_at_least(up, "up", 1)
    down = check_int_at_least(down, "down", 1)
    groups = check_int_at_least(groups, "groups", 1)
    if x.shape[1] != w.shape[1] * groups or w.shape[0] % groups != 0:
        raise ValueError(
            f"x has {x.shape[1]} channels but w of shape {list(w.shape)} with groups={groups} expects "
            f"{w.shape[1] * groups} (and w.shape[0] divisible by groups)"
        )
    return up, down, groups


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """2-D convolution with FIR up/downsampling (NVlabs' conv2d_resample), padding applied once at the start.

    x: [N, C, H, W]; w: [O, C // groups, kh, kw], x's dtype; f: FIR filter from setup_filter (None: identity).
    up, down: int factors (default 1); padding: int, [x, y] or [x0, x1, y0, y1] with respect to the upsampled
    image (default 0); groups default 1. flip_weight True correlates (as torch's conv2d), False convolves;
    flip_filter likewise for f (default False: convolve). Returns [N, O, H', W'], as
    gankernels.reference.conv2d.conv2d_resample, through the fast paths: the FIR filter before a strided conv
    when downsampling, a strided transposed conv then the filter when upsampling, 1x1 kernels resampled on the
    smaller side. Differentiable to any order; honours no_weight_gradients().
    """
    up, down, groups = _check_resample_args(x, w, f, up, down, groups)
    out_channels, in_channels_per_group, kh, kw = w.shape
    px0, px1, py0, py1 = resample_padding(f, up, down, _parse_padding(padding))

    if kw == 1 and kh == 1 and down > 1 and up == 1:  # 1x1, down only: downsample first, convolve fewer pixels
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:  # 1x1, up only: convolve first, upsample fewer channels
        x = _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter)
    if down > 1 and up == 1:  # down only: filter, then a strided conv
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d_wrapper(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:  # up (and maybe down): a strided transposed conv, then the filter
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_channels_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_channels_per_group, out_channels // groups, kh, kw)
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = _conv2d_wrapper(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True,
                            flip_weight=not flip_weight)  # fmt: skip
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:  # no resampling, symmetric padding: one conv
        return _conv2d_wrapper(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1], flip_filter=flip_filter)  # asymmetric or negative padding
    return _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight)
