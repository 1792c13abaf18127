"""Compile every gankernels Triton kernel for NVIDIA GPUs on a machine that has none, and check the result.

    python tools/triton_compile_check.py [--arch 80,90] [--quick] [--json FILE]

The Triton kernels are tested on CPU under TRITON_INTERPRET=1, which never compiles them: a kernel that does not
lower for a GPU (a tl.dot layout, a shape the backend refuses, too much shared memory) would first fail on a GPU
machine. This tool runs the public ops (forward, first and second derivatives) on CPU tensors with the triton
backend forced, but every kernel launch only compiles - through Triton's own launcher, so each specialization
(dtypes, constexprs, divisibility of sizes and pointers) is the one the same call would compile on a GPU - for the
target architectures (default sm_80 and sm_90), and nothing runs: outputs are left uninitialised. Triton's bundled
ptxas assembles each kernel; cuobjdump reports its registers, spills and shared memory.

It fails (exit 1) when a kernel does not compile, needs more shared memory than the architecture has, or more
registers per block than a multiprocessor has (a launch would be refused), or when a float64 kernel (constexpr
F64=True) holds an fp32 value in its IR: a Python float argument or constant rounded to fp32, an fp32 accumulator or
cast. The interpreter cannot show those (it keeps Python floats in float64). Spills are reported, not refused.
The workloads use GPU-like sizes (multiples of 16, so pointer and stride alignment specializations match) with
small batches: nothing runs, but the CPU tensors are allocated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

# the checkout this file is in, not whatever gankernels is installed (an editable install may point at another tree)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    sys.exit("triton_compile_check: unset TRITON_INTERPRET (the interpreter compiles nothing)")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.driver import DriverBase  # noqa: E402
from triton.runtime.driver import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

# Per architecture: (shared memory a block may use, registers per multiprocessor), from the CUDA programming guide's
# compute capability table.
LIMITS = {80: (166912, 65536), 86: (101376, 65536), 89: (101376, 65536), 90: (232448, 65536)}


class _CompileOnlyDriver(DriverBase):
    """Enough of a Triton driver for its launcher to bind and compile kernels for `arch` without a GPU."""

    def __init__(self, arch: int):
        self.arch = arch

    @classmethod
    def is_active(cls):
        return False

    def get_current_target(self):
        return GPUTarget("cuda", self.arch, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_device_interface(self):
        raise RuntimeError("compile-only driver: no device")

    def get_benchmarker(self):
        raise RuntimeError("compile-only driver: no device")

    def map_python_to_cpp_type(self, ty):
        return ty


class Compiled:
    """What one compiled specialization of one kernel needs and where it was launched from."""

    def __init__(self, name, arch, case, kernel=None, error=None):
        self.name, self.arch, self.case, self.error = name, arch, case, error
        self.regs = self.spill = self.shared = self.warps = self.stages = None
        self.consts = self.mma = ""
        self.f32 = []  # lines of a float64 kernel's IR with fp32 values
        if kernel is not None:
            md = kernel.metadata
            self.warps, self.stages, self.shared = md.num_warps, md.num_stages, md.shared
            self.consts = _constexprs(kernel)
            if "F64=True" in self.consts.split():
                self.f32 = [line.strip() for line in kernel.asm["ttir"].splitlines() if re.search(r"\bf32\b", line)]
            self.regs, self.spill = _resource_usage(kernel.asm["cubin"])
            self.mma = _mma(kernel.asm["ptx"])

    def problems(self) -> list[str]:
        if self.error:
            return [
                f"{'the op failed around its launches' if self.name == WORKLOAD else 'does not compile'}: {self.error}"
            ]
        smem, regfile = LIMITS.get(self.arch, LIMITS[80])
        out = []
        if self.shared > smem:
            out.append(f"needs {self.shared} B of shared memory, sm_{self.arch} has {smem}")
        if self.regs is not None and self.regs * 32 * self.warps > regfile:
            out.append(f"{self.regs} registers x {32 * self.warps} threads > {regfile} per multiprocessor")
        if self.f32:
            out.append(f"fp32 in a float64 kernel ({len(self.f32)} IR lines), first: {self.f32[0][:300]}")
        return out

    def row(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "arch", "case", "consts", "warps", "stages", "shared", "regs",
                                              "spill", "mma", "error")}  # fmt: skip


def _mma(ptx: str) -> str:
    """The tensor-core instructions in the PTX: "wgmma" (Hopper's warpgroup MMA), "mma" (mma.sync) or "-" (none)."""
    if "wgmma.mma_async" in ptx:
        return "wgmma"
    return "mma" if "mma.sync" in ptx else "-"


def _constexprs(kernel) -> str:
    """The kernel's upper-case constexprs (tile sizes, flags), e.g. "BLOCK=1024 HAS_BIAS=True"."""
    names = kernel.src.fn.arg_names
    shown = []
    for key, value in (getattr(kernel.src, "constants", None) or {}).items():
        name = names[key[0]] if isinstance(key, tuple) and len(key) == 1 else str(key)
        if name.isupper():
            shown.append(f"{name}={value}")
    return " ".join(shown)


def _resource_usage(cubin: bytes) -> tuple[int | None, int | None]:
    """(registers per thread, bytes of local memory: spills and stack) of the one kernel in `cubin`."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None, None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as fh:
        fh.write(cubin)
        fh.flush()
        text = subprocess.run([tool, "-res-usage", fh.name], capture_output=True, text=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", text)
    if not found:
        return None, None
    return int(found.group(1)), int(found.group(2)) + int(found.group(3))


@contextlib.contextmanager
def compile_only(arch: int, record: list, case: list):
    """Inside: Triton kernel launches compile for sm_`arch` and record a Compiled in `record` (each specialization
    once, named after the workload in case[0] when it first compiles); nothing runs."""
    import gankernels.triton as gtriton
    from gankernels import backend

    original_run = JITFunction.run
    seen: set[int] = set()

    def run(self, *args, grid, warmup, **kwargs):
        try:
            kernel = original_run(self, *args, grid=grid, warmup=True, **kwargs)
        except Exception as e:  # a compile error: record it and go on with the other kernels
            record.append(Compiled(self.fn.__name__, arch, case[0], error=f"{type(e).__name__}: {e}"[:2000]))
            return None
        if id(kernel) not in seen:
            seen.add(id(kernel))
            record.append(Compiled(self.fn.__name__, arch, case[0], kernel))
        return kernel

    saved = (backend._TRITON_INTERPRET, gtriton.COMPILE_FOR_GPU, driver._active)
    driver.set_active(_CompileOnlyDriver(arch))
    JITFunction.run = run
    backend._TRITON_INTERPRET = True  # let the triton backend take CPU tensors; the kernels stay compiled ones
    backend._UNAVAILABLE.clear()
    gtriton.COMPILE_FOR_GPU = True  # GPU launch configurations for the CPU tensors
    try:
        with backend.use_backend("triton"):
            yield
    finally:
        JITFunction.run = original_run
        backend._TRITON_INTERPRET, gtriton.COMPILE_FOR_GPU, previous_driver = saved
        backend._UNAVAILABLE.clear()
        driver.set_active(previous_driver)  # None when none was made yet: the next use makes the real one
        for fn in _jit_functions():  # the per-device caches hold the target; the next arch starts afresh
            fn.device_caches = defaultdict(fn.create_binder)


def _jit_functions():
    import importlib
    import pkgutil

    import gankernels.triton as gtriton

    for info in pkgutil.iter_modules(gtriton.__path__):
        module = importlib.import_module(f"gankernels.triton.{info.name}")
        yield from (v for v in vars(module).values() if isinstance(v, JITFunction))


# ----------------------------------------------------------------------------------------------------------------
# Workloads: the public ops as the models call them, with first and second derivatives.


def _leaves(*tensors):
    return [t.requires_grad_() for t in tensors if t is not None]


def _twice(out, inputs):
    """First and second derivatives of `out` with respect to `inputs`, as a penalty would take them."""
    g = torch.autograd.grad(out.float().square().sum(), inputs, create_graph=True, allow_unused=True)
    total = sum(t.float().square().sum() for t in g if t is not None)
    torch.autograd.grad(total, inputs, allow_unused=True)


def _fmt(x, channels_last):
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def bias_act_cases(dtypes, quick):
    from gankernels import ops

    for dtype in dtypes:
        for act in ("lrelu",) if quick else ("linear", "lrelu", "relu", "tanh", "sigmoid", "elu", "selu", "softplus",
                                             "swish"):  # fmt: skip
            for cl in (False, True):
                yield f"bias_act {act} {dtype} cl={cl}", _bias_act(ops, dtype, act, cl)


def _bias_act(ops, dtype, act, cl):
    def run():
        x = _fmt(torch.randn(4, 64, 16, 16, dtype=dtype), cl)
        b = torch.randn(64, dtype=dtype)
        _twice(ops.bias_act(*_leaves(x, b), act=act, clamp=256), [x, b])

    return run


def upfirdn2d_cases(dtypes, quick):
    from gankernels import ops

    f = ops.setup_filter([1, 3, 3, 1])
    for dtype in dtypes:
        for cl in (False, True):
            yield f"upsample2d {dtype} cl={cl}", _resample(ops.upsample2d, f, dtype, cl)
            yield f"downsample2d {dtype} cl={cl}", _resample(ops.downsample2d, f, dtype, cl)
            if not quick:
                yield f"filter2d {dtype} cl={cl}", _resample(ops.filter2d, f, dtype, cl)


def _resample(fn, f, dtype, cl):
    def run():
        x = _fmt(torch.randn(4, 32, 16, 16, dtype=dtype), cl)
        _twice(fn(*_leaves(x), f), [x])

    return run


def modulated_conv2d_cases(dtypes, quick):
    from gankernels import ops

    for dtype in dtypes:
        for fused in (True, False):
            for up in (1,) if quick else (1, 2):
                yield f"modulated_conv2d {dtype} fused_modconv={fused} up={up}", _modconv(ops, dtype, fused, up)


def _modconv(ops, dtype, fused, up):
    def run():
        x = torch.randn(4, 64, 16, 16, dtype=dtype)
        w = torch.randn(64, 64, 3, 3, dtype=dtype)
        s = torch.randn(4, 64, dtype=dtype)
        noise = torch.randn(4, 1, 16 * up, 16 * up, dtype=dtype)
        b = torch.randn(64, dtype=dtype)
        f = ops.setup_filter([1, 3, 3, 1]) if up > 1 else None
        y = ops.modulated_conv2d(*_leaves(x, w, s), noise=noise, up=up, padding=1, resample_filter=f,
                                 fused_modconv=fused, bias=_leaves(b)[0], act="lrelu", clamp=256)  # fmt: skip
        _twice(y, [x, w, s, b])

    return run


def fused_conv2d_cases(dtypes, quick):
    from gankernels import ops

    for dtype in dtypes:
        for mode in ("zeros", "reflect"):
            for k in (3,) if quick else (1, 3, 7):
                for cl in (False,) if quick else (False, True):
                    yield f"fused_conv2d {dtype} k={k} {mode} cl={cl}", _fused_conv(ops, dtype, k, mode, cl)


def _fused_conv(ops, dtype, k, mode, cl):
    def run():
        x = _fmt(torch.randn(4, 64, 32, 32, dtype=dtype), cl)
        w = torch.randn(128, 64, k, k, dtype=dtype)
        if mode == "reflect":  # CycleGAN's conv: bias only
            y = ops.fused_conv2d(*_leaves(x, w), padding_mode=mode, bias=torch.randn(128, dtype=dtype))
        else:  # StyleGAN2's layer
            s, d = torch.randn(4, 64, dtype=dtype), torch.randn(4, 128, dtype=dtype)
            x, w, s, d = _leaves(x, w, s, d)
            noise = torch.randn(4, 1, 32, 32, dtype=dtype)
            y = ops.fused_conv2d(x, w, in_scale=s, out_scale=d, noise=noise, act="lrelu", clamp=256.0)
        y.float().sum().backward()

    return run


def instance_norm_cases(dtypes, quick):
    from gankernels import ops

    for dtype in dtypes:
        for cl in (False, True):
            yield f"instance_norm_act {dtype} cl={cl}", _instance_norm(ops, dtype, cl)


def _instance_norm(ops, dtype, cl):
    def run():
        x = _fmt(torch.randn(2, 64, 32, 32, dtype=dtype), cl)
        r = _fmt(torch.randn(2, 64, 32, 32, dtype=dtype), cl)
        w, b = torch.randn(64, dtype=dtype), torch.randn(64, dtype=dtype)
        _twice(ops.instance_norm_act(*_leaves(x, w, b), act="relu", residual=_leaves(r)[0]), [x, w, b, r])

    return run


def penalty_cases(dtypes, quick):
    from gankernels import ops

    for dtype in dtypes:
        for size in (16, 128):  # one launch per sample; two (partial sums, then finish) above 8K elements
            yield f"wgan_gp {dtype} {size}x{size}", _penalty(ops, dtype, size)


def _penalty(ops, dtype, size):
    def run():
        real = torch.randn(4, 3, size, size, dtype=dtype)
        fake = torch.randn(4, 3, size, size, dtype=dtype)
        w = torch.randn(1, 3, 3, 3, dtype=dtype, requires_grad=True)

        def critic(x):
            return ops.conv2d(x, w, padding=1).flatten(1).sum(1)

        ops.wgan_gp_penalty(critic, real, fake).backward()

    return run


def minibatch_std_cases(dtypes, quick):
    from gankernels import ops

    for dtype in dtypes:
        for cl in (False, True):
            yield f"minibatch_std {dtype} cl={cl}", _mbstd(ops, dtype, cl)


def _mbstd(ops, dtype, cl):
    def run():
        x = _fmt(torch.randn(8, 64, 4, 4, dtype=dtype), cl)
        _twice(ops.minibatch_std(*_leaves(x), group_size=4), [x])

    return run


def grid_sample_cases(dtypes, quick):
    from gankernels import ops

    for dtype in (*dtypes, torch.float64):  # fp64 too: its kernels take a float64 path of their own
        for cl in (False, True):
            for padding in ("zeros",) if quick else ("zeros", "border", "reflection"):
                for align in (False,) if quick else (False, True):
                    name = f"grid_sample {dtype} cl={cl} {padding} align_corners={align}"
                    yield name, _grid_sample(ops, dtype, cl, padding, align)


def _grid_sample(ops, dtype, cl, padding, align):
    def run():
        x = _fmt(torch.randn(4, 32, 16, 16, dtype=dtype), cl)
        grid = (torch.rand(4, 16, 16, 2) * 2.2 - 1.1).to(dtype)
        _twice(ops.grid_sample(*_leaves(x, grid), padding_mode=padding, align_corners=align), [x, grid])

    return run


WORKLOADS = {
    "bias_act": bias_act_cases,
    "upfirdn2d": upfirdn2d_cases,
    "modulated_conv2d": modulated_conv2d_cases,
    "fused_conv2d": fused_conv2d_cases,
    "instance_norm": instance_norm_cases,
    "penalties": penalty_cases,
    "minibatch_std": minibatch_std_cases,
    "grid_sample": grid_sample_cases,
}
WORKLOAD = "(workload)"  # the name of a failure outside Triton's compiler
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check(arches, ops=None, quick=False, log=print) -> list[Compiled]:
    """Compile the workloads of `ops` (default: all) for each arch; every Compiled, failures included."""
    record: list[Compiled] = []
    for arch in arches:
        case = [""]  # the workload that launches: named in what it records
        with compile_only(arch, record, case):  # one context per arch: each specialization compiles (and counts) once
            for op in ops or WORKLOADS:
                for name, workload in WORKLOADS[op](DTYPES, quick):
                    case[0] = name
                    start, before = time.perf_counter(), len(record)
                    try:
                        workload()
                    except Exception as e:  # the op itself failed around the launches (not a compile error)
                        record.append(Compiled(WORKLOAD, arch, name, error=f"{type(e).__name__}: {e}"[:2000]))
                    log(f"sm_{arch} {name}: {len(record) - before} new kernels, {time.perf_counter() - start:.1f} s")
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="80,90", help="comma-separated compute capabilities (default 80,90)")
    parser.add_argument("--op", default=None, help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--quick", action="store_true", help="fewer variants per op")
    parser.add_argument("--json", default=None, help="write every compiled kernel's resources to this file")
    args = parser.parse_args(argv)
    try:
        arches = [int(a) for a in args.arch.split(",")]
    except ValueError:
        parser.error(f"--arch must be comma-separated integers such as 80,90, got {args.arch!r}")
    ops = args.op.split(",") if args.op else None
    unknown = [o for o in ops or () if o not in WORKLOADS]
    if unknown:
        parser.error(f"--op: unknown {unknown}; expected some of {list(WORKLOADS)}")
    start = time.perf_counter()
    record = check(arches, ops, args.quick, log=lambda s: print(s, flush=True))
    rows: dict[tuple, int] = {}  # identical resources and constexprs (dtypes aside) are shown once, with a count
    for c in record:
        if not c.error:
            key = (c.name, c.arch, c.warps, c.stages, c.shared, c.regs, c.spill, c.mma, c.consts)
            rows[key] = rows.get(key, 0) + 1
    head = ("kernel", "arch", "warps", "stg", "smem", "regs", "spill", "mma", "n")
    print("\n{:30} {:>4} {:>5} {:>3} {:>6} {:>4} {:>5} {:>5} {:>3}  constexprs".format(*head))
    for (name, arch, warps, stages, shared, regs, spill, mma, consts), n in sorted(rows.items(), key=str):
        row = (name, arch, warps, stages, shared, str(regs), str(spill), mma, n)
        print("{:30} {:>4} {:>5} {:>3} {:>6} {:>4} {:>5} {:>5} {:>3}  ".format(*row) + consts)
    problems = [(c, p) for c in record for p in c.problems()]
    for c, p in problems:
        print(f"FAIL sm_{c.arch} {c.name} ({c.case}): {p}")
    spills = sorted({(c.name, c.arch) for c in record if c.spill})
    if spills:
        print("spilling (local memory): " + ", ".join(f"{n} sm_{a}" for n, a in spills))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([c.row() for c in record], fh, indent=1)
    compiled = sum(1 for c in record if not c.error)
    print(f"{compiled} kernel specializations compiled for sm_{', sm_'.join(map(str, arches))} in "
          f"{time.perf_counter() - start:.0f} s; {len(problems)} problems")  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
