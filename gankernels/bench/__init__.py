"""Benchmark harness shared by `gankernels bench` and benchmarks/ (pytest-benchmark).

A `Case` is one op at one shape, dtype, layout and mode ("fwd", "fwd+bwd"). `run_case` times every
implementation of it in one run: "eager" (the `ref` backend: plain PyTorch), "compile" (torch.compile of that
eager code) and each kernel backend that can run here, and reports time, speedups over eager and compile, and
effective bandwidth (minimal bytes / time) as a fraction of the copy bandwidth measured on the same device.
GPU times are medians of CUDA-event timings; CPU times are medians of wall-clock timings. On CUDA every row also
records the peak memory allocated while it ran (torch.cuda.max_memory_allocated, reset before).

Whole-step cases (penalties.py, models.py: a critic step, a training iteration) are `stateful`: each implementation
gets its own fresh state (networks, optimizers) from make_inputs; "eager" is the same step under the `ref` backend
(eager=None), "ours" the automatic backend choice (backends=(AUTO,)), and "compile" their own `compiled` callable
(torch.compile applied to the parts it can run, named in `compiled_parts`) or n/a with the reason (`compile_na`).
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable

import torch

from .. import backend as _backend
from .._io import atomic_write

# modules gankernels.bench.<op> that define cases(device, quick)
OPS = (
    "bias_act", "upfirdn2d", "grid_sample", "instance_norm", "fused_conv2d", "stylegan2_ops", "penalties", "models",
    "augment",
)  # fmt: skip
AUTO = "auto"  # in Case.backends: the automatic backend choice, reported as impl "ours"


@dataclasses.dataclass
class Case:
    op: str
    name: str  # e.g. "lrelu+clamp [16,256,64,64] fp32 NCHW fwd"
    make_inputs: Callable[[], tuple]  # fresh inputs, on the device
    run: Callable[..., object]  # run(*inputs): the timed region on gankernels ops (the harness picks the backend)
    eager: Callable[..., object] | None  # the plain-PyTorch version of the same region (compiled for "compile");
    # None: `run` under the ref backend
    bytes: int  # minimal bytes moved: every input read once, every output written once; 0: not reported
    flops: int = 0
    backends: tuple = ("cpu", "cuda", "triton")  # AUTO: the automatic choice, as impl "ours"
    # whole-step cases
    stateful: bool = False  # make_inputs() afresh for every implementation (the step changes its state)
    iters: int = 1  # iterations per call: times are reported per iteration (ms / iters)
    images: int = 0  # images per iteration: adds sec/kimg = ms / images
    warmup: int | None = None  # calls before timing / timed calls (default: the harness's)
    reps: int | None = None
    compiled: Callable[..., object] | None = None  # "compile" (run under ref) instead of torch.compile(eager)
    compiled_parts: str = ""  # what `compiled` compiles (shown in the table)
    compile_na: str | None = None  # why torch.compile cannot run this case: reported n/a, not run


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
    impls = {"eager": (None, case.eager) if case.eager is not None else ("ref", case.run)}
    if case.compiled is not None:
        impls["compile"] = ("ref", case.compiled)
    elif case.compile_na is None and case.eager is not None:
        impls["compile"] = (None, torch.compile(case.eager, dynamic=False))
    for name in case.backends:
        if name == AUTO:
            impls["ours"] = (None, case.run)
        elif _backend.why_unavailable(name, case.op, device.type) is None:
            impls[name] = (name, case.run)
    return impls


def run_case(case: Case, device: torch.device, reps: int = 20, only: tuple | None = None) -> list[dict]:
    """Times every implementation of `case` in one run; one row per implementation."""
    torch._dynamo.reset()  # each case compiles afresh: no recompile limit, no shapes generalised across cases
    inputs = None if case.stateful else case.make_inputs()
    copy_bw = copy_bandwidth(device) if case.bytes else None
    rows, times = [], {}
    impls = implementations(case, device)
    impls = {k: v for k, v in impls.items() if not only or k in only or k in ("eager", "compile")}
    interleaved = _interleaved(case, impls, reps) if case.stateful and device.type == "cpu" else None
    for impl, (name, fn) in impls.items():
        try:
            if interleaved is not None:
                ms = interleaved[impl]
                if isinstance(ms, Exception):
                    raise ms
            else:
                with _backend.use_backend(name):
                    if case.stateful:
                        inputs = case.make_inputs()
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    ms = time_fn(lambda fn=fn, inputs=inputs: fn(*inputs), device, _warmup(case), case.reps or reps)
                    ms /= case.iters
        except Exception as e:  # a backend that fails is reported, not hidden
            rows.append(dict(op=case.op, case=case.name, impl=impl, error=f"{type(e).__name__}: {e}"[:200]))
            continue
        finally:
            if case.stateful:  # free this implementation's state before the next one's peak is measured
                inputs = None
                if impl == "compile":
                    torch._dynamo.reset()  # compiled graphs hold the networks
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        times[impl] = ms
        gbs = case.bytes / ms / 1e6 if case.bytes else None
        row = dict(op=case.op, case=case.name, impl=impl, ms=ms, gb_s=gbs, copy_fraction=gbs / copy_bw if gbs else None,
                   tflop_s=case.flops / ms / 1e9 if case.flops else None)  # fmt: skip
        if case.images:
            row["sec_per_kimg"] = ms / case.images
        if device.type == "cuda":
            row["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        if impl == "compile" and case.compiled_parts:
            row["note"] = f"compiled: {case.compiled_parts}"
        rows.append(row)
    if case.compile_na is not None and case.compiled is None:  # after eager
        rows.insert(min(1, len(rows)), dict(op=case.op, case=case.name, impl="compile", na=case.compile_na))
    for row in rows:
        if "ms" in row:
            row["vs_eager"] = times["eager"] / row["ms"] if "eager" in times else None
            row["vs_compile"] = times["compile"] / row["ms"] if "compile" in times else None
    return rows


def _warmup(case: Case) -> int:
    return case.warmup if case.warmup is not None else 3


def _interleaved(case: Case, impls: dict, reps: int) -> dict[str, float | Exception]:
    """CPU whole-step cases: each implementation's state built and warmed up, then one timed call of each in turn for
    `reps` rounds; median ms per iteration (or the exception an implementation raised). Timed one after the other,
    a drift of the shared machine (another process, the clock) fell on whichever ran during it: the same computation
    measured 0.68-1.26x itself in one run (benchmarks/NOTES.md); interleaved, it falls on all of them alike."""
    states, samples, out = {}, {}, {}
    for impl, (name, fn) in impls.items():
        try:
            with _backend.use_backend(name):
                inputs = case.make_inputs()
                for _ in range(_warmup(case)):
                    fn(*inputs)
            states[impl], samples[impl] = inputs, []
        except Exception as e:
            out[impl] = e
    for _ in range(case.reps or reps):
        for impl in [i for i in states if i not in out]:
            name, fn = impls[impl]
            try:
                with _backend.use_backend(name):
                    t0 = time.perf_counter()
                    fn(*states[impl])
                    samples[impl].append((time.perf_counter() - t0) * 1e3)
            except Exception as e:
                out[impl] = e
    for impl, taken in samples.items():
        out.setdefault(impl, statistics.median(taken) / case.iters)
    return out


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
    env["git_commit"] = git_commit()
    env["date"] = datetime.date.today().isoformat()
    return env


def git_commit() -> str | None:
    """The commit benchmarked: $GANKERNELS_GIT_COMMIT (a copied tree has no .git; set it there), else git's HEAD."""
    if os.environ.get("GANKERNELS_GIT_COMMIT"):
        return os.environ["GANKERNELS_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=os.path.dirname(os.path.abspath(__file__)))  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def format_table(rows: list[dict]) -> str:
    """A fixed-width table: one line per (case, implementation); then sec/kimg, peak memory and notes if any."""
    head = f"{'op':<10} {'case':<46} {'impl':<8} {'ms':>9} {'x eager':>8} {'x compile':>9} {'GB/s':>8} {'%copy':>6}"
    lines = [head, "-" * len(head)]
    last = None
    for r in rows:
        case = r["case"] if r["case"] != last else ""
        last = r["case"]
        if "error" in r:
            lines.append(f"{r['op']:<10} {case:<46} {r['impl']:<8} failed: {r['error']}")
            continue
        if "na" in r:
            lines.append(f"{r['op']:<10} {case:<46} {r['impl']:<8} {'n/a':>9}  {r['na']}")
            continue

        def ratio(v):
            return f"{v:.2f}" if v else "-"

        bw = f"{r['gb_s']:>8.1f} {100 * r['copy_fraction']:>5.1f}%" if r.get("gb_s") else f"{'-':>8} {'-':>6}"
        extra = [f"{r['sec_per_kimg']:.2f} s/kimg"] if r.get("sec_per_kimg") else []
        extra += [f"peak {r['peak_mib']:.0f} MiB"] if r.get("peak_mib") else []
        extra += [r["note"]] if r.get("note") else []
        lines.append(
            f"{r['op']:<10} {case:<46} {r['impl']:<8} {r['ms']:>9.4f} {ratio(r['vs_eager']):>8} "
            f"{ratio(r['vs_compile']):>9} {bw}" + ("  " + "; ".join(extra) if extra else "")
        )
    return "\n".join(lines)


def run(ops=None, device=None, quick=False, reps=20, json_path=None, echo=print, skip=None) -> list[dict]:
    """Benchmarks `ops` (default all) on `device` (default CUDA when present), prints the table, writes JSON.
    skip: a regular expression; cases whose name it matches (re.search) are left out. Every row records its case's
    wall_s (the whole case: every implementation, compiles included), to plan a time-limited run."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = []
    env = environment(device) if json_path else None
    if json_path:  # the environment (commit, versions) first: a run cut in its first case still says what it ran on
        atomic_write(json_path, [json.dumps(dict(environment=env, results=rows), indent=1).encode()])
    for op in ops or OPS:
        for case in cases(op, device, quick):
            if skip and re.search(skip, case.name):
                continue
            t0 = time.perf_counter()
            case_rows = run_case(case, device, reps=reps)
            for row in case_rows:
                row["wall_s"] = round(time.perf_counter() - t0, 2)
            rows += case_rows
            if echo:
                echo(format_table([r for r in rows if r["case"] == case.name]).split("\n", 2)[-1])
            if json_path:  # after every case: a run cut short (a device call's time limit) keeps what it measured
                text = json.dumps(dict(environment=env, results=rows), indent=1).encode()
                atomic_write(json_path, [text])
    return rows
