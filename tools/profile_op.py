"""Where the time goes in one op's forward+backward on CUDA: host time per iteration (enqueue only), device time
per iteration, and the kernels by device time (torch.profiler). Usage: python tools/profile_op.py (says so and exits 0
without a CUDA device)"""

import time

import torch
from torch.profiler import ProfilerActivity, profile

import gankernels
from gankernels.ops import bias_act, setup_filter, upsample2d
from gankernels.reference import bias_act as ref


def bias_act_case(shape, dtype, fmt):
    x = torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=fmt).requires_grad_()
    b = torch.randn(shape[1], device="cuda", dtype=dtype, requires_grad=True)
    dy = torch.randn_like(x)
    ours = lambda: torch.autograd.grad(bias_act(x, b, act="lrelu", clamp=256.0), (x, b), dy)  # noqa: E731
    eager = lambda: torch.autograd.grad(ref.bias_act(x, b, 1, "lrelu", 0.2, 2**0.5, 256.0), (x, b), dy)  # noqa: E731
    return {"ours": ours, "eager": eager}


def upsample_case(shape, dtype, fmt):
    x = torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
    f = setup_filter([1, 3, 3, 1], device="cuda")
    return {"ours": lambda: upsample2d(x, f)}


def report(name, fn):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t0) / n * 1e3
    torch.cuda.synchronize()
    total = (time.perf_counter() - t0) / n * 1e3
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
    print(f"\n== {name}: host enqueue {host:.3f} ms/iter, wall {total:.3f} ms/iter")
    rows = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:8]
    for e in rows:
        print(f"  {e.device_time_total / 5 / 1e3:8.3f} ms/iter  {e.count // 5:3d}x  {e.key[:90]}")


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        raise SystemExit(0)
    for shape, dtype, fmt in [
        ((8, 64, 256, 256), torch.float32, torch.contiguous_format),
        ((32, 512, 32, 32), torch.float32, torch.contiguous_format),
        ((32, 512, 32, 32), torch.float16, torch.channels_last),
    ]:
        for impl, fn in bias_act_case(shape, dtype, fmt).items():
            report(f"bias_act fwd+bwd {impl} {list(shape)} {dtype} {fmt}", fn)
    for backend in ("cuda", "triton"):
        with gankernels.use_backend(backend):
            report(
                f"upsample2d {backend} [32,512,16,16] fp32",
                upsample_case((32, 512, 16, 16), torch.float32, torch.contiguous_format)["ours"],
            )
