"""upfirdn2d: upsample, FIR filter and downsample 2-D images in one pass, differentiable to any order.

One torch custom op, `gankernels::upfirdn2d`, carries the work on every compiled/Triton backend; a 1-D
(separable) filter runs as two 1-D passes inside it. Its backward is the same op with up and down swapped,
the filter flipped and the padding adjusted (NVlabs' formula), registered with the same autograd, so
gradients of any order with respect to x run on the fused kernels. Gradients with respect to the filter are
not supported, as in NVlabs. Signatures and conventions follow NVlabs' torch_utils.ops.upfirdn2d.
"""

from __future__ import annotations

import numbers

import torch

from .. import backend as _backend
from ..reference import upfirdn2d as ref
from ..reference.upfirdn2d import CPU
from ._common import (
    check_4d,
    check_bool,
    check_float_tensor,
    check_int,
    check_real,
    check_same,
    dense,
    empty_as,
    int_pair,
    kernels,
)
from ._define import define_op

# ----------------------------------------------------------------------------------------------------------------
# Custom op


def _out_size(size: int, up: int, pad0: int, pad1: int, taps: int, down: int) -> int:
    return (size * up + pad0 + pad1 - taps) // down + 1


def _out_shape(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1):
    fw, fh = ref.filter_size(f)
    n, c, h, w = x.shape
    return [n, c, _out_size(h, upy, pady0, pady1, fh, downy), _out_size(w, upx, padx0, padx1, fw, downx)]


def _upfirdn2d_impl(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain, backend):
    x = dense(x)
    out = empty_as(x, _out_shape(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1))
    if out.numel() == 0:
        return out
    f = f.to(device=x.device, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32).contiguous()
    forward = kernels(backend, "upfirdn2d").upfirdn2d_forward
    if f.ndim == 2:
        forward(x, f, out, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain)
        return out
    fw = f.shape[0]
    tmp = empty_as(x, [x.shape[0], x.shape[1], x.shape[2], out.shape[3]])
    forward(x, f.reshape(1, fw), tmp, upx, 1, downx, 1, padx0, padx1, 0, 0, flip, 1.0)
    forward(tmp, f.reshape(fw, 1), out, 1, upy, 1, downy, 0, 0, pady0, pady1, flip, gain)
    return out


def _upfirdn2d_fake(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain, backend):
    return empty_as(x, _out_shape(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1))


def _upfirdn2d_setup(ctx, inputs, output):
    x, f = inputs[:2]
    ctx.save_for_backward(f)
    ctx.in_size = (x.shape[2], x.shape[3])
    ctx.params = inputs[2:]


def _upfirdn2d_backward(ctx, dy):
    (f,) = ctx.saved_tensors
    upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain, backend = ctx.params
    dx = None
    if ctx.needs_input_grad[0]:
        ih, iw = ctx.in_size
        oh, ow = dy.shape[2], dy.shape[3]
        fw, fh = ref.filter_size(f)
        p = [
            fw - padx0 - 1,
            iw * upx - ow * downx + padx0 - upx + 1,
            fh - pady0 - 1,
            ih * upy - oh * downy + pady0 - upy + 1,
        ]
        dx = _upfirdn2d(dy, f, downx, downy, upx, upy, *p, not flip, gain, backend, ctx=ctx)
    return (dx,) + (None,) * 12


# Each image is resampled on its own: a vmapped dimension folds into the batch (the filter is shared).
_INTS = ", ".join(f"SymInt {n}" for n in ("upx", "upy", "downx", "downy", "padx0", "padx1", "pady0", "pady1"))
_upfirdn2d = define_op("upfirdn2d", f"(Tensor x, Tensor f, {_INTS}, bool flip, float gain, str backend) -> Tensor",
                       _upfirdn2d_impl, fake=_upfirdn2d_fake, setup_context=_upfirdn2d_setup,
                       backward=_upfirdn2d_backward, vmap=([0] + [None] * 12, [0]))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Argument checks


def _parse_scaling(scaling, name: str) -> list[int]:
    return int_pair(scaling, name, 1, kinds=f"an int or a pair [{name}x, {name}y] of ints")


def _parse_padding(padding) -> tuple[int, int, int, int]:
    """The one parser of 4-sided padding (upfirdn2d and conv2d_resample): int, [x, y] or [x0, x1, y0, y1]."""
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        padding = [padding, padding]
    if not isinstance(padding, (list, tuple)):
        raise TypeError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {type(padding).__name__}")
    if len(padding) not in (2, 4):
        raise ValueError(f"padding must have 2 ([x, y]) or 4 ([x0, x1, y0, y1]) values, got {len(padding)}")
    padding = [check_int(p, "padding") for p in padding]
    if len(padding) == 2:
        padx, pady = padding
        return padx, padx, pady, pady
    padx0, padx1, pady0, pady1 = padding
    return padx0, padx1, pady0, pady1


def _check_filter(f, x: torch.Tensor) -> torch.Tensor:
    if f is None:
        return torch.ones([1, 1], dtype=torch.float32, device=x.device)
    check_float_tensor(f, "f")
    if f.dim() not in (1, 2) or f.numel() == 0:
        raise ValueError(f"f must be a non-empty 1-D (separable) or 2-D filter, got shape {list(f.shape)}")
    check_same(f, x, "f", "x", dtype=False)
    if f.requires_grad:
        raise ValueError("f requires grad, but gradients with respect to f are not supported; pass f.detach()")
    return f


def _filter_size(f) -> tuple[int, int]:
    """(fw, fh) of f as given to the resampling wrappers, checked like upfirdn2d's f."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.dim() not in (1, 2) or f.numel() == 0:
        what = list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise ValueError(f"f must be a non-empty 1-D (separable) or 2-D filter tensor, got {what}")
    return ref.filter_size(f)


# ----------------------------------------------------------------------------------------------------------------
# Public API


def setup_filter(f, device=CPU, normalize=True, flip_filter=False, gain=1, separable=None):
    """A float32 FIR filter for upfirdn2d from taps `f` (None, a scalar, 1-D or 2-D array-like), on `device`.

    separable None: kept 1-D (two 1-D passes) when f is 1-D with at least 8 taps, else made 2-D as the outer
    product [fw, fw]. normalize divides by the sum; flip_filter flips it; the result is scaled so that it
    multiplies the signal by `gain` overall (gain ** (ndim / 2) per axis), as NVlabs.
    """
    return ref.setup_filter(f, device=device, normalize=normalize, flip_filter=flip_filter, gain=gain,
                            separable=separable)  # fmt: skip


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Upsample by zero insertion, pad (negative padding crops), FIR-filter, keep every down-th pixel; * gain.

    x: [N, C, H, W], any float dtype (fp16/bf16 computed in fp32), NCHW or channels_last (kept by the output).
    f: [fh, fw]; [fw] separable (a horizontal then a vertical pass); or None ([[1]]). Any float dtype, on x's
    device, not requiring grad. up, down: int or [x, y] (default 1). padding: int, [x, y] or [x0, x1, y0, y1]
    (default 0). flip_filter False convolves with f (NVlabs' default), True correlates. Returns
    [N, C, (H * upy + pady0 + pady1 - fh) // downy + 1, (W * upx + padx0 + padx1 - fw) // downx + 1].
    Differentiable to any order with respect to x, on every backend.
    """
    check_4d(x, "x")
    f = _check_filter(f, x)
    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    flip_filter = check_bool(flip_filter, "flip_filter")
    gain = check_real(gain, "gain")
    fw, fh = ref.filter_size(f)
    _, _, h, w = x.shape
    if w * upx + padx0 + padx1 < fw or h * upy + pady0 + pady1 < fh:
        raise ValueError(
            f"padding={[padx0, padx1, pady0, pady1]} leaves an empty output: the upsampled, padded input "
            f"[{h * upy + pady0 + pady1}, {w * upx + padx0 + padx1}] is smaller than the filter [{fh}, {fw}]"
        )
    name = _backend.resolve("upfirdn2d", x.device.type)
    if name == "ref":
        return ref.upfirdn2d(x, f, [upx, upy], [downx, downy], [padx0, padx1, pady0, pady1], flip_filter, gain)
    args = (upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain, name)
    return _upfirdn2d(dense(x), f, *args)


def filter2d(x, f, padding=0, flip_filter=False, gain=1):
    """FIR-filter x with f; the output has x's size [N, C, H, W] when padding=0 (more with positive padding).

    Same arguments as upfirdn2d; even-sized filters are centered as NVlabs' filter2d.
    """
    p = ref.filter_padding(_parse_padding(padding), *_filter_size(f))
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1):
    """Upsample x by `up` (int or [x, y], default 2) with FIR filter f: [N, C, H * upy, W * upx] when padding=0.

    The gain is multiplied by upx * upy, so that a normalized filter (setup_filter) keeps the signal's mean.
    """
    upx, upy = _parse_scaling(up, "up")
    p = ref.upsample_padding(_parse_padding(padding), *_filter_size(f), upx, upy)
    gain = check_real(gain, "gain")
    return upfirdn2d(x, f, up=[upx, upy], padding=p, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1):
    """Downsample x by `down` (int or [x, y], default 2) with FIR filter f: [N, C, H // downy, W // downx] when
    padding=0 and the sizes divide.
    """
    downx, downy = _parse_scaling(down, "down")
    p = ref.downsample_padding(_parse_padding(padding), *_filter_size(f), downx, downy)
    return upfirdn2d(x, f, down=[downx, downy], padding=p, flip_filter=flip_filter, gain=gain)
