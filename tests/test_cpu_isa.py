"""The CPU kernels' instruction set, chosen when they run (csrc/cpu/isa.h): each level that this CPU has computes what
the reference computes, the level follows torch's CPU capability, and a portable build carries AVX code only in the
AVX2 / AVX-512 copies (tools/check_isa.py)."""

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gankernels import backend as gk_backend

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_isa  # noqa: E402

BUILT = gk_backend.why_unavailable("cpu", "bias_act", "cpu") is None
needs_extension = pytest.mark.skipif(not BUILT, reason="the C++ extension is not built")
X86 = platform.machine() in ("x86_64", "AMD64")
LEVELS = {"default": "baseline", "avx2": "avx2", "avx512": "avx512"}  # ATEN_CPU_CAPABILITY -> _C.cpu_isa()

# Run in a fresh process per level (torch reads ATEN_CPU_CAPABILITY once): the CPU kernels (backend "cpu") against
# the reference on inputs that reach every vectorised loop: activations with and without clamp, NCHW and
# channels_last rows, first and second order; upfirdn2d's polyphase paths in both layouts; grid_sample and
# instance_norm_act forward and backward. Prints {"capability", "isa", "errors": {case: max abs error}}; float64
# should agree to rounding.
_SCRIPT = textwrap.dedent(
    """
    import json, torch
    import gankernels._C as C
    import gankernels.ops as ops
    from gankernels import backend

    def run(fn):
        out = {}
        for name in ("cpu", "ref"):
            torch.manual_seed(0)
            with backend.use_backend(name):
                out[name] = [t.detach().double() for t in fn()]
        return max(float((a - b).abs().max()) / (1 + float(b.abs().max())) for a, b in zip(out["cpu"], out["ref"]))

    def bias_act(dtype, act, clamp, channels_last):
        def fn():
            x = torch.randn(2, 19, 5, 7, dtype=dtype) * 3
            x = x.to(memory_format=torch.channels_last) if channels_last else x
            x.requires_grad_(True)
            b = torch.randn(19, dtype=dtype, requires_grad=True)
            y = ops.bias_act(x, b, act=act, clamp=clamp)
            dx, db = torch.autograd.grad(y, (x, b), torch.randn_like(y), create_graph=True)
            s = (dx * dx).sum()
            if not s.requires_grad:  # linear without a clamp: the gradient is constant
                return [y, dx, db]
            (ddx,) = torch.autograd.grad(s, x, allow_unused=True)
            return [y, dx, db] + ([] if ddx is None else [ddx])
        return fn

    def resample(dtype, fn_name, channels_last):
        def fn():
            x = torch.randn(2, 6, 13, 11, dtype=dtype)
            x = x.to(memory_format=torch.channels_last) if channels_last else x
            x.requires_grad_(True)
            y = getattr(ops, fn_name)(x, ops.setup_filter([1, 3, 3, 1]).to(dtype))
            (dx,) = torch.autograd.grad(y, x, torch.randn_like(y))
            return [y, dx]
        return fn

    def grid_sample(dtype, channels_last):
        def fn():
            x = torch.randn(2, 5, 9, 8, dtype=dtype)
            x = x.to(memory_format=torch.channels_last) if channels_last else x
            x.requires_grad_(True)
            grid = (torch.rand(2, 7, 6, 2, dtype=dtype) * 2.2 - 1.1).requires_grad_(True)
            y = ops.grid_sample(x, grid)
            return [y, *torch.autograd.grad(y, (x, grid), torch.randn_like(y))]
        return fn

    def instance_norm(dtype, act, channels_last):
        def fn():
            x = torch.randn(2, 21, 9, 7, dtype=dtype) * 0.5 + 3  # offset: the statistics must not cancel
            x = x.to(memory_format=torch.channels_last) if channels_last else x
            x.requires_grad_(True)
            w, b = (torch.randn(21, dtype=dtype, requires_grad=True) for _ in range(2))
            r = torch.randn_like(x)
            y = ops.instance_norm_act(x, w, b, act=act, residual=r)
            return [y, *torch.autograd.grad(y, (x, w, b), torch.randn_like(y))]
        return fn

    errors = {}
    for dtype in (torch.float32, torch.float64):
        d = str(dtype).split(".")[1]
        for cl in (False, True):
            for act in ("linear", "relu", "lrelu", "tanh", "elu", "softplus", "swish"):
                for clamp in (None, 2.0):
                    errors[f"bias_act {act} clamp={clamp} cl={cl} {d}"] = run(bias_act(dtype, act, clamp, cl))
            for fn_name in ("upsample2d", "downsample2d", "filter2d"):
                errors[f"{fn_name} cl={cl} {d}"] = run(resample(dtype, fn_name, cl))
            errors[f"grid_sample cl={cl} {d}"] = run(grid_sample(dtype, cl))
            for act in ("linear", "relu", "lrelu"):
                errors[f"instance_norm {act} cl={cl} {d}"] = run(instance_norm(dtype, act, cl))
    print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "isa": C.cpu_isa(), "errors": errors}))
    """
)


def _run_at(capability: str) -> dict:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600,
                          cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_extension
@pytest.mark.skipif(not X86 or sys.platform != "linux", reason="the level copies are built on x86-64 Linux (GCC)")
def test_the_level_is_torchs_cpu_capability():
    import gankernels._C as C

    want = {"DEFAULT": "baseline", "AVX2": "avx2", "AVX512": "avx512"}[torch.backends.cpu.get_cpu_capability()]
    assert C.cpu_isa() == want


@needs_extension
@pytest.mark.parametrize("capability", list(LEVELS))
def test_every_level_computes_what_the_reference_computes(capability):
    result = _run_at(capability)
    if result["capability"].lower() != capability:  # torch lowers a request above what the CPU has
        pytest.skip(f"this CPU runs torch at {result['capability']}, not {capability}")
    if result["isa"] == "baseline" and capability != "default" and not (X86 and sys.platform == "linux"):
        pytest.skip("this build has no AVX2 / AVX-512 copies (built on x86-64 Linux only)")
    assert result["isa"] == LEVELS[capability]
    bad = {}
    for case, err in result["errors"].items():
        tol = 1e-12 if case.endswith("float64") else 2e-6  # relative to the largest value; 4e-7 seen (swish)
        if not err <= tol:
            bad[case] = err
    assert not bad, f"at {capability}: {bad}"


_AVX_SO = """
void scale(float* __restrict y, const float* __restrict x, float a, long n) {
  for (long i = 0; i < n; ++i) y[i] = a * x[i] + y[i];
}
"""


@pytest.mark.skipif(not X86 or shutil.which("objdump") is None or shutil.which("g++") is None,
                    reason="needs x86-64, objdump and g++")  # fmt: skip
def test_the_isa_check_finds_avx_outside_the_level_copies(tmp_path):
    src = tmp_path / "avx.cpp"
    src.write_text(_AVX_SO)
    for flags, want in ((["-mavx2"], ["scale(float*, float const*, float, long)"]), ([], [])):
        so = tmp_path / f"avx{len(flags)}.so"
        subprocess.run(["g++", "-O3", "-shared", "-fPIC", *flags, str(src), "-o", str(so)], check=True)
        portable, bad = check_isa.misplaced(str(so))
        assert portable and bad == want


_OUT_OF_LINE_SO = """
namespace gankernels { namespace vmath {
__attribute__((noinline)) float exp(float x) { return x * 2.0f + 1.0f; }
} }
void scale(float* y, const float* x, long n) { for (long i = 0; i < n; ++i) y[i] = gankernels::vmath::exp(x[i]); }
"""


@pytest.mark.skipif(shutil.which("objdump") is None or shutil.which("g++") is None, reason="needs objdump and g++")
def test_the_check_finds_an_element_function_left_out_of_line(tmp_path):
    src = tmp_path / "call.cpp"
    src.write_text(_OUT_OF_LINE_SO)
    so = tmp_path / "call.so"
    subprocess.run(["g++", "-O3", "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    assert check_isa.out_of_line(str(so)) == ["gankernels::vmath::exp(float)"]


@needs_extension
@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump")
def test_every_element_function_is_inlined_into_the_kernels():
    """No out-of-line copy of an activation, a conversion or vmath's exp: each would be a call in a kernel loop,
    which keeps the loop scalar (GCC's inliner once stopped inlining them, and bias_act's elu and swish lost 10-20x)."""
    import gankernels._C as C

    assert check_isa.out_of_line(C.__file__) == []


@needs_extension
@pytest.mark.skipif(not X86 or shutil.which("objdump") is None, reason="needs x86-64 and objdump")
def test_a_portable_build_has_avx_only_in_the_level_copies():
    import gankernels._C as C

    portable, bad = check_isa.misplaced(C.__file__)
    if not portable:
        pytest.skip("a -march=native build (GANKERNELS_NATIVE=1): AVX everywhere by design")
    assert bad == []
    found = check_isa.avx_functions(C.__file__)
    assert any("isa_avx512::" in name for name in found) and any("isa_avx2::" in name for name in found)
