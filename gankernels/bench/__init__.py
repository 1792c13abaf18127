"""Benchmark harness shared by `gankernels bench` and benchmarks/ (pytest-benchmark).

A `Case` is one op at one shape, dtype, layout and mode ("fwd", "fwd+bwd"). `run_case` times every
implementation of it in one run: "eager" (the `ref` backend: plain PyTorch), "compile" (torch.compile of that
eager code) and each kernel backend that can run here, and reports time, speedups over eager and compile, and
effective bandwidth (minimal bytes / time) as a fraction of the copy bandwidth measured on the same device.
GPU times are medians of CUDA-event timings; CPU times are medians of wall-clock timings.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

from .. import backend as _backend

OPS = ("bias_act", "upfirdn2d")  # modules gankernels.bench.<op> that define cases(device, quick)


@dataclasses.dataclass
class Case:
    op: str
    name: str  # e.g. "lrelu+clamp [16,256,64,64] fp32 NCHW fwd"
    make_inputs: Callable[[], tuple]  # fresh inputs, on the device
    run: Callable[..., object]  # run(*inputs): the timed region on gankernels ops (the harness picks the backend)
    eager: Callable[..., object]  # the plain-PyTorch version of the same region (compiled for "compile")
    bytes: int  # minimal bytes moved: every input read once, every output written once
    flops: int = 0
    backends: tuple = ("cpu", "cuda", "triton")


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, warmup: int = 3, reps: int = 20) -> float:
    """Median milliseconds of one fn() on `device`.

    GPU: CUDA events around a batch of back-to-back calls (about 2 ms of work, so the host queues ahead and the
    number is the device time, not the Python launch latency), median over `reps` batches. CPU: wall clock.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        batch = max(1, min(200, int(2.0 / max(start.elapsed_time(end), 1e-3))))
        for _ in range(reps):
            start.record()
            for _ in range(batch):
                fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / batch)
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


_COPY_BW: dict[str, float] = {}


def copy_bandwidth(device: torch.device) -> float:
    """Measured device copy bandwidth in GB/s, counting bytes read plus bytes written."""
    key = str(device)
    if key not in _COPY_BW:
        n = (1 << 28) if device.type == "cuda" else (1 << 25)  # 1 GiB / 128 MiB of float32
        src = torch.randn(n, device=device)
        dst = torch.empty_like(src)
        ms = time_fn(lambda: dst.copy_(src), device, warmup=3, reps=20)
        _COPY_BW[key] = 2 * src.numel() * 4 / ms / 1e6
        del src, dst
    return _COPY_BW[key]


def implementations(case: Case, device: torch.device) -> dict[str, tuple[str | None, Callable]]:
    """name -> (backend to force, callable(*inputs)) for eager, compile and every backend that runs `case` here."""
    impls = {"eager": (None, case.eager), "compile": (None, torch.compile(case.eager, dynamic=False))}
    for name in case.backends:
        if _backend.why_unavailable(name, case.op, device.type) is None:
            impls[name] = (name, case.run)
    return impls


def run_case(case: Case, device: torch.device, reps: int = 20, only: tuple | None = None) -> list[dict]:
    """Times every implementation of `case` in one run; one row per implementation."""
    torch._dynamo.reset()  # each case compiles afresh: no recompile limit, no shapes generalised across cases
    inputs = case.make_inputs()
    copy_bw = copy_bandwidth(device)
    rows, times = [], {}
    for impl, (name, fn) in implementations(case, device).items():
        if only and impl not in only and impl not in ("eager", "compile"):
            continue
        try:
            with _backend.use_backend(name):
                ms = time_fn(lambda fn=fn: fn(*inputs), device, warmup=3, reps=reps)
        except Exception as e:  # a backend that fails is reported, not hidden
            rows.append(dict(op=case.op, case=case.name, impl=impl, error=f"{type(e).__name__}: {e}"[:200]))
            continue
        times[impl] = ms
        gbs = case.bytes / ms / 1e6
        rows.append(dict(op=case.op, case=case.name, impl=impl, ms=ms, gb_s=gbs, copy_fraction=gbs / copy_bw,
                         tflop_s=case.flops / ms / 1e9 if case.flops else None))  # fmt: skip
    for row in rows:
        if "ms" in row:
            row["vs_eager"] = times["eager"] / row["ms"] if "eager" in times else None
            row["vs_compile"] = times["compile"] / row["ms"] if "compile" in times else None
    return rows


DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def sizes(device: torch.device, quick: bool, gpu_shapes, cpu_shapes, quick_shapes) -> tuple[list, list]:
    """(shapes, dtypes) of an op's cases: fp32/fp16/bf16 at the GPU shapes on CUDA, fp32 on CPU, tiny when quick."""
    if quick:
        return quick_shapes, [torch.float32]
    if device.type == "cuda":
        return gpu_shapes, [torch.float32, torch.float16, torch.bfloat16]
    return cpu_shapes, [torch.float32]


def cases(op: str, device: torch.device, quick: bool = False) -> list[Case]:
    return importlib.import_module(f"gankernels.bench.{op}").cases(device, quick)


def environment(device: torch.device) -> dict:
    env = dict(torch=torch.__version__, python=platform.python_version(), machine=platform.machine(),
               device=str(device), cuda=torch.version.cuda)  # fmt: skip
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, sm_count=props.multi_processor_count, capability=f"{props.major}.{props.minor}")
    else:
        env["gpu"] = None
        env["cpu_threads"] = torch.get_num_threads()
    env["copy_bandwidth_gb_s"] = copy_bandwidth(device)
    return env


def format_table(rows: list[dict]) -> str:
    """A fixed-width table: one line per (case, implementation)."""
    head = f"{'op':<10} {'case':<46} {'impl':<8} {'ms':>9} {'x eager':>8} {'x compile':>9} {'GB/s':>8} {'%copy':>6}"
    lines = [head, "-" * len(head)]
    last = None
    for r in rows:
        case = r["case"] if r["case"] != last else ""
        last = r["case"]
        if "error" in r:
            lines.append(f"{r['op']:<10} {case:<46} {r['impl']:<8} failed: {r['error']}")
            continue

        def ratio(v):
            return f"{v:.2f}" if v else "-"

        lines.append(
            f"{r['op']:<10} {case:<46} {r['impl']:<8} {r['ms']:>9.4f} {ratio(r['vs_eager']):>8} "
            f"{ratio(r['vs_compile']):>9} {r['gb_s']:>8.1f} {100 * r['copy_fraction']:>5.1f}%"
        )
    return "\n".join(lines)


def run(ops=None, device=None, quick=False, reps=20, json_path=None, echo=print) -> list[dict]:
    """Benchmarks `ops` (default all) on `device` (default CUDA when present), prints the table, writes JSON."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = []
    for op in ops or OPS:
        for case in cases(op, device, quick):
            rows += run_case(case, device, reps=reps)
            if echo:
                echo(format_table([r for r in rows if r["case"] == case.name]).split("\n", 2)[-1])
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(dict(environment=environment(device), results=rows), fh, indent=1)
    return rows
