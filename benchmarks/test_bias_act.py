"""bias_act: lrelu + bias + clamp, forward and forward+backward, every backend vs eager and torch.compile."""

OP = "bias_act"


def test_bias_act(bench_item, run_bench):
    run_bench(bench_item)
