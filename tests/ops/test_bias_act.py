"""bias_act on every backend that runs here, against the reference."""

import importlib
import math

import pytest
import torch

import gankernels
from gankernels.ops import bias_act, fused_leaky_relu
from gankernels.reference import bias_act as ref
from tests.conftest import HAS_CUDA, backends_for

ACTS = sorted(ref.ACTIVATIONS)
# (backend, device) pairs: the C++ and Triton (interpreted) kernels on CPU, the CUDA and Triton ones on a GPU.
CASES = [(b, "cpu") for b in backends_for("bias_act", "cpu")]
if HAS_CUDA:
    CASES += [pytest.param(b, "cuda", marks=pytest.mark.gpu) for b in backends_for("bias_act", "cuda")]
# max |y - y_ref| <= atol + rtol * |y_ref|, y_ref computed in float64 from the same (rounded) inputs
TOLERANCE = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def reference(x, b, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    spec = ref.ACTIVATIONS[act]
    alpha = spec.alpha if alpha is None else alpha
    gain = spec.gain if gain is None else gain
    return ref.bias_act(x, b, dim % x.dim(), act, alpha, gain, -1.0 if clamp is None else clamp)


def assert_close(y, y_ref, dtype):
    atol, rtol = TOLERANCE[dtype]
    assert y.dtype == dtype and y.shape == y_ref.shape
    if y.numel() == 0:
        return
    y, y_ref = y.double(), y_ref.double()
    assert not torch.isnan(y).any()
    err = (y - y_ref).abs() - rtol * y_ref.abs()
    assert err.max().item() <= atol, f"max error {(y - y_ref).abs().max().item():.3g}"


def randn(*shape, dtype=torch.float64, device="cpu", channels_last=False, grad=False):
    x = torch.randn(*shape, dtype=dtype, device=device) * 2
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.requires_grad_(grad)


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_forward_float64(backend, device, act, clamp):
    x, b = randn(2, 5, 3, 7, device=device), randn(5, device=device)
    with gankernels.use_backend(backend):
        y = bias_act(x, b, act=act, clamp=clamp)
    assert_close(y, reference(x, b, act=act, clamp=clamp), torch.float64)


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize(
    "shape,dim,channels_last",
    [
        ((1, 3, 1, 1), 1, False),  # batch 1, 1x1
        ((3, 7, 5, 9), 1, True),  # channels_last: the channel is innermost in memory
        ((2, 6, 4, 4), 2, True),  # channels_last, bias along H
        ((4, 33), 1, False),  # 2-D, a fully connected layer
        ((5, 4, 3), 0, False),
        ((2, 3, 4, 5), -1, False),
        ((17,), 0, False),
        ((2, 0, 3, 3), 1, False),  # empty
    ],
)
def test_layouts_and_dims(backend, device, shape, dim, channels_last):
    x = randn(*shape, device=device, channels_last=channels_last)
    b = randn(shape[dim], device=device)
    with gankernels.use_backend(backend):
        y = bias_act(x, b, dim=dim, act="lrelu", clamp=1.5)
    assert_close(y, reference(x, b, dim=dim, act="lrelu", clamp=1.5), torch.float64)
    assert y.stride() == x.stride() or y.numel() == 0, "the output keeps the input's memory layout"


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("act", ["lrelu", "tanh", "swish", "softplus"])
def test_low_precision(backend, device, dtype, act):
    x, b = randn(3, 8, 5, 5, dtype=dtype, device=device), randn(8, dtype=dtype, device=device)
    with gankernels.use_backend(backend):
        y = bias_act(x, b, act=act, clamp=2.0)
    assert_close(y, reference(x.double(), b.double(), act=act, clamp=2.0).to(dtype), dtype)


@pytest.mark.parametrize("backend,device", CASES)
def test_alpha_gain_overrides(backend, device):
    x, b = randn(2, 4, 3, 3, device=device), randn(4, device=device)
    with gankernels.use_backend(backend):
        y = bias_act(x, b, act="lrelu", alpha=0.1, gain=0.5)
        z = bias_act(x, None, act="linear", gain=3.0)
    assert_close(y, reference(x, b, act="lrelu", alpha=0.1, gain=0.5), torch.float64)
    assert_close(z, x * 3.0, torch.float64)


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.8])
def test_gradcheck_gradgradcheck(backend, device, act, clamp):
    x, b = randn(2, 3, 2, 3, device=device, grad=True), randn(3, device=device, grad=True)

    def fn(x, b):
        return bias_act(x, b, act=act, clamp=clamp)

    with gankernels.use_backend(backend):
        assert torch.autograd.gradcheck(fn, (x, b))
        assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("act", ["tanh", "swish", "softplus", "lrelu"])
def test_second_order_matches_reference(backend, device, act):
    """The R1-style double backward: d/d(x, b) of |d sum(w * y) / dx|^2, fused kernels vs plain autograd."""
    x, b = randn(3, 4, 5, 2, device=device, grad=True), randn(4, device=device, grad=True)
    w = randn(3, 4, 5, 2, device=device)

    def penalty(fn):
        (gx,) = torch.autograd.grad((fn(x, b) * w).sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), (x, b))

    with gankernels.use_backend(backend):
        got = penalty(lambda x, b: bias_act(x, b, act=act, clamp=3.0))
    want = penalty(lambda x, b: reference(x, b, act=act, clamp=3.0))
    for g, r in zip(got, want, strict=True):
        assert_close(g, r, torch.float64)


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("act", ["tanh", "swish", "elu"])
def test_third_order(backend, device, act):
    x, b = randn(2, 3, 2, 2, device=device, grad=True), randn(3, device=device, grad=True)
    with gankernels.use_backend(backend):
        assert torch.autograd.gradgradcheck(
            lambda x, b: torch.autograd.grad(bias_act(x, b, act=act).sum(), x, create_graph=True)[0], (x, b)
        )


@pytest.mark.parametrize("backend,device", CASES)
def test_bias_only_grad_and_no_grad(backend, device):
    x = randn(2, 4, 3, 3, device=device)
    b = randn(4, device=device, grad=True)
    with gankernels.use_backend(backend):
        (db,) = torch.autograd.grad(bias_act(x, b, act="sigmoid").sum(), b)
        with torch.no_grad():
            y = bias_act(x, b, act="sigmoid")
    s = torch.sigmoid(x + b.view(1, 4, 1, 1))
    assert_close(db, (s * (1 - s)).sum((0, 2, 3)), torch.float64)
    assert not y.requires_grad


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "shape,channels_last",
    [((2, 3, 16, 16), False), ((2, 3, 17, 19), False), ((1, 2, 48, 48), False), ((2, 5, 16, 16), True)],
)
@pytest.mark.parametrize("act", ["lrelu", "swish"])
def test_bias_gradient_long_rows(backend, device, dtype, shape, channels_last, act):
    """Rows of >= 256 elements take the CUDA kernel that fuses the bias gradient into the backward pass."""
    if backend == "triton" and device == "cpu" and shape[-1] > 20:
        pytest.skip("too large for the Triton interpreter")
    x = randn(*shape, dtype=dtype, device=device, channels_last=channels_last, grad=True)
    b, dy = randn(shape[1], dtype=dtype, device=device, grad=True), randn(*shape, dtype=dtype, device=device)
    with gankernels.use_backend(backend):
        dx, db = torch.autograd.grad(bias_act(x, b, act=act, clamp=5.0), (x, b), dy)
    want_dx, want_db = torch.autograd.grad(reference(x.double(), b.double(), act=act, clamp=5.0), (x, b), dy.double())
    assert_close(dx, want_dx.to(dtype), dtype)
    atol, rtol = TOLERANCE[dtype]
    assert torch.allclose(db.double(), want_db.double(), atol=atol * shape[0] * shape[2] * shape[3], rtol=rtol)


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("act", ["tanh", "swish", "lrelu"])
def test_registered_autograd_of_the_custom_op(backend, device, act):
    """Eager calls run autograd.Functions; torch.compile sees the custom ops and their registered autograd."""
    x, b = randn(2, 3, 2, 3, device=device, grad=True), randn(3, device=device, grad=True)
    spec = ref.ACTIVATIONS[act]

    def fn(x, b):
        return torch.ops.gankernels.bias_act(x, b, 1, act, spec.alpha, spec.gain, 2.0, backend)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("backend,device", CASES)
def test_opcheck(backend, device):
    x, b = randn(2, 3, 4, 4, device=device, grad=True), randn(3, device=device, grad=True)
    torch.library.opcheck(torch.ops.gankernels.bias_act, (x, b, 1, "lrelu", 0.2, math.sqrt(2), 1.0, backend))
    torch.library.opcheck(torch.ops.gankernels.bias_act, (x, None, 1, "swish", 0.0, 1.0, -1.0, backend))
    g, y = randn(2, 3, 4, 4, device=device, grad=True), randn(2, 3, 4, 4, device=device, grad=True)
    op = torch.ops.gankernels.bias_act_grad
    torch.library.opcheck(op, (g, None, None, None, y, 1, "tanh", 0.0, 1.0, -1.0, backend, 1))
    torch.library.opcheck(op, (g, x.detach().clone(), None, None, y, 1, "tanh", 0.0, 1.0, 2.0, backend, 2))
    torch.library.opcheck(op, (g, None, x, b, None, 1, "swish", 0.0, 1.4, -1.0, backend, 1))
    op = torch.ops.gankernels.bias_act_grad_db
    torch.library.opcheck(op, (g, None, None, y, 1, "lrelu", 0.2, 1.4, 1.0, backend))
    torch.library.opcheck(op, (g, x, b, None, 1, "swish", 0.0, 1.4, -1.0, backend))


@pytest.mark.parametrize("backend,device", [c for c in CASES if (c[0] if isinstance(c, tuple) else None) != "triton"])
def test_torch_compile_fullgraph(backend, device):
    torch._dynamo.reset()
    x, b = randn(2, 4, 3, 3, device=device, grad=True), randn(4, device=device, grad=True)

    def fn(x, b):
        return bias_act(x * 2, b, act="lrelu", clamp=1.0).sum()

    with gankernels.use_backend(backend):
        compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
        loss = compiled(x, b)
        grads = torch.autograd.grad(loss, (x, b))
        want_loss = fn(x, b)
        want = torch.autograd.grad(want_loss, (x, b))
    assert_close(loss, want_loss, torch.float64)
    for g, w in zip(grads, want, strict=True):
        assert_close(g, w, torch.float64)


def test_identity_fast_path_returns_input():
    x = torch.randn(2, 3)
    assert bias_act(x) is x


def test_ref_backend_is_plain_autograd():
    x, b = randn(2, 3, 4, grad=True), randn(3, grad=True)
    with gankernels.use_backend("ref"):
        y = bias_act(x, b, act="tanh")
    assert "gankernels" not in type(y.grad_fn).__name__.lower()
    assert_close(y, torch.tanh(x + b.view(1, 3, 1)), torch.float64)


@pytest.mark.skipif("cpu" not in backends_for("bias_act", "cpu"), reason="the C++ extension is not built")
def test_automatic_cpu_choice_runs_the_kernel_only_where_it_pays():
    """Automatic on CPU: the kernel for linear / relu / lrelu (float32 / float16 / bfloat16 / float64) and elu / selu /
    swish (not float64) fused with two of a bias, gain or clamp at any size, with one from CPU_KERNEL_MIN_NUMEL
    elements; torch's ops otherwise: for one pass alone, and for tanh, sigmoid and softplus. A forced "cpu" always
    runs the kernel. Values agree either way."""
    module = importlib.import_module("gankernels.ops.bias_act")  # gankernels.ops.bias_act is the function

    def runs_kernel(y):
        return "BiasAct" in type(y.grad_fn).__name__

    n = module.CPU_KERNEL_MIN_NUMEL
    big, small, tiny = randn(1, 4, n // 4, grad=True), randn(1, 4, n // 4 - 1, grad=True), randn(2, 4, 4, 4, grad=True)
    b = randn(4, grad=True)
    assert runs_kernel(bias_act(tiny, b, act="lrelu"))  # three passes: bias, lrelu, gain
    assert runs_kernel(bias_act(big, b, act="relu", gain=1.0))  # two
    assert not runs_kernel(bias_act(small, b, act="relu", gain=1.0))
    assert not runs_kernel(bias_act(big, b, act="tanh"))
    assert not runs_kernel(bias_act(big, None, act="relu", gain=1.0))  # one pass: torch's relu
    assert runs_kernel(bias_act(big, None, act="relu", gain=2.0))
    big32, small32, b32 = big.float().detach().requires_grad_(), small.float().detach().requires_grad_(), b.float()
    assert not any(runs_kernel(bias_act(big32, b32, act=a)) for a in ("tanh", "sigmoid", "softplus"))
    assert all(runs_kernel(bias_act(big32, b32, act=a, gain=1.0)) for a in ("elu", "selu", "swish"))
    assert not runs_kernel(bias_act(small32, b32, act="swish", gain=1.0))  # two passes below CPU_KERNEL_MIN_NUMEL
    assert not runs_kernel(bias_act(big, b, act="swish", gain=1.0))  # float64: libm's scalar exp
    for dtype in (torch.float16, torch.bfloat16):
        low, b_low = big.to(dtype).detach().requires_grad_(), b.to(dtype)
        assert all(runs_kernel(bias_act(low, b_low, act=a)) for a in ("lrelu", "swish"))
        assert not runs_kernel(bias_act(low, b_low, act="tanh"))
    with gankernels.use_backend("cpu"):
        forced = [bias_act(t, b, act=a, gain=1.0) for t, a in ((small, "relu"), (big, "tanh"))]
    assert all(runs_kernel(y) for y in forced)
    assert_close(forced[1], bias_act(big, b, act="tanh", gain=1.0), torch.float64)


def test_fused_leaky_relu_matches_rosinality_formula():
    x, b = randn(2, 4, 3, 3), randn(4)
    want = torch.nn.functional.leaky_relu(x + b.view(1, 4, 1, 1), 0.2) * 2**0.5
    assert_close(fused_leaky_relu(x, b), want, torch.float64)
    assert_close(
        fused_leaky_relu(x, b, negative_slope=0.1, scale=1.0),
        torch.nn.functional.leaky_relu(x + b.view(1, 4, 1, 1), 0.1),
        torch.float64,
    )


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(x=torch.ones(2, 3, dtype=torch.int32)), TypeError, "x must be float"),
        (dict(x=[1.0, 2.0]), TypeError, "x must be a torch.Tensor"),
        (dict(b=torch.ones(4)), ValueError, "b has length 4"),
        (dict(b=torch.ones(3, 1)), ValueError, "b must be 1-D"),
        (dict(b=torch.ones(3, dtype=torch.float64)), TypeError, "b has dtype"),
        (dict(b=torch.ones(3, dtype=torch.int64)), TypeError, "b must be float"),
        (dict(act="gelu"), ValueError, "unknown activation"),
        (dict(act=3), TypeError, "act must be a str"),
        (dict(dim=4), ValueError, "dim=4 is out of range"),
        (dict(dim=-5), ValueError, "dim=-5 is out of range"),
        (dict(dim=1.0), TypeError, "dim must be an int"),
        (dict(clamp=-1.0), ValueError, "clamp must be >= 0"),
        (dict(clamp="1"), TypeError, "clamp must be a real number"),
        (dict(gain=float("nan")), ValueError, "gain must be finite"),
        (dict(x=torch.ones(()), b=None), ValueError, "at least one dimension"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = dict(x=torch.ones(2, 3, 4, 4), b=torch.ones(3), dim=1, act="lrelu", alpha=None, gain=None, clamp=None)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        bias_act(**args)


@pytest.mark.gpu
def test_bias_on_another_device():
    with pytest.raises(ValueError, match="b is on"):
        bias_act(torch.ones(2, 3, device="cuda"), torch.ones(3), act="relu")


def test_bias_on_another_device_meta():
    with pytest.raises(ValueError, match="b is on"):
        bias_act(torch.ones(2, 3), torch.ones(3, device="meta"), act="relu")


@pytest.mark.skipif("cpu" not in backends_for("bias_act", "cpu"), reason="the compiled extension is not built")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "shape,dim,channels_last",
    [
        ((3, 4, 96, 96), 1, False),  # one sample holds more than a block: blocks of channels
        ((40, 8, 16, 16), 1, True),  # channels innermost, blocks of samples, the last one partial
        ((5, 7, 3), 2, False),  # bias along the last dim
        ((70000,), 0, False),  # one channel per element, several blocks
        ((2, 1, 200, 200), 1, False),  # one channel
    ],
)
def test_cpu_bias_gradient_is_exact_and_the_same_on_any_thread_count(dtype, shape, dim, channels_last):
    """The CPU kernel sums the bias gradient itself in double, in fixed blocks folded in order: db is the exact sum of
    the kernel's dx rounded once (float64-exact against the reference), and bit-identical on one thread and on
    several."""
    x, dy = randn(*shape, dtype=dtype, channels_last=channels_last, grad=True), randn(*shape, dtype=dtype)
    b = randn(shape[dim], dtype=dtype, grad=True)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            with gankernels.use_backend("cpu"):
                results.append(torch.autograd.grad(bias_act(x, b, dim=dim, act="lrelu"), (x, b), dy))
    finally:
        torch.set_num_threads(threads)
    (dx, db), (dx2, db2) = results
    assert torch.equal(dx, dx2) and torch.equal(db, db2)
    want_dx, want_db = torch.autograd.grad(reference(x.double(), b.double(), dim, act="lrelu"), (x, b), dy.double())
    assert_close(dx, want_dx.to(dtype), dtype)
    if dtype == torch.float64:
        assert ((db - want_db).abs() / want_db.abs().clamp(min=1)).max() <= 1e-12
    else:  # the sum of the float32 dx, in float64: db is it rounded to float32 (half an ulp)
        dims = [d for d in range(dx.dim()) if d != dim]
        exact = dx.double().sum(dims) if dims else dx.double()
        assert ((db.double() - exact).abs() <= exact.abs() * 2**-24).all()


@pytest.mark.skipif("cpu" not in backends_for("bias_act", "cpu"), reason="the compiled extension is not built")
def test_kernels_refuse_mismatched_buffers():
    """The last line of defence: a kernel call with inconsistent buffers raises instead of writing out of bounds."""
    from gankernels.backend import extension

    C, x = extension(), torch.ones(2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="b must be contiguous of length 3"):
        C.bias_act_forward(x, torch.ones(5), 1, 3, 0.2, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="dim 4 is out of range"):
        C.bias_act_forward(x, None, 4, 3, 0.2, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="must be dense"):
        C.bias_act_forward(x[..., ::2], None, 1, 3, 0.2, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="g has shape"):  # the gradient takes y's shape; g must match it
        C.bias_act_backward(torch.ones(2, 3, 4, 5), None, None, None, x, 1, 3, 0.2, 1.0, -1.0, 1, False)
    with pytest.raises(RuntimeError, match="order 1 only"):
        C.bias_act_backward(x, x, None, None, x, 1, 3, 0.2, 1.0, -1.0, 2, True)
