"""Helpers shared by the ops: argument checks, memory layouts, backend kernel lookup."""

from __future__ import annotations

import importlib
import math
import numbers

import torch

from .. import backend as _backend

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ----------------------------------------------------------------------------------------------------------------
# Argument checks: TypeError for a wrong kind of value, ValueError for a wrong value. Messages name the argument.


def check_float_tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    return t


def check_same(t: torch.Tensor, ref: torch.Tensor, name: str, ref_name: str, dtype: bool = True) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; put them on one device")
    if dtype and t.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but {ref_name} has {ref.dtype}; they must match")


def check_real(v, name: str, allow_none: bool = False) -> float | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def check_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    return int(v)


def check_dim(dim, ndim: int, name: str = "dim") -> int:
    dim = check_int(dim, name)
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name}={dim} is out of range for a tensor with {ndim} dimensions")
    return dim % ndim


# ----------------------------------------------------------------------------------------------------------------
# Memory layouts. Kernels work on the flat memory of a dense tensor; the layout says how coordinates map onto it.


def memory_format(t: torch.Tensor) -> torch.memory_format:
    """The format that `t` is stored in: channels_last(_3d) when it is that and not plain contiguous."""
    if t.is_contiguous() or torch._C._functorch.is_batchedtensor(t):  # vmap answers no other layout query
        return torch.contiguous_format
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format  # any other strides: the kernels get a contiguous copy


def dense(t: torch.Tensor, fmt: torch.memory_format | None = None) -> torch.Tensor:
    """`t` stored densely in `fmt` (default: its own format); a copy only when it is not already."""
    return t.contiguous(memory_format=memory_format(t) if fmt is None else fmt)


def dim_order(ndim: int, fmt: torch.memory_format) -> list[int]:
    """Dimensions from outermost to innermost in memory."""
    if fmt in (torch.channels_last, torch.channels_last_3d):
        return [0] + list(range(2, ndim)) + [1]
    return list(range(ndim))


def inner_step(shape, fmt: torch.memory_format, dim: int) -> int:
    """Elements between consecutive indices along `dim` in a dense tensor of `fmt`: coordinate along `dim` of
    flat element i is (i // step) % shape[dim]."""
    order = dim_order(len(shape), fmt)
    return math.prod(shape[d] for d in order[order.index(dim) + 1 :])


# ----------------------------------------------------------------------------------------------------------------
# Backends


_KERNELS: dict[tuple[str, str], object] = {}


def kernels(backend: str, op: str):
    """The module that holds `op`'s kernels on `backend`: gankernels._C or gankernels.triton.<op>."""
    key = (backend, op)
    if key not in _KERNELS:
        if backend in ("cpu", "cuda"):
            _KERNELS[key] = _backend.extension()
        elif backend == "triton":
            _KERNELS[key] = importlib.import_module(f"gankernels.triton.{op}")
        else:
            raise RuntimeError(f"backend {backend!r} has no kernels for {op}")
    return _KERNELS[key]


# ----------------------------------------------------------------------------------------------------------------
# Gradient helpers (the op definitions themselves: _define.define_op)


def reduce_to(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over every dimension but `dim` (the gradient of a bias broadcast along `dim`)."""
    dims = [d for d in range(t.dim()) if d != dim]
    return t.sum(dim=dims) if dims else t


def through_reference(formula, saved, needs, grad_outputs, params=()):
    """Gradients of <grad_outputs, formula(*saved, *params)> with respect to the saved tensors that need one, by
    autograd through the reference formula: differentiable again, so any order works. A saved tensor in the graph is
    differentiated through an alias (view_as), so that autograd neither follows it further back nor frees the graph.
    formula returns a tensor or a tuple (None entries allowed), matched with grad_outputs; a wanted tensor without a
    path gets zeros. The backward of every gradient op whose own backward is its reference formula."""
    wanted = [i for i, t in enumerate(saved) if needs[i] and t is not None]
    grads = [None] * len(saved)
    if not wanted:
        return grads
    create_graph = torch.is_grad_enabled()  # inside a backward: whether that backward builds a graph
    with torch.enable_grad():
        inputs = list(saved)
        for i in wanted:
            t = inputs[i]
            inputs[i] = t.view_as(t) if t.requires_grad else t.detach().requires_grad_(True)
        outs = formula(*inputs, *params)
        outs = (outs,) if isinstance(outs, torch.Tensor) else outs
        pairs = [(o, go) for o, go in zip(outs, grad_outputs, strict=True) if o is not None and go is not None]
        pairs = [(o, go) for o, go in pairs if o.requires_grad]
        if pairs:
            found = torch.autograd.grad(
                [o for o, _ in pairs], [inputs[i] for i in wanted], [go for _, go in pairs],
                create_graph=create_graph, allow_unused=True,
            )  # fmt: skip
            for i, gi in zip(wanted, found, strict=True):
                grads[i] = gi
    for i in wanted:  # no path (e.g. the mask of a clamp): zeros
        if grads[i] is None:
            grads[i] = torch.zeros_like(saved[i])
    return grads
