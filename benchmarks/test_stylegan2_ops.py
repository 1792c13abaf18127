"""StyleGAN2's fused epilogue and minibatch std: ours vs eager and torch.compile; GPU shapes on CUDA, the quick cases
on CPU."""

OP = "stylegan2_ops"


def test_stylegan2_ops(bench_item, run_bench):
    run_bench(bench_item)
