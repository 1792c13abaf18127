"""RUN/curves.png: the losses (stats.jsonl) and metrics (metric-*.jsonl) of a run over kimg, drawn without
matplotlib: a small numpy rasteriser (axes, polylines, a 3x5 bitmap font for titles and tick labels) onto our PNG
writer. One panel per series, two panels a row; each panel shows its series' name, the y range (min, max) and the
x range in kimg.
"""

from __future__ import annotations

import glob
import json
import math
import os

import numpy as np

from .images import write_png

PANEL_W, PANEL_H = 360, 200
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 14, 26, 26
SCALE = 2  # font pixels per glyph pixel
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]

# 3 x 5 glyphs, rows top to bottom ("#" on); lower-case input is drawn with these upper-case shapes
_GLYPHS = {
    "0": "###,#.#,#.#,#.#,###", "1": ".#.,##.,.#.,.#.,###", "2": "###,..#,###,#..,###", "3": "###,..#,.##,..#,###",
    "4": "#.#,#.#,###,..#,..#", "5": "###,#..,###,..#,###", "6": "###,#..,###,#.#,###", "7": "###,..#,.#.,.#.,.#.",
    "8": "###,#.#,###,#.#,###", "9": "###,#.#,###,..#,###", "A": ".#.,#.#,###,#.#,#.#", "B": "##.,#.#,##.,#.#,##.",
    "C": ".##,#..,#..,#..,.##", "D": "##.,#.#,#.#,#.#,##.", "E": "###,#..,##.,#..,###", "F": "###,#..,##.,#..,#..",
    "G": ".##,#..,#.#,#.#,.##", "H": "#.#,#.#,###,#.#,#.#", "I": "###,.#.,.#.,.#.,###", "J": "..#,..#,..#,#.#,.#.",
    "K": "#.#,#.#,##.,#.#,#.#", "L": "#..,#..,#..,#..,###", "M": "#.#,###,###,#.#,#.#", "N": "##.,#.#,#.#,#.#,#.#",
    "O": ".#.,#.#,#.#,#.#,.#.", "P": "##.,#.#,##.,#..,#..", "Q": ".#.,#.#,#.#,##.,.##", "R": "##.,#.#,##.,#.#,#.#",
    "S": ".##,#..,.#.,..#,##.", "T": "###,.#.,.#.,.#.,.#.", "U": "#.#,#.#,#.#,#.#,###", "V": "#.#,#.#,#.#,#.#,.#.",
    "W": "#.#,#.#,###,###,#.#", "X": "#.#,#.#,.#.,#.#,#.#", "Y": "#.#,#.#,.#.,.#.,.#.", "Z": "###,..#,.#.,#..,###",
    ".": "...,...,...,...,.#.", "-": "...,...,###,...,...", "_": "...,...,...,...,###", "+": "...,.#.,###,.#.,...",
    ":": "...,.#.,...,.#.,...", "/": "..#,..#,.#.,#..,#..", "(": ".#.,#..,#..,#..,.#.", ")": ".#.,..#,..#,..#,.#.",
    " ": "...,...,...,...,...",
}  # fmt: skip
_BITMAPS = {c: np.array([[p == "#" for p in row] for row in g.split(",")]) for c, g in _GLYPHS.items()}


def draw_text(canvas: np.ndarray, text: str, x: int, y: int, colour=(0, 0, 0)) -> None:
    """Draw `text` with its top-left corner at (x, y), clipped to the canvas [H, W, 3]."""
    for i, char in enumerate(text.upper()):
        glyph = _BITMAPS.get(char, _BITMAPS[" "]).repeat(SCALE, 0).repeat(SCALE, 1)
        gx = x + i * 4 * SCALE
        ys, xs = np.nonzero(glyph)
        ys, xs = ys + y, xs + gx
        keep = (ys >= 0) & (ys < canvas.shape[0]) & (xs >= 0) & (xs < canvas.shape[1])
        canvas[ys[keep], xs[keep]] = colour


def text_width(text: str) -> int:
    return len(text) * 4 * SCALE - SCALE


def draw_polyline(canvas: np.ndarray, xs, ys, colour, thickness: int = 2) -> None:
    """Connect the points (xs[i], ys[i]) (pixel coordinates, floats) with lines; one point draws a dot."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) == 1:
        xs, ys = np.repeat(xs, 2), np.repeat(ys, 2)
    px, py = [], []
    for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:], strict=True):
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 2
        t = np.linspace(0, 1, n)
        px.append(x0 + t * (x1 - x0))
        py.append(y0 + t * (y1 - y0))
    px, py = np.concatenate(px), np.concatenate(py)
    for dx in range(thickness):
        for dy in range(thickness):
            cx, cy = np.round(px).astype(int) + dx, np.round(py).astype(int) + dy
            keep = (cx >= 0) & (cx < canvas.shape[1]) & (cy >= 0) & (cy < canvas.shape[0])
            canvas[cy[keep], cx[keep]] = colour


def format_value(v: float) -> str:
    """A short tick label: 4 significant digits, exponent form for very large / small magnitudes."""
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.4g}"
    return f"{v:.2e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


def draw_panel(canvas, left: int, top: int, name: str, kimg, values, colour) -> None:
    """One series in the panel whose top-left corner is (left, top)."""
    x0, x1 = left + MARGIN_L, left + PANEL_W - MARGIN_R
    y0, y1 = top + MARGIN_T, top + PANEL_H - MARGIN_B
    canvas[y0 : y1 + 1, x0] = 0
    canvas[y1, x0 : x1 + 1] = 0
    draw_text(canvas, name, left + (PANEL_W - text_width(name)) // 2, top + 6)
    kimg, values = np.asarray(kimg, float), np.asarray(values, float)
    finite = np.isfinite(values) & np.isfinite(kimg)
    kimg, values = kimg[finite], values[finite]
    if not len(values):
        draw_text(canvas, "no finite values", x0 + 10, (y0 + y1) // 2)
        return
    lo_x, hi_x = float(kimg.min()), float(kimg.max())
    lo_y, hi_y = float(values.min()), float(values.max())
    if hi_x == lo_x:
        hi_x = lo_x + 1e-9 + abs(lo_x) * 1e-6
    if hi_y == lo_y:
        pad = abs(lo_y) * 0.05 or 1.0
        lo_y, hi_y = lo_y - pad, hi_y + pad
    px = x0 + 2 + (kimg - lo_x) / (hi_x - lo_x) * (x1 - x0 - 6)
    py = y1 - 3 - (values - lo_y) / (hi_y - lo_y) * (y1 - y0 - 8)
    draw_polyline(canvas, px, py, colour)
    for value, y in ((hi_y, y0 + 2), (lo_y, y1 - 3)):
        label = format_value(value)
        canvas[y, x0 - 4 : x0] = 0
        draw_text(canvas, label, x0 - 6 - text_width(label), y - 2 * SCALE)
    for value, x in ((lo_x, x0 + 2), (float(kimg.max()), x1 - 4)):
        label = format_value(value)
        canvas[y1 : y1 + 4, int(x)] = 0
        lx = min(int(x) - text_width(label) // 2, left + PANEL_W - text_width(label) - 2)
        draw_text(canvas, label, max(lx, left + 2), y1 + 7)
    kimg_label = "KIMG"
    draw_text(canvas, kimg_label, (x0 + x1 - text_width(kimg_label)) // 2, y1 + 7)


def read_series(run_dir) -> dict[str, tuple[list, list]]:
    """{name: (kimg list, value list)}: every numeric field of stats.jsonl (losses) then of each metric-*.jsonl."""
    series: dict[str, tuple[list, list]] = {}
    paths = [os.path.join(run_dir, "stats.jsonl")] + sorted(glob.glob(os.path.join(run_dir, "metric-*.jsonl")))
    for path in paths:
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
                if not isinstance(row, dict) or not isinstance(row.get("kimg"), (int, float)):
                    continue
                fields = row["results"] if isinstance(row.get("results"), dict) else row
                for key, value in fields.items():
                    if key in ("step", "kimg", "time", "timestamp") or isinstance(value, bool):
                        continue
                    if isinstance(value, (int, float)):
                        series.setdefault(key, ([], []))
                        series[key][0].append(float(row["kimg"]))
                        series[key][1].append(float(value))
    return series


def write_curves(run_dir, path=None) -> str | None:
    """Draw the run's series into `path` (default RUN/curves.png); returns the path, or None when the run has no
    series yet."""
    run_dir = os.fspath(run_dir)
    series = read_series(run_dir)
    if not series:
        return None
    cols = 2 if len(series) > 1 else 1
    rows = math.ceil(len(series) / cols)
    canvas = np.full([rows * PANEL_H, cols * PANEL_W, 3], 255, dtype=np.uint8)
    for i, (name, (kimg, values)) in enumerate(series.items()):
        order = np.argsort(kimg, kind="stable")
        draw_panel(canvas, (i % cols) * PANEL_W, (i // cols) * PANEL_H, name, np.asarray(kimg)[order],
                   np.asarray(values)[order], COLOURS[i % len(COLOURS)])  # fmt: skip
    path = path or os.path.join(run_dir, "curves.png")
    write_png(path, canvas)
    return path
