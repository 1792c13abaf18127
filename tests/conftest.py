"""Test configuration. TRITON_INTERPRET must be set before triton or gankernels is imported."""

import os
from pathlib import Path

import torch

if os.environ.get("TRITON_INTERPRET") is None and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import gankernels  # noqa: E402
from gankernels import backend as gk_backend  # noqa: E402

HAS_CUDA = torch.cuda.is_available()

# shared/fixtures: $GANKERNELS_FIXTURES, else shared/ inside the checkout, else ../shared beside it (as in CI).
_ROOT = Path(__file__).resolve().parents[1]
_FIXTURE_DIRS = [
    os.environ.get("GANKERNELS_FIXTURES", _ROOT / "shared" / "fixtures"),
    _ROOT.parent / "shared" / "fixtures",
]
STYLEGAN2_FIXTURE = next(
    (p for d in _FIXTURE_DIRS if (p := Path(d) / "nvlabs_stylegan2_tiny.npz").exists()), None
)  # the .npz; its .json sits beside it
needs_fixture = pytest.mark.skipif(
    STYLEGAN2_FIXTURE is None, reason="shared/fixtures/nvlabs_stylegan2_tiny.npz not found"
)


def backends_for(op: str, device_type: str) -> list[str]:
    """Every non-reference backend that can run `op` on `device_type` here (cpu, triton, cuda)."""
    return [b for b in ("cpu", "triton", "cuda") if gk_backend.why_unavailable(b, op, device_type) is None]


def devices() -> list[str]:
    return ["cpu", "cuda"] if HAS_CUDA else ["cpu"]


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if ("gpu" in item.keywords or "gpu_serial" in item.keywords) and not HAS_CUDA:
            item.add_marker(skip_gpu)


# $GANKERNELS_FAILURES_FILE (make gpu-tests): each failing or erroring test's id appended to that file as it is
# reported (by the xdist controller, not again by its workers), so a run cut at its time limit still lists the
# failures it found.
_FAILURES_FILE = os.environ.get("GANKERNELS_FAILURES_FILE")


def pytest_runtest_logreport(report):
    if _FAILURES_FILE and report.failed and not os.environ.get("PYTEST_XDIST_WORKER"):  # the controller writes
        kind = "FAILED" if report.when == "call" else f"ERROR at {report.when}"
        message = (getattr(report, "longreprtext", "") or "").strip().splitlines()
        with open(_FAILURES_FILE, "a") as f:
            f.write(f"{kind} {report.nodeid}: {message[-1][:300] if message else ''}\n")


@pytest.fixture(autouse=True)
def _restore_backend():
    """Each test starts and ends on the automatic backend choice."""
    gankernels.set_backend(None)
    yield
    gankernels.set_backend(None)


class WeightGradCounter(TorchDispatchMode):
    """Counts the aten.convolution_backward calls that compute a weight gradient (output_mask[1]), whichever of
    our ops issues them."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution_backward.default and args[10][1]:
            self.calls += 1
        return func(*args, **(kwargs or {}))
