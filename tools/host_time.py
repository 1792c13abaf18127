"""Host time per eager call on CPU with tiny tensors (where the Python around a kernel is all there is to measure):
forward and forward+backward of bias_act, upsample2d, modulated_conv2d and a whole SynthesisLayer, then of every
other public op, on the automatic backend (`ours`) beside the same math in plain eager PyTorch (`ref` / torch's own
ops), in one run.

    python tools/host_time.py [--reps 2000] [--repeat 7] [--only REGEX]

Best of --repeat rounds of --reps calls each, the variants of a call timed in turn within each round, in microseconds
per call, one thread, timed by the thread's CPU clock (time.thread_time: on a shared machine, time spent descheduled
does not count). benchmarks/NOTES.md has the table.
"""

from __future__ import annotations

import argparse
import re
import time

import torch
import torch.nn.functional as F

import gankernels
from gankernels import ops
from gankernels.nn import SynthesisLayer


def _best(variants: dict, reps: int, repeat: int) -> dict:
    """{variant: best us per call}: `repeat` rounds, each timing every variant in turn (a slow stretch of a shared
    machine then hits all of them, not one)."""
    for fn in variants.values():
        for _ in range(min(reps, 200)):
            fn()
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for variant, fn in variants.items():
            t0 = time.thread_time()
            for _ in range(reps):
                fn()
            best[variant] = min(best[variant], (time.thread_time() - t0) / reps)
    return {variant: t * 1e6 for variant, t in best.items()}


def _fwd_bwd(forward, inputs):
    def run():
        out = forward()
        torch.autograd.grad(out.sum(), inputs)

    return run


def cases():
    """(name, {variant: callable}) for every measured call."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 4, 4, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    gain = 2**0.5

    def eager_bias_act():  # as a new user writes it: three torch ops
        return F.leaky_relu(x + b.reshape(1, -1, 1, 1), 0.2) * gain

    yield (
        "bias_act lrelu [2,4,4,4]",
        {
            "ours": lambda: ops.bias_act(x, b, act="lrelu"),
            "torch ops": eager_bias_act,
        },
    )
    yield (
        "bias_act lrelu [2,4,4,4] fwd+bwd",
        {
            "ours": _fwd_bwd(lambda: ops.bias_act(x, b, act="lrelu"), (x, b)),
            "torch ops": _fwd_bwd(eager_bias_act, (x, b)),
        },
    )
    f = ops.setup_filter([1, 3, 3, 1])
    yield "upsample2d [2,4,4,4]", _both(lambda: ops.upsample2d(x, f))
    yield "upsample2d [2,4,4,4] fwd+bwd", _both(_fwd_bwd(lambda: ops.upsample2d(x, f), (x,)))
    w = torch.randn(8, 4, 3, 3, requires_grad=True)
    s = torch.randn(2, 4, requires_grad=True)
    yield "modulated_conv2d 4->8 3x3 [2,4,4,4]", _both(lambda: ops.modulated_conv2d(x, w, s, padding=1))
    yield "modulated_conv2d fwd+bwd", _both(_fwd_bwd(lambda: ops.modulated_conv2d(x, w, s, padding=1), (x, w, s)))
    layer = SynthesisLayer(4, 8, w_dim=8, resolution=4)
    ws = torch.randn(2, 8)
    params = tuple(layer.parameters()) + (x,)
    yield "SynthesisLayer 4->8 4x4 b2", _both(lambda: layer(x, ws, noise_mode="const"))
    yield "SynthesisLayer fwd+bwd", _both(_fwd_bwd(lambda: layer(x, ws, noise_mode="const"), params))
    yield from _other_ops()


def _other_ops():
    """Every other public op beside what a new user writes in eager PyTorch for it (torch's own op where there is one;
    torch's grid_sample has no double backward, which ours adds), fwd and fwd+bwd, on [2, 4, 8, 8]."""
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(8, 4, 3, 3, requires_grad=True)
    wt = torch.randn(4, 8, 3, 3, requires_grad=True)
    b8 = torch.randn(8, requires_grad=True)
    gamma, beta = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    grid = (torch.rand(2, 8, 8, 2) * 2 - 1).requires_grad_(True)
    g = torch.randn(2, 4, 8, 8, requires_grad=True)
    eps = torch.full((2,), 0.3)

    def minibatch_std(x, group=2):  # NVlabs' formula in plain ops
        n, c, h, w = x.shape
        y = x.reshape(group, -1, 1, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt().mean(dim=[2, 3, 4]).reshape(-1, 1, 1, 1)
        return torch.cat([x, y.repeat(group, 1, h, w)], dim=1)

    calls = {
        "conv2d 4->8 3x3 [2,4,8,8]": ((x, w, b8), lambda: ops.conv2d(x, w, b8, padding=1),
                                       lambda: F.conv2d(x, w, b8, padding=1)),
        "conv_transpose2d 4->8 3x3 s2": ((x, wt), lambda: ops.conv_transpose2d(x, wt, stride=2),
                                         lambda: F.conv_transpose2d(x, wt, stride=2)),
        "fused_conv2d + lrelu": ((x, w, b8), lambda: ops.fused_conv2d(x, w, padding=1, bias=b8, act="lrelu"),
                                 lambda: F.leaky_relu(F.conv2d(x, w, b8, padding=1), 0.2) * 2**0.5),
        "instance_norm_act relu": ((x, gamma, beta), lambda: ops.instance_norm_act(x, gamma, beta, act="relu"),
                                   lambda: F.relu(F.instance_norm(x, weight=gamma, bias=beta))),
        "minibatch_std G=2": ((x,), lambda: ops.minibatch_std(x, 2), lambda: minibatch_std(x)),
        "grid_sample reflection": ((x, grid), lambda: ops.grid_sample(x, grid, padding_mode="reflection"),
                                   lambda: F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)),
        "gradient_penalty": ((g,), lambda: ops.gradient_penalty(g), lambda: (g.flatten(1).norm(dim=1) - 1).square()),
        "wgan_gp_interpolate": ((x, g), lambda: ops.wgan_gp_interpolate(x, g, eps),
                                lambda: torch.lerp(g, x, eps.reshape(-1, 1, 1, 1))),
    }  # fmt: skip
    for name, (inputs, ours, eager) in calls.items():
        yield name, {"ours": ours, "torch ops": eager}
        yield f"{name} fwd+bwd", {"ours": _fwd_bwd(ours, inputs), "torch ops": _fwd_bwd(eager, inputs)}


def _both(fn):
    def ref():
        with gankernels.use_backend("ref"):
            return fn()

    return {"ours": fn, "ref": ref}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", default="", help="measure only the calls whose name matches this regex")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, backend on CPU tensors: {gankernels.backend.automatic('bias_act', 'cpu')[0]}")
    print(f"{'call':<40} {'variant':<10} {'us/call':>9}")
    for name, variants in cases():
        if not re.search(args.only, name):
            continue
        for variant, us in _best(variants, args.reps, args.repeat).items():
            print(f"{name:<40} {variant:<10} {us:9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
