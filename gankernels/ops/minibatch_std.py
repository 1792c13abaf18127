"""Minibatch standard deviation (StyleGAN2 D's epilogue), differentiable to second order (and beyond) on every backend.

    out = [x, s broadcast over H, W],  s[n, f] = mean_{c in part f, h, w} sqrt(var_{group of n}(x[:, c, h, w]) + 1e-8)

Two torch custom ops carry the work. `gankernels::minibatch_std` (forward: the per-group statistics, the copy of x
and the statistic maps, in two Triton kernels) and `gankernels::minibatch_std_backward` (the whole gradient in one
kernel, the statistics recomputed from x), whose own backward is autograd through the reference formula
(gankernels.reference.minibatch_std.minibatch_std_grad), so that R1, which differentiates D twice, is exact. Both
are declared through _define.define_op; neither folds a vmapped dimension into the batch (a group mixes samples).
"""

from __future__ import annotations

import torch

from .. import backend as _backend
from ..reference import minibatch_std as ref
from ._common import check_float_tensor, check_int, kernels, memory_format, through_reference
from ._define import define_op

OP = "minibatch_std"  # the backend op name: kernels in gankernels.triton.minibatch_std


def resolve_backend(device_type: str) -> str:
    """The backend that runs minibatch_std on `device_type` tensors: "ref" or "triton".

    gankernels.backend.resolve_triton_op: a forced "ref" or "triton" (set_backend / use_backend /
    GANKERNELS_BACKEND) is honoured (RuntimeError when triton cannot run here), a forced "cpu" or "cuda" (no kernels
    of this op there) gives the reference; automatic: triton on CUDA tensors when it is available, else the reference.
    No GPU measurement yet;
    the reference makes ~7 passes over x-sized tensors (mean, subtract, square, mean, sqrt, mean, cat) and its
    autograd about as many again, the fused forward reads x once and writes the output once, the backward reads x and
    dout once and writes dx once.
    """
    return _backend.resolve_triton_op(OP, device_type)


def _merged(t: torch.Tensor) -> torch.Tensor:
    """t itself when its H and W merge into one pixel index (NCHW, channels_last, ...), else a contiguous copy."""
    _, _, h, w = t.shape
    return t if h <= 1 or w <= 1 or t.stride(2) == w * t.stride(3) else t.contiguous()


def _empty(x: torch.Tensor, channels: int) -> torch.Tensor:
    """[N, channels, H, W] in x's dtype, device and memory format."""
    shape = (x.shape[0], channels, x.shape[2], x.shape[3])
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=memory_format(x))


# ----------------------------------------------------------------------------------------------------------------
# Forward op: group_size is G itself here (the public function resolves min(group_size, N))


def _minibatch_std_impl(x: torch.Tensor, group_size: int, num_channels: int, backend: str) -> torch.Tensor:
    out = _empty(x, x.shape[1] + num_channels)
    if backend == "ref":
        return out.copy_(ref.minibatch_std(x, group_size, num_channels))
    if out.numel():
        kernels(backend, OP).minibatch_std_forward(_merged(x), out, group_size, num_channels)
    return out


def _minibatch_std_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.params = inputs[1:]  # group_size, num_channels, backend


def _minibatch_std_backward(ctx, dout):
    (x,) = ctx.saved_tensors
    dx = _minibatch_std_backward_op(dout, x, *ctx.params, ctx=ctx) if ctx.needs_input_grad[0] else None
    return dx, None, None, None


# groups mix the samples of the batch: under vmap these ops run once per vmapped index (no vmap spec)
_minibatch_std_op = define_op(
    "minibatch_std", _minibatch_std_impl,
    fake=lambda x, group_size, num_channels, backend: _empty(x, x.shape[1] + num_channels),
    setup_context=_minibatch_std_setup, backward=_minibatch_std_backward,
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Backward op: dx from dout [N, C + F, H, W] and x


def _minibatch_std_backward_impl(
    dout: torch.Tensor, x: torch.Tensor, group_size: int, num_channels: int, backend: str
) -> torch.Tensor:
    dx = _empty(x, x.shape[1])
    if backend == "ref":
        return dx.copy_(ref.minibatch_std_grad(dout, x, group_size, num_channels))
    if dx.numel():
        kernels(backend, OP).minibatch_std_backward(_merged(dout), _merged(x), dx, group_size, num_channels)
    return dx


def _minibatch_std_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:2])  # dout, x
    ctx.params = inputs[2:4]  # group_size, num_channels


def _minibatch_std_backward_backward(ctx, gdx):
    """Gradients of <gdx, minibatch_std_grad(dout, x)> with respect to dout and x, by autograd through the reference
    formula (differentiable again: any order)."""
    grads = through_reference(ref.minibatch_std_grad, ctx.saved_tensors, ctx.needs_input_grad, (gdx,), ctx.params)
    return (*grads, None, None, None)


_minibatch_std_backward_op = define_op(
    "minibatch_std_backward", _minibatch_std_backward_impl,
    fake=lambda dout, x, group_size, num_channels, backend: _empty(x, x.shape[1]),
    setup_context=_minibatch_std_backward_setup, backward=_minibatch_std_backward_backward,
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Public API


def _check_args(x, group_size, num_channels) -> tuple[int, int]:
    """Validate; return (G, F)."""
    check_float_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D [N, C, H, W], got shape {list(x.shape)}")
    n, c = x.shape[:2]
    if x.numel() == 0:  # no statistics of an empty group, part or plane
        raise ValueError(f"x must have N, C, H, W >= 1, got shape {list(x.shape)}")
    if group_size is not None:
        group_size = check_int(group_size, "group_size")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1 or None, got {group_size}")
    num_channels = check_int(num_channels, "num_channels")
    if num_channels < 1:
        raise ValueError(f"num_channels must be >= 1, got {num_channels}")
    g = ref.group_count(n, group_size)
    if n % g:
        raise ValueError(f"group_size={group_size}: N={n} must be a multiple of the group size min(group_size, N)={g}")
    if c % num_channels:
        raise ValueError(f"num_channels={num_channels}: C={c} must be a multiple of num_channels")
    return g, num_channels


def minibatch_std(x, group_size, num_channels=1):
    """NVlabs' minibatch standard deviation: x [N, C, H, W] -> [N, C + num_channels, H, W].

    The batch is split into groups of G = min(group_size, N) samples (group_size None: the whole batch; N must be a
    multiple of G; sample n is in group n % (N / G)) and the channels into num_channels (default 1) parts (C must be
    a multiple of it); appended map f of sample n is the mean over part f's channels and all pixels of sqrt(variance
    over n's group + 1e-8) (biased variance). As NVlabs' MinibatchStdLayer. Any float dtype (fp16/bf16 computed in
    fp32; the output in x's dtype), NCHW or channels_last (kept by the output on the triton backend).
    Differentiable to second order (and beyond) on every backend.
    """
    g, f = _check_args(x, group_size, num_channels)
    name = resolve_backend(x.device.type)
    if name == "ref":
        return ref.minibatch_std(x, g, f)
    return _minibatch_std_op(x, g, f, name)
