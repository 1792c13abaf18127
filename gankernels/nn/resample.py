"""Modules over gankernels.ops.upfirdn2d: FIR upsampling, downsampling and filtering (blur).

Each holds its filter, made by setup_filter, as the persistent buffer `resample_filter` (NVlabs' name), so it
follows the module across devices and is saved in the state dict. The filter stays float32 for fp16/bf16
inputs: the ops take it in any float dtype.
"""

from __future__ import annotations

from torch import nn

from ..ops.upfirdn2d import downsample2d, filter2d, setup_filter, upsample2d


class _Resample(nn.Module):
    def __init__(self, resample_filter, padding, gain, flip_filter, normalize, separable):
        super().__init__()
        self.register_buffer("resample_filter", setup_filter(resample_filter, normalize=normalize, separable=separable))
        self.padding, self.gain, self.flip_filter = padding, gain, flip_filter

    def extra_repr(self):
        return (
            f"filter={list(self.resample_filter.shape)}, padding={self.padding}, gain={self.gain}, "
            f"flip_filter={self.flip_filter}"
        )


class Upsample2d(_Resample):
    """Upsample [N, C, H, W] to [N, C, H * upy, W * upx] (padding=0) through FIR filter `resample_filter`.

    up: int or [x, y] (default 2). resample_filter: taps, 1-D (outer product, or separable with >= 8 taps) or
    2-D (default [1, 3, 3, 1]), normalized to sum 1 unless normalize=False. padding: int, [x, y] or
    [x0, x1, y0, y1], added to the centering padding. gain: multiplies the output (the signal's mean is kept at
    gain 1). As NVlabs' upfirdn2d.upsample2d.
    """

    def __init__(self, up=2, resample_filter=(1, 3, 3, 1), padding=0, gain=1, flip_filter=False, normalize=True,
                 separable=None):  # fmt: skip
        super().__init__(resample_filter, padding, gain, flip_filter, normalize, separable)
        self.up = up

    def forward(self, x):
        return upsample2d(x, self.resample_filter, up=self.up, padding=self.padding, flip_filter=self.flip_filter,
                          gain=self.gain)  # fmt: skip

    def extra_repr(self):
        return f"up={self.up}, " + super().extra_repr()


class Downsample2d(_Resample):
    """Downsample [N, C, H, W] to [N, C, H // downy, W // downx] (padding=0) through FIR filter `resample_filter`.

    down: int or [x, y] (default 2); the other arguments as Upsample2d. As NVlabs' upfirdn2d.downsample2d.
    """

    def __init__(self, down=2, resample_filter=(1, 3, 3, 1), padding=0, gain=1, flip_filter=False, normalize=True,
                 separable=None):  # fmt: skip
        super().__init__(resample_filter, padding, gain, flip_filter, normalize, separable)
        self.down = down

    def forward(self, x):
        return downsample2d(x, self.resample_filter, down=self.down, padding=self.padding,
                            flip_filter=self.flip_filter, gain=self.gain)  # fmt: skip

    def extra_repr(self):
        return f"down={self.down}, " + super().extra_repr()


class FIRFilter2d(_Resample):
    """FIR-filter (blur) [N, C, H, W] keeping its size (padding=0) with `resample_filter`.

    Arguments as Upsample2d, without a factor. As NVlabs' upfirdn2d.filter2d.
    """

    def __init__(self, resample_filter=(1, 3, 3, 1), padding=0, gain=1, flip_filter=False, normalize=True,
                 separable=None):  # fmt: skip
        super().__init__(resample_filter, padding, gain, flip_filter, normalize, separable)

    def forward(self, x):
        return filter2d(x, self.resample_filter, padding=self.padding, flip_filter=self.flip_filter, gain=self.gain)


Blur = FIRFilter2d
