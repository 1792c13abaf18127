"""The ADA controller: adapts the augmentation strength p from how much D overfits (Karras et al. 2020, sec. 3).

The heuristic r_t = E[sign(D(x_real))] (over the real images D saw since the last adjustment: 0 when D cannot tell
reals from fakes, 1 when it is certain on all reals). Every `interval` (4) iterations,
p <- clamp(p + sign(r_t - target) * batch * interval / (kimg * 1000), 0, 1): p can go from 0 to 1 in `kimg`
thousand images. NVlabs clamp at 0 only (their p has been seen above 1, where the probabilities saturate); we clamp
at 1 too. The accumulators live on the logits' device (no host sync per step); under DDP they are summed over
ranks at each adjustment, so every rank keeps the same p.
"""

from __future__ import annotations

import math
import numbers

import torch


def _positive(value, name: str, integer: bool = False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be a {'positive integer' if integer else 'positive number'}, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


class AdaController:
    """Accumulate sign(D(real)) with `accumulate(real_logits)` after each D forward on reals; call `step(step)`
    after each training iteration (0-based). `p` is the tensor it adjusts in place (an AugmentPipe's p buffer);
    adapt=False only measures r_t (fixed p or no augmentation).

    target: the r_t to hold (default 0.6); interval: iterations between adjustments (4); kimg: thousands of images
    for p to move by 1 (500); batch: images per iteration over all ranks.
    """

    def __init__(self, p: torch.Tensor, batch: int, target: float = 0.6, interval: int = 4, kimg: float = 500,
                 adapt: bool = True, dist=None):  # fmt: skip
        if not isinstance(p, torch.Tensor) or p.numel() != 1:
            raise TypeError("p must be a one-element tensor (the augmentation pipe's p buffer)")
        if isinstance(target, bool) or not isinstance(target, numbers.Real) or not 0 <= target <= 1:
            raise ValueError(f"target must be in [0, 1], got {target!r}")
        self.p = p
        self.batch = _positive(batch, "batch", integer=True)
        self.interval = _positive(interval, "interval", integer=True)
        self.kimg = float(_positive(kimg, "kimg"))
        self.target = float(target)
        self.adapt = adapt
        self.dist = dist
        self.signs = torch.zeros([], dtype=torch.float64, device=p.device)  # sum of sign(D(real)) since the last step
        self.count = 0  # how many logits (a host int: numel is known without a sync)
        self.r_t: torch.Tensor | None = None  # the last adjustment's heuristic (0-d, float64)

    @property
    def adjustment(self) -> float:
        """How far p moves per adjustment: batch * interval / (kimg * 1000)."""
        return self.batch * self.interval / (self.kimg * 1000)

    def accumulate(self, real_logits: torch.Tensor) -> None:
        logits = real_logits.detach()
        self.signs = self.signs + logits.sign().sum(dtype=torch.float64).to(self.signs.device)
        self.count += logits.numel()

    def step(self, step: int) -> bool:
        """After iteration `step` (0-based): adjust p when step + 1 is a multiple of interval; True when it did.
        All on the device: no host sync (r_t is a 0-d tensor, read when the progress line prints it)."""
        if (step + 1) % self.interval:
            return False
        if self.count == 0:  # no real logits seen: nothing to measure
            return False
        count = torch.full([], float(self.count), dtype=torch.float64, device=self.signs.device)  # a fill, no copy
        totals = torch.stack([self.signs, count])
        if self.dist is not None and self.dist.world_size > 1:
            torch.distributed.all_reduce(totals)
        self.signs = torch.zeros_like(self.signs)
        self.count = 0
        self.r_t = totals[0] / totals[1]
        if self.adapt:
            with torch.no_grad():  # sign(r_t - target): 0 when r_t is the target
                direction = torch.sign(self.r_t - self.target).to(self.p.dtype)
                self.p.copy_((self.p + direction * self.adjustment).clamp(0, 1))
        return True

    def state_dict(self) -> dict:
        return {"p": self.p.detach().cpu().clone(), "signs": self.signs.detach().cpu().clone(), "count": self.count,
                "r_t": None if self.r_t is None else float(self.r_t)}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.p.copy_(state["p"].to(self.p))
        self.signs = state["signs"].to(device=self.signs.device, dtype=torch.float64)
        self.count = int(state["count"])
        r_t = state["r_t"]
        self.r_t = None if r_t is None else torch.tensor(float(r_t), dtype=torch.float64, device=self.signs.device)
