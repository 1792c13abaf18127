"""grid_sample benchmark cases: bilinear, zeros padding, align_corners=False (ADA's call), a random affine grid near
the identity (rotation, scale and shift of a few percent, as ADA's geometric augmentations), x requiring grad:

- "fwd": y = grid_sample(x, grid); eager is torch's F.grid_sample, compile its torch.compile.
- "fwd+bwd": y and dx (first order); eager is torch's grid_sample and its autograd.
- "R1": the double backward of an R1-style penalty through the op: with a linear stand-in for D (logits =
  sum(w * y), w requiring grad), dx = d logits / dx with create_graph=True, then |dx|^2 backpropagated to w.
  torch's grid_sample has no double backward (pytorch/pytorch#34704), so eager is the same code on the `ref`
  backend (the reference formula, plain PyTorch); no compile: AOTAutograd has no double backward.

bytes: fwd reads x and grid and writes y; fwd+bwd adds reading dy and grid again and writing dx; R1 is not reported.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..ops import grid_sample
from . import DTYPE_NAMES, Case

GPU_SHAPES = [(32, 512, 32, 32)]
CPU_SHAPES = [(8, 64, 64, 64)]
QUICK_SHAPES = [(2, 4, 8, 8)]
BACKENDS = ("cpu", "triton")  # no CUDA C++ kernels of this op


def affine_grid(n: int, h: int, w: int, device, dtype, seed: int = 0) -> torch.Tensor:
    """[n, h, w, 2]: per sample a rotation of up to ~6 degrees, a scale of 0.9-1.1 and a shift of up to 5%."""
    g = torch.Generator().manual_seed(seed)
    angle = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 0.1
    scale = 1 + (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * 0.05
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = scale * angle.cos()
    theta[:, 0, 1] = -scale * angle.sin()
    theta[:, 1, 0] = scale * angle.sin()
    theta[:, :, 2] = shift
    return F.affine_grid(theta, [n, 1, h, w], align_corners=False).to(device=device, dtype=dtype)


def _torch(x, grid):
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _ours(x, grid):
    return grid_sample(x, grid)


def _torch_fwd_bwd(x, grid, dy):
    return torch.autograd.grad(_torch(x, grid), x, dy)


def _ours_fwd_bwd(x, grid, dy):
    return torch.autograd.grad(_ours(x, grid), x, dy)


def _r1(x, grid, w):
    """|d sum(w y) / dx|^2 backpropagated to w (the double backward of grid_sample; dx does not depend on x)."""
    (dx,) = torch.autograd.grad((w * _ours(x, grid)).sum(), x, create_graph=True)
    return torch.autograd.grad(dx.square().sum(), w)


def cases(device: torch.device, quick: bool = False) -> list[Case]:
    if quick:
        shapes = QUICK_SHAPES
    else:
        shapes = GPU_SHAPES if device.type == "cuda" else CPU_SHAPES
    dtype = torch.float32
    out = []
    for shape in shapes:
        for channels_last in (False,) if quick else (False, True):
            layout = "NHWC" if channels_last else "NCHW"
            n, c, h, w = shape
            size = torch.finfo(dtype).bits // 8
            x_bytes, grid_bytes = math.prod(shape) * size, n * h * w * 2 * size  # output the size of x
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            label = f"[{','.join(map(str, shape))}] {DTYPE_NAMES[dtype]} {layout}"

            def make(kind, shape=shape, fmt=fmt):
                g = torch.Generator().manual_seed(1)
                x = torch.randn(shape, generator=g).to(device=device, dtype=dtype).contiguous(memory_format=fmt)
                grid = affine_grid(shape[0], shape[2], shape[3], device, dtype)
                if kind == "fwd":
                    return x, grid
                other = torch.randn(shape, generator=g).to(device=device, dtype=dtype).contiguous(memory_format=fmt)
                if kind == "r1":
                    return x.requires_grad_(True), grid, other.requires_grad_(True)
                return x.requires_grad_(True), grid, other

            out.append(Case("grid_sample", f"{label} fwd", lambda make=make: make("fwd"), _ours, _torch,
                            bytes=2 * x_bytes + grid_bytes, backends=BACKENDS))  # fmt: skip
            out.append(Case("grid_sample", f"{label} fwd+bwd", lambda make=make: make("bwd"), _ours_fwd_bwd,
                            _torch_fwd_bwd, bytes=4 * x_bytes + 2 * grid_bytes, backends=BACKENDS))  # fmt: skip
            out.append(Case("grid_sample", f"{label} R1", lambda make=make: make("r1"), _r1, None, bytes=0,
                            backends=BACKENDS, compile_na="AOTAutograd has no double backward"))  # fmt: skip
    return out
