"""The training loop shared by every model: steps, progress, sample grids, atomic checkpoints, resume, DDP.

A model plugs in as a `Task` subclass (stylegan2.py, dcgan.py, ...): it builds its networks and optimizers from a
config dict, runs one training iteration in `step`, and (de)serialises its state. `train` does the rest.

Exact resume: the global RNGs are re-seeded from (seed, rank, step) at the start of every step, so step k draws the
same random numbers whether the run was interrupted before it or not, and a checkpoint needs no RNG state. The
data streams, optimizers, EMA and counters are in the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

from . import distributed
from .checkpoint import atomic_write, load_checkpoint, save_checkpoint
from .images import save_image_grid
from .progress import Progress, scalars

CHECKPOINT = "checkpoint.pt"
FORMAT = "gankernels-training-checkpoint"
VERSION = 1


class Task:
    """One model's training. Subclasses set `name`, `defaults` (config key -> default value) and implement the
    methods below. `config` holds every key of `defaults` plus the common ones: resolution, batch, seed, data."""

    name = ""
    defaults: dict = {}
    default_resolution = 64
    default_batch = 16

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Model-specific command-line options; their dest names must be keys of `defaults`."""

    @classmethod
    def check_config(cls, config: dict) -> None:
        """Raise ValueError naming a bad option."""

    def __init__(self, config: dict, device: torch.device, dist: distributed.DistInfo, training: bool = True):
        """training=False (sampling, export): build the networks only, no optimizers or data;
        load_state_dict then loads the networks only."""
        self.config = config
        self.device = device
        self.dist = dist
        self.training = training
        self.total_steps = None  # set by train() before the first step (learning-rate schedules)

    @property
    def images_per_step(self) -> int:
        """Real images shown per training iteration, over all ranks (for kimg)."""
        return self.config["batch"]

    def step(self, step: int) -> dict:
        """One training iteration; returns the losses to show, as detached 0-d tensors (or numbers): no host sync.
        The loop reads them (progress.scalars) only when it prints or writes them."""
        raise NotImplementedError

    def optimizer_step(self, opt, nets, loss) -> None:
        """Backpropagate `loss`, average the gradients of `nets` (a module or a list) across ranks, step `opt`."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nets = nets if isinstance(nets, (list, tuple)) else [nets]
        distributed.average_gradients([p for net in nets for p in net.parameters()], self.dist)
        opt.step()

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def sample_grid(self, seeds=None, **kwargs) -> tuple[torch.Tensor, int]:
        """Images [N, C, H, W] in [-1, 1] for a grid, and its number of columns."""
        raise NotImplementedError

    def networks(self) -> dict:
        """The networks a user may export, by name (e.g. {"G": ..., "D": ..., "G_ema": ...})."""
        raise NotImplementedError

    def eval_images(self, count: int, batch: int = 64, seed: int = 0, **kwargs):
        """`count` images of the evaluated generator for metrics (gankernels.metrics): an iterator of float
        [B, C, R, R] in [-1, 1] on self.device, B <= batch, from latents seeded by `seed`. kwargs: model options
        (StyleGAN2: truncation_psi)."""
        raise NotImplementedError

    def eval_reals(self, data=None):
        """The real images the metrics compare with (a Dataset of float [C, R, R] in [-1, 1]): the training data,
        or the folder `data`."""
        from .data import open_dataset

        data = self.config.get("data") if data is None else data
        return open_dataset(data, self.config["resolution"], channels=self.config.get("channels", 3))


def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7919 + step) % (2**63 - 1)


def seed_step(seed: int, rank: int, step: int) -> None:
    torch.manual_seed(step_seed(seed, rank, step))


def batch_per_rank(batch: int, dist: distributed.DistInfo) -> int:
    if batch % dist.world_size:
        raise ValueError(f"batch={batch} must be a multiple of the number of processes ({dist.world_size})")
    return batch // dist.world_size


def total_steps(task: Task, steps: int | None, kimg: float | None) -> int:
    if (steps is None) == (kimg is None):
        raise ValueError("give exactly one of steps and kimg")
    if steps is not None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return steps
    if kimg <= 0:
        raise ValueError(f"kimg must be positive, got {kimg}")
    return max(1, math.ceil(kimg * 1000 / task.images_per_step))


def _checkpoint_state(task: Task, step: int, nimg: int, total: int) -> dict:
    return {"format": FORMAT, "version": VERSION, "model": task.name, "config": task.config, "step": step,
            "nimg": nimg, "total_steps": total, "task": task.state_dict()}  # fmt: skip


def read_run(run_dir) -> dict:
    """The checkpoint of a run directory (or a checkpoint file), checked to be one of ours."""
    path = os.fspath(run_dir)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT)
    state = load_checkpoint(path)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gankernels training checkpoint")
    if state.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {state.get('version')}; this gankernels reads {VERSION}")
    return state


def restore_task(state: dict, device: torch.device) -> Task:
    """Rebuild a task's networks (training=False) from a checkpoint's config and load their weights."""
    from . import registry

    task = registry.get(state["model"])(dict(state["config"]), device, distributed.DistInfo(), training=False)
    task.load_state_dict(state["task"])
    return task


def train(task_cls, config: dict, out: str, *, steps=None, kimg=None, resume=False, snap=None, device=None,
          log_every=10.0, quiet=False, metrics=None) -> dict:  # fmt: skip
    """Train `task_cls` with `config` into directory `out`; returns {"step", "nimg", "sec_per_kimg", ...}.

    snap: steps between sample grids + checkpoints (default: about 10 per run). resume: continue from
    out/checkpoint.pt (its config wins; steps/kimg may extend the run). Without resume an existing checkpoint in out
    is an error, never overwritten. Under torchrun every rank calls this; rank 0 writes the files.
    metrics: names ("fid10k,kid2k") or a gankernels.metrics.evaluate.SnapshotEvaluator, evaluated at every snapshot
    into out/metric-<name>.jsonl and the progress line; out/curves.png is redrawn at every snapshot.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dist = distributed.init_from_env(device.type)
    if device.type == "cuda" and dist.world_size > 1:
        device = torch.device("cuda", dist.local_rank)
    ckpt_path = os.path.join(out, CHECKPOINT)
    state = None
    if resume:
        state = read_run(out)
        if state["model"] != task_cls.name:
            raise ValueError(f"{out} holds a {state['model']} run, not {task_cls.name}")
        config = dict(state["config"])
    elif os.path.exists(ckpt_path):
        raise ValueError(f"{out} already holds a checkpoint; pass --resume to continue it, or choose another --out")
    task_cls.check_config(config)
    torch.manual_seed(config["seed"])  # the initial weights (rank 0's are broadcast to the others)
    task = task_cls(config, device, dist)
    start, nimg = 0, 0
    if state is not None:
        task.load_state_dict(state["task"])
        start, nimg = state["step"], state["nimg"]
        if steps is None and kimg is None:
            steps = state["total_steps"]
    total = total_steps(task, steps, kimg)
    task.total_steps = total
    snap = snap or max(1, total // 10)
    if dist.is_main:
        os.makedirs(out, exist_ok=True)
        atomic_write(os.path.join(out, "config.json"), lambda f: f.write(json.dumps(
            {"model": task.name, **config}, indent=2, sort_keys=True).encode()))  # fmt: skip
    evaluator = _snapshot_metrics(metrics, device) if dist.is_main else None
    progress = Progress(total, start, every=log_every, enabled=dist.is_main and not quiet)
    if start >= total:
        progress.log(f"{out}: already at step {start} of {total}; nothing to do")
    stats_path = os.path.join(out, "stats.jsonl")
    t_start = time.perf_counter()
    stats = {}
    for step in range(start, total):
        seed_step(config["seed"], dist.rank, step)
        stats = task.step(step)
        nimg += task.images_per_step
        progress.update(step + 1, nimg, {**stats, **(evaluator.latest if evaluator else {})})
        if (step + 1) % snap == 0 or step + 1 == total:
            if dist.is_main:
                _snapshot(task, out, step + 1, nimg, total, stats, progress, stats_path, evaluator)
    stats = scalars(stats)  # waits for the last step's device work, so that the time includes it
    elapsed = time.perf_counter() - t_start
    progress.close()
    shown = nimg - (state["nimg"] if state else 0)
    result = {"step": max(start, total), "nimg": nimg, "seconds": elapsed,
              "sec_per_kimg": elapsed / (shown / 1000) if shown else None, "stats": stats}  # fmt: skip
    if dist.world_size > 1:
        result["ranks_in_sync"] = _ranks_in_sync(task, dist)
    return result


def _snapshot_metrics(metrics, device):
    """The snapshot metrics' evaluator, its feature network loaded now (a missing one fails before training)."""
    if not metrics:
        return None
    from ..metrics.evaluate import SnapshotEvaluator

    evaluator = metrics if isinstance(metrics, SnapshotEvaluator) else SnapshotEvaluator(metrics)
    evaluator.load(device)
    return evaluator


def _snapshot(task, out, step, nimg, total, stats, progress, stats_path, evaluator=None):
    images, cols = task.sample_grid()
    grid = os.path.join(out, f"fakes{step:06d}.png")
    save_image_grid(images, grid, cols=cols)
    save_checkpoint(_checkpoint_state(task, step, nimg, total), os.path.join(out, CHECKPOINT))
    line = json.dumps({"step": step, "kimg": nimg / 1000, "time": time.time(), **scalars(stats)})
    with open(stats_path, "a") as f:
        f.write(line + "\n")
    progress.log(f"step {step}: wrote {grid} and {os.path.join(out, CHECKPOINT)}")
    if evaluator is not None:
        values = evaluator(task, out, step, nimg)
        progress.log(f"step {step}: " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))
    from .plots import write_curves

    write_curves(out)


def _ranks_in_sync(task, dist) -> bool:
    sums = torch.tensor([distributed.module_checksum(m) for m in task.networks().values()], dtype=torch.float64)
    gathered = [torch.zeros_like(sums) for _ in range(dist.world_size)]
    torch.distributed.all_gather(gathered, sums)
    return all(torch.equal(g, gathered[0]) for g in gathered)
