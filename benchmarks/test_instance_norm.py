"""instance_norm_act (CycleGAN's IN + ReLU and IN + residual): ours vs eager and torch.compile; GPU shapes on CUDA,
CycleGAN's 64x64 trunk on CPU (the quick case with --benchmark-disable)."""

OP = "instance_norm"


def test_instance_norm(bench_item, run_bench):
    run_bench(bench_item)
