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
    """Ops whose only kernels are Triton ones: forced triton/ref honoured; a forced cpu/cuda raises (strict), takes the
    automatic choice (strict=False) or, for a composed op, its composed path; automatic off CUDA: `otherwise`."""
    resolve = backend.resolve_triton_op
    assert resolve("minibatch_std", "cpu") == "ref"
    assert resolve("penalties", "cpu", otherwise="torch") == "torch"
    with backend.use_backend("ref"):
        assert resolve("penalties", "cpu", otherwise="torch") == "ref"
    if HAS_EXT:  # a forced backend without kernels for an op says so (it once ran the reference silently)
        with backend.use_backend("cpu"), pytest.raises(RuntimeError, match="minibatch_std has no cpu kernels"):
            resolve("minibatch_std", "cpu")
        with backend.use_backend("cpu", strict=False):  # lenient: such ops stay on their automatic choice
            assert resolve("minibatch_std", "cpu") == "ref"
            assert backend.resolve("bias_act", "cpu") == "cpu"
        with backend.use_backend("cpu"):  # composed ops run composed, their pieces on the forced backend
            assert resolve("penalties", "cpu", otherwise="torch") == "torch"
    if backend.why_unavailable("triton", "minibatch_std", "cpu") is None:  # TRITON_INTERPRET=1 (CI)
        with backend.use_backend("triton"):
            assert resolve("fused_conv2d", "cpu", cuda_default=False) == "triton"
    if backend.why_unavailable("triton", "minibatch_std", "cuda") is not None:
        assert resolve("minibatch_std", "cuda") == "ref"  # no CUDA Triton here: never fails, falls back
    else:
        assert resolve("minibatch_std", "cuda") == "triton"
        assert resolve("fused_conv2d", "cuda", cuda_default=False) == "ref"


def test_forcing_a_backend_an_op_has_no_kernels_for_says_so():
    """Forcing "cuda" on grid_sample's or "cpu" on minibatch_std's missing kernels names the op's kernels."""
    assert "grid_sample has no cuda kernels" in backend.why_unavailable("cuda", "grid_sample", "cuda")
    assert "minibatch_std has no cpu kernels" in backend.why_unavailable("cpu", "minibatch_std", "cpu")
    assert backend.why_unavailable("ref", "minibatch_std", "cpu") is None


def test_extension_that_fails_to_import_warns_with_the_rebuild_command(monkeypatch):
    """A built extension that does not load (ABI mismatch after a torch upgrade) is reported, not silently ref."""
    import importlib
    import importlib.util

    real_import = importlib.import_module

    def broken(name, *args):
        if name == "gankernels._C":
            raise ImportError("undefined symbol: _ZN3c1010TensorImpl")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "gankernels._C" else None)
    with pytest.warns(RuntimeWarning, match="fails to import.*undefined symbol.*pip install -e ."):
        module, why = backend._load_extension()
    assert module is None and "fails to import" in why


def test_extension_not_built_is_quiet(monkeypatch, recwarn):
    import importlib
    import importlib.util

    def missing(name, *args):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", missing)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    module, why = backend._load_extension()
    assert module is None and "not built" in why and not [w for w in recwarn if "gankernels" in str(w.message)]
