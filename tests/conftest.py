"""Test configuration. TRITON_INTERPRET must be set before triton or gankernels is imported."""

import os
from pathlib import Path

import torch

if os.environ.get("TRITON_INTERPRET") is None and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

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
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _restore_backend():
    """Each test starts and ends on the automatic backend choice."""
    gankernels.set_backend(None)
    yield
    gankernels.set_backend(None)
