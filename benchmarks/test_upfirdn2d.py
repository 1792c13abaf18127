"""upfirdn2d: upsample2d / downsample2d / filter2d with the 4-tap filter, every backend vs eager and torch.compile."""

OP = "upfirdn2d"


def test_upfirdn2d(bench_item, run_bench):
    run_bench(bench_item)
