"""The ADA augmentation pipeline (gankernels.bench.augment): AugmentPipe bgc forward, and forward + R1's double
backward, ours vs eager PyTorch (the `ref` backend) vs torch.compile. With --benchmark-disable (CI): one call of
each at [2, 3, 16, 16]."""

import torch

from gankernels.bench.models import run_benchmark

OP = "augment"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_medians: dict = {}  # (case, impl) -> ms, for the ratios


def test_augment(bench_item, benchmark):
    case, impl = bench_item
    run_benchmark(benchmark, case, impl, DEVICE, _medians)
