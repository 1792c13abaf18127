"""grid_sample: forward, forward+backward (ours vs torch's) and the R1 double backward (ours vs the reference path),
every backend vs eager and torch.compile."""

OP = "grid_sample"


def test_grid_sample(bench_item, run_bench):
    run_bench(bench_item)
