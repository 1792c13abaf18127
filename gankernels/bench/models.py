"""Whole training iterations, one case per model, built through the training tasks (gankernels.training).

A case runs `task.step(i)` for consecutive i, each seeded as training.loop.train seeds it, on a task built from a
config (the task's defaults plus the case's sizes). Implementations, each on a fresh task: "ours" (the automatic
backend choice), "eager" (the same iterations under the `ref` backend: plain PyTorch) and "compile" (the `ref`
iterations with torch.compile applied to the networks' forward passes that are differentiated at most once:
AOTAutograd has no double backward, so the calls whose input gradient a penalty differentiates again stay eager;
each case names what it compiles).

- Data loading is outside the measurement: the task's batch streams are replaced by two pre-drawn batches on the
  device, replayed (the built-in dataset draws its images on the host, which is not what is compared here).
- StyleGAN2 alternates four phase mixes (R1 every 16 iterations, path length every 4): one timed call runs 16
  consecutive iterations, starting at a multiple of 16, so the reported time per iteration is the mean over one
  whole cycle (1 R1 step and 4 path-length steps per 16 iterations, as in training). sec/kimg = ms per iteration /
  images per iteration (kimg counts the real images D sees: batch, or batch * n_critic for WGAN-GP).
- These steps are compute-bound: no bytes are reported (bytes=0), only time, speedups, sec/kimg and, on CUDA, the
  peak memory allocated during the run.
- torch.compile (`compile_backend`): Inductor on CUDA. On CPU it is n/a unless GANKERNELS_BENCH_CPU_COMPILE=1:
  Inductor's cold compile of one model's training graphs takes one to two minutes on 2 cores, beyond this
  benchmark's budget. With quick sizes (the CI smoke test) it uses the aot_eager backend: Dynamo and AOTAutograd
  (graph capture, the eager routing of the double-backward calls) without Inductor's code generation.
"""

from __future__ import annotations

import os

import torch

from .. import backend as _backend
from ..training import distributed, registry
from ..training.data import BatchStream
from ..training.loop import seed_step
from . import AUTO, Case, implementations, time_fn

STYLEGAN2_CYCLE = 16  # R1 interval; a multiple of the path-length interval (4)

# (label, model, config overrides, iterations per timed call) per size class. Overrides go on the task's defaults.
# StyleGAN2 without augmentation (its default is --aug ada), and with the bgc pipe at a fixed p = 0.6 (nearly every
# image geometrically transformed): the difference is ADA's cost per iteration.
NOAUG, ADA = dict(aug="noaug"), dict(aug="fixed", augpipe="bgc", p=0.6)
_SG2_GPU = dict(resolution=256, batch=32)
GPU = [
    ("stylegan2 256x256 b32 (16-iter R1/PL cycle)", "stylegan2", {**_SG2_GPU, **NOAUG}, STYLEGAN2_CYCLE),
    ("stylegan2 256x256 b32 ADA bgc p=0.6 (16-iter cycle)", "stylegan2", {**_SG2_GPU, **ADA}, STYLEGAN2_CYCLE),
    ("dcgan 64x64 b128", "dcgan", dict(resolution=64, batch=128), 1),
    ("wgan-gp resnet 32x32 b64, 5 critic steps", "wgan-gp", dict(resolution=32, batch=64), 1),
    ("cyclegan 256x256 b1 (9 blocks)", "cyclegan", dict(resolution=256, batch=1), 1),
    ("cyclegan 128x128 b8 (6 blocks)", "cyclegan", dict(resolution=128, batch=8), 1),
]
_SG2_CPU = dict(resolution=32, batch=4, cbase=2048, cmax=64, z_dim=64, w_dim=64)
CPU = [
    ("stylegan2 32x32 b4 c64 (16-iter R1/PL cycle)", "stylegan2", {**_SG2_CPU, **NOAUG}, STYLEGAN2_CYCLE),
    ("stylegan2 32x32 b4 c64 ADA bgc p=0.6 (16-iter cycle)", "stylegan2", {**_SG2_CPU, **ADA}, STYLEGAN2_CYCLE),
    ("dcgan 32x32 b16 w16", "dcgan", dict(resolution=32, batch=16, ngf=16, ndf=16), 1),
    ("wgan-gp resnet 32x32 b8 w32, 5 critic steps", "wgan-gp", dict(resolution=32, batch=8, width=32), 1),
    ("cyclegan 64x64 b1 w16 (6 blocks)", "cyclegan", dict(resolution=64, batch=1, ngf=16, ndf=16), 1),
    ("cyclegan 32x32 b4 w16 (6 blocks)", "cyclegan", dict(resolution=32, batch=4, ngf=16, ndf=16), 1),
]
_SG2_QUICK = dict(resolution=8, batch=2, cbase=128, cmax=16, z_dim=16, w_dim=16)
_WGAN_QUICK = dict(resolution=8, batch=2, z_dim=8, width=8, n_critic=2)
QUICK = [  # iteration 0 runs every phase, R1 and path length included
    ("stylegan2 8x8 b2 c16 (iteration 0: all phases)", "stylegan2", {**_SG2_QUICK, **NOAUG}, 1),
    ("stylegan2 8x8 b2 c16 ADA bgc p=0.6 (iteration 0)", "stylegan2", {**_SG2_QUICK, **ADA}, 1),
    ("dcgan 32x32 b2 w4", "dcgan", dict(resolution=32, batch=2, nz=8, ngf=4, ndf=4), 1),
    ("wgan-gp resnet 8x8 b2 w8, 2 critic steps", "wgan-gp", _WGAN_QUICK, 1),
    ("cyclegan 32x32 b1 w4 (1 block)", "cyclegan", dict(resolution=32, batch=1, ngf=4, ndf=4, n_blocks=1, pool=3), 1),
]

COMPILED_PARTS = {
    "stylegan2": "G.mapping; G.synthesis except in the path-length phase; D except in the R1 phase",
    "dcgan": "G and D",
    "wgan-gp": "G; D except in the gradient penalty",
    "cyclegan": "G_A, G_B, D_A, D_B",
}


class _Replay:
    """Stands in for a BatchStream: the same few batches, already on the device, in turn."""

    def __init__(self, stream: BatchStream, count: int = 2):
        self.batches = [stream.next() for _ in range(count)]
        self.i = 0

    def next(self) -> torch.Tensor:
        self.i += 1
        return self.batches[self.i % len(self.batches)]


CPU_COMPILE_ENV = "GANKERNELS_BENCH_CPU_COMPILE"


def compile_backend(device: torch.device, quick: bool) -> tuple[str | None, str]:
    """(the torch.compile backend for whole-step cases, or None when "compile" is n/a; the note or the reason)."""
    if quick:
        return "aot_eager", "quick: aot_eager backend (no Inductor codegen)"
    if device.type == "cpu" and os.environ.get(CPU_COMPILE_ENV) != "1":
        why = "not run on CPU: Inductor's cold compile takes up to 2 min per case on 2 cores"
        return None, f"{why}; {CPU_COMPILE_ENV}=1 runs it"
    return "inductor", ""


class TaskSteps:
    """A training task and its next iteration: calling it runs `iters` consecutive iterations."""

    def __init__(self, model: str, config: dict, device: torch.device, iters: int, backend: str = "inductor"):
        task_cls = registry.get(model)
        task_cls.check_config(config)
        torch.manual_seed(config["seed"])
        self.model, self.iters, self.next_step, self.backend = model, iters, 0, backend
        self.task = task_cls(dict(config), device, distributed.DistInfo())
        self.task.total_steps = 10**9  # CycleGAN's learning rate decays from halfway: constant here
        for name, value in list(vars(self.task).items()):
            if isinstance(value, BatchStream):
                setattr(self.task, name, _Replay(value))
        self.before_step = []  # callables(step), run before each iteration
        self.compiled = False

    def __call__(self):
        seed = self.task.config["seed"]
        for _ in range(self.iters):
            for hook in self.before_step:
                hook(self.next_step)
            seed_step(seed, 0, self.next_step)
            self.task.step(self.next_step)
            self.next_step += 1

    def compile(self) -> None:
        """Apply torch.compile to the task's networks (once), as COMPILED_PARTS says."""
        if not self.compiled:
            COMPILE[self.model](self)
            self.compiled = True


def compile_forward(module: torch.nn.Module, backend: str, eager_when=None) -> None:
    """Replace module.forward by its torch.compile (static shapes); calls for which eager_when(*args, **kwargs) is
    true run the original forward instead."""
    eager = module.forward
    compiled = torch.compile(eager, backend=backend, dynamic=False)
    if eager_when is None:
        module.forward = compiled
        return

    def forward(*args, **kwargs):
        return eager(*args, **kwargs) if eager_when(*args, **kwargs) else compiled(*args, **kwargs)

    module.forward = forward


def input_gradient_differentiated(x, *args, **kwargs) -> bool:
    """The penalties' calls: a leaf input requiring grad (x.detach().requires_grad_(True), WGAN-GP's x_hat, R1's
    reals), whose gradient is taken with create_graph=True and differentiated again."""
    return isinstance(x, torch.Tensor) and x.requires_grad and x.is_leaf


def _compile_stylegan2(steps: TaskSteps) -> None:
    task, backend = steps.task, steps.backend
    compile_forward(task.G.mapping, backend)  # differentiated once even in the path-length phase (d/dws stops at ws)
    # D: its calls in an iteration are Gmain, Dmain's fakes and reals, then R1 when due (the 4th). R1's input is a
    # leaf without augmentation, augment(leaf) with it: eager either way.
    d_plan = {"calls": 0, "r1": None}

    def r1_call(x, *args, **kwargs):
        d_plan["calls"] += 1
        return input_gradient_differentiated(x) or d_plan["calls"] - 1 == d_plan["r1"]

    compile_forward(task.D, backend, r1_call)
    # G.synthesis: its grad-enabled calls in an iteration are Gmain, then Greg (path length) when due; Greg's is
    # differentiated twice, so it stays eager. (No-grad calls, Dmain's fakes, are compiled.)
    plan = {"calls": 0, "eager": None}

    def before(step):
        plan["calls"] = 0
        plan["eager"] = 1 if task.config["pl_weight"] > 0 and task.g_reg.due(step) else None
        d_plan["calls"] = 0
        d_plan["r1"] = 3 if task.gamma > 0 and task.d_reg.due(step) else None

    def path_length_call(*args, **kwargs):
        if not torch.is_grad_enabled():
            return False
        plan["calls"] += 1
        return plan["calls"] - 1 == plan["eager"]

    compile_forward(task.G.synthesis, backend, path_length_call)
    steps.before_step.append(before)


def _compile_gan(steps: TaskSteps) -> None:
    compile_forward(steps.task.G, steps.backend)
    compile_forward(steps.task.D, steps.backend)


def _compile_wgan_gp(steps: TaskSteps) -> None:
    compile_forward(steps.task.G, steps.backend)
    compile_forward(steps.task.D, steps.backend, input_gradient_differentiated)


def _compile_cyclegan(steps: TaskSteps) -> None:
    for net in steps.task.nets.values():
        compile_forward(net, steps.backend)


COMPILE = {"stylegan2": _compile_stylegan2, "dcgan": _compile_gan, "wgan-gp": _compile_wgan_gp,
           "cyclegan": _compile_cyclegan}  # fmt: skip


def _run(steps: TaskSteps):
    steps()


def _compiled(steps: TaskSteps):
    steps.compile()
    steps()


def images_per_iteration(model: str, config: dict) -> int:
    return config["batch"] * (config["n_critic"] if model == "wgan-gp" else 1)


def cases(device: torch.device, quick: bool = False) -> list[Case]:
    table = QUICK if quick else GPU if device.type == "cuda" else CPU
    backend, note = compile_backend(device, quick)
    out = []
    for label, model, sizes, iters in table:
        config = {**registry.get(model).defaults, "seed": 0, "data": None, **sizes}
        if quick:
            warmup, reps = 0, 1
        elif iters > 1:  # one whole StyleGAN2 cycle per call: 1 warmup cycle
            warmup, reps = 1, 3 if device.type == "cuda" else 2
        else:
            warmup, reps = (3, 10) if device.type == "cuda" else (2, 9)

        def make(model=model, config=config, iters=iters):
            return (TaskSteps(model, config, device, iters, backend or "inductor"),)

        parts = COMPILED_PARTS[model] + (f" ({note})" if note else "")
        # CycleGAN also forced onto triton: its reflect-padded convs then run fused_conv2d (padding in the loads),
        # which the automatic choice does not pick until a GPU measurement shows it pays (issue 7)
        backends = (AUTO, "triton") if model == "cyclegan" else (AUTO,)
        out.append(Case("models", label, make, _run, None, bytes=0, backends=backends, stateful=True, iters=iters,
                        images=images_per_iteration(model, config), warmup=warmup, reps=reps,
                        compiled=_compiled if backend else None, compiled_parts=parts,
                        compile_na=None if backend else note))  # fmt: skip
    return out


def run_benchmark(benchmark, case: Case, impl: str, device: torch.device, medians: dict) -> None:
    """pytest-benchmark glue for whole-step cases (benchmarks/test_models.py, test_penalties.py): a fresh state for
    `impl`, then `case.reps` rounds of one call (one call when --benchmark-disable). On CUDA, unless disabled, the
    CUDA-event median per iteration, sec/kimg, the peak memory and the ratios to eager / compile (from `medians`, the
    earlier implementations of the same session) go to extra_info."""
    name, fn = implementations(case, device)[impl]
    with _backend.use_backend(name, strict=False):  # a whole model: ops without `name` kernels stay automatic
        inputs = case.make_inputs()
        warmup = case.warmup if case.warmup is not None else 3
        if device.type == "cuda" and not benchmark.disabled:
            torch.cuda.reset_peak_memory_stats(device)
            ms = time_fn(lambda: fn(*inputs), device, warmup, case.reps or 10) / case.iters
            medians[(case.name, impl)] = ms
            info = dict(median_ms_cuda_events=ms, iters_per_call=case.iters,
                        peak_mib=torch.cuda.max_memory_allocated(device) / 2**20)  # fmt: skip
            if case.images:
                info["sec_per_kimg"] = ms / case.images
            for other in ("eager", "compile"):
                info[f"vs_{other}"] = medians[(case.name, other)] / ms if (case.name, other) in medians else None
            if impl == "compile":
                info["compiled_parts"] = case.compiled_parts
            benchmark.extra_info.update(info)
            warmup = 0

        def call():
            fn(*inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        benchmark.pedantic(call, rounds=case.reps or 1, warmup_rounds=warmup, iterations=1)
