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

import numbers

import torch

from ..reference.modulated_conv2d import demodulation_coefficients as ref_demodulation_coefficients
from ..reference.modulated_conv2d import fp16_prenormalize
from ._common import call, check_float_tensor, check_int, check_same
from .bias_act import bias_act
from .conv2d import conv2d_resample
from .modconv_pieces import (  # noqa: F401  (demodulation_coefficients, modulated_weights: public here too)
    _check_epilogue,
    _check_noise,
    _dcoefs_op,
    _DcoefsFn,
    _defaults,
    _epilogue,
    _weights_op,
    _WeightsFn,
    demodulation_coefficients,
    modulated_conv2d_epilogue,
    modulated_weights,
    resolve_backend,
)


def _check_args(x, weight, styles, noise, up, down, resample_filter, bias, act, gain, clamp):
    check_float_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D [N, I, H, W], got shape {list(x.shape)}")
    check_float_tensor(weight, "weight")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D [O, I, kh, kw], got shape {list(weight.shape)}")
    check_same(weight, x, "weight", "x", dtype=False)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but weight expects weight.shape[1]={weight.shape[1]}")
    check_float_tensor(styles, "styles")
    check_same(styles, x, "styles", "x", dtype=False)
    if list(styles.shape) != [x.shape[0], x.shape[1]]:
        raise ValueError(f"styles must have shape [N, I] = {[x.shape[0], x.shape[1]]}, got {list(styles.shape)}")
    if noise is not None:
        check_float_tensor(noise, "noise")
        check_same(noise, x, "noise", "x", dtype=False)
    for name, v in (("up", up), ("down", down)):
        if check_int(v, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if resample_filter is not None:
        check_float_tensor(resample_filter, "resample_filter")
        check_same(resample_filter, x, "resample_filter", "x", dtype=False)
    if bias is not None:
        check_float_tensor(bias, "bias")
        check_same(bias, x, "bias", "x", dtype=False)
        if bias.dim() != 1 or bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias must have shape [O] = [{weight.shape[0]}], got {list(bias.shape)}")
    _check_epilogue(act, gain, clamp)


def _check_flag(v, name: str) -> bool:
    if not isinstance(v, (bool, numbers.Integral)):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    return bool(v)


def modulated_conv2d(
    x,
    weight,
    styles,
    noise=None,
    up=1,
    down=1,
    padding=0,
    resample_filter=None,
    demodulate=True,
    flip_weight=True,
    fused_modconv=True,
    *,
    bias=None,
    act="linear",
    gain=None,
    clamp=None,
):
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
    demodulate = _check_flag(demodulate, "demodulate")
    fused_modconv = _check_flag(fused_modconv, "fused_modconv")
    flip_weight = _check_flag(flip_weight, "flip_weight")
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
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    dtype = torch.promote_types(weight.dtype, styles.dtype)  # what the composed weight * styles computes in
    weight_c, styles_c = weight.to(dtype), styles.to(dtype)
    dcoefs = call(_dcoefs_op, _DcoefsFn, weight_c, styles_c, backend) if demodulate else None
    if fused_modconv:  # the batch as groups: [1, N I, H, W] conv [N O, I, kh, kw]
        w = call(_weights_op, _WeightsFn, weight_c, styles_c, dcoefs, x.dtype, backend)
        y = conv2d_resample(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, in_channels, kh, kw), groups=batch_size,
                            **conv)  # fmt: skip
        y = y.reshape(batch_size, -1, *y.shape[2:])
        dcoefs = None
    else:
        y = conv2d_resample(x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1), weight.to(x.dtype), **conv)
    if noise is not None:
        _check_noise(noise, y.shape)
    alpha, gain, clamp = _defaults(act, None, gain, clamp)
    return _epilogue(y, dcoefs, noise, bias, act, alpha, gain, clamp, backend)


def _composed(x, weight, styles, noise, conv, demodulate, fused_modconv, bias, act, gain, clamp):
    """Other gankernels ops and plain torch: the "ref", "cpu" and "cuda" backends."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    # Demodulation coefficients d [N, O] as styles^2 @ wsq^T (no [N, O, I, kh, kw] tensor), per-sample weights
    # [N, O, I, kh, kw] only for the grouped conv.
    dcoefs = ref_demodulation_coefficients(weight, styles) if demodulate else None
    if fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
        if demodulate:
            w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)

    if fused_modconv:  # the batch as groups: [1, N I, H, W] conv [N O, I, kh, kw]
        y = conv2d_resample(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, in_channels, kh, kw).to(x.dtype),
                            groups=batch_size, **conv)  # fmt: skip
        y = y.reshape(batch_size, -1, *y.shape[2:])
    else:  # scale the activations before and after a conv with the shared weight
        y = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        y = conv2d_resample(y, weight.to(x.dtype), **conv)
        if demodulate:
            y = y * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)

    if noise is not None:
        _check_noise(noise, y.shape)
        y = y + noise.to(y.dtype)
    return bias_act(y, None if bias is None else bias.to(y.dtype), act=act, gain=gain, clamp=clamp)
