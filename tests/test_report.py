"""gankernels.bench.report: the results JSON becomes the README table (and a chart when matplotlib is there)."""

import json

import pytest

from gankernels.bench import report

DATA = {
    "environment": {"gpu": "Test GPU", "torch": "2.x", "triton": "3.x", "copy_bandwidth_gb_s": 3000.0},
    "results": [
        {"op": "bias_act", "case": "[2,3] fp32 fwd", "impl": "eager", "ms": 2.0, "copy_fraction": 0.2},
        {"op": "bias_act", "case": "[2,3] fp32 fwd", "impl": "compile", "ms": 1.0, "copy_fraction": 0.4},
        {
            "op": "bias_act",
            "case": "[2,3] fp32 fwd",
            "impl": "cuda",
            "ms": 0.5,
            "copy_fraction": 0.8,
            "vs_eager": 4.0,
            "vs_compile": 2.0,
        },
        {"op": "bias_act", "case": "[2,3] fp32 fwd", "impl": "triton", "error": "RuntimeError: boom"},
    ],
}


def test_markdown_table_from_results(tmp_path, capsys):
    path = tmp_path / "gpu-2026-01-01.json"
    path.write_text(json.dumps(DATA))
    assert report.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "Test GPU" in out and "3000 GB/s" in out
    assert "| bias_act [2,3] fp32 fwd | 2.000 | 1.000 | 0.500 | 80% | 4.00 | 2.00 |" in out


def test_newest_results_and_missing_directory(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    assert report.newest_results(str(tmp_path)).endswith("a.json")
    with pytest.raises(FileNotFoundError):
        report.newest_results(str(tmp_path / "empty"))


def test_committed_results_render():
    with open(report.newest_results()) as fh:
        table = report.markdown_table(json.load(fh))
    assert table.count("\n| ") >= 10


def test_chart(tmp_path):
    pytest.importorskip("matplotlib")
    report.speedup_chart(DATA, str(tmp_path / "chart.png"))
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
