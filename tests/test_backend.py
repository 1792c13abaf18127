"""Backend selection: set_backend, use_backend, GANKERNELS_BACKEND, errors, the automatic choice."""

import os
import subprocess
import sys

import pytest
import torch

import gankernels
from gankernels import backend
from gankernels.ops import bias_act
from tests.conftest import backends_for

HAS_EXT = backend.extension() is not None


def test_automatic_choice_never_fails():
    for op in backend.OPS:
        for device_type in ("cpu", "cuda", "mps"):
            name, reason = backend.automatic(op, device_type)
            assert name in backend.BACKENDS and reason


@pytest.mark.skipif(not HAS_EXT, reason="the compiled extension is not built")
def test_cpu_tensors_default_to_the_compiled_kernels():
    assert backend.resolve("bias_act", "cpu") == "cpu"


def test_use_backend_restores_previous_choice():
    gankernels.set_backend("ref")
    with gankernels.use_backend(backends_for("bias_act", "cpu")[0] if backends_for("bias_act", "cpu") else "ref"):
        pass
    assert gankernels.get_backend() == "ref"
    with pytest.raises(KeyError):
        with gankernels.use_backend(None):
            raise KeyError("propagates")
    assert gankernels.get_backend() == "ref"


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="name must be one of"):
        gankernels.set_backend("vulkan")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_backend_names_what_is_missing():
    if HAS_EXT and backend.extension().has_cuda():
        pytest.skip("extension built with CUDA")
    with pytest.raises(RuntimeError, match="cuda"):
        gankernels.set_backend("cuda")


@pytest.mark.skipif(not HAS_EXT, reason="the compiled extension is not built")
def test_forced_backend_that_cannot_run_on_the_device_raises():
    gankernels.set_backend("cpu")
    with pytest.raises(RuntimeError, match="cannot run bias_act on meta tensors"):
        bias_act(torch.ones(2, 3, device="meta"), None, act="relu")


def test_ref_backend_is_used_when_forced():
    with gankernels.use_backend("ref"):
        y = bias_act(torch.ones(2, 3, requires_grad=True), None, act="tanh")
    assert "gankernels" not in type(y.grad_fn).__name__.lower()


def _run(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_environment_variable_selects_backend():
    out = _run("import gankernels; print(gankernels.get_backend())", GANKERNELS_BACKEND="ref")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ref"


def test_environment_variable_with_unknown_backend_fails_clearly():
    out = _run("import gankernels", GANKERNELS_BACKEND="nonsense")
    assert out.returncode != 0
    assert "GANKERNELS_BACKEND must be one of" in out.stderr


def test_resolve_triton_op():
    """Ops whose only kernels are Triton ones: forced triton/ref honoured, other forced backends and the automatic
    choice off CUDA take the composed path (`otherwise`)."""
    resolve = backend.resolve_triton_op
    assert resolve("instance_norm", "cpu") == "ref"
    assert resolve("penalties", "cpu", otherwise="torch") == "torch"
    with backend.use_backend("ref"):
        assert resolve("penalties", "cpu", otherwise="torch") == "ref"
    with backend.use_backend("cpu"):
        assert resolve("instance_norm", "cpu") == "ref"
    if backend.why_unavailable("triton", "instance_norm", "cpu") is None:  # TRITON_INTERPRET=1 (CI)
        with backend.use_backend("triton"):
            assert resolve("fused_conv2d", "cpu", cuda_default=False) == "triton"
    if backend.why_unavailable("triton", "instance_norm", "cuda") is not None:
        assert resolve("instance_norm", "cuda") == "ref"  # no CUDA Triton here: never fails, falls back
    else:
        assert resolve("instance_norm", "cuda") == "triton"
        assert resolve("fused_conv2d", "cuda", cuda_default=False) == "ref"
