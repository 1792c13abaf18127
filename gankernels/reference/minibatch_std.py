"""Pure-PyTorch minibatch standard deviation (StyleGAN2 D's epilogue): the oracle of gankernels.ops.minibatch_std.

The formula of NVlabs' MinibatchStdLayer.forward (stylegan2-ada-pytorch, training/networks.py), with float16 /
bfloat16 computed in float32; no argument checks (gankernels.ops validates).
"""

from __future__ import annotations

import torch

EPS = 1e-8  # added to the group variance before the square root, as NVlabs


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16 / bfloat16, else `dtype`."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def group_count(n: int, group_size: int | None) -> int:
    """G = min(group_size, N), or N when group_size is None."""
    return n if group_size is None else min(group_size, n)


def minibatch_std(x: torch.Tensor, group_size: int | None, num_channels: int = 1) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C + F, H, W], F = num_channels: x, then F maps of the mean over channel part f and all
    pixels of sqrt(var over the group + 1e-8). Groups of G = min(group_size, N) samples (None: N); sample n is in
    group n % (N / G). N must be a multiple of G and C of F."""
    n, c, h, w = x.shape
    g = group_count(n, group_size)
    f = num_channels
    y = x.to(compute_dtype(x.dtype)).reshape(g, -1, f, c // f, h, w)  # [G, M, F, c, H, W]
    y = y - y.mean(dim=0)
    y = y.square().mean(dim=0)  # variance over the group [M, F, c, H, W]
    y = (y + EPS).sqrt()
    y = y.mean(dim=[2, 3, 4])  # [M, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
    return torch.cat([x, y.to(x.dtype)], dim=1)


def minibatch_std_grad(dout: torch.Tensor, x: torch.Tensor, group_size: int | None, num_channels: int = 1):
    """d<dout, minibatch_std(x)>/dx, written out (differentiable in torch ops). dout: [N, C + F, H, W].

    With s[m, f] = mean over (k, hw) of std, std = sqrt(var_g + 1e-8), var_g the biased variance over the group, and
    ds[m, f] the sum of dout's map f over the group's samples and pixels:
    dx[g, m, f, k, hw] = dout[g, m, f, k, hw] + ds[m, f] / (c H W) * (x - mean_g) / (G std)."""
    n, c, h, w = x.shape
    g = group_count(n, group_size)
    f = num_channels
    cd = compute_dtype(x.dtype)
    xs = x.to(cd).reshape(g, -1, f, c // f, h, w)
    d = xs - xs.mean(dim=0)
    d = d - d.mean(dim=0)  # again: the rounding error of the mean, large beside the spread for offset inputs
    std = (d.square().mean(dim=0) + EPS).sqrt()  # [M, F, c, H, W]
    ds = dout[:, c:].to(cd).reshape(g, -1, f, h, w).sum(dim=(0, 3, 4))  # [M, F]
    coef = ds.reshape(1, -1, f, 1, 1, 1) / (c // f * h * w * g)
    dx = dout[:, :c].to(cd) + (coef * d / std).reshape(n, c, h, w)
    return dx.to(x.dtype)
