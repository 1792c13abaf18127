"""RUN/curves.png without matplotlib: the series read from stats.jsonl and metric-*.jsonl, and the drawing."""

import json

import numpy as np

from gankernels.training.images import read_png
from gankernels.training.plots import draw_text, format_value, read_series, text_width, write_curves


def test_series_and_png(tmp_path):
    with open(tmp_path / "stats.jsonl", "w") as f:
        for step in range(1, 5):
            f.write(json.dumps({"step": step, "kimg": step * 0.5, "time": 1.0, "G": 1.0 / step, "D": 0.5}) + "\n")
        f.write('{"step": 5, "kimg": 2.5, "G": 0.')  # a line cut short by a crash is skipped
    with open(tmp_path / "metric-fid10k.jsonl", "w") as f:
        for kimg, value in ((0.5, 300.0), (2.0, 120.0)):
            f.write(json.dumps({"metric": "fid10k", "results": {"fid10k": value}, "kimg": kimg, "step": 1}) + "\n")
    series = read_series(tmp_path)
    assert list(series) == ["G", "D", "fid10k"]
    assert series["G"] == ([0.5, 1.0, 1.5, 2.0], [1.0, 0.5, 1 / 3, 0.25]) and series["fid10k"][1] == [300.0, 120.0]
    path = write_curves(tmp_path)
    image = read_png(path)
    assert image.shape == (2 * 200, 2 * 360, 3)
    blue = (image == np.array([31, 119, 180], dtype=np.uint8)).all(axis=2)
    assert blue[:200, :360].sum() > 100  # G's line in the first panel
    assert write_curves(tmp_path / "nothing") is None


def test_text_and_labels():
    canvas = np.full([20, 60, 3], 255, dtype=np.uint8)
    draw_text(canvas, "fid 1.5", 1, 1)
    assert (canvas == 0).any() and text_width("ab") == 14
    draw_text(canvas, "clipped at the edge", 50, 15)  # no error outside the canvas
    assert [format_value(v) for v in (0, 12.5, 1234567.0, 0.00001)] == ["0", "12.5", "1.23e6", "1.00e-5"]
