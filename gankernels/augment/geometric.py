"""The geometric augmentations: pixel blitting (xflip, rotate90, xint) and general transforms (scale, rotate,
aniso, xfrac), composed into one [N, 3, 3] matrix per image and applied in one resampling pass.

The matrix maps output pixel coordinates (origin at the image centre, y down) to input pixel coordinates. The pass
(NVlabs' ADA): reflect-pad the image by what the transform can reach, upsample 2x with the symlet-6 low-pass
(upsample2d), sample it bilinearly at the transformed output grid (our twice-differentiable grid_sample), low-pass
and downsample 2x (downsample2d), cropping the padding. Images whose matrix is exactly the identity come back
bit-exact (torch.where), so p = 0 changes nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..ops import downsample2d, upsample2d
from .draws import Draws
from .matrices import is_identity, rotate2d_inv, scale2d, scale2d_inv, translate2d, translate2d_inv

BLIT = ("xflip", "rotate90", "xint")
GENERAL = ("scale", "rotate", "aniso", "xfrac")


def geometric_matrix(pipe, draws: Draws, height: int, width: int) -> torch.Tensor | None:
    """The [N, 3, 3] float32 output-to-input matrix of `pipe`'s geometric augmentations, or None when all are off."""
    if not any(getattr(pipe, name) > 0 for name in BLIT + GENERAL):
        return None
    n = draws.n
    G = torch.eye(3, device=draws.device).expand(n, 3, 3)
    if pipe.xflip > 0:  # mirror x with probability 1/2
        i = draws.uniform_int(2, pipe.xflip)
        G = G @ scale2d_inv(1 - 2 * i, torch.ones_like(i))
    if pipe.rotate90 > 0:  # 0, 1, 2 or 3 quarter turns
        i = draws.uniform_int(4, pipe.rotate90)
        G = G @ rotate2d_inv(-math.pi / 2 * i)
    if pipe.xint > 0:  # whole-pixel translation, up to xint_max of the image size
        t = draws.uniform(pipe.xint_max, pipe.xint, 2, chance_shape=[n, 1])
        G = G @ translate2d_inv(torch.round(t[:, 0] * width), torch.round(t[:, 1] * height))
    if pipe.scale > 0:  # isotropic scale, log2-normal
        s = draws.lognormal2(pipe.scale_std, pipe.scale)
        G = G @ scale2d_inv(s, s)
    # A rotation before and one after the anisotropic scale, each with p_rot, so that P(either) = rotate * p.
    p_rot = 1 - torch.sqrt((1 - pipe.rotate * draws.p).clamp(0, 1))
    if pipe.rotate > 0:
        theta = draws.uniform(math.pi * pipe.rotate_max, pipe.rotate, prob=p_rot)
        G = G @ rotate2d_inv(-theta)
    if pipe.aniso > 0:  # anisotropic scale: x by s, y by 1 / s
        s = draws.lognormal2(pipe.aniso_std, pipe.aniso)
        G = G @ scale2d_inv(s, 1 / s)
    if pipe.rotate > 0:
        theta = draws.uniform(math.pi * pipe.rotate_max, pipe.rotate, prob=p_rot)
        if draws.debug is not None:
            theta = torch.zeros_like(theta)
        G = G @ rotate2d_inv(-theta)
    if pipe.xfrac > 0:  # sub-pixel translation, normal with xfrac_std of the image size
        t = draws.normal(pipe.xfrac_std, pipe.xfrac, 2, chance_shape=[n, 1])
        G = G @ translate2d_inv(t[:, 0] * width, t[:, 1] * height)
    return G


def apply_geometric(images: torch.Tensor, G_inv: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """Resample images [N, C, H, W] through the output-to-input pixel matrices G_inv [N, 3, 3] (see the module).

    filt: the 1-D geometric low-pass (setup_filter of the symlet-6 taps). Twice differentiable w.r.t. images.
    """
    from ..ops import grid_sample  # the op lives beside ours; imported here so gankernels.augment imports alone

    n, c, h, w = images.shape
    device, dtype = images.device, images.dtype
    applied = ~is_identity(G_inv)
    G_inv = G_inv.to(dtype)
    opts = dict(device=device, dtype=dtype)

    # How far the transformed corners reach outside the image, plus the filter's support: the reflect padding.
    cx, cy = (w - 1) / 2, (h - 1) / 2
    corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], **opts)
    reach = (G_inv @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N * 4] input coordinates
    reach = torch.cat([-reach, reach]).max(dim=1).values  # [x0, y0, x1, y1]
    filt_pad = filt.shape[0] // 4
    margin = reach + torch.tensor([filt_pad * 2 - cx, filt_pad * 2 - cy] * 2, **opts)
    margin = margin.clamp(min=0).minimum(torch.tensor([w - 1, h - 1] * 2, **opts)).ceil()
    # One host sync (the padding sizes), which also says whether any image is transformed at all.
    *pads, any_applied = torch.cat([margin, applied.any().to(dtype)[None]]).tolist()
    if not any_applied:
        return images
    mx0, my0, mx1, my1 = (int(v) for v in pads)

    x = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
    G_inv = translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, **opts) @ G_inv
    x = upsample2d(x, filt, up=2)
    # Into the upsampled image's pixel coordinates (pixel centres at half-integers), then normalised [-1, 1].
    G_inv = scale2d(2, 2, **opts) @ G_inv @ scale2d_inv(2, 2, **opts)
    G_inv = translate2d(-0.5, -0.5, **opts) @ G_inv @ translate2d_inv(-0.5, -0.5, **opts)
    shape = [n, c, (h + filt_pad * 2) * 2, (w + filt_pad * 2) * 2]
    G_inv = (scale2d(2 / x.shape[3], 2 / x.shape[2], **opts) @ G_inv
             @ scale2d_inv(2 / shape[3], 2 / shape[2], **opts))  # fmt: skip
    grid = F.affine_grid(G_inv[:, :2, :], shape, align_corners=False)
    x = grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = downsample2d(x, filt, down=2, padding=-filt_pad * 2, flip_filter=True)
    return torch.where(applied[:, None, None, None], x, images)
