"""The colour augmentations (brightness, contrast, lumaflip, hue, saturation), composed into one [N, 4, 4]
homogeneous matrix per image acting on (r, g, b, 1), applied in one pass.

Brightness adds to every channel, contrast scales about 0 (images in [-1, 1] have mean about 0), lumaflip reflects
colours through the plane orthogonal to the luma axis (1, 1, 1) / sqrt 3, hue rotates about that axis and
saturation scales the part orthogonal to it. Single-channel images use the mean of the matrix's rows. Images whose
matrix is exactly the identity come back bit-exact.
"""

from __future__ import annotations

import math

import torch

from .draws import Draws
from .matrices import is_identity, rotate3d, scale3d, translate3d

COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
LUMA_AXIS = (1 / math.sqrt(3),) * 3


def color_matrix(pipe, draws: Draws, channels: int) -> torch.Tensor | None:
    """The [N, 4, 4] float32 colour matrix of `pipe`, or None when all colour augmentations are off."""
    if not any(getattr(pipe, name) > 0 for name in COLOR):
        return None
    device = draws.device
    eye = torch.eye(4, device=device)
    C = eye.expand(draws.n, 4, 4)
    v = torch.tensor([*LUMA_AXIS, 0.0], device=device)
    vvT = torch.outer(v, v)
    if pipe.brightness > 0:
        b = draws.normal(pipe.brightness_std, pipe.brightness)
        C = translate3d(b, b, b) @ C
    if pipe.contrast > 0:
        c = draws.lognormal2(pipe.contrast_std, pipe.contrast)
        C = scale3d(c, c, c) @ C
    if pipe.lumaflip > 0:  # Householder reflection I - 2 v v^T
        i = draws.uniform_int(2, pipe.lumaflip, 1, 1)
        C = (eye - 2 * vvT * i) @ C
    if pipe.hue > 0 and channels > 1:
        theta = draws.uniform(math.pi * pipe.hue_max, pipe.hue)
        C = rotate3d(LUMA_AXIS, theta) @ C
    if pipe.saturation > 0 and channels > 1:
        s = draws.lognormal2(pipe.saturation_std, pipe.saturation, 1, 1)
        C = (vvT + (eye - vvT) * s) @ C
    return C


def apply_color(images: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """images [N, C, H, W] with C in (1, 3) through the [N, 4, 4] colour matrices."""
    n, channels, h, w = images.shape
    applied = ~is_identity(C)
    C = C.to(images.dtype)
    x = images.reshape(n, channels, h * w)
    if channels == 3:
        out = torch.baddbmm(C[:, :3, 3:], C[:, :3, :3], x)  # M [r g b]^T + t
    elif channels == 1:
        C = C[:, :3, :].mean(dim=1, keepdim=True)
        out = x * C[:, :, :3].sum(dim=2, keepdim=True) + C[:, :, 3:]
    else:
        raise ValueError(f"images: colour augmentations need 1 or 3 channels, got {channels}")
    return torch.where(applied[:, None, None, None], out.reshape(n, channels, h, w), images)
