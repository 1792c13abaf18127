"""instance_norm_act cases: CycleGAN's ResnetBlock norms (IN + ReLU, and IN + residual add), forward and
forward+backward, ours (the automatic choice: the fused Triton kernel on CUDA, the C++ kernels on CPU) against eager
F.instance_norm + relu / + x and torch.compile of it.

Shapes: CycleGAN's residual trunk, 256 channels at 64x64 (256x256 images, batch 1) and at 32x32 (128x128, batch 8).
On CPU the first of them, in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops.instance_norm import instance_norm_act
from . import AUTO, DTYPE_NAMES, Case, sizes

GPU_SHAPES = [(1, 256, 64, 64), (8, 256, 32, 32)]
CPU_SHAPES = [(1, 256, 64, 64)]
QUICK_SHAPES = [(2, 4, 8, 8)]


def _eager_relu(x):
    return F.relu(F.instance_norm(x))


def _eager_residual(x, r):
    return F.instance_norm(x) + r


def _grad(fn):
    def run(*args):
        y = fn(*args[:-1])
        return torch.autograd.grad(y, [a for a in args[:-1] if a.requires_grad], args[-1])

    return run


def _ours_relu(x):
    return instance_norm_act(x, act="relu")


def _ours_residual(x, r):
    return instance_norm_act(x, residual=r)


def cases(device: torch.device, quick: bool = False) -> list[Case]:
    shapes, dtypes = sizes(device, quick, GPU_SHAPES, CPU_SHAPES, QUICK_SHAPES)
    out = []
    for shape in shapes:
        for dtype in dtypes:
            numel, size = torch.Size(shape).numel(), torch.finfo(dtype).bits // 8
            label = f"[{','.join(map(str, shape))}] {DTYPE_NAMES[dtype]}"

            def make(residual, grad, shape=shape, dtype=dtype):
                x = torch.randn(shape, device=device, dtype=dtype).requires_grad_(grad)
                args = [x]
                if residual:
                    args.append(torch.randn_like(x).requires_grad_(grad))
                if grad:
                    args.append(torch.randn_like(x))
                return tuple(args)

            # minimal bytes: read x (+ r), write y; backward: read dy and x, write dx (+ dr = dy, aliased)
            out.append(Case("instance_norm", f"IN+relu {label} fwd", lambda make=make: make(False, False),
                            _ours_relu, _eager_relu, bytes=2 * numel * size, backends=(AUTO,)))  # fmt: skip
            out.append(Case("instance_norm", f"IN+residual {label} fwd", lambda make=make: make(True, False),
                            _ours_residual, _eager_residual, bytes=3 * numel * size, backends=(AUTO,)))  # fmt: skip
            out.append(Case("instance_norm", f"IN+relu {label} fwd+bwd", lambda make=make: make(False, True),
                            _grad(_ours_relu), _grad(_eager_relu), bytes=5 * numel * size,
                            backends=(AUTO,)))  # fmt: skip
    return out
