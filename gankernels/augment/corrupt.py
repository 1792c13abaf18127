"""Image-space filtering (imgfilter) and corruptions (noise, cutout).

imgfilter: each of 4 octave bands (filters.filter_bank) gets, with probability imgfilter * p * band_strength, a
log2-normal amplitude gain; the gains are normalised so that the expected power of a 1/f image is kept, combined
into one separable filter per image, and applied (reflect padding) as two grouped 1-D convolutions on our conv2d.
noise: additive Gaussian noise with a per-image sigma = |N(0, noise_std^2)|. cutout: zero a square of
cutout_size of the image size, centred uniformly at random.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops import conv2d
from .draws import Draws
from .filters import EXPECTED_BAND_POWER


def imgfilter_gains(pipe, draws: Draws) -> tuple[torch.Tensor, torch.Tensor] | None:
    """([N, bands] float32 gains, [N] bool: image has a band drawn), or None when imgfilter is off."""
    if not pipe.imgfilter > 0:
        return None
    n, bands = draws.n, len(pipe.imgfilter_bands)
    expected = torch.tensor(EXPECTED_BAND_POWER, device=draws.device)
    g = torch.ones([n, bands], device=draws.device)
    drawn = torch.zeros([n], dtype=torch.bool, device=draws.device)
    for i, band_strength in enumerate(pipe.imgfilter_bands):
        t_i = draws.lognormal2(pipe.imgfilter_std, pipe.imgfilter * band_strength)
        drawn |= t_i != 1
        t = torch.ones([n, bands], device=draws.device)
        t[:, i] = t_i
        g = g * (t / (expected * t.square()).sum(dim=-1, keepdim=True).sqrt())  # keep the expected power
    return g, drawn


def apply_imgfilter(images: torch.Tensor, gains: torch.Tensor, drawn: torch.Tensor, bank: torch.Tensor):
    """Filter images [N, C, H, W] with sum_b gains[:, b] * bank[b] along x then y; bank [bands, taps]."""
    n, c, h, w = images.shape
    taps = bank.shape[1]
    pad = taps // 2
    if pad >= h or pad >= w:
        raise ValueError(f"images: imgfilter needs images larger than {pad}x{pad} (reflect padding), got {h}x{w}")
    f = (gains.to(images.dtype) @ bank.to(images.dtype))[:, None, :].expand(n, c, taps).reshape(n * c, 1, taps)
    x = F.pad(images.reshape(1, n * c, h, w), [pad, pad, pad, pad], mode="reflect")
    x = conv2d(x, f[:, :, None, :], groups=n * c)  # along x: [N * C, 1, 1, taps]
    x = conv2d(x, f[:, :, :, None], groups=n * c)  # along y: [N * C, 1, taps, 1]
    return torch.where(drawn[:, None, None, None], x.reshape(n, c, h, w), images)


def apply_noise(pipe, draws: Draws, images: torch.Tensor) -> torch.Tensor:
    """images + N(0, 1) * sigma, sigma = |N(0, noise_std^2)| per image with probability noise * p, else 0."""
    n, c, h, w = images.shape
    sigma = draws.randn(n, 1, 1, 1).abs() * pipe.noise_std
    sigma = draws.chosen(sigma, 0.0, pipe.noise)
    if draws.debug is not None:
        sigma = torch.full_like(sigma, float(torch.erfinv(draws.debug) * pipe.noise_std))
    return images + draws.randn(n, c, h, w).to(images.dtype) * sigma.to(images.dtype)


def apply_cutout(pipe, draws: Draws, images: torch.Tensor) -> torch.Tensor:
    """Zero a cutout_size x cutout_size (relative) rectangle at a uniform centre, with probability cutout * p."""
    n, c, h, w = images.shape
    size = draws.chosen(torch.full([n, 2, 1, 1, 1], pipe.cutout_size, device=draws.device), 0.0, pipe.cutout,
                        chance_shape=[n, 1, 1, 1, 1])  # fmt: skip
    center = draws.rand(n, 2, 1, 1, 1)
    if draws.debug is not None:
        size = torch.full_like(size, pipe.cutout_size)
        center = torch.full_like(center, float(draws.debug))
    x = (torch.arange(w, device=draws.device).reshape(1, 1, 1, -1) + 0.5) / w
    y = (torch.arange(h, device=draws.device).reshape(1, 1, -1, 1) + 0.5) / h
    keep = ((x - center[:, 0]).abs() >= size[:, 0] / 2) | ((y - center[:, 1]).abs() >= size[:, 1] / 2)
    return images * keep.to(images.dtype)
