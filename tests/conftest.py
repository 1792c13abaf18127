"""Test configuration. TRITON_INTERPRET must be set before triton or gankernels is imported."""

import os

import torch

if os.environ.get("TRITON_INTERPRET") is None and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

import gankernels  # noqa: E402
from gankernels import backend as gk_backend  # noqa: E402

HAS_CUDA = torch.cuda.is_available()


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
