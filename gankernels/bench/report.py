"""Turns a benchmark results file (benchmarks/results/<gpu>-<date>.json) into the README's performance table and a
PNG chart of the speedups.

    python -m gankernels.bench.report [RESULTS.json] [--png speedups.png] [--backend cuda]

Without a file it takes the newest in benchmarks/results/. The chart needs matplotlib (`pip install matplotlib`).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "results")


def newest_results(directory: str = RESULTS_DIR) -> str:
    files = sorted(glob.glob(os.path.join(directory, "*.json")), key=os.path.getmtime)
    if not files:
        raise FileNotFoundError(f"no results JSON in {os.path.abspath(directory)}")
    return files[-1]


def rows_by_case(data: dict) -> dict[str, dict[str, dict]]:
    """case name -> implementation -> result row (rows that failed are left out)."""
    cases: dict[str, dict[str, dict]] = {}
    for row in data["results"]:
        if "ms" in row:
            cases.setdefault(f"{row['op']} {row['case']}", {})[row["impl"]] = row
    return cases


def markdown_table(data: dict, backend: str = "cuda") -> str:
    """One line per case: eager, torch.compile and `backend` times, its fraction of copy bandwidth and ratios."""
    env = data["environment"]
    head = (
        f"{env.get('gpu') or 'CPU'} (torch {env['torch']}, triton {env.get('triton')}, copy bandwidth "
        f"{env['copy_bandwidth_gb_s']:.0f} GB/s), median ms, backend `{backend}`:\n\n"
        "| case | eager | torch.compile | ours | % of copy | x eager | x compile |\n|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for case, impls in rows_by_case(data).items():
        ours = impls.get(backend) or impls.get("ours")  # model / penalty steps: "ours" is the automatic choice
        if ours is None or ours.get("ms") is None or "eager" not in impls:
            continue
        compile_row = impls.get("compile") or {}
        compile_ms = f"{compile_row['ms']:.3f}" if compile_row.get("ms") is not None else "n/a"
        vs_compile = f"{ours['vs_compile']:.2f}" if ours.get("vs_compile") else "-"
        fraction = f"{100 * ours['copy_fraction']:.0f}%" if ours.get("copy_fraction") is not None else "-"
        lines.append(
            f"| {case} | {impls['eager']['ms']:.3f} | {compile_ms} | {ours['ms']:.3f} | "
            f"{fraction} | {ours['vs_eager']:.2f} | {vs_compile} |"
        )
    return "\n".join(lines)


def speedup_chart(data: dict, path: str, backend: str = "cuda") -> None:
    """Horizontal bars of `backend`'s speedup over eager and over torch.compile, one pair per case (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [(c, i.get(backend) or i.get("ours")) for c, i in rows_by_case(data).items()]
    cases = [(c, row) for c, row in cases if row is not None and row.get("vs_eager")]
    if not cases:
        raise ValueError(f"no results for backend {backend!r} in this file")
    fig, ax = plt.subplots(figsize=(13, 0.28 * len(cases) + 1.5))
    y = range(len(cases))
    ax.barh([v - 0.2 for v in y], [r["vs_eager"] for _, r in cases], height=0.4, label="x eager")
    ax.barh([v + 0.2 for v in y], [r.get("vs_compile") or 0 for _, r in cases], height=0.4, label="x torch.compile")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(list(y), [c for c, _ in cases], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"speedup of gankernels ({backend}), log scale")
    ax.set_title(f"{data['environment'].get('gpu') or 'CPU'}, torch {data['environment']['torch']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gankernels.bench.report", description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="?", help="results JSON (default: the newest in benchmarks/results)")
    parser.add_argument("--backend", default="cuda", help="the backend to report (default cuda)")
    parser.add_argument("--png", help="also write the speedup chart here (needs matplotlib)")
    args = parser.parse_args(argv)
    path = args.results or newest_results()
    with open(path) as fh:
        data = json.load(fh)
    print(markdown_table(data, args.backend))
    if args.png:
        try:
            speedup_chart(data, args.png, args.backend)
        except ImportError:
            print("the chart needs matplotlib: pip install matplotlib", file=sys.stderr)
            return 1
        print(f"\nwrote {args.png}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
