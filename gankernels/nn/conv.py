"""torch.nn.Conv2d / ConvTranspose2d on gankernels.ops: same arguments, parameter names and init, differentiable to
any order and honouring gankernels.ops.no_weight_gradients() (gradient penalties through a critic)."""

from __future__ import annotations

from torch import nn

from ..ops.conv2d import conv2d, conv_transpose2d


class Conv2d(nn.Conv2d):
    """torch.nn.Conv2d (same arguments, parameters and init) whose forward runs gankernels.ops.conv2d.

    x: [N, in_channels, H, W] -> [N, out_channels, H', W'] as torch's. padding_mode must be "zeros".
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros', got {self.padding_mode!r}")

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


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
