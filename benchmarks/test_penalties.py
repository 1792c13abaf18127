"""Gradient-penalty critic steps (gankernels.bench.penalties): WGAN-GP's ResNet critic with wgan_gp_penalty and
StyleGAN2's D with R1, each a full step (forwards, the penalty's double backward, Adam); ours vs eager PyTorch (the
`ref` backend) vs torch.compile (D compiled where its input gradient is not differentiated again). With
--benchmark-disable (CI): one step of each at the tiniest sizes, torch.compile on its aot_eager backend."""

import torch

from gankernels.bench.models import run_benchmark

OP = "penalties"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_medians: dict = {}  # (case, impl) -> ms, for the ratios


def test_penalties(bench_item, benchmark):
    case, impl = bench_item
    run_benchmark(benchmark, case, impl, DEVICE, _medians)
