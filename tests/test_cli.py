"""`gankernels info` and `gankernels bench` through the real entry point."""

import json
import subprocess
import sys

from gankernels import cli


def test_info_lists_every_op_and_backend(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("torch", "bias_act:", "upfirdn2d:", "on cpu tensors:", "ref     available"):
        assert word in out


def test_bench_quick_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--op", "bias_act", "--quick", "--reps", "2", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    impls = {row["impl"] for row in data["results"]}
    assert {"eager", "compile"} <= impls
    assert all(row.get("ms", 1) > 0 for row in data["results"])
    assert "x eager" in capsys.readouterr().out


def test_bench_unknown_op(capsys):
    assert cli.main(["bench", "--op", "nope", "--quick"]) == 2


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "gankernels", "info"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "gankernels" in out.stdout
