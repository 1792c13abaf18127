"""tools/triton_compile_check.py: compiles Triton kernels for a GPU on a machine without one, and refuses bad ones.

The tool needs compiled (not interpreted) kernels, so it runs in a child process without TRITON_INTERPRET.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "triton_compile_check.py")

KERNELS = """
import triton
import triton.language as tl


@triton.jit
def not_a_power_of_two(x_ptr, BLOCK: tl.constexpr):
    tl.store(x_ptr + tl.arange(0, BLOCK), 1.0)


@triton.jit
def too_much_shared(a_ptr, b_ptr, c_ptr, K, BLOCK: tl.constexpr):
    r = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK, BLOCK], tl.float32)
    for k in range(0, K, BLOCK):
        a = tl.load(a_ptr + r[:, None] * K + k + r[None, :])
        b = tl.load(b_ptr + (k + r[:, None]) * BLOCK + r[None, :])
        acc += tl.dot(a, b)
    tl.store(c_ptr + r[:, None] * BLOCK + r[None, :], acc)


@triton.jit
def fine(x_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x_ptr + o, tl.load(x_ptr + o, mask=o < n) * 2, mask=o < n)
"""


def _child(code, tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.path.join(ROOT, "tools"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-c", code] if code else [sys.executable, TOOL, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_refuses_kernels_that_would_fail_on_a_gpu(tmp_path):
    (tmp_path / "kernels_under_test.py").write_text(KERNELS)
    code = textwrap.dedent("""
        import torch
        import kernels_under_test as k
        import triton_compile_check as tcc
        record = []
        with tcc.compile_only(80, record, ["case"]):
            x = torch.empty(1024)
            k.not_a_power_of_two[(1,)](x, BLOCK=3)
            a, b = torch.empty(256 * 1024, dtype=torch.float16), torch.empty(1024 * 256, dtype=torch.float16)
            k.too_much_shared[(1,)](a, b, torch.empty(256 * 256), 1024, BLOCK=256, num_stages=4)
            k.fine[(4,)](x, 1000, BLOCK=256)
            k.fine[(4,)](x, 1000, BLOCK=256)  # the same specialization again: recorded once
        for c in record:
            print(c.name, c.regs is not None and c.regs > 0, c.mma or "?", c.problems())
    """)
    result = _child(code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, result.stdout
    assert lines[0].startswith("not_a_power_of_two") and "does not compile" in lines[0] and "power of 2" in lines[0]
    assert lines[1].startswith("too_much_shared True mma") and "shared memory, sm_80 has 166912" in lines[1]
    assert lines[2] == "fine True - []"  # no tensor-core instruction in an elementwise kernel


F64_KERNELS = """
import triton
import triton.language as tl


@triton.jit
def scale(x_ptr, s, F64: tl.constexpr, BLOCK: tl.constexpr):
    o = tl.arange(0, BLOCK)
    tl.store(x_ptr + o, tl.load(x_ptr + o) * s)
"""


def test_refuses_fp32_in_float64_kernels(tmp_path):
    """A Python float argument is fp32 in a compiled kernel: in a float64 one (F64=True) that is a problem."""
    (tmp_path / "f64_kernels.py").write_text(F64_KERNELS)
    code = textwrap.dedent("""
        import torch
        import f64_kernels as k
        import triton_compile_check as tcc
        record = []
        with tcc.compile_only(80, record, ["case"]):
            x = torch.empty(64, dtype=torch.float64)
            k.scale[(1,)](x, 0.1, F64=True, BLOCK=64)  # rounded to fp32: refused
            k.scale[(1,)](x, 4591870180066957722, F64=True, BLOCK=64)  # int64 bits of 0.1, bitcast: no fp32 at all
            k.scale[(1,)](torch.empty(64), 0.1, F64=False, BLOCK=64)  # an fp32 kernel: fp32 is its compute type
        for c in record:
            print(c.name, c.problems())
    """)
    result = _child(code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, result.stdout
    assert "fp32 in a float64 kernel" in lines[0], lines[0]
    assert lines[1] == "scale []" and lines[2] == "scale []", result.stdout


def test_gankernels_kernels_compile_quick(tmp_path):
    result = _child(None, tmp_path, "--arch", "90", "--op", "bias_act,penalties", "--quick",
                    "--json", str(tmp_path / "k.json"))  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "0 problems" in result.stdout
    assert "_bias_act_fwd_kernel" in result.stdout and "_gradient_penalty_partial_kernel" in result.stdout
    assert (tmp_path / "k.json").stat().st_size > 0


def test_bad_arguments_exit_2(tmp_path):
    result = _child(None, tmp_path, "--op", "nonsense")
    assert result.returncode == 2 and "--op: unknown ['nonsense']" in result.stderr
    result = _child(None, tmp_path, "--arch", "sm90")
    assert result.returncode == 2 and "--arch must be" in result.stderr
