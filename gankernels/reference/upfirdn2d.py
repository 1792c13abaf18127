"""Pure-PyTorch upfirdn2d: the oracle of every backend, the `ref` backend and the eager benchmark baseline.

NVlabs' `_upfirdn2d_ref` written plainly: zero-insertion, pad (negative values crop), a depthwise conv2d whose
stride does the downsampling. Differentiable to any order through torch autograd. The arguments are assumed
valid (gankernels.ops.upfirdn2d validates them); `up`, `down` and `padding` take the NVlabs forms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CPU = torch.device("cpu")


def parse_scaling(scaling) -> tuple[int, int]:
    """(sx, sy) from an int or [sx, sy]."""
    if isinstance(scaling, int):
        return scaling, scaling
    sx, sy = scaling
    return sx, sy


def parse_padding(padding) -> tuple[int, int, int, int]:
    """(padx0, padx1, pady0, pady1) from an int, [padx, pady] or [padx0, padx1, pady0, pady1]."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        padx, pady = padding
        return padx, padx, pady, pady
    padx0, padx1, pady0, pady1 = padding
    return padx0, padx1, pady0, pady1


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(fw, fh) of a 2-D filter [fh, fw], a 1-D separable one [fw] (fh = fw), or None (1, 1)."""
    if f is None:
        return 1, 1
    return f.shape[-1], f.shape[0]


def setup_filter(f, device=CPU, normalize=True, flip_filter=False, gain=1, separable=None):
    """A float32 FIR filter for upfirdn2d from taps `f` (None, a scalar, 1-D or 2-D array-like).

    separable None: 1-D when f is 1-D with at least 8 taps, else the outer product f f^T [fw, fw].
    normalize divides by the sum; the result is scaled by gain ** (ndim / 2), so both passes of a separable
    filter together multiply by `gain`.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"f must be a non-empty scalar, 1-D or 2-D filter, got shape {list(f.shape)}")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError(f"separable={separable} does not fit a filter of shape {list(f.shape)}")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Upsample by zero insertion, pad or crop, FIR-filter and keep every down-th pixel.

    x: [N, C, H, W]. f: [fh, fw], [fw] (separable: a horizontal then a vertical pass) or None ([[1]]).
    Returns [N, C, (H * upy + pady0 + pady1 - fh) // downy + 1, (W * upx + padx0 + padx1 - fw) // downx + 1]
    in x's memory format. flip_filter False convolves (the filter is flipped), True correlates; the output is
    multiplied by gain.
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    n, c, h, w = x.shape
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    padx0, padx1, pady0, pady1 = parse_padding(padding)
    fmt = _memory_format(x)
    if c == 0:
        fw, fh = filter_size(f)
        oh, ow = (h * upy + pady0 + pady1 - fh) // downy + 1, (w * upx + padx0 + padx1 - fw) // downx + 1
        return x.new_zeros([n, 0, oh, ow])

    if upx > 1 or upy > 1:
        u = torch.zeros([n, c, h * upy, w * upx], dtype=x.dtype, device=x.device).contiguous(memory_format=fmt)
        u[:, :, ::upy, ::upx] = x
        x = u
    x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
    x = x[:, :, max(-pady0, 0) : x.shape[2] - max(-pady1, 0), max(-padx0, 0) : x.shape[3] - max(-padx1, 0)]

    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        weight = (f * gain)[None, None].repeat([c, 1, 1, 1])
        y = F.conv2d(x, weight, stride=(downy, downx), groups=c)
    else:
        y = F.conv2d(x, f[None, None, None].repeat([c, 1, 1, 1]), stride=(1, downx), groups=c)
        y = F.conv2d(y, (f * gain)[None, None, :, None].repeat([c, 1, 1, 1]), stride=(downy, 1), groups=c)
    return y.contiguous(memory_format=fmt)


# upfirdn2d's padding [x0, x1, y0, y1] for the three wrappers, from theirs and the filter's size (fw, fh): with padding
# 0 the output is the input's size (filter2d, NVlabs' centering of even-sized filters), `up` (upsample2d) or 1 / `down`
# (downsample2d) times it.


def filter_padding(padding, fw: int, fh: int) -> list[int]:
    px0, px1, py0, py1 = padding
    return [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]


def upsample_padding(padding, fw: int, fh: int, upx: int, upy: int) -> list[int]:
    px0, px1, py0, py1 = padding
    return [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]


def downsample_padding(padding, fw: int, fh: int, downx: int, downy: int) -> list[int]:
    px0, px1, py0, py1 = padding
    return [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]


def filter2d(x, f, padding=0, flip_filter=False, gain=1):
    """FIR-filter x, keeping its size when padding=0 (NVlabs' centering of even-sized filters)."""
    p = filter_padding(parse_padding(padding), *filter_size(f))
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1):
    """Upsample x by `up` with FIR filter f: output [N, C, H * upy, W * upx] when padding=0.

    The gain is multiplied by upx * upy so that a normalized filter keeps the signal's mean.
    """
    upx, upy = parse_scaling(up)
    p = upsample_padding(parse_padding(padding), *filter_size(f), upx, upy)
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1):
    """Downsample x by `down` with FIR filter f: output [N, C, H // downy, W // downx] when padding=0."""
    downx, downy = parse_scaling(down)
    p = downsample_padding(parse_padding(padding), *filter_size(f), downx, downy)
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain)
