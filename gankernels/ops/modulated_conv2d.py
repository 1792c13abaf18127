"""StyleGAN2's modulated (and demodulated) convolution, with the layer's epilogue fused behind it.

Two paths, one result (gankernels.reference.modulated_conv2d is the formula both are tested against; semantics follow
NVlabs' networks_stylegan2 `modulated_conv2d`):

- composed (backends "ref", "cpu", "cuda"): gankernels ops only, the convolution through conv2d_resample (custom conv
  ops and upfirdn2d), the epilogue (bias, activation, gain, clamp) through bias_act, the rest plain torch.
- fused (backend "triton"): the three pieces of gankernels.ops.modconv_pieces (demodulation coefficients, per-sample
  weights, epilogue; each a custom op with a fused, differentiable backward) around torch's convolution:

  fused_modconv=False: x * styles -> conv2d_resample with the shared weight -> epilogue with d.
  fused_modconv=True: per-sample weights (with d) -> one grouped conv2d_resample -> epilogue without d.
"""

from __future__ import annotations

import torch

from ..reference.modulated_conv2d import demodulation_coefficients as ref_demodulation_coefficients
from ..reference.modulated_conv2d import fp16_prenormalize
from ._common import check_4d, check_bool, check_float_tensor, check_int_at_least, check_on, check_shaped
from .bias_act import bias_act
from .conv2d import conv2d_resample
from .modconv_pieces import (  # noqa: F401  (demodulation_coefficients, modulated_weights: public here too)
    _check_epilogue,
    _check_noise,
    _dcoefs_op,
    _defaults,
    _epilogue,
    _weights_op,
    demodulation_coefficients,
    modulated_conv2d_epilogue,
    modulated_weights,
    resolve_backend,
)


def _check_args(x, weight, styles, noise, up, down, resample_filter, bias, act, gain, clamp):
    check_4d(x, "x", "[N, I, H, W]")
    check_4d(weight, "weight", "[O, I, kh, kw]")
    check_on(weight, "weight", x, "x")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but weight expects weight.shape[1]={weight.shape[1]}")
    check_float_tensor(styles, "styles")  # not optional
    check_shaped(styles, "styles", [x.shape[0], x.shape[1]], "[N, I]", x, "x")
    check_on(noise, "noise", x, "x")
    check_int_at_least(up, "up", 1)
    check_int_at_least(down, "down", 1)
    check_on(resample_filter, "resample_filter", x, "x")
    check_shaped(bias, "bias", [weight.shape[0]], "[O]", x, "x")
    _check_epilogue(act, gain, clamp)


def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                     demodulate=True, flip_weight=True, fused_modconv=True, *, bias=None, act="linear", gain=None,
                     clamp=None):  # fmt: skip
    """StyleGAN2's modulated convolution, then noise, then the fused epilogue bias + activation + gain + clamp.

    y = clamp(act(conv(x, w_n) + noise + bias) * gain, -clamp, clamp), w_n[o, i] = weight[o, i] styles[n, i]
    d[n, o], d[n, o] = (sum_{i, kh, kw} (weight[o, i] styles[n, i])^2 + 1e-8)^(-1/2) when demodulate else 1.

    x: [N, I, H, W]; weight: [O, I, kh, kw]; styles: [N, I]; noise: broadcastable to the output [N, O, H', W']
    (e.g. [N, 1, H', W'] or [H', W']), or None. up, down: int (default 1), resampling through resample_filter
    (from setup_filter; None: identity) as conv2d_resample, with `padding` (default 0) with respect to the
    upsampled image. flip_weight True correlates (default), False convolves. fused_modconv True (default): one
    grouped conv with per-sample weights; False: scale x by the styles, a conv with the shared weight, scale the
    output by d (same result; faster when the batch is large). fp16 x with demodulate: weight and styles are
    pre-normalized against overflow, as NVlabs. Keyword-only epilogue: bias [O] or None, act (default "linear"),
    gain (None: the activation's default) and clamp (None: no clamping) as gankernels.ops.bias_act; with the
    defaults the epilogue is the identity. Returns [N, O, H', W'] in x's dtype. Differentiable to any order with
    respect to x, weight, styles, noise and bias; honours no_weight_gradients(). On the triton backend (the default
    on CUDA tensors) d, the per-sample weights and the epilogue run on fused kernels (see resolve_backend).
    """
    _check_args(x, weight, styles, noise, up, down, resample_filter, bias, act, gain, clamp)
    demodulate = check_bool(demodulate, "demodulate")
    fused_modconv = check_bool(fused_modconv, "fused_modconv")
    flip_weight = check_bool(flip_weight, "flip_weight")
    backend = resolve_backend(x.device.type)
    if x.dtype == torch.float16 and demodulate:
        weight, styles = fp16_prenormalize(weight, styles)
    conv = dict(f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)
    if backend == "ref":
        return _composed(x, weight, styles, noise, conv, demodulate, fused_modconv, bias, act, gain, clamp)
    return _fused(x, weight, styles, noise, conv, demodulate, fused_modconv, bias, act, gain, clamp, backend)


def _fused(x, weight, styles, noise, conv, demodulate, fused_modconv, bias, act, gain, clamp, backend):
    """d from the dcoefs kernel; fused_modconv: per-sample weights kernel -> grouped conv -> epilogue kernel without d,
    else x * styles -> conv with the shared weight -> epilogue kernel with d."""
    dtype = torch.promote_types(weight.dtype, styles.dtype)  # what the composed weight * styles computes in
    weight_c, styles_c = weight.to(dtype), styles.to(dtype)
    dcoefs = _dcoefs_op(weight_c, styles_c, backend) if demodulate else None
    if fused_modconv:
        y = _conv(x, _weights_op(weight_c, styles_c, dcoefs, x.dtype, backend), None, conv)
        dcoefs = None
    else:
        y = _conv(x, weight, styles, conv)
    _check_noise(noise, y.shape)
    alpha, gain, clamp = _defaults(act, None, gain, clamp)
    return _epilogue(y, dcoefs, noise, bias, act, alpha, gain, clamp, backend)


def _composed(x, weight, styles, noise, conv, demodulate, fused_modconv, bias, act, gain, clamp):
    """Other gankernels ops and plain torch: the "ref", "cpu" and "cuda" backends."""
    batch_size = x.shape[0]
    # Demodulation coefficients d [N, O] as styles^2 @ wsq^T (no [N, O, I, kh, kw] tensor), per-sample weights
    # [N, O, I, kh, kw] only for the grouped conv.
    dcoefs = ref_demodulation_coefficients(weight, styles) if demodulate else None
    if fused_modconv:  # one pass over [N, O, I, kh, kw]: the [N, O, I] scales first
        scales = styles.reshape(batch_size, 1, -1, 1, 1)
        if demodulate:
            scales = scales * dcoefs.reshape(batch_size, -1, 1, 1, 1)
        y = _conv(x, weight.unsqueeze(0) * scales, None, conv)
    else:  # scale the activations before and after a conv with the shared weight
        y = _conv(x, weight, styles, conv)
        if demodulate:
            y = y * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)

    _check_noise(noise, y.shape)
    if noise is not None:
        y = y + noise.to(y.dtype)
    if bias is None and act == "linear" and gain in (None, 1) and clamp is None:  # no epilogue (checked: no call)
        return y
    return bias_act(y, None if bias is None else bias.to(y.dtype), act=act, gain=gain, clamp=clamp)


def _conv(x, w, styles, conv):
    """styles None: x conv the per-sample weights w [N, O, I, kh, kw], the batch as groups ([1, N I, H, W] conv
    [N O, I, kh, kw]); else x scaled by the styles [N, I], conv the shared weight w [O, I, kh, kw]."""
    n = x.shape[0]
    if styles is not None:
        return conv2d_resample(x * styles.to(x.dtype).reshape(n, -1, 1, 1), w.to(x.dtype), **conv)
    y = conv2d_resample(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, *w.shape[2:]).to(x.dtype), groups=n, **conv)
    return y.reshape(n, -1, *y.shape[2:])
