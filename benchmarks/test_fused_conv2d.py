"""fused_conv2d (StyleGAN2 modulated 3x3 layers, CycleGAN reflect-pad conv): the fused Triton kernel and the composed
path against eager and torch.compile, in TFLOP/s; GPU shapes on CUDA, the quick case on CPU."""

OP = "fused_conv2d"


def test_fused_conv2d(bench_item, run_bench):
    run_bench(bench_item)
