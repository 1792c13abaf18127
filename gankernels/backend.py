"""Which implementation runs an op: "cuda" | "triton" | "cpu" | "ref".

Each name means one thing for every op: "cuda" / "cpu" the compiled kernels of gankernels._C, "triton" the Triton
kernels, "ref" the reference formula (gankernels.reference). `KERNELS` says which an op has.

Precedence: `use_backend(...)` / `set_backend(...)` > env `GANKERNELS_BACKEND` > the automatic choice.
The automatic choice never fails: on CPU tensors it is the compiled C++ kernels when the op has them and the
extension is built, else the op's own torch path; on CUDA tensors it is the per-op default in `CUDA_DEFAULTS` when
available, then the op's other kernels, then its torch path. A forced backend that cannot run, or that has no kernels
for an op, raises a RuntimeError that says so (never silently something else). Composed ops (modulated_conv2d,
fused_conv2d's composed path, the penalties' torch path) are made of other ops: forced "cpu" / "cuda" runs them
composed, their pieces on that backend. `use_backend(name, strict=False)` forces `name` where an op has its kernels
and leaves the other ops on their automatic choice (a whole model on one backend's kernels).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import warnings

BACKENDS = ("cuda", "triton", "cpu", "ref")

# The kernels each op has, besides its reference formula ("ref", every op). A name here is the backend op name
# that gankernels.ops.<module>.resolve_backend asks about.
KERNELS = {
    "bias_act": ("cuda", "triton", "cpu"),
    "upfirdn2d": ("cuda", "triton", "cpu"),
    "grid_sample": ("triton", "cpu"),
    "instance_norm": ("triton", "cpu"),
    "minibatch_std": ("triton",),
    "penalties": ("triton",),
    "modulated_conv2d": ("triton",),
    "fused_conv2d": ("triton",),
}
OPS = tuple(KERNELS)

# Default backend on CUDA tensors, per op, chosen from benchmarks/results (see benchmarks/NOTES.md).
CUDA_DEFAULTS = {
    # bias_act: forward, cuda and triton are within 10% of each other at fp32 (84-86% of copy) but cuda is 1.3-2x
    # faster at fp16/bf16, and its backward fuses the bias gradient: fwd+bwd 0.40 vs 0.60 ms at [8,64,256,256]
    # fp32 (benchmarks/results/h100-2026-11-23.json). It also needs no JIT compile at first use.
    "bias_act": "cuda",
    # upfirdn2d: the CUDA fast paths are 2-4x faster than the Triton kernel (upsample2d [32,128,128,128] fp32:
    # 0.55 vs 2.33 ms NCHW, 0.54 vs 1.30 ms NHWC).
    "upfirdn2d": "cuda",
}

_override: str | None = None  # set_backend / use_backend
_strict = True  # use_backend(name, strict=False): ops without `name` kernels take their automatic choice
_env_override: str | None = None  # GANKERNELS_BACKEND, read once at import


REBUILD = "pip install -e . --no-build-isolation"


def _load_extension():
    try:
        return importlib.import_module("gankernels._C"), None
    except ImportError as e:
        if importlib.util.find_spec("gankernels._C") is None:  # not built: the package still works on ref/triton
            return None, f"the compiled extension gankernels._C is not built; run `{REBUILD}`"
        # Built, but it does not load (an ABI mismatch after a torch upgrade, a missing library): say so once, loudly,
        # rather than leave every op on the reference path without a word. `gankernels info` shows it too.
        why = f"the compiled extension gankernels._C is built but fails to import ({e}); rebuild it: `{REBUILD}`"
        warnings.warn(why, RuntimeWarning, stacklevel=2)
        return None, why


_C, _C_ERROR = _load_extension()


def extension():
    """The compiled module `gankernels._C`, or None when it was not built."""
    return _C


def _triton_status() -> tuple[bool, str | None, bool]:
    """(importable, why not, runs on CPU tensors through the interpreter)."""
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return False, f"triton is not installed ({e})", False
    return True, None, os.environ.get("TRITON_INTERPRET", "0") == "1"


# Facts about this process, fixed at import (TRITON_INTERPRET must be set before import anyway). Keeping them in
# module constants makes resolution a few dict lookups: cheap per call and traceable by torch.compile.
_TRITON_OK, _TRITON_WHY, _TRITON_INTERPRET = _triton_status()
_HAS_CUDA_KERNELS = _C is not None and _C.has_cuda()
_UNAVAILABLE: dict[tuple[str, str, str], str | None] = {}  # (backend, op, device type) -> reason or None


def _torch_cuda():
    import torch

    return torch.cuda.is_available()


def why_unavailable(name: str, op: str, device_type: str) -> str | None:
    """None when backend `name` can run `op` on tensors of `device_type`, else the reason it cannot."""
    key = (name, op, device_type)
    if key not in _UNAVAILABLE:
        _UNAVAILABLE[key] = _why_unavailable(name, op, device_type)
    return _UNAVAILABLE[key]


def _why_unavailable(name: str, op: str, device_type: str) -> str | None:
    if name not in BACKENDS:
        return f"unknown backend {name!r}; expected one of {BACKENDS}"
    if name == "ref":
        return None
    if op in KERNELS and name not in KERNELS[op]:
        return f"{op} has no {name} kernels (its kernels: {', '.join(KERNELS[op])}; 'ref' is its reference formula)"
    if name == "triton":
        if not _TRITON_OK:
            return _TRITON_WHY
        if device_type == "cpu" and not _TRITON_INTERPRET:
            return "triton runs on CPU tensors only with TRITON_INTERPRET=1 set before import"
        if device_type not in ("cpu", "cuda"):
            return f"triton does not run on {device_type} tensors"
        return None
    if _C is None:
        return _C_ERROR
    if not hasattr(_C, f"{op}_forward"):
        return f"the compiled extension has no {op} kernels (rebuild with `pip install -e . --no-build-isolation`)"
    if name == "cpu":
        return None if device_type == "cpu" else f"the cpu backend runs on CPU tensors, not {device_type}"
    # name == "cuda"
    if not _HAS_CUDA_KERNELS:
        return "the extension was built without CUDA (torch without CUDA, or nvcc not found at build time)"
    return None if device_type == "cuda" else f"the cuda backend runs on CUDA tensors, not {device_type}"


def _check_name(name: str, arg: str) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"{arg} must be one of {BACKENDS}, got {name!r}")
    return name


def _check_usable(name: str) -> None:
    """Refuse at once a backend that cannot run anywhere on this machine."""
    if name == "ref":
        return
    if name == "triton":
        if not _TRITON_OK:
            raise RuntimeError(f"backend 'triton' is unavailable: {_TRITON_WHY}")
        if not _TRITON_INTERPRET and not _torch_cuda():
            raise RuntimeError("backend 'triton' is unavailable: no CUDA device, and TRITON_INTERPRET=1 is not set")
        return
    if _C is None:
        raise RuntimeError(f"backend {name!r} is unavailable: {_C_ERROR}")
    if name == "cuda" and not _HAS_CUDA_KERNELS:
        raise RuntimeError("backend 'cuda' is unavailable: the extension was built without CUDA kernels")


def set_backend(name: str | None, *, strict: bool = True) -> None:
    """Force every op onto backend `name`, or restore the automatic choice with None. strict (default): an op without
    `name` kernels raises; strict=False: such an op takes its automatic choice."""
    global _override, _strict
    if name is not None:
        _check_usable(_check_name(name, "name"))
    _override = name
    _strict = bool(strict)


def get_backend() -> str | None:
    """The forced backend (set_backend / use_backend / GANKERNELS_BACKEND), or None for automatic."""
    return _override if _override is not None else _env_override


@contextlib.contextmanager
def use_backend(name: str | None, *, strict: bool = True):
    """Context manager: run the ops inside the block on backend `name` (None: automatic); strict as set_backend."""
    global _override, _strict
    previous = _override, _strict
    set_backend(name, strict=strict)
    try:
        yield
    finally:
        _override, _strict = previous


def automatic(op: str, device_type: str) -> tuple[str, str]:
    """(backend, reason) of the automatic choice for `op` on `device_type` tensors. Never fails."""
    if device_type == "cpu":
        if why_unavailable("cpu", op, "cpu") is None:
            return "cpu", "compiled C++ kernels"
        return "ref", f"cpu backend unavailable: {why_unavailable('cpu', op, 'cpu')}"
    if device_type == "cuda":
        first = CUDA_DEFAULTS.get(op, KERNELS.get(op, ("cuda",))[0])
        order = [first] + [b for b in ("cuda", "triton") if b != first and b in KERNELS.get(op, BACKENDS)]
        missing = []
        for name in order:
            why = why_unavailable(name, op, "cuda")
            if why is None:
                reason = "fastest in benchmarks" if name == first else "fallback: " + "; ".join(missing)
                return name, reason
            missing.append(f"{name}: {why}")
        return "ref", "fallback: " + "; ".join(missing)
    return "ref", f"no kernels for {device_type} tensors"


_AUTOMATIC: dict[tuple[str, str], str] = {}


def resolve(op: str, device_type: str) -> str:
    """The backend that runs `op` on tensors of `device_type` now. Raises when a forced one cannot."""
    forced = _override if _override is not None else _env_override
    if forced is None:
        key = (op, device_type)
        if key not in _AUTOMATIC:
            _AUTOMATIC[key] = automatic(op, device_type)[0]
        return _AUTOMATIC[key]
    why = why_unavailable(forced, op, device_type)
    if why is None:
        return forced
    if not _strict and forced not in KERNELS.get(op, BACKENDS):
        return resolve_automatic(op, device_type)
    raise RuntimeError(f"backend {forced!r} cannot run {op} on {device_type} tensors: {why}")


def resolve_automatic(op: str, device_type: str) -> str:
    key = (op, device_type)
    if key not in _AUTOMATIC:
        _AUTOMATIC[key] = automatic(op, device_type)[0]
    return _AUTOMATIC[key]


def _read_env() -> None:
    global _env_override
    value = os.environ.get("GANKERNELS_BACKEND", "").strip().lower()
    if value in ("", "auto"):
        _env_override = None
        return
    _check_usable(_check_name(value, "GANKERNELS_BACKEND"))
    _env_override = value


_read_env()


# Ops whose path without their own kernels is composed of other ops (their pieces then run on the forced backend).
COMPOSED = ("modulated_conv2d", "fused_conv2d", "penalties")


def resolve_triton_op(op: str, device_type: str, otherwise: str = "ref", *, cuda_default: bool = True) -> str:
    """The backend of an op whose only kernels are Triton ones (instance norm, minibatch std, the penalty and
    modulated-conv pieces, fused_conv2d): "triton", "ref", or `otherwise` (the op's composed / torch path).

    A forced "triton" must run (RuntimeError naming what is missing); a forced "ref" gives "ref". A forced "cpu" or
    "cuda" (no kernels of the op there) gives `otherwise` for a COMPOSED op, else raises (strict) or takes the
    automatic choice (use_backend(name, strict=False)). Automatic: "triton" on CUDA tensors when cuda_default and
    Triton runs there, else `otherwise`.
    """
    forced = get_backend()
    if forced == "triton":
        why = why_unavailable("triton", op, device_type)
        if why is not None:
            raise RuntimeError(f"backend 'triton' cannot run {op} on {device_type} tensors: {why}")
        return "triton"
    if forced == "ref":
        return "ref"
    if forced is not None and _strict and op not in COMPOSED:
        raise RuntimeError(
            f"backend {forced!r} cannot run {op}: {why_unavailable(forced, op, device_type)}; "
            f"use_backend({forced!r}, strict=False) leaves such ops on their automatic choice"
        )
    automatic_choice = forced is None or op not in COMPOSED  # a lenient forced backend leaves the op automatic
    if automatic_choice and cuda_default and device_type == "cuda" and why_unavailable("triton", op, "cuda") is None:
        return "triton"
    return otherwise
