"""fused_conv2d cases: the fused Triton kernel ("triton") against the composed path ("ours": the automatic choice,
cuDNN's conv then the fused epilogue kernel), eager PyTorch (x * styles, F.pad, F.conv2d, * dcoefs, + noise,
bias_act) and torch.compile of it; forward and forward+backward (the backward is composed on every path).

Shapes: a StyleGAN2 synthesis layer without resampling, 512 channels, 3x3, batch 32, at 8x8, 16x16 and 32x32 (styles,
demodulation coefficients, noise, bias, lrelu, clamp 256; channels_last in fp16/bf16 as NVlabs runs them, NCHW in
fp32), and CycleGAN's ReflectionPad2d(1) + Conv2d(256, 256, 3) + bias at 64x64 (256x256 images), batch 1 and 4.
TFLOP/s with flops = 2 N O H W I k k forward, three times that forward+backward. CUDA only; on CPU only the quick
smoke case runs (the kernel under the Triton interpreter is for correctness, not timing).
"""

from __future__ import annotations

import torch

from ..ops.fused_conv2d import fused_conv2d
from ..reference.fused_conv2d import fused_conv2d as eager_fused_conv2d
from . import AUTO, DTYPE_NAMES, Case

STYLEGAN2 = [(32, 512, 8), (32, 512, 16), (32, 512, 32)]  # (batch, channels, resolution)
CYCLEGAN = [(1, 256, 64), (4, 256, 64)]
QUICK = [(2, 8, 8)]


def _grad(fn):
    def run(*args):
        y = fn(*args[:-1])
        return torch.autograd.grad(y, [a for a in args[:-1] if a is not None and a.requires_grad], args[-1])

    return run


def _stylegan2(x, weight, styles, dcoefs, noise, bias, fn=fused_conv2d):
    return fn(x, weight, in_scale=styles, out_scale=dcoefs, noise=noise, bias=bias, act="lrelu", clamp=256.0)


def _cyclegan(x, weight, bias, fn=fused_conv2d):
    return fn(x, weight, padding_mode="reflect", bias=bias)


def _eager_stylegan2(*args):
    return _stylegan2(*args, fn=eager_fused_conv2d)


def _eager_cyclegan(*args):
    return _cyclegan(*args, fn=eager_fused_conv2d)


def _make(device, dtype, batch, channels, res, fmt, styled, grad):
    def make():
        new = dict(device=device, dtype=dtype)
        x = torch.randn(batch, channels, res, res, **new).contiguous(memory_format=fmt).requires_grad_(grad)
        weight = (torch.randn(channels, channels, 3, 3, **new) / (9 * channels) ** 0.5).requires_grad_(grad)
        bias = torch.randn(channels, **new).requires_grad_(grad)
        if styled:
            styles = (torch.randn(batch, channels, **new) + 1).requires_grad_(grad)
            dcoefs = torch.rand(batch, channels, **new).requires_grad_(grad)
            noise = torch.randn(batch, 1, res, res, **new)
            args = [x, weight, styles, dcoefs, noise, bias]
        else:
            args = [x, weight, bias]
        if grad:
            args.append(torch.randn(batch, channels, res, res, **new).contiguous(memory_format=fmt))
        return tuple(args)

    return make


def cases(device: torch.device, quick: bool = False) -> list[Case]:
    if device.type != "cuda" and not quick:
        return []
    if quick:
        layers = [("StyleGAN2", s, True) for s in QUICK]
        dtypes = [torch.float32]
    else:
        layers = [("StyleGAN2", s, True) for s in STYLEGAN2] + [("CycleGAN reflect", s, False) for s in CYCLEGAN]
        dtypes = [torch.float32, torch.float16, torch.bfloat16]
    out = []
    for kind, (batch, channels, res), styled in layers:
        for dtype in dtypes:
            fmt = torch.channels_last if styled and dtype != torch.float32 else torch.contiguous_format
            layout = "NHWC" if fmt == torch.channels_last else "NCHW"
            label = f"{kind} [{batch},{channels},{res},{res}] 3x3 {DTYPE_NAMES[dtype]} {layout}"
            flops = 2 * batch * channels * res * res * channels * 9
            ours, eager = (_stylegan2, _eager_stylegan2) if styled else (_cyclegan, _eager_cyclegan)
            for grad in (False, True):
                make = _make(device, dtype, batch, channels, res, fmt, styled, grad)
                run, ref = (_grad(ours), _grad(eager)) if grad else (ours, eager)
                out.append(Case("fused_conv2d", f"{label} {'fwd+bwd' if grad else 'fwd'}", make, run, ref, bytes=0,
                                flops=flops * (3 if grad else 1), backends=("triton", AUTO)))  # fmt: skip
    return out
