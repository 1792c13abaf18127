"""Pure-PyTorch instance norm + activation + residual: the oracle of every backend and the `ref` backend itself.

`instance_norm_act` is written as a careful user would write it in eager PyTorch (the "eager" baseline of the
benchmarks) and is differentiable to any order through torch autograd. It keeps the input's memory format
(torch.nn.functional.instance_norm returns NCHW for a channels_last input). `instance_norm_stats` and
`instance_norm_act_grad` are the reference twins of the fused kernels' statistics and gradient: the same formulas, in
terms of the statistics that the forward saved, differentiable with respect to every tensor argument (the gradient
op's own backward is autograd through them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# activation -> (kernel code, default alpha); the codes are bias_act's (gankernels.reference.bias_act.ACTIVATIONS)
ACTIVATIONS = {"linear": (1, 0.0), "relu": (2, 0.0), "lrelu": (3, 0.2)}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16 / bfloat16 (the statistics are computed in float32), else `dtype`."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _activation(z: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    if act == "linear":
        return z
    if act == "relu":
        return F.relu(z)
    if act == "lrelu":
        return F.leaky_relu(z, alpha)
    raise ValueError(f"act: unknown activation {act!r}")


def _per_channel(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.to(dtype).reshape(1, -1, 1, 1)


def instance_norm_act(x, weight=None, bias=None, act="linear", alpha=0.0, residual=None, eps=1e-5):
    """y = act((x - mean) / sqrt(var + eps) * weight + bias, alpha) + residual, statistics per (n, c) over H, W.

    x: [N, C, H, W]; weight, bias: [C] or None; residual: x's shape or None. var is the biased variance (as
    torch.nn.functional.instance_norm without running statistics). Arguments are already validated and defaulted
    (gankernels.ops.instance_norm does that). float16 / bfloat16 are computed in float32; y has x's dtype and layout.
    """
    xc = x.to(compute_dtype(x.dtype))
    var, mean = torch.var_mean(xc, dim=(2, 3), unbiased=False, keepdim=True)
    z = (xc - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        z = z * _per_channel(weight, z.dtype)
    if bias is not None:
        z = z + _per_channel(bias, z.dtype)
    y = _activation(z, act, alpha).to(x.dtype)
    if residual is not None:
        y = y + residual
    return y


def instance_norm_stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, rstd), each [N, C] in compute_dtype(x.dtype): the statistics that the fused forward saves.
    rstd = 1 / sqrt(var + eps) with the biased variance over H, W."""
    var, mean = torch.var_mean(x.to(compute_dtype(x.dtype)), dim=(2, 3), unbiased=False)
    return mean, torch.rsqrt(var + eps)


def instance_norm_act_grad(g, x, weight, bias, mean, rstd, act, alpha):
    """The fused gradient op, as plain tensor code: (dx, dweight, dbias) of y = instance_norm_act(x, ...) for the
    incoming gradient g = dL/dy, with the forward's statistics mean, rstd ([N, C]).

    With xhat = (x - mean) * rstd, z = xhat * w + b and gz = g * act'(z):
        dweight = sum_{n,h,w} gz * xhat, dbias = sum_{n,h,w} gz,
        dx = rstd * w * (gz - mean_hw(gz) - xhat * mean_hw(gz * xhat)).
    weight / bias None act as 1 / 0 (dweight / dbias are still returned, for the implicit ones). dx has x's dtype,
    dweight / dbias the dtype of weight / bias (x's when None). Differentiable with respect to every tensor argument
    (mean and rstd taken as independent inputs).
    """
    cd = mean.dtype
    m, r = mean.reshape(*mean.shape, 1, 1), rstd.reshape(*rstd.shape, 1, 1)
    xhat = (x.to(cd) - m) * r
    w = _per_channel(weight, cd)
    z = xhat if w is None else xhat * w
    if bias is not None:
        z = z + _per_channel(bias, cd)
    gz = g.to(cd)
    if act == "relu":
        gz = torch.where(z > 0, gz, torch.zeros_like(gz))
    elif act == "lrelu":
        gz = torch.where(z > 0, gz, gz * alpha)
    s_gz = gz.mean(dim=(2, 3), keepdim=True)
    s_gzx = (gz * xhat).mean(dim=(2, 3), keepdim=True)
    dxhat = gz - s_gz - xhat * s_gzx
    dx = dxhat * r if w is None else dxhat * (r * w)
    hw = x.shape[2] * x.shape[3]
    dweight = (s_gzx * hw).sum(dim=(0, 2, 3))
    dbias = (s_gz * hw).sum(dim=(0, 2, 3))
    w_dtype = x.dtype if weight is None else weight.dtype
    b_dtype = x.dtype if bias is None else bias.dtype
    return dx.to(x.dtype), dweight.to(w_dtype), dbias.to(b_dtype)


def instance_norm_stats_grad(gmean, grstd, x, mean, rstd):
    """dL/dx from gradients gmean, grstd ([N, C] or None) of the statistics (mean, rstd) of x:
    d mean / dx = 1 / HW and d rstd / dx = -rstd^3 (x - mean) / HW. Returns x's dtype, or None when both are None."""
    if gmean is None and grstd is None:
        return None
    hw = x.shape[2] * x.shape[3]
    cd = mean.dtype
    out = torch.zeros((), dtype=cd, device=x.device)
    if gmean is not None:
        out = out + gmean.to(cd).reshape(*gmean.shape, 1, 1) / hw
    if grstd is not None:
        m, r = mean.reshape(*mean.shape, 1, 1), rstd.reshape(*rstd.shape, 1, 1)
        out = out - grstd.to(cd).reshape(*grstd.shape, 1, 1) * r.pow(3) * (x.to(cd) - m) / hw
    return out.expand(x.shape).to(x.dtype)
