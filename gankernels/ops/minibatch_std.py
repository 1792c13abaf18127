"""Minibatch standard deviation (StyleGAN2 D's epilogue), differentiable to second order (and beyond) on every backend.

    out = [x, s broadcast over H, W],  s[n, f] = mean_{c in part f, h, w} sqrt(var_{group of n}(x[:, c, h, w]) + 1e-8)

Two torch custom ops carry the work. `gankernels::minibatch_std` (forward: the per-group statistics, the copy of x
and the statistic maps, in two Triton kernels) and `gankernels::minibatch_std_backward` (the whole gradient in one
kernel, the statistics recomputed from x), whose own backward is autograd through the reference formula
(gankernels.reference.minibatch_std.minibatch_std_grad), so that R1, which differentiates D twice, is exact. They
are declared through _define.define_forward_op and define_gradient_op; neither folds a vmapped dimension into the
batch (a group mixes samples): under vmap they run once per vmapped index.
"""

from __future__ import annotations

import torch

from .. import backend as _backend
from ..reference import minibatch_std as ref
from ._common import check_4d, check_int, check_int_at_least, empty_as, empty_like, kernels
from ._define import define_forward_op, define_gradient_op

OP = "minibatch_std"  # the backend op name: kernels in gankernels.triton.minibatch_std


def resolve_backend(device_type: str) -> str:
    """The backend that runs minibatch_std on `device_type` tensors: "ref" or "triton".

    gankernels.backend.resolve_triton_op: a forced "ref" or "triton" (set_backend / use_backend /
    GANKERNELS_BACKEND) is honoured (RuntimeError when triton cannot run here); a forced "cpu" or "cuda" (no kernels
    of this op there) raises, or under use_backend(name, strict=False) leaves the op on its automatic choice;
    automatic: triton on CUDA tensors when it is available, else the reference.
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


def _out_empty(x: torch.Tensor, num_channels: int) -> torch.Tensor:
    """The output: [N, C + num_channels, H, W] in x's dtype, device and memory format."""
    n, c, h, w = x.shape
    return empty_as(x, (n, c + num_channels, h, w))


# ----------------------------------------------------------------------------------------------------------------
# Backward op: dx from dout [N, C + F, H, W] and x; its own backward is autograd through ref.minibatch_std_grad


def _minibatch_std_backward_impl(dout, x, group_size, num_channels, backend):
    dx = empty_like(x)
    if backend == "ref":
        return dx.copy_(ref.minibatch_std_grad(dout, x, group_size, num_channels))
    if dx.numel():
        kernels(backend, OP).minibatch_std_backward(_merged(dout), _merged(x), dx, group_size, num_channels)
    return dx


_minibatch_std_backward_op = define_gradient_op(
    "minibatch_std_backward", "(Tensor dout, Tensor x, SymInt group_size, SymInt num_channels, str backend) -> Tensor",
    _minibatch_std_backward_impl, fake=lambda dout, x, group_size, num_channels, backend: empty_like(x),
    formula=ref.minibatch_std_grad, saved=2,
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Forward op: group_size is G itself here (the public function resolves min(group_size, N))


def _minibatch_std_impl(x, group_size, num_channels, backend):
    out = _out_empty(x, num_channels)
    if backend == "ref":
        return out.copy_(ref.minibatch_std(x, group_size, num_channels))
    if out.numel():
        kernels(backend, OP).minibatch_std_forward(_merged(x), out, group_size, num_channels)
    return out


_minibatch_std_op = define_forward_op(
    "minibatch_std", "(Tensor x, SymInt group_size, SymInt num_channels, str backend) -> Tensor", _minibatch_std_impl,
    fake=lambda x, group_size, num_channels, backend: _out_empty(x, num_channels),
    gradient=_minibatch_std_backward_op, saved=1,
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Public API


def _check_args(x, group_size, num_channels) -> tuple[int, int]:
    """Validate; return (G, F)."""
    n, c = check_4d(x, "x").shape[:2]
    if x.numel() == 0:  # no statistics of an empty group, part or plane
        raise ValueError(f"x must have N, C, H, W >= 1, got shape {list(x.shape)}")
    if group_size is not None:
        group_size = check_int(group_size, "group_size")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1 or None, got {group_size}")
    num_channels = check_int_at_least(num_channels, "num_channels", 1)
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
