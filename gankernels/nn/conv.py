"""torch.nn.Conv2d / ConvTranspose2d on gankernels.ops: same arguments, parameter names and init, differentiable to
any order and honouring gankernels.ops.no_weight_gradients() (gradient penalties through a critic)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..ops.conv2d import conv2d, conv_transpose2d
from ..ops.fused_conv2d import fused_conv2d
from ..ops.fused_conv2d import resolve_backend as resolve_fused_backend


class Conv2d(nn.Conv2d):
    """torch.nn.Conv2d (same arguments, parameters and init) whose forward runs gankernels.ops.conv2d.

    x: [N, in_channels, H, W] -> [N, out_channels, H', W'] as torch's. padding_mode "zeros" (default) or "reflect"
    (as torch's: ReflectionPad2d(padding), then the conv). A reflect-padded conv with stride 1, no dilation, no groups
    and an odd square kernel runs gankernels.ops.fused_conv2d, which on its triton backend reads the padding in the
    conv's loads instead of writing a padded copy (CycleGAN's convs); otherwise pad, then conv.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_mode not in ("zeros", "reflect"):
            raise ValueError(f"padding_mode must be 'zeros' or 'reflect', got {self.padding_mode!r}")
        if self.padding_mode == "reflect" and isinstance(self.padding, str):
            raise ValueError(f"padding must be an int or a pair of ints with padding_mode='reflect', got "
                             f"{self.padding!r}")  # fmt: skip
        k = self.kernel_size
        self._fused = (self.padding_mode == "reflect" and self.stride == (1, 1) and self.dilation == (1, 1)
                       and self.groups == 1 and k[0] == k[1] and k[0] % 2 == 1)  # fmt: skip

    def fuses_padding(self, x) -> bool:
        """Whether forward(x) reads the reflection padding in the conv's loads (ops.fused_conv2d's triton backend)
        rather than padding, then convolving (what fused_conv2d's other backends would do too)."""
        return self._fused and resolve_fused_backend(x.device.type) == "triton"

    def forward(self, x):
        if self.padding_mode == "zeros":
            return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.fuses_padding(x):
            return fused_conv2d(x, self.weight, padding=self.padding, padding_mode="reflect", bias=self.bias)
        return self._pad_then_conv(x)

    def _pad_then_conv(self, x):
        """The reflect-padded conv where the padding is not fused: pad, then our double-differentiable conv."""
        x = F.pad(x, self._reversed_padding_repeated_twice, mode="reflect")
        return conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvTranspose2d(nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d (same arguments, parameters and init) whose forward runs
    gankernels.ops.conv_transpose2d. forward(x) only (no output_size: set output_padding in the constructor)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros', got {self.padding_mode!r}")

    def forward(self, x):
        return conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                self.groups, self.dilation)  # fmt: skip
