"""StyleGAN2's layers on gankernels.ops: FullyConnectedLayer, Conv2dLayer, SynthesisLayer, ToRGBLayer.

Constructor arguments, forward signatures, parameter and buffer names, and initialisation are NVlabs'
(stylegan2-ada-pytorch / stylegan3 training/networks_stylegan2.py), so their state dicts load with strict=True
and give the same outputs. Weights are stored at unit variance and scaled at run time (equalised learning rate).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.bias_act import ACTIVATIONS, bias_act
from ..ops.conv2d import conv2d_resample
from ..ops.modulated_conv2d import modulated_conv2d
from ..ops.upfirdn2d import setup_filter


def _check_activation(activation) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")


def _check_positive(**values) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def _param_or_buffer(module: nn.Module, name: str, value: torch.Tensor | None, trainable: bool) -> None:
    if value is None:
        setattr(module, name, None)
    elif trainable:
        setattr(module, name, nn.Parameter(value))
    else:
        module.register_buffer(name, value)


def _check_input(x, shape, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != len(shape) or any(s is not None and x.shape[i] != s for i, s in enumerate(shape)):
        want = ", ".join("N" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must have shape [{want}], got {list(x.shape)}")


class FullyConnectedLayer(nn.Module):
    """y = bias_act(x @ (weight * lr_multiplier / sqrt(in_features))^T, bias * lr_multiplier, act=activation).

    x: [..., in_features] -> [..., out_features]. weight [out_features, in_features] ~ N(0, 1) / lr_multiplier;
    bias [out_features] = bias_init (a number or an array broadcast to it) when bias=True. activation as
    gankernels.ops.bias_act (default "linear", with its default gain). trainable=False stores weight and bias as
    buffers. As NVlabs' FullyConnectedLayer.
    """

    def __init__(self, in_features, out_features, bias=True, activation="linear", lr_multiplier=1, bias_init=0,
                 trainable=True):  # fmt: skip
        super().__init__()
        _check_positive(in_features=in_features, out_features=out_features)
        _check_activation(activation)
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        weight = torch.randn([out_features, in_features]) / lr_multiplier
        bias_value = None
        if bias:
            bias_value = torch.broadcast_to(torch.as_tensor(bias_init, dtype=torch.float32), [out_features]).clone()
        _param_or_buffer(self, "weight", weight, trainable)
        _param_or_buffer(self, "bias", bias_value, trainable)

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} features in its last dimension, got {list(x.shape)}")
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None and x.dim() == 2:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, dim=-1, act=self.activation)

    def extra_repr(self):
        return f"in_features={self.in_features:d}, out_features={self.out_features:d}, activation={self.activation:s}"


class Conv2dLayer(nn.Module):
    """y = clamp(act(conv2d_resample(x, weight / sqrt(in_channels k^2)) + bias) * act_gain * gain, +-conv_clamp * gain).

    x: [N, in_channels, H, W] -> [N, out_channels, H * up / down, W * up / down] (padding kernel_size // 2).
    weight [out_channels, in_channels, k, k] ~ N(0, 1) (channels_last when channels_last=True); bias [out_channels]
    zeros when bias=True; buffer resample_filter = setup_filter(resample_filter) (default [1, 3, 3, 1]) for up/down
    (default 1). activation default "linear"; conv_clamp None: no clamping. trainable=False stores weight and bias
    as buffers. As NVlabs' Conv2dLayer; forward(x, gain=1).
    """

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation="linear", up=1, down=1,
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, channels_last=False, trainable=True):  # fmt: skip
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, up=up, down=down)
        _check_activation(activation)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * (kernel_size**2))
        self.act_gain = ACTIVATIONS[activation].gain
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        _param_or_buffer(self, "weight", weight, trainable)
        _param_or_buffer(self, "bias", torch.zeros([out_channels]) if bias else None, trainable)

    def forward(self, x, gain=1):
        _check_input(x, [None, self.in_channels, None, None])
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = self.up == 1  # slightly faster
        x = conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding, flip_weight=flip_weight)  # fmt: skip
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return (
            f"in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, activation={self.activation:s}, "
            f"up={self.up}, down={self.down}"
        )


class SynthesisLayer(nn.Module):
    """StyleGAN2's synthesis layer: modulated conv (upsampling by `up`), noise, bias, activation, gain, clamp.

    forward(x [N, in_channels, resolution // up, resolution // up], w [N, w_dim], noise_mode="random" | "const" |
    "none", fused_modconv=True, gain=1) -> [N, out_channels, resolution, resolution]. Parameters: affine
    (FullyConnectedLayer(w_dim, in_channels, bias_init=1), w -> styles), weight [out_channels, in_channels, k, k]
    ~ N(0, 1), noise_strength (scalar, 0) when use_noise, bias [out_channels] zeros; buffers resample_filter and
    noise_const [resolution, resolution] ~ N(0, 1) (when use_noise). Noise is noise_strength times fresh N(0, 1)
    noise [N, 1, resolution, resolution] ("random"), times noise_const ("const"), or none. The epilogue runs fused
    in gankernels.ops.modulated_conv2d. As NVlabs' SynthesisLayer.
    """

    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, use_noise=True,
                 activation="lrelu", resample_filter=(1, 3, 3, 1), conv_clamp=None, channels_last=False):  # fmt: skip
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels, w_dim=w_dim, resolution=resolution,
                        kernel_size=kernel_size, up=up)  # fmt: skip
        _check_activation(activation)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        self.weight = nn.Parameter(weight)
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True, gain=1):
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        in_resolution = self.resolution // self.up
        _check_input(x, [None, self.in_channels, in_resolution, in_resolution])
        _check_input(w, [x.shape[0], self.w_dim], "w")
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == "random":
            noise = (
                torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
            )
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength

        flip_weight = self.up == 1  # slightly faster
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                                resample_filter=self.resample_filter, flip_weight=flip_weight,
                                fused_modconv=fused_modconv, bias=self.bias, act=self.activation, gain=act_gain,
                                clamp=act_clamp)  # fmt: skip

    def extra_repr(self):
        return (
            f"in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, w_dim={self.w_dim:d}, "
            f"resolution={self.resolution:d}, up={self.up}, activation={self.activation:s}"
        )


class ToRGBLayer(nn.Module):
    """StyleGAN2's toRGB: a modulated, not demodulated, conv (kernel_size default 1), bias, clamp.

    forward(x [N, in_channels, H, W], w [N, w_dim], fused_modconv=True) -> [N, out_channels, H, W]. Parameters:
    affine (FullyConnectedLayer(w_dim, in_channels, bias_init=1)), weight [out_channels, in_channels, k, k]
    ~ N(0, 1), bias [out_channels] zeros; styles are scaled by weight_gain = 1 / sqrt(in_channels k^2).
    conv_clamp None: no clamping. As NVlabs' ToRGBLayer.
    """

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False):
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels, w_dim=w_dim, kernel_size=kernel_size)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * (kernel_size**2))

    def forward(self, x, w, fused_modconv=True):
        _check_input(x, [None, self.in_channels, None, None])
        _check_input(w, [x.shape[0], self.w_dim], "w")
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv, bias=self.bias,
                                clamp=self.conv_clamp)  # fmt: skip

    def extra_repr(self):
        return f"in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, w_dim={self.w_dim:d}"
