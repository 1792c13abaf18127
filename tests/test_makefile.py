"""The Makefile's GPU-check targets: they exist, and a failing test fails them (pipefail through tee, no `-`
prefix), with the failure listed in $(OUT)/failures.txt; a passing run passes."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("timeout") is None,
                                reason="needs make and timeout")  # fmt: skip

TINY = """
import pytest

@pytest.mark.gpu
def test_parallel():
    assert {ok}

@pytest.mark.gpu
@pytest.mark.gpu_serial
def test_serial():
    pass
"""


def make(*args, **kwargs):
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=300, **kwargs)  # fmt: skip


def test_targets_exist_and_run_their_pieces_under_a_time_limit():
    dry = make("-n", "gpu-check-1", "gpu-check-2", "gpu-tests", "gpu-bench", "gpu-bench-steps", "OUT=/tmp/x")
    assert dry.returncode == 0, dry.stderr
    text = dry.stdout
    assert 'TORCH_CUDA_ARCH_LIST="9.0"' in text and "MAX_JOBS=16" in text
    assert '-m "gpu and not gpu_serial" -n 8' in text or '-m "gpu and not gpu_serial"' in text
    assert "-m gpu_serial" in text and "--json /tmp/x/results.json" in text and "--op models,penalties" in text
    pieces = [line for line in text.splitlines() if "| tee /tmp/x/" in line and "status-" in line]
    assert pieces and all("timeout -k 10 " in line for line in pieces)
    recipe_lines = [line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("\t")]
    assert not [line for line in recipe_lines if re.match(r"\t@?-", line)], "a `-` prefix hides a failure"


@pytest.mark.parametrize("ok", [False, True], ids=["failing", "passing"])
def test_gpu_tests_fails_when_a_test_fails(ok, tmp_path):
    (tmp_path / "test_tiny.py").write_text(TINY.format(ok=ok))
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_logreport  # noqa: F401\n")
    out = tmp_path / "out"
    pytest_cmd = f"{sys.executable} -m pytest {tmp_path} -q -p no:cacheprovider"
    run = make("gpu-tests", f"OUT={out}", f"PYTEST_GPU={pytest_cmd}", "XDIST=", "GPU_REFUSALS=true")
    status = (out / "status-gpu-tests.txt").read_text()
    assert re.search(r"^tests-serial rc=0 ", status, re.M), status
    if ok:
        assert run.returncode == 0, run.stdout + run.stderr
        assert re.search(r"^tests rc=0 ", status, re.M) and (out / "failures.txt").read_text() == ""
    else:
        assert run.returncode != 0, run.stdout
        assert re.search(r"^tests rc=1 ", status, re.M), status
        assert "FAILED" in (out / "failures.txt").read_text() and "test_parallel" in (out / "failures.txt").read_text()
        assert "1 failed" in (out / "tests.txt").read_text()  # tee'd as it ran
