"""Run named metrics on an image source, report them as JSON lines, and evaluate at training snapshots.

An image source is anything with these two model-agnostic methods (every training Task has them; see
gankernels.training.loop.Task):
    source.eval_reals(data=None) -> Dataset of float [C, R, R] in [-1, 1]   (the images to compare with)
    source.eval_images(count, batch, seed, **kwargs) -> iterator of float [B, C, R, R] in [-1, 1]
`evaluate` extracts the reals' features once for the largest number any metric needs (cached on disk, see
features.py) and the generated images' once for the largest count, then computes each metric on the leading rows.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

from .distances import fid, kid, precision_recall
from .extractor import load_inception, load_vgg16
from .features import dataset_features, generated_features
from .names import MetricSpec, parse_metrics

KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # NVlabs' kid50k(_full)
PR_BATCH = 10000  # NVlabs' row / column batch size


class ProgressBar:
    """A one-line progress bar on stderr: redrawn in place on a terminal, a line every `every` seconds elsewhere."""

    def __init__(self, stream=None, every: float = 10.0, width: int = 30):
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every, self.width = every, width
        self.last, self.t0, self.drawn = float("-inf"), time.perf_counter(), False

    def __call__(self, done: int, total: int, what: str) -> None:
        now = time.perf_counter()
        if not self.tty and now - self.last < self.every and done < total:
            return
        self.last = now
        filled = int(self.width * done / max(total, 1))
        line = f"{what:<24} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}  {now - self.t0:.0f}s"
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if done >= total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _specs(metrics) -> list[MetricSpec]:
    if isinstance(metrics, MetricSpec):
        return [metrics]
    if isinstance(metrics, (list, tuple)) and metrics and all(isinstance(m, MetricSpec) for m in metrics):
        return list(metrics)
    return parse_metrics(metrics)


def compute(spec: MetricSpec, real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> dict:
    """One metric on real [N_r, D] and fake [N_f, D] features (already cut to the metric's counts) -> results."""
    if spec.kind == "fid":
        return {spec.name: fid(real, fake)}
    if spec.kind == "kid":
        return {spec.name: kid(real, fake, num_subsets=KID_SUBSETS, max_subset_size=KID_SUBSET_SIZE, seed=seed)}
    precision, recall = precision_recall(real, fake, k=spec.k, batch_size=PR_BATCH)
    return {f"{spec.name}_precision": precision, f"{spec.name}_recall": recall}


def evaluate(source, metrics, extractor, *, data=None, batch: int = 64, seed: int = 0, cache=True, progress=None,
             pr_extractor=None, **generate_kwargs) -> list[dict]:  # fmt: skip
    """Evaluate `metrics` (names, "fid10k,kid2k", or MetricSpecs) on `source` (see the module docstring) with
    `extractor` (a FeatureExtractor; precision / recall with `pr_extractor` when given, e.g. load_vgg16()).
    data: another real-image folder than the source's own. generate_kwargs go to source.eval_images (StyleGAN2:
    truncation_psi). -> one dict per metric: {"metric", "results", "num_real", "num_gen", "seconds",
    "feature_network"}."""
    specs = _specs(metrics)
    t0 = time.perf_counter()
    reals = source.eval_reals(data)
    network_of = {s.name: pr_extractor if s.kind == "pr" and pr_extractor is not None else extractor for s in specs}
    networks = []
    for net in network_of.values():
        if not any(net is other for other in networks):
            networks.append(net)
    # made first: the generator's arguments are checked before any feature is extracted; it runs in the loop below
    images = source.eval_images(max(s.num_gen for s in specs), batch=batch, seed=seed, **generate_kwargs)
    real = []
    for net in networks:
        uses = [s for s in specs if network_of[s.name] is net]
        need = max(len(reals) if s.max_real is None else min(s.max_real, len(reals)) for s in uses)
        real.append(dataset_features(reals, net, need, batch=batch, cache=cache, progress=progress))
    fake = generated_features(images, networks, max(s.num_gen for s in specs), progress=progress)
    results = []
    for spec in specs:
        i = next(j for j, net in enumerate(networks) if net is network_of[spec.name])
        r = real[i].to(fake[i].device)
        r = r if spec.max_real is None else r[: spec.max_real]
        f = fake[i][: spec.num_gen]
        values = compute(spec, r, f, seed=seed)
        results.append({"metric": spec.name, "results": values, "num_real": int(r.shape[0]),
                        "num_gen": int(f.shape[0]), "seconds": round(time.perf_counter() - t0, 3),
                        "feature_network": networks[i].identity})  # fmt: skip
    return results


def append_jsonl(run_dir, result: dict, **extra) -> str:
    """Append one metric's result (with `extra` fields, e.g. step and kimg) to RUN/metric-<name>.jsonl."""
    path = os.path.join(os.fspath(run_dir), f"metric-{result['metric']}.jsonl")
    with open(path, "a") as f:
        f.write(json.dumps({**result, **extra, "timestamp": time.time()}) + "\n")
    return path


class SnapshotEvaluator:
    """The metrics of a training run, evaluated at every snapshot on the task's evaluation generator (G_ema for
    StyleGAN2, G for DCGAN / WGAN-GP, G_A for CycleGAN).

    metrics: names ("fid10k,kid2k") or a list. inception: a TorchScript file (default: load_inception's search).
    pr_network: VGG16 for precision / recall (default: load_vgg16's search, else Inception).
    load(device) loads the feature networks (call it before training, so that a missing network fails at once);
    evaluator(task, out, step, nimg) evaluates, appends RUN/metric-<name>.jsonl and returns {key: value}.
    """

    def __init__(self, metrics, inception=None, extractor=None, batch: int = 64, seed: int = 0, cache=True,
                 pr_network=None):  # fmt: skip
        self.specs = _specs(metrics)
        self.inception, self.extractor, self.pr_network, self.pr_extractor = inception, extractor, pr_network, None
        self.batch, self.seed, self.cache = batch, seed, cache
        self.latest: dict = {}

    def load(self, device) -> None:
        if self.extractor is None:
            self.extractor = load_inception(self.inception, device=device)
            if any(s.kind == "pr" for s in self.specs):
                self.pr_extractor = load_vgg16(self.pr_network, device=device)

    def __call__(self, task, out, step: int, nimg: int) -> dict:
        self.load(task.device)
        results = evaluate(task, self.specs, self.extractor, batch=self.batch, seed=self.seed, cache=self.cache,
                           pr_extractor=self.pr_extractor)  # fmt: skip
        for result in results:
            append_jsonl(out, result, step=step, kimg=nimg / 1000)
            self.latest.update(result["results"])
        return dict(self.latest)
