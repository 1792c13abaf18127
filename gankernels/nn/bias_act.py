"""Modules over gankernels.ops.bias_act."""

from __future__ import annotations

import torch
from torch import nn

from ..ops.bias_act import ACTIVATIONS, bias_act


class BiasAct(nn.Module):
    """y = clamp(act(x + bias, alpha) * gain, -clamp, clamp), with an optional learnable `bias` of shape [channels].

    channels: length of `bias` along `dim` (None: no bias). Defaults of alpha and gain follow the activation
    (lrelu: 0.2 and sqrt(2)), as gankernels.ops.bias_act.
    """

    def __init__(self, channels=None, act="linear", alpha=None, gain=None, clamp=None, dim=1, bias_init=0.0):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"act: unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise ValueError(f"channels must be a positive int or None, got {channels!r}")
        self.act, self.alpha, self.gain, self.clamp, self.dim = act, alpha, gain, clamp, dim
        self.bias = nn.Parameter(torch.full([channels], float(bias_init))) if channels is not None else None

    def forward(self, x):
        return bias_act(x, self.bias, dim=self.dim, act=self.act, alpha=self.alpha, gain=self.gain, clamp=self.clamp)

    def extra_repr(self):
        channels = None if self.bias is None else self.bias.shape[0]
        return f"channels={channels}, act={self.act}, alpha={self.alpha}, gain={self.gain}, clamp={self.clamp}"


class FusedLeakyReLU(nn.Module):
    """rosinality's stylegan2-pytorch FusedLeakyReLU: leaky_relu(x + bias, negative_slope) * scale.

    x: [N, channels, ...]; `bias` (shape [channels], zeros) is a parameter when bias=True, as there.
    """

    def __init__(self, channels, bias=True, negative_slope=0.2, scale=2**0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, x):
        return bias_act(x, self.bias, dim=1, act="lrelu", alpha=self.negative_slope, gain=self.scale)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}, scale={self.scale}"
