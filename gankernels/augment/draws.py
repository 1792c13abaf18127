"""Random draws shared by the augmentation stages: one place that says how a parameter is sampled.

Every draw uses torch's global RNG on the images' device in float32 (whatever the images' dtype), so the same seed
gives the same augmentations in float32 and float64 and the training loop's per-step seeding makes runs
reproducible. The order of the calls follows NVlabs' augment.py, so that a seeded run draws the same values.
`debug` (NVlabs' debug_percentile, a float in [0, 1]) replaces every random value by that percentile of its
distribution and applies every augmentation whose multiplier is non-zero: a deterministic view of what each does.
"""

from __future__ import annotations

import torch


class Draws:
    """Samples for one batch: n images on `device`, overall strength `p` (a 0-d tensor), optional debug percentile."""

    def __init__(self, n: int, device: torch.device, p: torch.Tensor, debug: float | None = None):
        self.n, self.device, self.p = n, device, p.to(device=device, dtype=torch.float32)
        self.debug = None if debug is None else torch.tensor(float(debug), device=device)

    def rand(self, *shape) -> torch.Tensor:
        return torch.rand(list(shape), device=self.device, dtype=torch.float32)

    def randn(self, *shape) -> torch.Tensor:
        return torch.randn(list(shape), device=self.device, dtype=torch.float32)

    def chosen(self, value: torch.Tensor, identity: float, multiplier: float, chance_shape=None, prob=None):
        """value where a fresh uniform draw (of `chance_shape`, default the value's) is below multiplier * p (or
        below `prob` when given), else `identity`."""
        prob = multiplier * self.p if prob is None else prob
        keep = self.rand(*(value.shape if chance_shape is None else chance_shape)) < prob
        return torch.where(keep, value, torch.full_like(value, identity))

    # Each sampler: the value is drawn first, then the per-image chance, as NVlabs; or the debug percentile's value.
    def uniform_int(self, count: int, multiplier: float, *shape) -> torch.Tensor:
        """floor(U * count), i.e. 0 .. count - 1 (a flip, a quarter turn), else 0."""
        i = self.chosen(torch.floor(self.rand(self.n, *shape) * count), 0.0, multiplier)
        return i if self.debug is None else torch.full_like(i, float(torch.floor(self.debug * count)))

    def uniform(self, half_range: float, multiplier: float, *shape, chance_shape=None, prob=None) -> torch.Tensor:
        """U(-half_range, half_range), else 0."""
        t = (self.rand(self.n, *shape) * 2 - 1) * half_range
        t = self.chosen(t, 0.0, multiplier, chance_shape, prob)
        return t if self.debug is None else torch.full_like(t, float((self.debug * 2 - 1) * half_range))

    def normal(self, std: float, multiplier: float, *shape, chance_shape=None) -> torch.Tensor:
        """N(0, std^2), else 0."""
        t = self.chosen(self.randn(self.n, *shape) * std, 0.0, multiplier, chance_shape)
        return t if self.debug is None else torch.full_like(t, float(self._erfinv() * std))

    def lognormal2(self, std: float, multiplier: float, *shape) -> torch.Tensor:
        """2^N(0, std^2), else 1."""
        s = self.chosen(torch.exp2(self.randn(self.n, *shape) * std), 1.0, multiplier)
        if self.debug is None:
            return s
        return torch.full_like(s, float(torch.exp2(self._erfinv() * std)) if multiplier > 0 else 1.0)

    def _erfinv(self) -> torch.Tensor:
        return torch.erfinv(self.debug * 2 - 1)  # the standard normal's percentile, / sqrt 2 as NVlabs
