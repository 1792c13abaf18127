"""A stride-1 convolution with StyleGAN2's modulation, zero or reflection padding and a layer's epilogue fused in:

    y = clamp(act(conv2d(pad(x * in_scale), weight) * out_scale + noise + bias, alpha) * gain, -clamp, clamp)

One op covers a non-resampling StyleGAN2 layer on the fused_modconv=False path (in_scale = styles, out_scale = the
demodulation coefficients, the shared weight) and CycleGAN's ReflectionPad2d + Conv2d (+ bias + activation).
gankernels.reference.fused_conv2d is the formula; two paths compute it:

- composed (backend "ref", and the automatic choice everywhere for now): gankernels ops only, x * in_scale, F.pad
  for reflection, gankernels' conv2d, then modulated_conv2d's epilogue (which picks its own backend: the fused
  epilogue kernel on CUDA). Differentiable to any order; honours no_weight_gradients().
- fused (backend "triton"): the forward is ONE Triton kernel (gankernels.triton.fused_conv2d, an implicit GEMM that
  scales and pads while loading and runs the epilogue while storing), behind the custom op gankernels::fused_conv2d.
  Its backward is COMPOSED, not one kernel: modulated_conv2d's fused epilogue gradient op (dy, d out_scale, d noise,
  d bias), then gankernels' conv gradient ops (dx of the padded input by a transposed conv, dweight), the adjoint of
  the reflection (aten.reflection_pad2d_backward) and plain torch for the in_scale product. Every piece is
  differentiable again, so second and higher orders are exact (R1, path length); it honours no_weight_gradients().
  The forward writes the conv output y beside the result when a gradient will be needed (the epilogue's gradient
  reads it), as the composed path keeps it.

The op is declared through _define.define_op (eager Function, custom op, vmap rule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import backend as _backend
from ..reference.bias_act import ACTIVATIONS
from ..reference.fused_conv2d import padding_pair
from ._common import (
    check_4d,
    check_int,
    check_on,
    check_same,
    check_shaped,
    contiguous,
    dense,
    empty_as,
    int_pair,
    kernels,
    memory_format,
)
from ._define import define_op
from .conv2d import _conv2d, _conv2d_grads, _conv2d_weight_grad, conv2d, skip_weight_gradient
from .modconv_pieces import (
    _absent,
    _check_epilogue,
    _check_noise,
    _defaults,
    _epilogue_grad_op,
    _noise_planes,
    _per_sample,
    modulated_conv2d_epilogue,
)

OP = "fused_conv2d"  # the backend op name: the kernel in gankernels.triton.fused_conv2d


def resolve_backend(device_type: str) -> str:
    """The path that runs fused_conv2d on `device_type` tensors: "triton" (the fused kernel) or "ref" (composed).

    A forced "triton" (gankernels.set_backend / use_backend / GANKERNELS_BACKEND) runs the kernel, on CPU tensors too
    under TRITON_INTERPRET=1 (RuntimeError when triton cannot run here). Anything else, forced or automatic, runs the
    composed path, whose ops make their own choices (on CUDA: the fused epilogue kernel after cuDNN's conv).
    """
    # Automatic = composed everywhere, on purpose: the kernel becomes the default on CUDA only after a GPU benchmark
    # (gankernels.bench.fused_conv2d: StyleGAN2 512-channel 3x3 layers, CycleGAN 256-channel reflect) shows it faster
    # than cuDNN + the epilogue kernel. No GPU was available when it was written; its tile sizes are guesses.
    return _backend.resolve_triton_op(OP, device_type, cuda_default=False)


def _identity_epilogue(out_scale, noise, bias, act, gain, clamp) -> bool:
    return out_scale is None and noise is None and bias is None and act == "linear" and gain == 1 and clamp < 0


# ----------------------------------------------------------------------------------------------------------------
# The custom op: (out, y), y = the conv output before the epilogue when need_y, else an empty placeholder


def _outputs(x: torch.Tensor, weight: torch.Tensor, padding, need_y: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty (out, y): out in x's memory format, y like it when need_y, else a placeholder."""
    k = weight.shape[2]
    shape = [x.shape[0], weight.shape[0], x.shape[2] + 2 * padding[0] - k + 1, x.shape[3] + 2 * padding[1] - k + 1]
    out = empty_as(x, shape)
    return out, (torch.empty_like(out) if need_y else _absent(x))


def _fused_impl(x, weight, in_scale, out_scale, noise, bias, padding, reflect, act, alpha, gain, clamp, need_y,
                backend):  # fmt: skip
    x = dense(x)
    out, y = _outputs(x, weight, padding, need_y)
    if out.numel():
        kernels(backend, OP).fused_conv2d_forward(
            x, weight, *contiguous(in_scale, out_scale, noise, bias), out, y if need_y else None, padding, reflect,
            ACTIVATIONS[act].index, alpha, gain, clamp,
        )  # fmt: skip
    return out, y


def _fused_fake(x, weight, in_scale, out_scale, noise, bias, padding, reflect, act, alpha, gain, clamp, need_y,
                backend):  # fmt: skip
    return _outputs(x, weight, padding, need_y)


def _fused_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:6], output[1])  # x, weight, in_scale, out_scale, noise, bias, y
    ctx.params = inputs[6:]
    ctx.set_materialize_grads(False)


def _fused_backward(ctx, g_out, g_y):
    """Composed of differentiable ops (see the module docstring): exact to any order, not one kernel."""
    x, weight, in_scale, out_scale, noise, bias, y = ctx.saved_tensors
    padding, reflect, act, alpha, gain, clamp, need_y, backend = ctx.params
    needs = ctx.needs_input_grad
    grads = [None] * 14
    dy = None
    if g_out is not None:  # through the epilogue: modulated_conv2d's fused gradient op, itself differentiable
        if _identity_epilogue(out_scale, noise, bias, act, gain, clamp):
            dy = g_out
        elif not need_y:  # only a direct call of the op can get here (fused_conv2d asks for y when it will need it)
            raise RuntimeError("gankernels::fused_conv2d ran with need_y=False: its epilogue's gradient needs y")
        else:
            epilogue = (out_scale, noise, bias, act, alpha, gain, clamp, backend)
            dy, dd, dnoise, dbias = _epilogue_grad_op(g_out, y, *epilogue, ctx=ctx)
            for index, t, dt in ((3, out_scale, dd), (4, noise, dnoise), (5, bias, dbias)):
                grads[index] = dt if t is not None and needs[index] else None
    if g_y is not None and need_y:  # y is an output too: a double backward reaches it through the epilogue's gradient
        dy = g_y if dy is None else dy + g_y
    want_x = needs[0] or needs[2]
    want_w = needs[1] and not skip_weight_gradient(weight)
    if dy is None or not (want_x or want_w):
        return tuple(grads)

    # The conv: y = conv(xp, weight), xp = pad(x s) (reflect: F.pad, the conv unpadded; zeros: the conv pads).
    py, px = padding
    conv_padding = [0, 0] if reflect else [py, px]
    conv = ([1, 1], conv_padding, [1, 1], False, [0, 0], 1)  # stride, padding, dilation, transposed, out pad, groups
    dxp = None
    if want_w:
        xs = x if in_scale is None else x * in_scale[:, :, None, None]
        xp = F.pad(xs, [px, px, py, py], mode="reflect") if reflect else xs
        if want_x:  # one convolution_backward for both
            dxp, grads[1] = _conv2d_grads(dy, xp, weight, *conv, ctx=ctx)
        else:
            grads[1] = _conv2d_weight_grad(dy, xp, weight, *conv, ctx=ctx)
    elif want_x:  # stride 1: conv^T(dy) with the same padding is exactly xp's size (no output padding)
        dxp = _conv2d(dy, weight, None, [1, 1], conv_padding, [1, 1], True, [0, 0], 1, ctx=ctx)
    if want_x:
        # the adjoint of the reflection: each padded pixel's gradient added onto the pixel it mirrors
        dxs = torch.ops.aten.reflection_pad2d_backward(dxp, x, [px, px, py, py]) if reflect else dxp
        if needs[0]:
            grads[0] = dxs if in_scale is None else dxs * in_scale[:, :, None, None]
        if needs[2]:
            grads[2] = (dxs * x).sum(dim=(2, 3))
    return tuple(grads)


# vmap: x, in_scale, out_scale and noise fold as the epilogue's; without need_y (argument 12) y is a [0] placeholder
_fused_op = define_op(
    "fused_conv2d",
    "(Tensor x, Tensor weight, Tensor? in_scale, Tensor? out_scale, Tensor? noise, Tensor? bias, SymInt[] padding, "
    "bool reflect, str act, float alpha, float gain, float clamp, bool need_y, str backend) -> (Tensor, Tensor)",
    _fused_impl, fake=_fused_fake, setup_context=_fused_setup, backward=_fused_backward,
    vmap=_per_sample((0, 2, 3), 4, outputs=2, unless_false=12),
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Public API


def _check_args(x, weight, stride, padding, groups, padding_mode, in_scale, out_scale, noise, bias, act, alpha, gain,
                clamp):  # fmt: skip
    """Validates everything; returns (padding (py, px), output size (H', W'))."""
    check_4d(x, "x", "[N, I, H, W]")
    check_4d(weight, "weight", "[O, I, k, k]")
    check_same(weight, x, "weight", "x")
    kh, kw = weight.shape[2:]
    if kh != kw or kh % 2 == 0:
        raise ValueError(f"weight must have a square kernel of odd size (1, 3, 5, 7, ...), got {kh}x{kw}")
    if check_int(groups, "groups") != 1:
        raise ValueError(f"groups must be 1 (fused_conv2d has no grouped convolution), got {groups}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but weight expects weight.shape[1] = {weight.shape[1]}")
    if int_pair(stride, "stride", 1) != [1, 1]:
        raise ValueError(f"stride must be 1 (fused_conv2d has no strided convolution), got {stride}")
    if not isinstance(padding_mode, str):
        raise TypeError(f"padding_mode must be a str, got {type(padding_mode).__name__}")
    if padding_mode not in ("zeros", "reflect"):
        raise ValueError(f"padding_mode must be 'zeros' or 'reflect', got {padding_mode!r}")
    if padding is not None:
        padding = int_pair(padding, "padding", 0, kinds="None, an int or a pair of ints (py, px)")
    py, px = padding_pair(weight, padding)
    h, w = x.shape[2:]
    if padding_mode == "reflect" and (py >= h or px >= w):
        raise ValueError(f"padding {[py, px]} must be smaller than the input's size {[h, w]} with padding_mode reflect")
    ho, wo = h + 2 * py - kh + 1, w + 2 * px - kw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"input of size {[h, w]} padded by {[py, px]} is smaller than the {kh}x{kw} kernel")
    n, i, o = x.shape[0], x.shape[1], weight.shape[0]
    check_shaped(in_scale, "in_scale", [n, i], "[N, I]", x, "x")
    check_shaped(out_scale, "out_scale", [n, o], "[N, O]", x, "x")
    check_shaped(bias, "bias", [o], "[O]", x, "x")
    check_on(noise, "noise", x, "x")
    _check_noise(noise, [n, 1, ho, wo], "[N, 1, H', W'] =")
    _check_epilogue(act, gain, clamp, alpha)
    return [py, px], [ho, wo]


def fused_conv2d(x, weight, *, stride=1, padding=None, groups=1, padding_mode="zeros", in_scale=None, out_scale=None,
                 noise=None, bias=None, act="linear", alpha=None, gain=None, clamp=None):  # fmt: skip
    """A stride-1 convolution with input scaling, zero or reflection padding and an epilogue, fused:

        y = clamp(act(conv2d(pad(x * in_scale), weight) * out_scale + noise + bias, alpha) * gain, -clamp, clamp)

    x: [N, I, H, W] (NCHW or channels_last: the result keeps it); weight: [O, I, k, k], x's dtype, k odd (1, 3, 5,
    7, ...). padding: None (default: k // 2, the output as large as x), an int or (py, px); padding_mode "zeros"
    (default) or "reflect" (ReflectionPad2d: padding < H and < W). in_scale: [N, I] or None, scales x per (sample,
    input channel) before the conv (StyleGAN2's styles); out_scale: [N, O] or None, scales the conv output (the
    demodulation coefficients); noise: broadcastable to [N, 1, H', W'] (e.g. [N, 1, H', W'], [H', W']) or None;
    bias: [O] or None; these four are cast to x's dtype. act, alpha, gain (None: the activation's defaults) and
    clamp (None: none) as gankernels.ops.bias_act; with none of them given the epilogue is the identity. stride and
    groups must be 1 (they exist to refuse ported code clearly). Returns [N, O, H', W'] in x's dtype and memory
    format, H' = H + 2 py - k + 1.

    Differentiable to any order with respect to x, weight, in_scale, out_scale, noise and bias; honours
    no_weight_gradients(). On the triton backend (forced; see resolve_backend) the forward is one kernel and the
    backward is composed of other gankernels ops (not one kernel); elsewhere everything is composed.
    """
    padding, (ho, wo) = _check_args(x, weight, stride, padding, groups, padding_mode, in_scale, out_scale, noise,
                                    bias, act, alpha, gain, clamp)  # fmt: skip
    alpha, gain, clamp = _defaults(act, alpha, gain, clamp)
    in_scale, out_scale, noise, bias = (t if t is None else t.to(x.dtype) for t in (in_scale, out_scale, noise, bias))
    reflect = padding_mode == "reflect"
    backend = resolve_backend(x.device.type)
    if backend == "ref":
        return _composed(x, weight, padding, reflect, in_scale, out_scale, noise, bias, act, alpha, gain, clamp)
    if noise is not None:  # [Nn, 1, H', W'], Nn in {1, N}: the kernel's noise planes (a differentiable view)
        noise = _noise_planes(noise, ho, wo)
    tensors = (x, weight, in_scale, out_scale, noise, bias)
    need_y = (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
              and not _identity_epilogue(out_scale, noise, bias, act, gain, clamp))  # fmt: skip
    out, _ = _fused_op(dense(x), weight, in_scale, out_scale, noise, bias, padding, reflect, act, alpha, gain, clamp,
                       need_y, backend)  # fmt: skip
    return out


def _composed(x, weight, padding, reflect, in_scale, out_scale, noise, bias, act, alpha, gain, clamp):
    """gankernels ops and plain torch: the "ref" backend and the automatic choice."""
    fmt = memory_format(x)
    if in_scale is not None:
        x = x * in_scale.reshape(*in_scale.shape, 1, 1)
    if reflect:
        x = F.pad(x, [padding[1], padding[1], padding[0], padding[0]], mode="reflect")
        padding = [0, 0]
    if _identity_epilogue(out_scale, noise, None, act, gain, clamp):  # at most a bias: the conv adds it
        return dense(conv2d(x, weight, bias, padding=padding), fmt)
    y = conv2d(x, weight, padding=padding)
    y = modulated_conv2d_epilogue(y, out_scale, noise, bias, act=act, alpha=alpha, gain=gain,
                                  clamp=None if clamp < 0 else clamp)  # fmt: skip
    return dense(y, fmt)
