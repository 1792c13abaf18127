"""Fused instance norm + activation + residual add, differentiable to second order (and beyond) on every backend.

    y = act((x - mean_hw) / sqrt(var_hw + eps) * weight[c] + bias[c], alpha) + residual

What CycleGAN's ResnetBlock needs in one pass over memory: conv -> IN -> ReLU and conv -> IN -> + x.

Two torch custom ops carry the work. `gankernels::instance_norm_act` (forward) returns y and the statistics mean,
rstd ([N, C]) that its backward reuses; the statistics are real, differentiable outputs (their gradient flows back to
x), which keeps every op's autograd exact on its own. `gankernels::instance_norm_act_backward` gives (dx, dweight,
dbias) from one fused kernel; its own backward is autograd through the reference formula
(gankernels.reference.instance_norm.instance_norm_act_grad), so the double backward of a gradient penalty through a
normalised layer is exact. They are declared through _define.define_op and define_gradient_op (eager Function, vmap
rule).
"""

from __future__ import annotations

import torch

from .. import backend as _backend
from ..reference import instance_norm as ref
from ._common import (
    check_4d,
    check_act,
    check_float_tensor,
    check_real,
    check_same,
    contiguous,
    dense,
    empty_like,
    kernels,
    memory_format,
)
from ._define import define_gradient_op, define_op

OP = "instance_norm"  # the backend op name: kernels in gankernels.triton.instance_norm
ACTIVATIONS = ref.ACTIVATIONS


def resolve_backend(device_type: str) -> str:
    """The backend that runs instance_norm_act on `device_type` tensors: "cpu", "triton" or "ref"
    (gankernels.backend.resolve: its kernels are KERNELS["instance_norm"]; a forced "cuda", which it has no kernels
    for, says so). Automatic: the C++ kernels on CPU tensors when the extension has them (one pass for the
    statistics' two sums and one for y, per plane in cache, where the reference makes ~10 passes: 3-5x faster than it,
    benchmarks/NOTES.md), Triton on CUDA tensors when it runs, else the reference.
    """
    return _backend.resolve(OP, device_type)


def _stats_empty(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[:2], dtype=ref.compute_dtype(x.dtype))


# ----------------------------------------------------------------------------------------------------------------
# Forward op: (y, mean, rstd)


def _instance_norm_act_impl(x, weight, bias, residual, act, alpha, eps, backend):
    x = dense(x)
    fmt = memory_format(x)
    residual = None if residual is None else dense(residual, fmt)
    if backend == "ref":
        mean, rstd = ref.instance_norm_stats(x, eps)
        y = ref.instance_norm_act(x, weight, bias, act, alpha, residual, eps).contiguous(memory_format=fmt)
        return y, mean, rstd
    y, mean, rstd = empty_like(x), _stats_empty(x), _stats_empty(x)
    if x.numel():
        weight, bias = contiguous(weight, bias)
        code = ACTIVATIONS[act][0]
        kernels(backend, OP).instance_norm_forward(x, weight, bias, residual, y, mean, rstd, code, alpha, eps)
    return y, mean, rstd


def _instance_norm_act_setup(ctx, inputs, output):
    x, weight, bias, residual, act, alpha, eps, backend = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, weight, bias, mean, rstd)
    ctx.params = (act, alpha, backend)
    ctx.set_materialize_grads(False)  # unused outputs (the statistics, usually) get None: no work for them


def _instance_norm_act_backward(ctx, gy, gmean, grstd):
    x, weight, bias, mean, rstd = ctx.saved_tensors
    needs = ctx.needs_input_grad
    dx = dweight = dbias = None
    if gy is not None and any(needs[:3]):
        dx, dweight, dbias = _instance_norm_act_backward_op(gy, x, weight, bias, mean, rstd, *ctx.params, ctx=ctx)
    if needs[0]:  # the statistics are outputs too: their gradients reach x
        dstats = ref.instance_norm_stats_grad(gmean, grstd, x, mean, rstd)
        if dstats is not None:
            dx = dstats if dx is None else dx + dstats
    grads = (dx, dweight, dbias, gy)  # y = ... + residual
    return *(g if need else None for g, need in zip(grads, needs[:4], strict=True)), None, None, None, None


# per sample along the batch: x and residual fold into it (weight and bias are per channel)
_instance_norm_act_op = define_op(
    "instance_norm_act",
    "(Tensor x, Tensor? weight, Tensor? bias, Tensor? residual, str act, float alpha, float eps, str backend)"
    " -> (Tensor, Tensor, Tensor)",
    _instance_norm_act_impl,
    fake=lambda x, weight, bias, residual, act, alpha, eps, backend: (empty_like(x), _stats_empty(x), _stats_empty(x)),
    setup_context=_instance_norm_act_setup, backward=_instance_norm_act_backward,
    vmap=((0, None, None, 0, None, None, None, None), (0, 0, 0)),
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Backward op: (dx, dweight, dbias) from the incoming gradient g and the forward's statistics; its own backward is
# autograd through ref.instance_norm_act_grad, with respect to the six tensors


def _grad_dtypes(x, weight, bias):
    return [(x if t is None else t).dtype for t in (weight, bias)]


def _channel_grads(x, weight, bias, make=torch.Tensor.new_empty):
    """dweight and dbias: [C] each, by `make`, in weight's and bias' dtypes (x's for None)."""
    return tuple(make(x, x.shape[1], dtype=d) for d in _grad_dtypes(x, weight, bias))


def _instance_norm_act_backward_impl(g, x, weight, bias, mean, rstd, act, alpha, backend):
    x = dense(x)
    fmt = memory_format(x)
    g = dense(g, fmt)
    if backend == "ref":
        dx, dweight, dbias = ref.instance_norm_act_grad(g, x, weight, bias, mean, rstd, act, alpha)
        return dx.contiguous(memory_format=fmt), dweight, dbias
    dx = empty_like(x)
    if not x.numel():
        return dx, *_channel_grads(x, weight, bias, torch.Tensor.new_zeros)
    dweight_partial, dbias_partial = mean.new_empty(mean.shape), mean.new_empty(mean.shape)  # per (n, c) plane
    kernels(backend, OP).instance_norm_backward(
        g, x, *contiguous(weight, bias, mean, rstd), dx, dweight_partial, dbias_partial, ACTIVATIONS[act][0], alpha,
    )  # fmt: skip
    w_dtype, b_dtype = _grad_dtypes(x, weight, bias)
    return dx, dweight_partial.sum(0).to(w_dtype), dbias_partial.sum(0).to(b_dtype)


# dweight and dbias sum over the batch: under vmap this op runs once per vmapped index
_instance_norm_act_backward_op = define_gradient_op(
    "instance_norm_act_backward",
    "(Tensor g, Tensor x, Tensor? weight, Tensor? bias, Tensor mean, Tensor rstd, str act, float alpha, str backend)"
    " -> (Tensor, Tensor, Tensor)",
    _instance_norm_act_backward_impl,
    fake=lambda g, x, weight, bias, mean, rstd, act, alpha, backend: (empty_like(x), *_channel_grads(x, weight, bias)),
    formula=ref.instance_norm_act_grad, saved=6,
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Public API


def _check_channel_vector(t, name: str, x: torch.Tensor) -> None:
    if t is None:
        return
    check_float_tensor(t, name)
    if t.dim() != 1 or t.shape[0] != x.shape[1]:
        raise ValueError(f"{name} must be 1-D of length C = x.shape[1] = {x.shape[1]}, got shape {list(t.shape)}")
    check_same(t, x, name, "x")


def _check_args(x, weight, bias, act, alpha, residual, eps):
    check_4d(x, "x")
    if x.shape[2] * x.shape[3] == 0:
        raise ValueError(f"x must have H * W >= 1 (statistics over an empty plane), got shape {list(x.shape)}")
    _check_channel_vector(weight, "weight", x)
    _check_channel_vector(bias, "bias", x)
    if residual is not None:
        check_float_tensor(residual, "residual")
        if residual.shape != x.shape:
            raise ValueError(f"residual must have x's shape {list(x.shape)}, got {list(residual.shape)}")
        check_same(residual, x, "residual", "x")
    check_act(act, ACTIVATIONS)
    alpha = ACTIVATIONS[act][1] if alpha is None else check_real(alpha, "alpha")
    eps = check_real(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return alpha, eps


def instance_norm_act(x, weight=None, bias=None, *, act="linear", alpha=None, residual=None, eps=1e-5):
    """Fused instance norm: y = act((x - mean) / sqrt(var + eps) * weight + bias, alpha) + residual.

    x: [N, C, H, W], any float dtype (fp16/bf16 computed in fp32), NCHW or channels_last; y has x's dtype, shape and
    memory format. mean and var (biased) are taken per (n, c) over H, W, as torch.nn.functional.instance_norm without
    running statistics. weight, bias: [C] of x's dtype, or None (1 and 0). act: "linear" (default), "relu" or "lrelu"
    (negative slope alpha, default 0.2; no gain). residual: x's shape and dtype, added after the activation, or None.
    eps: default 1e-5, >= 0. H * W == 1 is allowed (var = 0, so y = act(bias) + residual), unlike torch's
    instance_norm, which refuses it in training. Differentiable to second order (and beyond) with respect to x, weight,
    bias and residual, on every backend.
    """
    alpha, eps = _check_args(x, weight, bias, act, alpha, residual, eps)
    name = resolve_backend(x.device.type)
    if name == "ref":
        return ref.instance_norm_act(x, weight, bias, act, alpha, residual, eps)
    return _instance_norm_act_op(dense(x), weight, bias, residual, act, alpha, eps, name)[0]
