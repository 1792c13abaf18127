"""InstanceNormAct: torch.nn.InstanceNorm2d (no running statistics) fused with an activation and a residual add."""

from __future__ import annotations

import torch
from torch import nn

from ..ops.instance_norm import ACTIVATIONS, instance_norm_act


class InstanceNormAct(nn.Module):
    """y = act(instance_norm(x) * weight + bias, alpha) + residual, in one kernel (gankernels.ops.instance_norm_act).

    num_features: C of x: [N, C, H, W]. affine (default False, as torch.nn.InstanceNorm2d): learnable `weight` (ones)
    and `bias` (zeros) of shape [C], named as torch's, so that state dicts of InstanceNorm2d(affine=True,
    track_running_stats=False) load; affine=False has no parameters, as there. act: "linear" (default: plain instance
    norm), "relu" or "lrelu" (negative slope alpha, default 0.2). eps: default 1e-5.
    `forward(x, residual=None)`: residual, of x's shape, is added after the activation. Under autocast, the affine
    parameters are cast to x's dtype.
    """

    def __init__(self, num_features, affine=False, act="linear", eps=1e-5, alpha=None):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        if act not in ACTIVATIONS:
            raise ValueError(f"act: unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
        self.num_features, self.affine, self.act, self.eps, self.alpha = num_features, bool(affine), act, eps, alpha
        if self.affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x, residual=None):
        weight, bias = self.weight, self.bias
        if weight is not None and isinstance(x, torch.Tensor) and weight.dtype != x.dtype:
            weight, bias = weight.to(x.dtype), bias.to(x.dtype)  # differentiable casts (autocast, .half() inputs)
        return instance_norm_act(x, weight, bias, act=self.act, alpha=self.alpha, residual=residual, eps=self.eps)

    def extra_repr(self):
        alpha = "" if self.alpha is None else f", alpha={self.alpha}"
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}, act={self.act}{alpha}"
