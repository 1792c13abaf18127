"""Pure-PyTorch fused convolution: the oracle of gankernels.ops.fused_conv2d.

    y = clamp(act(conv2d(pad(x * in_scale), weight) * out_scale + noise + bias, alpha) * gain, -clamp, clamp)

written as the composition it replaces: StyleGAN2's non-fused modulated layer (x * styles, conv with the shared
weight, * dcoefs, + noise, bias_act) and CycleGAN's ReflectionPad2d + Conv2d. Differentiable to any order through
torch autograd. Arguments are assumed valid (gankernels.ops.fused_conv2d checks them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import bias_act as ref_bias_act


def padding_pair(weight: torch.Tensor, padding) -> tuple[int, int]:
    """(py, px): padding None is k // 2 ("same" for an odd kernel); an int pads both sides of both axes."""
    if padding is None:
        return weight.shape[2] // 2, weight.shape[3] // 2
    if isinstance(padding, int):
        return padding, padding
    return int(padding[0]), int(padding[1])


def fused_conv2d(
    x,
    weight,
    *,
    stride=1,
    padding=None,
    groups=1,
    padding_mode="zeros",
    in_scale=None,
    out_scale=None,
    noise=None,
    bias=None,
    act="linear",
    alpha=None,
    gain=None,
    clamp=None,
):
    """x: [N, I, H, W]; weight: [O, I, k, k]; in_scale: [N, I] or None; out_scale: [N, O] or None; noise:
    broadcastable to [N, 1, H', W'] or None; bias: [O] or None. padding None: k // 2; padding_mode "zeros" or
    "reflect". act, alpha, gain (None: the activation's defaults), clamp (None: none) as bias_act. stride and groups
    are accepted for the signature and must be 1."""
    py, px = padding_pair(weight, padding)
    if in_scale is not None:
        x = x * in_scale.to(x.dtype).reshape(*in_scale.shape, 1, 1)
    if padding_mode == "reflect":
        x = F.pad(x, [px, px, py, py], mode="reflect")
        py = px = 0
    y = F.conv2d(x, weight, padding=[py, px])
    if out_scale is not None:
        y = y * out_scale.to(y.dtype).reshape(*out_scale.shape, 1, 1)
    if noise is not None:
        y = y + noise.to(y.dtype)
    spec = ref_bias_act.ACTIVATIONS[act]
    alpha = spec.alpha if alpha is None else float(alpha)
    gain = spec.gain if gain is None else float(gain)
    b = None if bias is None else bias.to(y.dtype)
    return ref_bias_act.bias_act(y, b, 1, act, alpha, gain, -1.0 if clamp is None else float(clamp))
