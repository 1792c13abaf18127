"""torch.func over our ops: grad, vjp, jacrev, vmap (and grad of grad) on every backend equal the reference backend in
float64. The ops are new-style autograd.Functions with a vmap rule each (gankernels.ops._define), so these compose.

The penalties that take a network (wgan_gp_penalty, r1_penalty, path_length_penalty) call torch.autograd.grad inside,
which torch.func does not trace through; their functional pieces (gradient_penalty, wgan_gp_interpolate) are here.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, jacrev, vjp, vmap

import gankernels
from gankernels import ops
from tests.conftest import backends_for

TOL = dict(rtol=1e-10, atol=1e-12)


def _t(*shape, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    return torch.randn(*shape, generator=g, dtype=torch.float64)


FILTER = ops.setup_filter([1, 3, 3, 1]).double()


# name -> (the op's name in gankernels.backend, function of tensors, the tensors, per-sample vmap shapes)
def _cases():
    x = _t(2, 3, 4, 4)  # small: jacrev runs the backward once per output element (vmapped, in a loop where it must)
    yield "bias_act", "bias_act", lambda x, b: ops.bias_act(x, b, act="lrelu", clamp=1.5), (x, _t(3))
    yield "bias_act_tanh", "bias_act", lambda x, b: ops.bias_act(x, b, act="tanh", gain=1.3), (x, _t(3))
    yield "upfirdn2d", "upfirdn2d", lambda x: ops.upfirdn2d(x, FILTER, up=2, down=1, padding=[1, 2, 0, 1]), (x,)
    yield "upsample2d", "upfirdn2d", lambda x: ops.upsample2d(x, FILTER), (x,)
    yield "downsample2d", "upfirdn2d", lambda x: ops.downsample2d(x, FILTER), (x,)
    yield "filter2d", "upfirdn2d", lambda x: ops.filter2d(x, FILTER), (x,)
    yield "conv2d", "conv2d", lambda x, w, b: ops.conv2d(x, w, b, padding=1), (x, _t(4, 3, 3, 3), _t(4))
    yield "conv_transpose2d", "conv2d", lambda x, w: ops.conv_transpose2d(x, w, stride=2), (x, _t(3, 2, 3, 3))
    yield "conv2d_resample", "conv2d", lambda x, w: ops.conv2d_resample(x, w, FILTER, up=2, padding=1), (
        _t(1, 2, 3, 3), _t(2, 2, 3, 3))  # fmt: skip
    for fused in (False, True):
        yield (
            f"modulated_conv2d_fused{int(fused)}",
            "modulated_conv2d",
            (lambda x, w, s, fused=fused: ops.modulated_conv2d(x, w, s, padding=1, fused_modconv=fused)),
            (x, _t(4, 3, 3, 3), _t(2, 3) + 1.5),
        )
    yield "modulated_conv2d_epilogue", "modulated_conv2d", lambda y, d, b: ops.modconv_pieces.modulated_conv2d_epilogue(
        y, d, None, b, act="lrelu"), (x, _t(2, 3).abs() + 0.5, _t(3))  # fmt: skip
    yield "minibatch_std", "minibatch_std", lambda x: ops.minibatch_std(x, 2), (_t(4, 4, 3, 3) + 3,)
    yield "instance_norm_act", "instance_norm", lambda x, w, b: ops.instance_norm_act(x, w, b, act="relu"), (
        x, _t(3), _t(3))  # fmt: skip
    grid = torch.rand(2, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2.4 - 1.2
    for padding in ("zeros", "border", "reflection"):
        yield f"grid_sample_{padding}", "grid_sample", (
            lambda x, g, padding=padding: ops.grid_sample(x, g, padding_mode=padding)), (x, grid)  # fmt: skip
    yield "gradient_penalty", "penalties", lambda g: ops.gradient_penalty(g), (x,)
    yield "wgan_gp_interpolate", "penalties", lambda r, f, e: ops.wgan_gp_interpolate(r, f, e), (
        x, _t(2, 3, 4, 4, seed=1), torch.rand(2, dtype=torch.float64))  # fmt: skip


CASES = {name: (op, fn, inputs) for name, op, fn, inputs in _cases()}


def _backends(op: str) -> list[str]:
    return [b for b in ("cpu", "triton") if b in backends_for(op, "cpu") and _has_kernels(op, b)]


def _has_kernels(op: str, backend: str) -> bool:
    cpu_ops = ("bias_act", "upfirdn2d", "conv2d", "modulated_conv2d", "grid_sample", "instance_norm")
    return backend != "cpu" or op in cpu_ops


PARAMS = [(name, b) for name, (op, _, _) in CASES.items() for b in _backends(op)]


def _on(backend, fn, *args):
    with gankernels.use_backend(backend):
        return fn(*args)


def _scalar(fn, weights):
    return lambda *a: (fn(*a) * weights).sum()


def _weights(fn, inputs):
    with gankernels.use_backend("ref"):
        out = fn(*inputs)
    return _t(*out.shape, seed=7)


@pytest.mark.parametrize("name,backend", PARAMS)
def test_grad_and_vjp(name, backend):
    _, fn, inputs = CASES[name]
    w = _weights(fn, inputs)
    argnums = tuple(range(len(inputs)))
    want = _on("ref", grad(_scalar(fn, w), argnums=argnums), *inputs)
    got = _on(backend, grad(_scalar(fn, w), argnums=argnums), *inputs)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, **TOL)
    out, pull = _on(backend, lambda *a: vjp(fn, *a), *inputs)
    got = _on(backend, pull, w)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, **TOL)


@pytest.mark.parametrize("name,backend", PARAMS)
def test_jacrev(name, backend):
    _, fn, inputs = CASES[name]
    want = _on("ref", jacrev(fn), *inputs)
    got = _on(backend, jacrev(fn), *inputs)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("name,backend", PARAMS)
def test_vmap(name, backend):
    """vmap over a new leading dimension of every input, and of the first input alone."""
    _, fn, inputs = CASES[name]
    stacked = [torch.stack([t, t.flip(0) * 0.5 + 0.25]) for t in inputs]
    want = torch.stack([_on("ref", fn, *[s[i] for s in stacked]) for i in range(2)])
    torch.testing.assert_close(_on(backend, vmap(fn), *stacked), want, **TOL)
    in_dims = (0,) + (None,) * (len(inputs) - 1)
    want = torch.stack([_on("ref", fn, stacked[0][i], *inputs[1:]) for i in range(2)])
    torch.testing.assert_close(_on(backend, vmap(fn, in_dims=in_dims), stacked[0], *inputs[1:]), want, **TOL)


@pytest.mark.parametrize("name,backend", PARAMS)
def test_grad_of_grad(name, backend):
    """Second order through torch.func: the gradient of <grad f(x), v> with respect to x (a Hessian-vector
    product), as R1 and path length need it."""
    _, fn, inputs = CASES[name]
    w = _weights(fn, inputs)
    v = _t(*inputs[0].shape, seed=3)

    def hvp(x, *rest):
        gx = grad(lambda x: _scalar(fn, w)(x, *rest))(x)
        return (gx * v).sum()

    want = _on("ref", grad(hvp), *inputs)
    torch.testing.assert_close(_on(backend, grad(hvp), *inputs), want, **TOL)


def test_every_op_is_covered():
    """A new public op gets a torch.func case here."""
    covered = {name.split("_fused")[0] for name in CASES} | {"bias_act", "grid_sample"}
    public = {"bias_act", "upfirdn2d", "upsample2d", "downsample2d", "filter2d", "conv2d", "conv_transpose2d",
              "conv2d_resample", "modulated_conv2d", "minibatch_std", "instance_norm_act", "gradient_penalty",
              "wgan_gp_interpolate", "grid_sample"}  # fmt: skip
    assert public <= covered, public - covered
