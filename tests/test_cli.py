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


def test_bench_json_is_written_after_every_case(tmp_path, monkeypatch):
    """A run killed by a time limit keeps what it measured: the file holds every finished case, and the commit."""
    import gankernels.bench as bench

    path = tmp_path / "bench.json"
    real_run_case = bench.run_case
    seen = []

    def run_case(case, device, reps=20, only=None):
        if seen:  # the second case "times out"
            assert {r["case"] for r in json.loads(path.read_text())["results"]} == set(seen)
            raise KeyboardInterrupt
        seen.append(case.name)
        return real_run_case(case, device, reps=reps, only=only)

    monkeypatch.setattr(bench, "run_case", run_case)
    monkeypatch.setenv("GANKERNELS_GIT_COMMIT", "0123abc")
    try:
        bench.run(["bias_act"], device="cpu", quick=True, reps=2, json_path=str(path), echo=None)
    except KeyboardInterrupt:
        pass
    data = json.loads(path.read_text())
    assert [r["case"] for r in data["results"]] and {r["case"] for r in data["results"]} == set(seen)
    assert data["environment"]["git_commit"] == "0123abc" and len(data["environment"]["date"]) == 10
    assert not [p for p in tmp_path.iterdir() if p.name != "bench.json"]  # no temporary file left behind
