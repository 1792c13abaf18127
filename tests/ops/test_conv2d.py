"""conv2d / conv_transpose2d against torch.nn.functional, gradients of every order, no_weight_gradients, the custom
ops' registration, and conv2d_resample's fast paths against the plain formula on every upfirdn2d backend."""

import pytest
import torch
import torch.nn.functional as F

import gankernels
from gankernels import ops
from gankernels.reference import conv2d as ref
from tests.conftest import WeightGradCounter, backends_for

RESAMPLE_BACKENDS = ["ref"] + backends_for("upfirdn2d", "cpu")


def randn(*shape, grad=False, seed=None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed if seed is not None else sum(shape) * 7 + len(shape))
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_(grad)


def assert_close(a, b, atol=1e-12, rtol=1e-12):
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def grads(y, inputs, dy):
    return torch.autograd.grad(y, [t for t in inputs if t is not None], dy)


# ----------------------------------------------------------------------------------------------------------------
# conv2d and conv_transpose2d: values and gradients against torch

CONV_CASES = [
    # x shape, w shape, kwargs
    ((2, 4, 7, 6), (6, 4, 3, 3), dict()),
    ((2, 4, 7, 6), (6, 2, 3, 2), dict(stride=2, padding=1, groups=2)),
    ((1, 3, 9, 8), (4, 3, 3, 3), dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2))),
    ((3, 2, 5, 5), (2, 2, 1, 1), dict(stride=2)),
    ((2, 3, 6, 7), (4, 3, 4, 3), dict(padding="same", dilation=(1, 2))),  # asymmetric "same"
    ((2, 3, 6, 7), (4, 3, 3, 3), dict(padding="valid")),
    ((3, 5, 5), (2, 3, 3, 3), dict(padding=1)),  # unbatched
]


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("xs,ws,kwargs", CONV_CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_conv2d_matches_torch(xs, ws, kwargs, bias):
    x, w = randn(*xs, grad=True), randn(*ws, grad=True)
    b = randn(ws[0], grad=True) if bias else None
    y = ops.conv2d(x, w, b, **kwargs)
    want = F.conv2d(x, w, b, **kwargs)
    assert_close(y, want)
    dy = randn(*want.shape)
    for g, r in zip(grads(y, (x, w, b), dy), grads(want, (x, w, b), dy), strict=True):
        assert_close(g, r)


TRANSPOSE_CASES = [
    ((2, 4, 5, 4), (4, 3, 3, 3), dict()),
    ((2, 4, 5, 4), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1, groups=2)),
    ((1, 3, 4, 5), (3, 2, 3, 2), dict(stride=(2, 1), padding=(0, 1), dilation=(1, 2))),
    ((2, 3, 4, 4), (3, 2, 3, 3), dict(stride=1, padding=1, output_padding=1, dilation=2)),  # output_padding >= stride
    ((2, 2, 3, 3), (2, 2, 1, 1), dict(stride=2)),
]


@pytest.mark.parametrize("xs,ws,kwargs", TRANSPOSE_CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_conv_transpose2d_matches_torch(xs, ws, kwargs, bias):
    x, w = randn(*xs, grad=True), randn(*ws, grad=True)
    groups = kwargs.get("groups", 1)
    b = randn(ws[1] * groups, grad=True) if bias else None
    y = ops.conv_transpose2d(x, w, b, **kwargs)
    want = F.conv_transpose2d(x, w, b, **kwargs)
    assert_close(y, want)
    dy = randn(*want.shape)
    for g, r in zip(grads(y, (x, w, b), dy), grads(want, (x, w, b), dy), strict=True):
        assert_close(g, r)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_and_low_precision(dtype):
    x = randn(2, 4, 6, 6, dtype=dtype).to(memory_format=torch.channels_last).requires_grad_(True)
    w = randn(8, 4, 3, 3, dtype=dtype).to(memory_format=torch.channels_last).requires_grad_(True)
    y = ops.conv2d(x, w, padding=1)
    want = F.conv2d(x, w, padding=1)
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last) == want.is_contiguous(
        memory_format=torch.channels_last
    )
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(y, want, atol=tol, rtol=tol)
    gx, gw = torch.autograd.grad(y.float().square().sum(), (x, w))
    rx, rw = torch.autograd.grad(want.float().square().sum(), (x, w))
    torch.testing.assert_close(gx, rx, atol=tol * 10, rtol=tol)
    torch.testing.assert_close(gw, rw, atol=tol * 10, rtol=tol)


@pytest.mark.parametrize(
    "fn,ws,kwargs",
    [
        (ops.conv2d, (4, 2, 3, 3), dict(stride=2, padding=1, groups=2)),
        (ops.conv2d, (3, 4, 1, 1), dict()),
        (ops.conv_transpose2d, (4, 3, 3, 2), dict(stride=2, padding=1, output_padding=1)),
        (ops.conv_transpose2d, (4, 1, 2, 2), dict(stride=1, padding=1, output_padding=1, groups=2, dilation=2)),
    ],
)
def test_gradcheck_gradgradcheck(fn, ws, kwargs):
    x, w, b = randn(2, 4, 4, 3, grad=True), randn(*ws, grad=True), None
    out_channels = ws[0] if fn is ops.conv2d else ws[1] * kwargs.get("groups", 1)
    b = randn(out_channels, grad=True)

    def f(x, w, b):
        return fn(x, w, b, **kwargs)

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_third_order():
    """d^3: gradgradcheck of the input gradient of a non-linear function of the conv."""
    x, w = randn(1, 2, 4, 4, grad=True), randn(3, 2, 3, 3, grad=True)

    def grad_x(x, w):
        return torch.autograd.grad(ops.conv2d(x, w, stride=2, padding=1).square().sum(), x, create_graph=True)[0]

    assert torch.autograd.gradgradcheck(grad_x, (x, w))


# ----------------------------------------------------------------------------------------------------------------
# no_weight_gradients


def _r1(conv, x, w, disable):
    """An R1-style penalty: the squared gradient of a non-linear critic with respect to its input."""
    logits = conv(x, w).tanh().sum()
    with ops.no_weight_gradients(disable):
        (gx,) = torch.autograd.grad(logits, x, create_graph=True)
    return gx, gx.square().sum()


@pytest.mark.parametrize(
    "conv",
    [
        lambda x, w: ops.conv2d(x, w, stride=2, padding=1),
        lambda x, w: ops.conv_transpose2d(x, w.transpose(0, 1), stride=2, padding=1, output_padding=1),
        lambda x, w: ops.conv2d_resample(x, w, ops.setup_filter([1, 3, 3, 1]), up=2, padding=1),
    ],
    ids=["conv2d", "conv_transpose2d", "conv2d_resample"],
)
def test_no_weight_gradients(conv):
    x, w = randn(2, 3, 5, 5, grad=True), randn(4, 3, 3, 3, grad=True)

    with WeightGradCounter() as counter:
        want_gx, want_penalty = _r1(conv, x, w, disable=False)
    assert counter.calls, "the weight gradient runs without no_weight_gradients"
    with WeightGradCounter() as counter:
        gx, penalty = _r1(conv, x, w, disable=True)
    assert not counter.calls, "no weight gradient inside no_weight_gradients()"
    assert_close(gx, want_gx)

    # the outer backward (outside the context) still differentiates the penalty with respect to the weight
    gw = torch.autograd.grad(penalty, w)[0]
    assert_close(gw, torch.autograd.grad(want_penalty, w)[0])

    # loss.backward() inside the context leaves weight.grad None and gives the same input gradient
    with ops.no_weight_gradients():
        conv(x, w).tanh().sum().backward()
    assert w.grad is None
    assert_close(x.grad, want_gx.detach())


def test_no_weight_gradients_nests_and_restores():
    from gankernels.ops.conv2d import weight_gradients_disabled

    assert not weight_gradients_disabled()
    with ops.no_weight_gradients():
        with ops.no_weight_gradients(False):
            assert weight_gradients_disabled()  # disable=False keeps the outer state
        with pytest.raises(RuntimeError):
            with ops.no_weight_gradients():
                raise RuntimeError
        assert weight_gradients_disabled()
    assert not weight_gradients_disabled()


def test_r1_matches_torch():
    """The double backward of a penalty through our ops equals plain torch's."""
    x, w, b = randn(2, 3, 6, 6, grad=True), randn(4, 3, 3, 3, grad=True), randn(4, grad=True)

    def penalty(conv, conv_t):
        h = F.leaky_relu(conv(x, w, b, stride=2, padding=1), 0.2)
        y = conv_t(h, w, None, stride=2, padding=1, output_padding=1).tanh().sum()
        (gx,) = torch.autograd.grad(y, x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), (x, w, b))

    for g, r in zip(penalty(ops.conv2d, ops.conv_transpose2d), penalty(F.conv2d, F.conv_transpose2d), strict=True):
        assert_close(g, r)


# ----------------------------------------------------------------------------------------------------------------
# Custom op registration and torch.compile


def test_opcheck():
    x, w, b = randn(2, 4, 5, 5, grad=True), randn(6, 2, 3, 3, grad=True), randn(6, grad=True)
    op = torch.ops.gankernels.conv2d
    torch.library.opcheck(op, (x, w, b, [2, 2], [1, 1], [1, 1], False, [0, 0], 2))
    torch.library.opcheck(op, (x, randn(4, 3, 3, 3, grad=True), None, [2, 1], [1, 0], [1, 1], True, [1, 0], 1))
    x_cl = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    torch.library.opcheck(op, (x_cl, w, None, [1, 1], [0, 0], [2, 1], False, [0, 0], 2))
    dy = randn(2, 6, 3, 3, grad=True)
    op = torch.ops.gankernels.conv2d_weight_grad
    torch.library.opcheck(op, (dy, x, w, [2, 2], [1, 1], [1, 1], False, [0, 0], 2))
    dy = randn(2, 6, 9, 9, grad=True)
    wt = randn(4, 3, 3, 3, grad=True)
    torch.library.opcheck(op, (dy, x, wt, [2, 2], [1, 1], [1, 1], True, [0, 0], 2))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    x, w, b = randn(2, 3, 6, 6, grad=True), randn(4, 3, 3, 3, grad=True), randn(4, grad=True)
    f = ops.setup_filter([1, 3, 3, 1]).double()

    def fn(x, w, b):
        y = ops.conv2d(x, w, b, padding=1)
        return ops.conv2d_resample(y, w.transpose(0, 1)[:, :4], f, down=2, padding=1).square().sum()

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    loss = compiled(x, w, b)
    want = fn(x, w, b)
    assert_close(loss, want)
    for g, r in zip(torch.autograd.grad(loss, (x, w, b)), torch.autograd.grad(want, (x, w, b)), strict=True):
        assert_close(g, r)


def test_no_weight_gradients_ignored_while_compiling():
    """A graph compiled inside the context must not lose its weight gradients for good."""
    torch._dynamo.reset()
    x, w = randn(1, 2, 4, 4, grad=True), randn(3, 2, 3, 3, grad=True)

    def fn(x, w):
        return ops.conv2d(x, w, padding=1).square().sum()

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    with ops.no_weight_gradients():
        loss = compiled(x, w)
    loss.backward()
    assert_close(w.grad, torch.autograd.grad(fn(x, w), w)[0])


# ----------------------------------------------------------------------------------------------------------------
# conv2d_resample: fast paths against the plain formula

RESAMPLE_CASES = [
    # up, down, kernel, groups, padding
    (1, 1, 3, 1, 1),
    (1, 1, 3, 2, [1, 0, 2, 1]),  # asymmetric padding: the generic path
    (1, 1, 1, 1, -1),  # negative padding crops
    (2, 1, 3, 1, 1),
    (2, 1, 3, 2, 1),
    (2, 1, 1, 1, 0),  # 1x1 up: conv, then upsample
    (1, 2, 3, 1, 1),
    (1, 2, 3, 2, 0),
    (1, 2, 1, 1, 0),  # 1x1 down: downsample, then conv
    (2, 2, 3, 1, 1),
    (2, 2, 1, 2, 0),
]


@pytest.mark.parametrize("backend", RESAMPLE_BACKENDS)
@pytest.mark.parametrize("up,down,k,groups,padding", RESAMPLE_CASES)
@pytest.mark.parametrize("flip_weight,flip_filter", [(True, False), (False, True)])
def test_conv2d_resample_matches_formula(backend, up, down, k, groups, padding, flip_weight, flip_filter):
    x, w = randn(2, 4, 6, 5, grad=True), randn(6, 4 // groups, k, k, grad=True, seed=k)
    f = ops.setup_filter([1, 2, 3, 1], flip_filter=False).double()  # asymmetric taps: flips show
    kwargs = dict(f=f, up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight,
                  flip_filter=flip_filter)  # fmt: skip
    with gankernels.use_backend(backend):
        y = ops.conv2d_resample(x, w, **kwargs)
    want = ref.conv2d_resample(x, w, **kwargs)
    assert_close(y, want)
    dy = randn(*want.shape)
    with gankernels.use_backend(backend):
        got = torch.autograd.grad(y, (x, w), dy)
    for g, r in zip(got, torch.autograd.grad(want, (x, w), dy), strict=True):
        assert_close(g, r)


def test_conv2d_resample_formula_is_the_definition():
    """The reference against an explicit chain: zero-insert, pad, FIR (a convolution), conv (a correlation), keep
    every other pixel. The FIR filter [4, 4] is centered with padding 2 + 1 (up) or 1 + 1 (down) before, as NVlabs."""
    x, w = randn(1, 2, 4, 4), randn(3, 2, 3, 3)
    f = ops.setup_filter([1, 2, 3, 1]).double()

    def fir(y):
        return F.conv2d(y, f.flip([0, 1])[None, None].repeat(y.shape[1], 1, 1, 1), groups=y.shape[1])

    u = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    u[:, :, ::2, ::2] = x
    want = F.conv2d(fir(F.pad(u, [3, 2, 3, 2])) * 4, w)
    assert_close(ref.conv2d_resample(x, w, f, up=2, padding=1), want)
    want = fir(F.conv2d(F.pad(x, [2, 2, 2, 2]), w))[:, :, ::2, ::2]
    assert_close(ref.conv2d_resample(x, w, f, down=2, padding=1), want)


@pytest.mark.parametrize("up,down,k", [(2, 1, 3), (1, 2, 3), (1, 1, 3), (2, 1, 1)])
def test_conv2d_resample_gradgradcheck(up, down, k):
    x, w = randn(1, 2, 4, 4, grad=True), randn(2, 2, k, k, grad=True)
    f = ops.setup_filter([1, 3, 3, 1]).double()

    def fn(x, w):
        return ops.conv2d_resample(x, w, f, up=up, down=down, padding=k // 2)

    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


# ----------------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "fn,kwargs,error,match",
    [
        ("conv2d", dict(input=torch.ones(2, 4, 5, 5, dtype=torch.int32)), TypeError, "input must be float"),
        ("conv2d", dict(input=torch.ones(4, 5)), ValueError, "input must be 4-D"),
        ("conv2d", dict(weight=torch.ones(6, 3, 3, 3)), ValueError, "input has 4 channels"),
        ("conv2d", dict(weight=torch.ones(6, 4, 3)), ValueError, "weight must be 4-D"),
        ("conv2d", dict(weight=torch.ones(6, 4, 3, 3, dtype=torch.float64)), TypeError, "weight has dtype"),
        ("conv2d", dict(bias=torch.ones(5)), ValueError, "bias must have shape"),
        ("conv2d", dict(stride=0), ValueError, "stride must be >= 1"),
        ("conv2d", dict(stride=1.5), TypeError, "stride must be an int"),
        ("conv2d", dict(padding=-1), ValueError, "padding must be >= 0"),
        ("conv2d", dict(padding="full"), ValueError, "padding must be"),
        ("conv2d", dict(padding="same", stride=2), ValueError, "needs stride 1"),
        ("conv2d", dict(weight=torch.ones(6, 1, 3, 3), groups=4), ValueError, "not divisible by groups"),
        ("conv2d", dict(groups=0), ValueError, "groups must be >= 1"),
        ("conv2d", dict(weight=torch.ones(6, 4, 7, 7)), ValueError, "output would be empty"),
        ("conv_transpose2d", dict(weight=torch.ones(3, 2, 3, 3)), ValueError, "input has 4 channels"),
        ("conv_transpose2d", dict(weight=torch.ones(4, 2, 3, 3), output_padding=1), ValueError, "output_padding"),
        ("conv_transpose2d", dict(weight=torch.ones(4, 2, 3, 3), bias=torch.ones(6)), ValueError, "bias must"),
    ],
)
def test_bad_input(fn, kwargs, error, match):
    args = dict(input=torch.ones(2, 4, 5, 5), weight=torch.ones(6, 4, 3, 3))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        getattr(ops, fn)(**args)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(x=torch.ones(4, 5, 5)), ValueError, "x must be 4-D"),
        (dict(w=torch.ones(6, 3, 3, 3)), ValueError, "x has 4 channels"),
        (dict(w=torch.ones(6, 4, 3, 3, dtype=torch.float64)), TypeError, "w has dtype"),
        (dict(f=torch.ones(2, 2, 2)), ValueError, "f must be a non-empty"),
        (dict(up=0), ValueError, "up must be >= 1"),
        (dict(down=2.0), TypeError, "down must be an int"),
        (dict(groups=4), ValueError, "groups=4"),
        (dict(padding=[1, 2, 3]), ValueError, "padding must have 2"),
    ],
)
def test_conv2d_resample_bad_input(kwargs, error, match):
    args = dict(x=torch.ones(2, 4, 5, 5), w=torch.ones(6, 4, 3, 3), f=None)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.conv2d_resample(**args)


@pytest.mark.parametrize("backend", ["ref", *backends_for("fused_conv2d", "cpu")])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, padding=1),  # CycleGAN's residual convs: the fused path
        dict(kernel_size=7, padding=3),  # CycleGAN's first and last convs: the fused path
        dict(kernel_size=3, padding=(2, 1), bias=False),  # the fused path, uneven padding
        dict(kernel_size=3, padding=1, stride=2),  # pad then conv
        dict(kernel_size=(3, 5), padding=(1, 2)),  # pad then conv
        dict(kernel_size=3, padding=2, dilation=2),  # pad then conv
    ],
)
def test_nn_conv2d_reflect_matches_torch(backend, kwargs):
    """gankernels.nn.Conv2d(padding_mode="reflect") == torch's, value and gradients, on each path."""
    from gankernels import nn as gnn

    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(4, 6, padding_mode="reflect", **kwargs).double()
    ours = gnn.Conv2d(4, 6, padding_mode="reflect", **kwargs).double()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours._fused == (kwargs.get("stride", 1) == 1 and kwargs.get("dilation", 1) == 1
                           and isinstance(kwargs["kernel_size"], int))  # fmt: skip
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64, requires_grad=True)
    with gankernels.use_backend(backend):
        y = ours(x)
        got = torch.autograd.grad(y.square().sum(), [x, *ours.parameters()])
    want_y = theirs(x)
    want = torch.autograd.grad(want_y.square().sum(), [x, *theirs.parameters()])
    torch.testing.assert_close(y, want_y)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_nn_conv2d_padding_modes_refused():
    from gankernels import nn as gnn

    for mode in ("circular", "replicate"):
        with pytest.raises(ValueError, match="padding_mode must be 'zeros' or 'reflect'"):
            gnn.Conv2d(3, 4, 3, padding=1, padding_mode=mode)
    with pytest.raises(ValueError, match="padding must be an int or a pair"):
        gnn.Conv2d(3, 4, 3, padding="same", padding_mode="reflect")


# ----------------------------------------------------------------------------------------------------------------
# Small float32 NCHW convolutions on CPU run on ATen's native kernels (oneDNN off for the call)


def test_small_cpu_convolutions_run_without_onednn_and_the_flag_comes_back(monkeypatch):
    import importlib

    conv_module = importlib.import_module("gankernels.ops.conv2d")
    seen = []
    on_cpu = conv_module._on_cpu

    def spy(run, *args):  # records, for each torch call, whether oneDNN was on
        def spied(*a):
            seen.append(("fwd" if run is conv_module._torch_conv else "bwd", torch.backends.mkldnn.enabled))
            return run(*a)

        return on_cpu(spied, *args)

    monkeypatch.setattr(conv_module, "_on_cpu", spy)
    assert torch.backends.mkldnn.enabled

    def run(x, w):
        seen.clear()
        x = x.detach().requires_grad_(True)
        w = w.detach().requires_grad_(True)
        y = ops.conv2d(x, w, padding=1)
        torch.autograd.grad(y.sum(), (x, w))
        return seen[:], y

    small_x, small_w = randn(2, 4, 8, 8, dtype=torch.float32), randn(8, 4, 3, 3, dtype=torch.float32)
    calls, y = run(small_x, small_w)
    assert calls == [("fwd", False), ("bwd", False)] and torch.backends.mkldnn.enabled
    assert_close(y, F.conv2d(small_x, small_w, None, 1, 1), atol=1e-5, rtol=1e-5)  # oneDNN's result, to rounding
    n = conv_module.NATIVE_CONV_MAX_MACS
    big_x = randn(1, 8, 64, 64 * (n // (8 * 9 * 64 * 64) + 1), dtype=torch.float32)  # over the threshold
    assert run(big_x, randn(8, 8, 3, 3, dtype=torch.float32))[0] == [("fwd", True), ("bwd", True)]
    cl = small_x.to(memory_format=torch.channels_last)
    assert run(cl, small_w)[0] == [("fwd", True), ("bwd", True)]  # channels_last: oneDNN's layouts
    assert run(small_x.double(), small_w.double())[0] == [("fwd", True), ("bwd", True)]

    monkeypatch.setattr(torch.backends, "flags_frozen", lambda: True)  # as after torch.backends.disable_global_flags()
    assert run(small_x, small_w)[0] == [("fwd", True), ("bwd", True)]  # left alone: setting it would raise
    monkeypatch.undo()

    def failing(*args):
        assert not torch.backends.mkldnn.enabled
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        on_cpu(failing, None, small_x, small_w)
    assert torch.backends.mkldnn.enabled  # restored after an error too
