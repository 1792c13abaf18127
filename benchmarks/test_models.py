"""Whole training iterations per model (gankernels.bench.models): StyleGAN2 (the mean over one 16-iteration cycle
of its lazy R1 / path-length phases), DCGAN, WGAN-GP (5 critic steps), CycleGAN; ours vs eager PyTorch (the `ref`
backend) vs torch.compile, each on its own fresh task. With --benchmark-disable (CI): one iteration of each at the
tiniest sizes, torch.compile on its aot_eager backend."""

import torch

from gankernels.bench.models import run_benchmark

OP = "models"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_medians: dict = {}  # (case, impl) -> ms per iteration, for the ratios


def test_models(bench_item, benchmark):
    case, impl = bench_item
    run_benchmark(benchmark, case, impl, DEVICE, _medians)
