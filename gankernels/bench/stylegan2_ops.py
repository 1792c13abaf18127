"""StyleGAN2's small fused ops: the synthesis layer's epilogue (demodulation scale + noise + bias + lrelu + gain +
clamp over the conv output) and D's minibatch standard deviation, forward and forward+backward, ours (the automatic
choice: Triton kernels on CUDA) against the eager composed PyTorch and torch.compile of it.

Shapes: the epilogue at StyleGAN2 256x256 layers, batch 32 (512 channels at 32x32, 128 at 128x128); minibatch std at
D's 4x4x512 epilogue and a 16x16x512 map. On CPU the automatic choice is the composed path, so only the quick smoke
cases run there.
"""

from __future__ import annotations

import torch

from ..ops.minibatch_std import minibatch_std
from ..ops.modconv_pieces import modulated_conv2d_epilogue
from ..reference import minibatch_std as ref_mbstd
from ..reference import modulated_conv2d as ref_modconv
from . import AUTO, DTYPE_NAMES, Case, sizes

EPILOGUE_GPU = [(32, 512, 32, 32), (32, 128, 128, 128)]
MBSTD_GPU = [(32, 512, 4, 4), (32, 512, 16, 16)]
QUICK = [(4, 8, 4, 4)]
GAIN, CLAMP = 2**0.5, 256.0


def _eager_epilogue(y, d, noise, b):
    return ref_modconv.epilogue(y, d, noise, b, "lrelu", 0.2, GAIN, CLAMP)


def _ours_epilogue(y, d, noise, b):
    return modulated_conv2d_epilogue(y, d, noise, b, act="lrelu", clamp=CLAMP)


def _eager_mbstd(x):
    return ref_mbstd.minibatch_std(x, 4, 1)


def _ours_mbstd(x):
    return minibatch_std(x, 4, 1)


def _fwd_bwd(fn, n_inputs):
    def run(*args):
        inputs, dy = args[:n_inputs], args[n_inputs]
        return torch.autograd.grad(fn(*inputs), [a for a in inputs if a.requires_grad], dy)

    return run


def cases(device: torch.device, quick: bool = False) -> list[Case]:
    if device.type != "cuda" and not quick:
        return []
    out = []
    shapes, dtypes = sizes(device, quick, EPILOGUE_GPU, [], QUICK)
    for shape in shapes:
        for dtype in dtypes:
            n, c, h, w = shape
            numel, size = n * c * h * w, torch.finfo(dtype).bits // 8
            label = f"epilogue [{n},{c},{h},{w}] {DTYPE_NAMES[dtype]}"

            def make(grad, shape=shape, dtype=dtype):
                n, c, h, w = shape
                y = torch.randn(shape, device=device, dtype=dtype).requires_grad_(grad)
                d = torch.rand(n, c, device=device, dtype=dtype).requires_grad_(grad)
                noise = torch.randn(n, 1, h, w, device=device, dtype=dtype)
                b = torch.randn(c, device=device, dtype=dtype).requires_grad_(grad)
                return (y, d, noise, b, torch.randn_like(y)) if grad else (y, d, noise, b)

            # minimal bytes: read y, write out; backward: read dy and y, write dy_in (noise is 1/C of y: ignored)
            out.append(Case("stylegan2_ops", f"{label} fwd", lambda make=make: make(False), _ours_epilogue,
                            _eager_epilogue, bytes=2 * numel * size, backends=(AUTO,)))  # fmt: skip
            out.append(Case("stylegan2_ops", f"{label} fwd+bwd", lambda make=make: make(True),
                            _fwd_bwd(_ours_epilogue, 4), _fwd_bwd(_eager_epilogue, 4), bytes=5 * numel * size,
                            backends=(AUTO,)))  # fmt: skip
    shapes, dtypes = sizes(device, quick, MBSTD_GPU, [], QUICK)
    for shape in shapes:
        for dtype in dtypes:
            numel, size = torch.Size(shape).numel(), torch.finfo(dtype).bits // 8
            label = f"minibatch_std [{','.join(map(str, shape))}] {DTYPE_NAMES[dtype]}"

            def make(grad, shape=shape, dtype=dtype):
                x = torch.randn(shape, device=device, dtype=dtype).requires_grad_(grad)
                if not grad:
                    return (x,)
                n, c, h, w = shape
                return x, torch.randn(n, c + 1, h, w, device=device, dtype=dtype)

            # minimal bytes: read x, write x's copy + the map; backward: read dout and x, write dx
            out.append(Case("stylegan2_ops", f"{label} fwd", lambda make=make: make(False), _ours_mbstd, _eager_mbstd,
                            bytes=2 * numel * size, backends=(AUTO,)))  # fmt: skip
            out.append(Case("stylegan2_ops", f"{label} fwd+bwd", lambda make=make: make(True),
                            _fwd_bwd(_ours_mbstd, 1), _fwd_bwd(_eager_mbstd, 1), bytes=5 * numel * size,
                            backends=(AUTO,)))  # fmt: skip
    return out
