"""Pure-PyTorch modulated convolution (StyleGAN2): the oracle of gankernels.ops.modulated_conv2d.

The plain formula, whatever `fused_modconv` says: modulate the weight per sample, demodulate, one grouped conv
(torch.nn.functional and the upfirdn2d reference for the resampling), add noise, then bias, activation, gain and
clamp. Differentiable to any order through torch autograd. Arguments are assumed valid.
"""

from __future__ import annotations

import math

import torch

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
