"""Pure-PyTorch bias + activation: the oracle of every backend and the `ref` backend itself.

`bias_act` is written as a careful user would write it in eager PyTorch (it is the "eager" baseline of the
benchmarks), and is differentiable to any order through torch autograd. `bias_act_grad` is the reference twin
of the fused gradient kernels: the same formulas, in terms of the tensor that the forward saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


@dataclass(frozen=True)
class Activation:
    index: int  # the kernels' activation code
    alpha: float  # default alpha
    gain: float  # default gain
    ref: str  # what the backward needs: "x" (pre-activation input), "y" (output) or "" (nothing)
    has_2nd_grad: bool  # whether the second derivative is non-zero somewhere


ACTIVATIONS = {
    "linear": Activation(1, 0.0, 1.0, "", False),
    "relu": Activation(2, 0.0, math.sqrt(2), "y", False),
    "lrelu": Activation(3, 0.2, math.sqrt(2), "y", False),
    "tanh": Activation(4, 0.0, 1.0, "y", True),
    "sigmoid": Activation(5, 0.0, 1.0, "y", True),
    "elu": Activation(6, 0.0, 1.0, "y", True),
    "selu": Activation(7, 0.0, 1.0, "y", True),
    "softplus": Activation(8, 0.0, 1.0, "y", True),
    "swish": Activation(9, 0.0, math.sqrt(2), "x", True),
}


def _activation(x: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    if act == "linear":
        return x
    if act == "relu":
        return F.relu(x)
    if act == "lrelu":
        return F.leaky_relu(x, alpha)
    if act == "tanh":
        return torch.tanh(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    if act == "elu":
        return F.elu(x)
    if act == "selu":
        return F.selu(x)
    if act == "softplus":  # torch returns x above `threshold`: off by log1p(exp(-x)), 1e-10 relative at 20 in fp64
        return F.softplus(x, threshold=40.0 if x.dtype == torch.float64 else 20.0)
    if act == "swish":
        return torch.sigmoid(x) * x
    raise ValueError(f"act: unknown activation {act!r}")


def bias_shape(ndim: int, dim: int) -> list[int]:
    return [-1 if i == dim else 1 for i in range(ndim)]


def bias_act(x, b=None, dim=1, act="linear", alpha=0.0, gain=1.0, clamp=-1.0):
    """y = clamp(act(x + b, alpha) * gain, -clamp, clamp); b: [x.shape[dim]] broadcast along `dim`.

    Arguments are already validated and defaulted (gankernels.ops.bias_act does that); clamp < 0 means none.
    """
    if b is not None:
        x = x + b.reshape(bias_shape(x.ndim, dim))
    x = _activation(x, act, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _derivative(act: str, order: int, ref: torch.Tensor, alpha: float, gain: float) -> torch.Tensor | None:
    """For order 1: act'(z) as a function of the saved tensor. For order 2: d(act'(z))/d(saved tensor).

    The saved tensor is z = x + b for act.ref == "x", else y (after gain); yy = y / gain = act(z) for the
    unclamped elements. None means identically zero.
    """
    spec = ACTIVATIONS[act]
    if spec.ref == "x":  # swish: s = sigmoid(z), sm = 1 - s = sigmoid(-z) (1 - s cancels for z >> 0),
        # act' = s + z s sm, act'' = s sm (2 + z (sm - s))
        s, sm = torch.sigmoid(ref), torch.sigmoid(-ref)
        if order == 1:
            return s + ref * s * sm
        return s * sm * (2 + ref * (sm - s)) * gain
    if spec.ref == "":
        return torch.ones_like(ref) if order == 1 else None
    yy = ref / gain if gain != 0 else torch.zeros_like(ref)
    one, zero = torch.ones_like(yy), torch.zeros_like(yy)
    if order == 1:
        if act == "relu":
            return torch.where(yy > 0, one, zero)
        if act == "lrelu":
            return torch.where(yy > 0, one, one * alpha)
        if act == "tanh":
            return 1 - yy * yy
        if act == "sigmoid":
            return yy * (1 - yy)
        if act == "elu":
            return torch.where(yy >= 0, one, yy + 1)
        if act == "selu":
            return torch.where(yy > 0, one * SELU_SCALE, yy + SELU_SCALE * SELU_ALPHA)
        if act == "softplus":  # 1 - exp(-y), accurate for small y (z << 0)
            return -torch.expm1(-yy)
    # order 2: the derivative of the order-1 factor with respect to y: d f1(y / gain) / dy * gain = f1'(yy)
    if act in ("relu", "lrelu"):
        return None
    if act == "tanh":
        return -2 * yy
    if act == "sigmoid":
        return 1 - 2 * yy
    if act in ("elu", "selu"):
        return torch.where(yy > 0, zero, one) if act == "selu" else torch.where(yy >= 0, zero, one)
    if act == "softplus":
        return torch.exp(-yy)
    raise ValueError(f"act: unknown activation {act!r}")


def bias_act_grad(g, m, x, b, y, dim, act, alpha, gain, clamp, order):
    """The fused gradient op of bias_act, as plain tensor code.

    order 1: dL/dz = g * gain * act'(z) * mask, with z = x + b, for the forward y = bias_act(x, b, ...).
    order 2: the derivative of the order-1 result with respect to the saved tensor (x for swish, y otherwise),
             contracted with g (the incoming gradient) and m (the order-1 op's own g).
    mask = |y| < clamp when clamp >= 0 (NVlabs' convention: clamped outputs pass no gradient).
    x is given (with b) only for activations that save x; y only for those that save y or when clamp >= 0.
    """
    spec = ACTIVATIONS[act]
    if spec.ref == "x":
        ref = x if b is None else x + b.reshape(bias_shape(x.ndim, dim))
    elif spec.ref == "y":
        ref = y
    else:
        ref = g
    factor = _derivative(act, order, ref, alpha, gain)
    if factor is None:
        return torch.zeros_like(g)
    out = g * factor
    if order == 1:
        out = out * gain
    if m is not None:
        out = out * m
    if clamp >= 0:
        out = torch.where(y.abs() < clamp, out, torch.zeros_like(out))
    return out
