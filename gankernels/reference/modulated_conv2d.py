"""Pure-PyTorch modulated convolution (StyleGAN2): the oracle of gankernels.ops.modulated_conv2d.

The plain formula, whatever `fused_modconv` says: modulate the weight per sample, demodulate, one grouped conv
(torch.nn.functional and the upfirdn2d reference for the resampling), add noise, then bias, activation, gain and
clamp. Differentiable to any order through torch autograd. Arguments are assumed valid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import bias_act as ref_bias_act
from .conv2d import conv2d_resample


def fp16_prenormalize(weight: torch.Tensor, styles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NVlabs' scaling of weight and styles before an fp16 demodulated conv, against overflow: weight / (max |w| of
    each output channel * sqrt(I kh kw)), styles / (max |s| of each sample). Demodulation cancels both."""
    _, in_channels, kh, kw = weight.shape
    weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
    styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    return weight, styles


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
    """y = clamp(act(conv(x, w_n) + noise + bias) * gain), w_n[o, i] = weight[o, i] * styles[n, i] * d[n, o].

    x: [N, I, H, W]; weight: [O, I, kh, kw]; styles: [N, I]; d[n, o] = (sum_{i,k} (weight styles)^2 + 1e-8)^-1/2
    when demodulate, else 1. noise broadcasts to the output [N, O, H', W'] (or None); bias: [O] or None. up, down,
    padding, resample_filter, flip_weight as conv2d_resample. act, gain (None: the activation's default), clamp
    (None: none) as bias_act. fused_modconv is accepted for the signature and changes nothing here.
    """
    batch_size, _, height, width = x.shape
    out_channels, in_channels, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        weight, styles = fp16_prenormalize(weight, styles)
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, in_channels, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    y = conv2d_resample(x.reshape(1, batch_size * in_channels, height, width),
                        w.reshape(batch_size * out_channels, in_channels, kh, kw).to(x.dtype), f=resample_filter,
                        up=up, down=down, padding=padding, groups=batch_size, flip_weight=flip_weight)  # fmt: skip
    y = y.reshape(batch_size, out_channels, y.shape[2], y.shape[3])
    if noise is not None:
        y = y + noise.to(y.dtype)
    spec = ref_bias_act.ACTIVATIONS[act]
    gain = spec.gain if gain is None else gain
    return ref_bias_act.bias_act(y, bias, 1, act, spec.alpha, gain, -1.0 if clamp is None else clamp)


# ----------------------------------------------------------------------------------------------------------------
# The pieces that gankernels.triton.modulated_conv2d fuses, and their gradients in terms of what the fused ops save
# (the backward ops' own backward is autograd through these formulas). Arguments are assumed valid.


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """d[n, o] = (sum_i styles[n, i]^2 wsq[o, i] + 1e-8)^(-1/2), wsq[o, i] = sum_{kh, kw} weight[o, i]^2: [N, O].

    The same number as NVlabs' (weight * styles).square().sum([2, 3, 4]), as an [N, I] x [I, O] product that never
    builds the [N, O, I, kh, kw] modulated weight."""
    if weight.dtype != styles.dtype:  # computed in the dtype that weight * styles would compute in
        dtype = torch.promote_types(weight.dtype, styles.dtype)
        weight, styles = weight.to(dtype), styles.to(dtype)
    wsq = weight.square().sum(dim=[2, 3])  # [O, I]
    return (F.linear(styles.square(), wsq) + 1e-8).rsqrt()


def demodulation_coefficients_grad(gd, weight, styles, dcoefs):
    """(dweight, dstyles) of d = demodulation_coefficients(weight, styles) given gd = dL/dd, with d given:
    q = sum_i s^2 wsq + 1e-8, dd/dq = -d^3 / 2, dq/ds[n, i] = 2 s[n, i] wsq[o, i], dq/dweight[o, i, k] = 2 s^2 w."""
    gq = -0.5 * gd * dcoefs.pow(3)  # [N, O]
    wsq = weight.square().sum(dim=[2, 3])
    dstyles = 2 * styles * (gq @ wsq)
    dweight = 2 * weight * (gq.t() @ styles.square())[:, :, None, None]
    return dweight, dstyles


def modulated_weights(weight, styles, dcoefs=None):
    """w[n, o, i, kh, kw] = weight[o, i, kh, kw] styles[n, i] dcoefs[n, o] (dcoefs None: 1): [N, O, I, kh, kw]."""
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]
    return w if dcoefs is None else w * dcoefs[:, :, None, None, None]


def modulated_weights_grad(g, weight, styles, dcoefs=None):
    """(dweight, dstyles, ddcoefs or None) of w = modulated_weights(weight, styles, dcoefs) given g = dL/dw."""
    sd = styles[:, None, :] if dcoefs is None else styles[:, None, :] * dcoefs[:, :, None]  # [N, O, I]
    dweight = (g * sd[..., None, None]).sum(0)
    h = (g * weight).sum(dim=[3, 4])  # [N, O, I]
    dstyles = h.sum(1) if dcoefs is None else (h * dcoefs[:, :, None]).sum(1)
    ddcoefs = None if dcoefs is None else (h * styles[:, None, :]).sum(2)
    return dweight, dstyles, ddcoefs


def epilogue(y, dcoefs=None, noise=None, bias=None, act="linear", alpha=0.0, gain=1.0, clamp=-1.0):
    """out = clamp(act(y dcoefs[n, o] + noise + bias[o], alpha) gain, -clamp, clamp); clamp < 0: none.

    y: [N, O, H, W]; dcoefs: [N, O] or None; noise: broadcastable to y (e.g. [N, 1, H, W]) or None; bias: [O] or None.
    act, alpha, gain as bias_act (already defaulted)."""
    z = y if dcoefs is None else y * dcoefs.to(y.dtype).reshape(*dcoefs.shape, 1, 1)
    if noise is not None:
        z = z + noise.to(z.dtype)
    return ref_bias_act.bias_act(z, bias, 1, act, alpha, gain, clamp)


def epilogue_grad(g, y, dcoefs, noise, bias, act, alpha, gain, clamp):
    """(dy, ddcoefs, dnoise, dbias) of out = epilogue(y, dcoefs, noise, bias, ...) given g = dL/dout; None where the
    input is None. gz = g gain act'(z) [|out| < clamp] as bias_act's gradient; dy = gz d, ddcoefs = sum_hw gz y,
    dnoise = gz summed to noise's shape, dbias = sum_{n, hw} gz."""
    d = None if dcoefs is None else dcoefs.to(y.dtype).reshape(*dcoefs.shape, 1, 1)
    z = y if d is None else y * d
    if noise is not None:
        z = z + noise.to(z.dtype)
    if bias is not None:
        z = z + bias.reshape(1, -1, 1, 1)
    out = ref_bias_act.bias_act(z, None, 1, act, alpha, gain, clamp)
    gz = ref_bias_act.bias_act_grad(g, None, z, None, out, 1, act, alpha, gain, clamp, 1)
    dy = gz if d is None else gz * d
    ddcoefs = None if d is None else (gz * y).sum(dim=[2, 3]).to(dcoefs.dtype)
    dnoise = None if noise is None else gz.sum_to_size(noise.shape).to(noise.dtype)
    dbias = None if bias is None else gz.sum(dim=[0, 2, 3])
    return dy, ddcoefs, dnoise, dbias
