"""The exponential moving average of a generator's weights (NVlabs' G_ema), with their ramp-up."""

from __future__ import annotations

import copy

import torch


class EMA:
    """G_ema = EMA(G, ema_kimg=10, rampup=0.05); G_ema.update(G, cur_nimg, batch_size) after each G step.

    As NVlabs' training loop: the half-life is ema_kimg thousand images, shortened to cur_nimg * rampup early in
    training (rampup None: no ramp-up), beta = 0.5 ** (batch_size / ema_nimg); parameters are lerped, buffers copied.
    `module` is the averaged copy (in eval mode, no gradients).
    """

    def __init__(self, model: torch.nn.Module, ema_kimg: float = 10.0, rampup: float | None = 0.05):
        if ema_kimg <= 0:
            raise ValueError(f"ema_kimg must be positive, got {ema_kimg}")
        if rampup is not None and rampup <= 0:
            raise ValueError(f"rampup must be positive or None, got {rampup}")
        self.ema_kimg = float(ema_kimg)
        self.rampup = rampup
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def beta(self, cur_nimg: int, batch_size: int) -> float:
        ema_nimg = self.ema_kimg * 1000
        if self.rampup is not None:
            ema_nimg = min(ema_nimg, cur_nimg * self.rampup)
        return 0.5 ** (batch_size / max(ema_nimg, 1e-8))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, cur_nimg: int, batch_size: int) -> None:
        """p_ema = lerp(p, p_ema, beta) for every parameter, b_ema = b for every buffer: a few foreach launches for
        the whole network, not one per tensor, and bit for bit the per-tensor p_ema.copy_(p.lerp(p_ema, beta)) (the
        same lerp, same argument order; copy_ casts as it did)."""
        beta = self.beta(cur_nimg, batch_size)
        params_ema, params = _pairs(self.module.parameters(), model.parameters())
        if params:
            torch._foreach_copy_(params_ema, torch._foreach_lerp(params, params_ema, beta))
        buffers_ema, buffers = _pairs(self.module.buffers(), model.buffers())
        if buffers:
            torch._foreach_copy_(buffers_ema, buffers)


def _pairs(ema_tensors, tensors) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    pairs = list(zip(ema_tensors, tensors, strict=True))
    return [a for a, _ in pairs], [b.detach() for _, b in pairs]
