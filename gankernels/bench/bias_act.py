"""bias_act benchmark cases: lrelu + bias + clamp (StyleGAN2's epilogue), forward and forward+backward."""

from __future__ import annotations

import torch

from ..ops import bias_act
from ..reference import bias_act as ref
from . import DTYPE_NAMES, Case, sizes

GPU_SHAPES = [(32, 512, 32, 32), (8, 64, 256, 256)]
CPU_SHAPES = [(16, 256, 64, 64)]
QUICK_SHAPES = [(2, 8, 8, 8)]
GAIN, CLAMP = 2**0.5, 256.0


def _eager(x, b):
    return ref.bias_act(x, b, 1, "lrelu", 0.2, GAIN, CLAMP)


def _eager_fwd_bwd(x, b, dy):
    y = _eager(x, b)
    return torch.autograd.grad(y, (x, b), dy)


def _ours(x, b):
    return bias_act(x, b, act="lrelu", clamp=CLAMP)


def _ours_fwd_bwd(x, b, dy):
    return torch.autograd.grad(_ours(x, b), (x, b), dy)


def cases(device: torch.device, quick: bool = False) -> list[Case]:
    shapes, dtypes = sizes(device, quick, GPU_SHAPES, CPU_SHAPES, QUICK_SHAPES)
    out = []
    for shape in shapes:
        for dtype in dtypes:
            for channels_last in (False, True) if device.type == "cuda" and not quick else (False,):
                layout = "NHWC" if channels_last else "NCHW"
                numel, size = torch.Size(shape).numel(), torch.finfo(dtype).bits // 8
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                label = f"[{','.join(map(str, shape))}] {DTYPE_NAMES[dtype]} {layout}"

                def make(grad, shape=shape, dtype=dtype, fmt=fmt):
                    x = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=fmt)
                    b = torch.randn(shape[1], device=device, dtype=dtype)
                    if not grad:
                        return x, b
                    return x.requires_grad_(), b.requires_grad_(), torch.randn_like(x)

                out.append(Case("bias_act", f"{label} fwd", lambda make=make: make(False), _ours, _eager,
                                bytes=2 * numel * size))  # fmt: skip
                # forward+backward: read x, write y; read dy and y, write dx (the bias gradient is a reduction)
                out.append(Case("bias_act", f"{label} fwd+bwd", lambda make=make: make(True), _ours_fwd_bwd,
                                _eager_fwd_bwd, bytes=5 * numel * size))  # fmt: skip
    return out
