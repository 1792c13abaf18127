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
    if type(v) is float and math.isfinite(v):  # the common case first (the checks below cost ~0.3 us)
        return v
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def check_int(v, name: str) -> int:
    if type(v) is int:
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    return int(v)


def check_dim(dim, ndim: int, name: str = "dim") -> int:
    dim = check_int(dim, name)
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name}={dim} is out of range for a tensor with {ndim} dimensions")
    return dim % ndim


def check_int_at_least(v, name: str, minimum: int) -> int:
    v = check_int(v, name)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_bool(v, name: str) -> bool:
    if not isinstance(v, (bool, numbers.Integral)):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    return bool(v)


def check_act(act, activations) -> str:
    """act: a name in `activations` (a dict of the activations an op knows)."""
    if not isinstance(act, str):
        raise TypeError(f"act must be a str, got {type(act).__name__}")
    if act not in activations:
        raise ValueError(f"act: unknown activation {act!r}; expected one of {sorted(activations)}")
    return act


def int_pair(v, name: str, minimum: int, kinds: str = "an int or a pair of ints") -> list[int]:
    """v: an int (for both), or a sequence of one (for both) or two ints, each >= minimum. Returns [v0, v1]."""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, (list, tuple, torch.Size)) or len(v) not in (1, 2):
        raise TypeError(f"{name} must be {kinds}, got {v!r}")
    v = [check_int(e, name) for e in v] * (3 - len(v))
    if min(v) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={v[:2]}")
    return v[:2]


def check_4d(t, name: str, dims: str = "[N, C, H, W]") -> torch.Tensor:
    check_float_tensor(t, name)
    if t.dim() != 4:
        raise ValueError(f"{name} must be 4-D {dims}, got shape {list(t.shape)}")
    return t


def check_on(t, name: str, like: torch.Tensor, like_name: str, dtype: bool = False) -> None:
    """t: None, or a float tensor on like's device (and of its dtype when `dtype`)."""
    if t is not None:
        check_float_tensor(t, name)
        check_same(t, like, name, like_name, dtype=dtype)


def check_shaped(t, name: str, shape, dims: str, like: torch.Tensor, like_name: str, dtype: bool = False) -> None:
    """t: None, or a float tensor of shape `shape` (written `dims`, e.g. "[N, O]") on like's device (and dtype)."""
    check_on(t, name, like, like_name, dtype)
    if t is not None and list(t.shape) != list(shape):
        raise ValueError(f"{name} must have shape {dims} = {list(shape)}, got {list(t.shape)}")


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
    if fmt is None:
        return t if t.is_contiguous() else t.contiguous(memory_format=memory_format(t))
    return t.contiguous(memory_format=fmt)


def empty_like(t: torch.Tensor) -> torch.Tensor:
    """An empty tensor like `t`, in t's memory format."""
    return torch.empty_like(t, memory_format=memory_format(t))


def empty_as(x: torch.Tensor, shape) -> torch.Tensor:
    """An empty tensor of `shape` in x's dtype, device and memory format."""
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=memory_format(x))


def contiguous(*ts: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    return tuple(None if t is None else t.contiguous() for t in ts)


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
# Gradient helpers (the op definitions themselves, and through_reference: _define)


def reduce_to(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over every dimension but `dim` (the gradient of a bias broadcast along `dim`)."""
    dims = [d for d in range(t.dim()) if d != dim]
    return t.sum(dim=dims) if dims else t
