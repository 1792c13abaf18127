"""Which implementation runs an op: "cuda" | "triton" | "cpu" | "ref".

Precedence: `use_backend(...)` / `set_backend(...)` > env `GANKERNELS_BACKEND` > the automatic choice.
The automatic choice never fails: on CPU tensors it is the compiled C++ kernels when the extension is built,
else the reference; on CUDA tensors it is the per-op default in `CUDA_DEFAULTS` when available, then the
other compiled/Triton backend, then the reference. Asking for a backend that cannot run raises a RuntimeError
that names what is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import os

BACKENDS = ("cuda", "triton", "cpu", "ref")
OPS = ("bias_act", "upfirdn2d")

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
_env_override: str | None = None  # GANKERNELS_BACKEND, read once at import


def _load_extension():
    try:
        return importlib.import_module("gankernels._C"), None
    except ImportError as e:  # not built: the package still works on ref/triton
        why = f"the compiled extension gankernels._C is not built ({e}); run `pip install -e . --no-build-isolation`"
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


def set_backend(name: str | None) -> None:
    """Force every op onto backend `name`, or restore the automatic choice with None."""
    global _override
    if name is not None:
        _check_usable(_check_name(name, "name"))
    _override = name


def get_backend() -> str | None:
    """The forced backend (set_backend / use_backend / GANKERNELS_BACKEND), or None for automatic."""
    return _override if _override is not None else _env_override


@contextlib.contextmanager
def use_backend(name: str | None):
    """Context manager: run the ops inside the block on backend `name` (None: automatic)."""
    global _override
    previous = _override
    set_backend(name)
    try:
        yield
    finally:
        _override = previous


def automatic(op: str, device_type: str) -> tuple[str, str]:
    """(backend, reason) of the automatic choice for `op` on `device_type` tensors. Never fails."""
    if device_type == "cpu":
        if why_unavailable("cpu", op, "cpu") is None:
            return "cpu", "compiled C++ kernels"
        return "ref", f"cpu backend unavailable: {why_unavailable('cpu', op, 'cpu')}"
    if device_type == "cuda":
        first = CUDA_DEFAULTS.get(op, "cuda")
        order = [first] + [b for b in ("cuda", "triton") if b != first]
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
    if why is not None:
        raise RuntimeError(f"backend {forced!r} cannot run {op} on {device_type} tensors: {why}")
    return forced


def _read_env() -> None:
    global _env_override
    value = os.environ.get("GANKERNELS_BACKEND", "").strip().lower()
    if value in ("", "auto"):
        _env_override = None
        return
    _check_usable(_check_name(value, "GANKERNELS_BACKEND"))
    _env_override = value


_read_env()


def resolve_triton_op(op: str, device_type: str, otherwise: str = "ref", *, cuda_default: bool = True) -> str:
    """The backend of an op whose only kernels are Triton ones (instance norm, minibatch std, the penalty and
    modulated-conv pieces, fused_conv2d): "triton", "ref", or `otherwise` (the op's composed / torch path).

    A forced "triton" must run (RuntimeError naming what is missing); a forced "ref" gives "ref"; any other forced
    backend ("cpu", "cuda": the op has no kernels there) gives `otherwise`. Automatic: "triton" on CUDA tensors when
    cuda_default and Triton runs there, else `otherwise`.
    """
    forced = get_backend()
    if forced == "triton":
        why = why_unavailable("triton", op, device_type)
        if why is not None:
            raise RuntimeError(f"backend 'triton' cannot run {op} on {device_type} tensors: {why}")
        return "triton"
    if forced == "ref":
        return "ref"
    if forced is None and cuda_default and device_type == "cuda" and why_unavailable("triton", op, "cuda") is None:
        return "triton"
    return otherwise
