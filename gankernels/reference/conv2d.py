"""Pure-PyTorch convolutions: the oracle of gankernels.ops.conv2d and its eager baseline.

`conv2d` and `conv_transpose2d` are torch.nn.functional's. `conv2d_resample` is the plain formula behind NVlabs'
conv2d_resample (their generic fallback): upsample and pad through the FIR filter, a valid convolution, then
filter and keep every down-th pixel. The fast paths of gankernels.ops.conv2d_resample must equal it.
Arguments are assumed valid (gankernels.ops validates them).
"""

from __future__ import annotations

import torch.nn.functional as F

from . import upfirdn2d as ref_upfirdn2d

conv2d = F.conv2d
conv_transpose2d = F.conv_transpose2d


def resample_padding(f, up: int, down: int, padding) -> list[int]:
    """[px0, px1, py0, py1]: `padding` (with respect to the upsampled image) plus the FIR filter's centering."""
    px0, px1, py0, py1 = ref_upfirdn2d.parse_padding(padding)
    fw, fh = ref_upfirdn2d.filter_size(f)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    return [px0, px1, py0, py1]


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """2-D convolution with FIR up/downsampling, padding applied once at the start.

    x: [N, C, H, W]; w: [O, C // groups, kh, kw]; f: the FIR filter from setup_filter (None: identity).
    y = downsample_f(conv(upsample_f(x, up, padding), w), down), with the filter gain up**2 on the upsampling.
    flip_weight True correlates (as torch's conv2d), False convolves. Returns [N, O, H', W'].
    """
    px0, px1, py0, py1 = resample_padding(f, up, down, padding)
    if not flip_weight:
        w = w.flip([2, 3])
    x = ref_upfirdn2d.upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up**2,
                                flip_filter=flip_filter)  # fmt: skip
    x = F.conv2d(x, w, groups=groups)
    if down > 1:
        x = ref_upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x
