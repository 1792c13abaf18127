"""Fused bias + activation + gain + clamp, differentiable to second order on every backend.

Three torch custom ops carry the work: `gankernels::bias_act` (forward), `gankernels::bias_act_grad` (the
gradient, order 1, and the derivative of that gradient, order 2) and `gankernels::bias_act_grad_db` (the
gradient with the bias gradient). Each has a fake implementation for torch.compile and its own autograd formula,
so the backward of bias_act is itself differentiable and the double backward of R1 / WGAN-GP / path length runs
on the same fused kernels. Eager calls run the same impl / setup / backward through torch.autograd.Functions
(see _define.define_op: less host time per call). Third-order gradients are exact
too, through the reference formulas (no fused kernel for them).
"""

from __future__ import annotations

import torch

from .. import backend as _backend
from ..reference import bias_act as ref
from ._common import (
    check_act,
    check_dim,
    check_float_tensor,
    check_int,
    check_real,
    check_same,
    dense,
    empty_like,
    kernels,
    memory_format,
    reduce_to,
)
from ._define import define_op

ACTIVATIONS = ref.ACTIVATIONS

# The automatic choice on CPU tensors runs the C++ kernel where it measured faster (benchmarks/NOTES.md, "bias_act on
# CPU: when the kernel pays", and "Vectorised exp, expm1 and log1p"): on float32, and float64 for the piecewise-linear
# activations, an activation in CPU_KERNEL_ACTS that the kernel fuses with at least two more of torch's passes (bias,
# gain, clamp) at any size, or with one more on at least CPU_KERNEL_MIN_NUMEL elements (below that the two torch ops
# it replaces cost no more host time than its autograd.Function); one pass alone (DCGAN's relu) is torch's own
# vectorised op either way. Of the activations with an exp, elu, selu and swish win in float32; tanh, sigmoid and
# softplus lose or tie to torch's (Sleef) forward + backward; float64's exp is libm's (scalar). bfloat16 and float16 run
# as float32 does since their conversions vectorise (csrc/cpu/half.h; lrelu + bias fwd+bwd [8, 64, 32, 32] bfloat16
# 0.19 ms against 0.35 for torch's ops, float16 [16, 128, 64, 64] 8.3 against 14.1: "float16 / bfloat16 conversions"
# in benchmarks/NOTES.md).
CPU_KERNEL_ACTS = frozenset(("linear", "relu", "lrelu", "elu", "selu", "swish"))
_PIECEWISE_LINEAR = frozenset(("linear", "relu", "lrelu"))
CPU_KERNEL_MIN_NUMEL = 2**16
_CPU_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# ----------------------------------------------------------------------------------------------------------------
# Forward op


def _bias_act_impl(x, b, dim, act, alpha, gain, clamp, backend):
    x = dense(x)
    b = None if b is None else b.contiguous()
    return kernels(backend, "bias_act").bias_act_forward(x, b, dim, ACTIVATIONS[act].index, alpha, gain, clamp)


def _bias_act_fake(x, b, dim, act, alpha, gain, clamp, backend):
    return empty_like(x)


def _bias_act_setup(ctx, inputs, output):
    x, b, dim, act, alpha, gain, clamp, backend = inputs
    spec = ACTIVATIONS[act]
    saves_x = spec.ref == "x"
    saves_y = spec.ref == "y" or clamp >= 0  # y also gives the clamp mask
    ctx.save_for_backward(x if saves_x else None, b if saves_x else None, output if saves_y else None)
    ctx.params = inputs[2:]  # dim, act, alpha, gain, clamp, backend


def _bias_act_backward(ctx, dy):
    xs, bs, ys = ctx.saved_tensors
    dx = db = None
    if ctx.needs_input_grad[1]:
        dx, db = _bias_act_grad_db(dense(dy), xs, bs, ys, *ctx.params, ctx=ctx)
    elif ctx.needs_input_grad[0]:
        dx = _grad(dy, None, xs, bs, ys, *ctx.params, order=1, ctx=ctx)
    return (dx if ctx.needs_input_grad[0] else None), db, None, None, None, None, None, None


def _elementwise(tensors: tuple[int, ...], dim_at: int):
    """vmap spec: the tensors at positions `tensors` fold along axis 0 (the bias never: it broadcasts along `dim`,
    argument `dim_at`, which must then not be axis 0 itself)."""

    def spec(*args):
        return None if args[dim_at] == 0 else ([0 if i in tensors else None for i in range(len(args))], [0])

    return spec


_SCALARS = "SymInt dim, str act, float alpha, float gain, float clamp, str backend"  # of all three ops
_bias_act = define_op("bias_act", f"(Tensor x, Tensor? b, {_SCALARS}) -> Tensor", _bias_act_impl,
                      fake=_bias_act_fake, setup_context=_bias_act_setup, backward=_bias_act_backward,
                      vmap=_elementwise((0,), 2))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Gradient op: order 1 gives dL/d(x + b); order 2 the derivative of that with respect to the saved tensor.


def _run_grad(g, m, x, b, y, dim, act, alpha, gain, clamp, backend, order, want_db):
    """(gradient, bias gradient or None) from the backend's kernel, all in the saved tensor's layout."""
    if not _all_contiguous(g, m, x, y):  # then: dense in the saved tensor's layout
        fmt = memory_format(_lead(g, x, y))
        g, m, x, y = (None if t is None else dense(t, fmt) for t in (g, m, x, y))
    b = None if b is None else b.contiguous()
    return kernels(backend, "bias_act").bias_act_backward(
        g, m, x, b, y, dim, ACTIVATIONS[act].index, alpha, gain, clamp, order, want_db
    )


def _all_contiguous(g, m, x, y) -> bool:  # a genexpr costs 0.4 us of the ~30 of a tiny fwd+bwd
    return (
        g.is_contiguous()
        and (m is None or m.is_contiguous())
        and (x is None or x.is_contiguous())
        and (y is None or y.is_contiguous())
    )


def _bias_act_grad_impl(g, m, x, b, y, dim, act, alpha, gain, clamp, backend, order):
    return _run_grad(g, m, x, b, y, dim, act, alpha, gain, clamp, backend, order, False)[0]


def _lead(g, x, y):
    """The tensor whose memory layout the gradient takes: the saved one, so that it is never copied."""
    return y if y is not None else x if x is not None else g


def _bias_act_grad_fake(g, m, x, b, y, dim, act, alpha, gain, clamp, backend, order):
    return empty_like(_lead(g, x, y))


def _grad(g, m, x, b, y, dim, act, alpha, gain, clamp, backend, order, ctx):
    spec = ACTIVATIONS[act]
    if order == 2 and not spec.has_2nd_grad:
        return None  # identically zero
    return _bias_act_grad(g, m, x, b, y, dim, act, alpha, gain, clamp, backend, order, ctx=ctx)


def _bias_act_grad_setup(ctx, inputs, output):
    g, m, x, b, y = inputs[:5]
    ctx.save_for_backward(g, m, x, b, y)
    ctx.params = inputs[5:11]
    ctx.order = inputs[11]


def _bias_act_grad_backward(ctx, go):
    g, m, x, b, y = ctx.saved_tensors
    grads = _grad_of_grad(go, g, m, x, b, y, ctx.params, ctx.order, ctx.needs_input_grad[:5], ctx)
    return (*grads, None, None, None, None, None, None, None)


def _grad_of_grad(go, g, m, x, b, y, params, order, needs, ctx):
    """Gradients (dg, dm, dx, db, dy) of out = g * m * K(saved) * mask, given go = dL/d(out)."""
    dim, act, alpha, gain, clamp, backend = params
    spec = ACTIVATIONS[act]
    dg = dm = dx = db = dy = None
    # The op is linear in g and in m.
    if needs[0]:
        dg = _grad(go, m, x, b, y, *params, order=order, ctx=ctx)
    if m is not None and needs[1]:
        dm = _grad(go, g, x, b, y, *params, order=order, ctx=ctx)
    ref_needs = (needs[2] or needs[3]) if spec.ref == "x" else needs[4] if spec.ref == "y" else False
    if ref_needs:
        gm = g if m is None else g * m
        if order == 1:
            dref = _grad(go, gm, x, b, y, *params, order=2, ctx=ctx)
        else:
            dref = _third_order(go, g, m, x, b, y, dim, act, alpha, gain, clamp)
        if spec.ref == "x":
            dx = dref if needs[2] else None
            db = reduce_to(dref, dim) if needs[3] and dref is not None and b is not None else None
        else:
            dy = dref
    return dg, dm, dx, db, dy


def _third_order(go, g, m, x, b, y, dim, act, alpha, gain, clamp):
    """d(order-2 result)/d(saved tensor), through autograd of the reference formula (no fused kernel)."""
    spec = ACTIVATIONS[act]
    with torch.enable_grad():
        if spec.ref == "x":
            z = x if b is None else x + b.reshape(ref.bias_shape(x.ndim, dim))
            r = z if z.requires_grad else z.detach().requires_grad_(True)
            val = ref.bias_act_grad(g, m, r, None, y, dim, act, alpha, gain, clamp, order=2)
        else:
            r = y if y.requires_grad else y.detach().requires_grad_(True)
            val = ref.bias_act_grad(g, m, None, None, r, dim, act, alpha, gain, clamp, order=2)
        (dr,) = torch.autograd.grad(val, r, go, create_graph=True, allow_unused=True)
    return dr


_bias_act_grad = define_op("bias_act_grad", f"(Tensor g, Tensor? m, Tensor? x, Tensor? b, Tensor? y, {_SCALARS}, "
                           "SymInt order) -> Tensor", _bias_act_grad_impl, fake=_bias_act_grad_fake,
                           setup_context=_bias_act_grad_setup, backward=_bias_act_grad_backward,
                           vmap=_elementwise((0, 1, 2, 4), 5))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Gradient with the bias gradient: (dx, db) with db = dx summed over every dimension but `dim`, by the backend's
# kernels (CUDA: fused into the same pass for NCHW rows; CPU and Triton: a second pass).


def _bias_act_grad_db_impl(g, x, b, y, dim, act, alpha, gain, clamp, backend):
    return _run_grad(g, None, x, b, y, dim, act, alpha, gain, clamp, backend, 1, True)


def _bias_act_grad_db_fake(g, x, b, y, dim, act, alpha, gain, clamp, backend):
    return empty_like(_lead(g, x, y)), g.new_empty([g.shape[dim]])


def _bias_act_grad_db_setup(ctx, inputs, output):
    g, x, b, y = inputs[:4]
    ctx.save_for_backward(g, x, b, y)
    ctx.params = inputs[4:10]


def _bias_act_grad_db_backward(ctx, gdx, gdb):
    g, x, b, y = ctx.saved_tensors
    dim = ctx.params[0]
    go = gdx
    if gdb is not None:  # db = sum of dx over all but `dim`: its gradient broadcasts back onto dx
        gdb = gdb.reshape(ref.bias_shape(g.dim(), dim))
        go = gdb.expand(g.shape) if go is None else go + gdb
    if go is None:
        return None, None, None, None, None, None, None, None, None, None
    n = ctx.needs_input_grad
    dg, _, dx, db, dy = _grad_of_grad(go, g, None, x, b, y, ctx.params, 1, (n[0], False, n[1], n[2], n[3]), ctx)
    return dg, dx, db, dy, None, None, None, None, None, None


# db sums over the batch: under vmap this op runs once per vmapped index
_bias_act_grad_db = define_op("bias_act_grad_db",
                              f"(Tensor g, Tensor? x, Tensor? b, Tensor? y, {_SCALARS}) -> (Tensor, Tensor)",
                              _bias_act_grad_db_impl, fake=_bias_act_grad_db_fake,
                              setup_context=_bias_act_grad_db_setup, backward=_bias_act_grad_db_backward)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Public API


def _check_args(x, b, dim, act, alpha, gain, clamp):
    check_float_tensor(x, "x")
    spec = ACTIVATIONS[check_act(act, ACTIVATIONS)]
    ndim = x.dim()
    if ndim == 0:
        raise ValueError("x must have at least one dimension")
    if b is None:
        check_int(dim, "dim")
        dim = 0  # no bias: dim plays no part
    else:
        dim = check_dim(dim, ndim)
        check_float_tensor(b, "b")
        if b.dim() != 1:
            raise ValueError(f"b must be 1-D of length x.shape[{dim}]={x.shape[dim]}, got shape {list(b.shape)}")
        if b.shape[0] != x.shape[dim]:
            raise ValueError(f"b has length {b.shape[0]} but x.shape[{dim}] is {x.shape[dim]}")
        check_same(b, x, "b", "x")
    alpha = spec.alpha if alpha is None else check_real(alpha, "alpha")
    gain = spec.gain if gain is None else check_real(gain, "gain")
    if clamp is None:
        return dim, alpha, gain, -1.0
    clamp = check_real(clamp, "clamp")
    if clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    return dim, alpha, gain, clamp


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """Fused bias + activation: y = clamp(act(x + b, alpha) * gain, -clamp, clamp).

    x: any shape and float dtype (fp16/bf16 computed in fp32), NCHW or channels_last; y keeps its layout.
    b: [x.shape[dim]] added along `dim` (default 1, the channels of NCHW), or None.
    act: linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish. alpha (lrelu's negative slope) and
    gain default per activation (lrelu: 0.2 and sqrt(2), as NVlabs); clamp None means no clamping.
    Differentiable to second order (and beyond) with respect to x and b, on every backend.
    """
    dim, alpha, gain, clamp = _check_args(x, b, dim, act, alpha, gain, clamp)
    if act == "linear" and b is None and gain == 1 and clamp < 0:
        return x
    name = _backend.resolve("bias_act", "cpu" if x.is_cpu else x.device.type)  # is_cpu: 0.05 us, device: 0.3
    if name == "ref" or name == "cpu" and not _cpu_kernel_pays(x, b, act, gain, clamp):
        return ref.bias_act(x, b, dim, act, alpha, gain, clamp)
    return _bias_act(dense(x), b, dim, act, alpha, gain, clamp, name)


def _cpu_kernel_pays(x: torch.Tensor, b, act: str, gain: float, clamp: float) -> bool:
    """Whether the C++ kernel runs on CPU tensor x: always when forced, else where it pays (else torch's ops)."""
    if _backend.get_backend() is not None:
        return True
    if not (x.dtype in _CPU_KERNEL_DTYPES or x.dtype == torch.float64 and act in _PIECEWISE_LINEAR):
        return False
    passes = (b is not None) + (act != "linear") + (gain != 1) + (clamp >= 0)  # of the reference
    return act in CPU_KERNEL_ACTS and (passes >= 3 or passes == 2 and x.numel() >= CPU_KERNEL_MIN_NUMEL)


def fused_leaky_relu(x, bias=None, negative_slope=0.2, scale=2**0.5):
    """rosinality's stylegan2-pytorch `fused_leaky_relu`: leaky_relu(x + bias, negative_slope) * scale."""
    return bias_act(x, bias, dim=1, act="lrelu", alpha=negative_slope, gain=scale)
