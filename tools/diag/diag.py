"""Host-time diagnosis of bias_act's backward on CUDA: is it our Python, or the hand-off to autograd's device
thread? Compares host enqueue time per iteration of several ways to run the same work."""

import sys
import threading
import time

import torch

from gankernels.ops import bias_act


class Double(torch.autograd.Function):  # a trivial Python backward, to price the framework's own hand-off
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


def host_ms(fn, n=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t) / n * 1e3
    torch.cuda.synchronize()
    return host, (time.perf_counter() - t) / n * 1e3


x = torch.randn(8, 64, 256, 256, device="cuda").requires_grad_()
b = torch.randn(64, device="cuda", requires_grad=True)
dy = torch.randn_like(x)
with torch.no_grad():
    y = bias_act(x, b, act="lrelu", clamp=256.0)
op = torch.ops.gankernels.bias_act_grad_db
cases = {
    "autograd fwd+bwd": lambda: torch.autograd.grad(bias_act(x, b, act="lrelu", clamp=256.0), (x, b), dy),
    "fwd only": lambda: bias_act(x, b, act="lrelu", clamp=256.0),
    "grad op called directly": lambda: op(dy, None, None, y, 1, "lrelu", 0.2, 2**0.5, 256.0, "cuda"),
    "trivial Function fwd+bwd": lambda: torch.autograd.grad(Double.apply(x), x, dy),
    "eager x*2 fwd+bwd": lambda: torch.autograd.grad(x * 2, x, dy),
}
print(f"switch interval {sys.getswitchinterval()}, threads {threading.active_count()}")
for name, fn in cases.items():
    h, w = host_ms(fn)
    print(f"{name:<28} host {h:.3f} ms/iter, wall {w:.3f}")
sys.setswitchinterval(1e-5)
print("with sys.setswitchinterval(1e-5):")
for name in ("autograd fwd+bwd", "trivial Function fwd+bwd"):
    h, w = host_ms(cases[name])
    print(f"{name:<28} host {h:.3f} ms/iter, wall {w:.3f}")
