"""The fused pieces of modulated_conv2d (demodulation coefficients, per-sample weights, epilogue) on the reference and
Triton backends (Triton interpreted on CPU: tiny shapes), their custom ops, and the full op on the fused path against
the composed one: values in every dtype, layouts, noise shapes, gradients of first and second order, opcheck,
torch.compile, the dispatch rule and bad input."""

import importlib

import pytest
import torch

import gankernels
from gankernels import ops
from gankernels.reference import modulated_conv2d as ref
from gankernels.reference.bias_act import ACTIVATIONS
from tests.conftest import backends_for

mc = importlib.import_module("gankernels.ops.modulated_conv2d")  # the module (ops.modulated_conv2d is the function)
OP = "modulated_conv2d"
HAS_TRITON = "triton" in backends_for(OP, "cpu")
BACKENDS = ["ref"] + (["triton"] if HAS_TRITON else [])
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton cannot run on CPU tensors here")
# max |y - y_ref| <= atol + rtol * |y_ref|, y_ref in float64 from the same (rounded) inputs
TOLERANCE = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 3e-2),
}


def assert_close(y, y_ref, dtype=torch.float64, scale=1.0):
    atol, rtol = TOLERANCE[dtype]
    assert y.dtype == dtype and y.shape == y_ref.shape
    y, y_ref = y.double(), y_ref.double()
    assert not torch.isnan(y).any()
    err = (y - y_ref).abs() - rtol * y_ref.abs()
    assert err.max().item() <= atol * scale, f"max error {(y - y_ref).abs().max().item():.3g}"


def randn(*shape, seed=0, dtype=torch.float64, grad=False, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) + offset).to(dtype).requires_grad_(grad)


def pair(n=2, o=3, i=4, k=3, dtype=torch.float64, grad=True):
    return randn(o, i, k, k, seed=1, dtype=dtype, grad=grad), randn(n, i, seed=2, dtype=dtype, grad=grad, offset=1)


def grads(out, inputs, seed=9):
    inputs = [t for t in inputs if t is not None]
    return torch.autograd.grad(out, inputs, randn(*out.shape, seed=seed, dtype=out.dtype))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of one or two elements and int64 indexing: the multi-block loops, masks and int64 paths of the kernels."""
    if not HAS_TRITON:
        pytest.skip("triton cannot run on CPU tensors here")
    kernels = importlib.import_module("gankernels.triton.modulated_conv2d")
    for name, value in dict(
        BLOCK=8, TILE=4, MAX_BN=1, MAX_BO=2, MAX_WEIGHTS_BO=2, MAX_BLOCK_HW=4, INT64_FROM=0
    ).items():
        monkeypatch.setattr(kernels, name, value)


# ----------------------------------------------------------------------------------------------------------------
# Demodulation coefficients and per-sample weights


def test_reference_dcoefs_is_nvlabs_formula():
    weight, styles = pair(grad=False)
    w = weight.unsqueeze(0) * styles.reshape(2, 1, -1, 1, 1)
    assert_close(ref.demodulation_coefficients(weight, styles), (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt())
    assert_close(ref.modulated_weights(weight, styles), w)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,o,i,k", [(2, 3, 4, 3), (1, 5, 3, 1), (3, 1, 2, 2)])
def test_dcoefs_and_weights_match_reference(backend, n, o, i, k):
    weight, styles = pair(n, o, i, k)
    dcoefs = randn(n, o, seed=3, grad=True, offset=2)
    with gankernels.use_backend(backend):
        d = mc.demodulation_coefficients(weight, styles)
        w = mc.modulated_weights(weight, styles, dcoefs)
        w_plain = mc.modulated_weights(weight, styles)
    want_d = ref.demodulation_coefficients(weight, styles)
    want_w = ref.modulated_weights(weight, styles, dcoefs)
    assert_close(d, want_d)
    assert_close(w, want_w)
    assert_close(w_plain, ref.modulated_weights(weight, styles))
    with gankernels.use_backend(backend):
        got = grads(d, (weight, styles)) + grads(w, (weight, styles, dcoefs)) + grads(w_plain, (weight, styles))
    want = grads(want_d, (weight, styles)) + grads(want_w, (weight, styles, dcoefs))
    want += grads(ref.modulated_weights(weight, styles), (weight, styles))
    for g, r in zip(got, want, strict=True):
        assert_close(g, r)


def test_dcoefs_and_weights_small_blocks(small_blocks):
    test_dcoefs_and_weights_match_reference("triton", 3, 5, 3, 2)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dcoefs_and_weights_low_precision(dtype):
    """Computed in float32: within the dtype's rounding of the float64 result from the same inputs."""
    weight, styles = pair(2, 3, 4, 3, dtype=dtype)
    dcoefs = randn(2, 3, seed=3, dtype=dtype, grad=True, offset=2)
    with gankernels.use_backend("triton"):
        d = mc.demodulation_coefficients(weight, styles)
        w = mc.modulated_weights(weight, styles, dcoefs)
        w16 = mc.modulated_weights(weight, styles, dcoefs, dtype=torch.float16)  # the conv's dtype, written once
        got = grads(d, (weight, styles)) + grads(w, (weight, styles, dcoefs))
    w64, s64, d64 = (t.detach().double().requires_grad_(True) for t in (weight, styles, dcoefs))
    want_d, want_w = ref.demodulation_coefficients(w64, s64), ref.modulated_weights(w64, s64, d64)
    assert_close(d, want_d, dtype)
    assert_close(w, want_w, dtype)
    assert_close(w16, want_w, torch.float16)
    want = grads(want_d, (w64, s64)) + grads(want_w, (w64, s64, d64))
    for g, r in zip(got, want, strict=True):
        assert_close(g, r, dtype, scale=4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dcoefs_and_weights_gradgradcheck(backend):
    weight, styles = pair(2, 2, 2, 2)
    dcoefs = randn(2, 2, seed=3, grad=True, offset=2)
    with gankernels.use_backend(backend):
        assert torch.autograd.gradcheck(mc.demodulation_coefficients, (weight, styles))
        assert torch.autograd.gradgradcheck(mc.demodulation_coefficients, (weight, styles))
        assert torch.autograd.gradcheck(mc.modulated_weights, (weight, styles, dcoefs))
        assert torch.autograd.gradgradcheck(mc.modulated_weights, (weight, styles, dcoefs))


# ----------------------------------------------------------------------------------------------------------------
# Epilogue


def test_reference_epilogue_is_the_composition():
    y = randn(2, 3, 4, 5, seed=1)
    dcoefs, noise, bias = randn(2, 3, seed=2), randn(4, 5, seed=3), randn(3, seed=4)
    want = ops.bias_act(y * dcoefs.reshape(2, 3, 1, 1) + noise, bias, act="lrelu", clamp=0.5)
    assert_close(ref.epilogue(y, dcoefs, noise, bias, "lrelu", 0.2, 2**0.5, 0.5), want)


NOISE_SHAPES = [None, (2, 1, 4, 5), (1, 1, 4, 5), (4, 5), (5,), (2, 1, 1, 1), (2, 3, 4, 5)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("noise_shape", NOISE_SHAPES)
@pytest.mark.parametrize("use_dcoefs,use_bias", [(True, True), (False, True), (True, False), (False, False)])
def test_epilogue_matches_reference(backend, noise_shape, use_dcoefs, use_bias):
    y = randn(2, 3, 4, 5, seed=1, grad=True)
    dcoefs = randn(2, 3, seed=2, grad=True) if use_dcoefs else None
    noise = randn(*noise_shape, seed=3, grad=True) if noise_shape else None
    bias = randn(3, seed=4, grad=True) if use_bias else None
    kwargs = dict(act="lrelu", clamp=0.7)
    with gankernels.use_backend(backend):
        out = mc.modulated_conv2d_epilogue(y, dcoefs, noise, bias, **kwargs)
    want = ref.epilogue(y, dcoefs, noise, bias, "lrelu", 0.2, 2**0.5, 0.7)
    assert_close(out, want)
    with gankernels.use_backend(backend):
        got = grads(out, (y, dcoefs, noise, bias))
    for g, r in zip(got, grads(want, (y, dcoefs, noise, bias)), strict=True):
        assert_close(g, r)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_epilogue_every_activation(backend, act):
    """bias_act's activation table and kernel math, fused: every activation, with and without gain and clamp."""
    y = randn(2, 3, 3, 3, seed=1, grad=True)
    dcoefs, noise, bias = randn(2, 3, seed=2, grad=True), randn(2, 1, 3, 3, seed=3), randn(3, seed=4, grad=True)
    for gain, clamp in ((None, None), (0.7, 0.4)):
        with gankernels.use_backend(backend):
            out = mc.modulated_conv2d_epilogue(y, dcoefs, noise, bias, act=act, gain=gain, clamp=clamp)
            got = grads(out, (y, dcoefs, bias))
        want = ops.bias_act(y * dcoefs.reshape(2, 3, 1, 1) + noise, bias, act=act, gain=gain, clamp=clamp)
        assert_close(out, want)
        for g, r in zip(got, grads(want, (y, dcoefs, bias)), strict=True):
            assert_close(g, r)


@pytest.mark.parametrize("backend", BACKENDS)
def test_epilogue_channels_last(backend):
    y = randn(2, 3, 4, 5, seed=1).to(memory_format=torch.channels_last).requires_grad_(True)
    dcoefs, noise, bias = randn(2, 3, seed=2, grad=True), randn(2, 1, 4, 5, seed=3, grad=True), randn(3, seed=4)
    with gankernels.use_backend(backend):
        out = mc.modulated_conv2d_epilogue(y, dcoefs, noise, bias, act="swish", clamp=1.0)
        got = grads(out, (y, dcoefs, noise))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    want = ref.epilogue(y, dcoefs, noise, bias, "swish", 0.0, 2**0.5, 1.0)
    assert_close(out, want)
    for g, r in zip(got, grads(want, (y, dcoefs, noise)), strict=True):
        assert_close(g, r)


def test_epilogue_small_blocks(small_blocks):
    test_epilogue_matches_reference("triton", (1, 1, 4, 5), True, True)
    test_epilogue_channels_last("triton")


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_epilogue_low_precision(dtype, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    y = randn(2, 3, 4, 5, seed=1, dtype=dtype).to(memory_format=fmt).requires_grad_(True)
    dcoefs = randn(2, 3, seed=2, grad=True)  # float32 coefficients on a low-precision y, as modulated_conv2d makes
    dcoefs = dcoefs.detach().float().requires_grad_(True)
    noise, bias = randn(2, 1, 4, 5, seed=3, dtype=dtype, grad=True), randn(3, seed=4, dtype=dtype, grad=True)
    with gankernels.use_backend("triton"):
        out = mc.modulated_conv2d_epilogue(y, dcoefs, noise, bias, act="lrelu")
        got = grads(out, (y, dcoefs, noise, bias))
    assert out.dtype == dtype and out.is_contiguous(memory_format=fmt)
    assert [g.dtype for g in got] == [dtype, torch.float32, dtype, dtype]
    inputs64 = [t.detach().double().requires_grad_(True) for t in (y, dcoefs, noise, bias)]
    want = ref.epilogue(*inputs64, "lrelu", 0.2, 2**0.5, -1.0)
    assert_close(out, want, dtype, scale=2)
    g64 = randn(*out.shape, seed=9, dtype=dtype).double()  # the same incoming gradient, as grads() draws it
    for g, r in zip(got, torch.autograd.grad(want, inputs64, g64), strict=True):
        assert_close(g, r, g.dtype, scale=8)  # reductions over up to N H W elements


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act,clamp", [("lrelu", 0.8), ("swish", None), ("tanh", 0.9)])
def test_epilogue_gradgradcheck(backend, act, clamp):
    """Second order with respect to y, dcoefs, noise and bias (path length differentiates the generator twice)."""
    y = randn(2, 2, 2, 3, seed=1, grad=True)
    dcoefs, noise, bias = (
        randn(2, 2, seed=2, grad=True),
        randn(1, 1, 2, 3, seed=3, grad=True),
        randn(2, seed=4, grad=True),
    )

    def fn(y, dcoefs, noise, bias):
        return mc.modulated_conv2d_epilogue(y, dcoefs, noise, bias, act=act, clamp=clamp)

    with gankernels.use_backend(backend):
        assert torch.autograd.gradcheck(fn, (y, dcoefs, noise, bias))
        assert torch.autograd.gradgradcheck(fn, (y, dcoefs, noise, bias))


@needs_triton
def test_third_order_matches_reference():
    """Beyond the fused kernels: the gradient ops' own backward is autograd of the reference formulas."""
    y = randn(1, 2, 2, 2, seed=1, grad=True)
    dcoefs, bias = randn(1, 2, seed=2, grad=True), randn(2, seed=4, grad=True)

    def third(fn):
        out = fn(y, dcoefs, None, bias, act="swish")
        (gy,) = torch.autograd.grad(out.square().sum(), y, create_graph=True)
        (gd,) = torch.autograd.grad(gy.square().sum(), dcoefs, create_graph=True)
        return torch.autograd.grad(gd.sum(), (y, dcoefs, bias))

    with gankernels.use_backend("triton"):
        got = third(mc.modulated_conv2d_epilogue)
    want = third(lambda y, d, n, b, act: ref.epilogue(y, d, n, b, act, 0.0, 2**0.5, -1.0))
    for g, r in zip(got, want, strict=True):
        assert_close(g, r)


# ----------------------------------------------------------------------------------------------------------------
# The custom ops


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_dcoefs_and_weights(backend):
    weight, styles = pair(2, 3, 2, 2)
    dcoefs = randn(2, 3, seed=3, grad=True, offset=2)
    g = randn(2, 3, seed=4, grad=True)
    torch.library.opcheck(torch.ops.gankernels.modulated_conv2d_dcoefs, (weight, styles, backend))
    torch.library.opcheck(torch.ops.gankernels.modulated_conv2d_dcoefs_backward, (g, weight, styles, dcoefs, backend))
    op = torch.ops.gankernels.modulated_conv2d_weights
    torch.library.opcheck(op, (weight, styles, dcoefs, torch.float64, backend))
    torch.library.opcheck(op, (weight, styles, None, torch.float32, backend))
    g = randn(2, 3, 2, 2, 2, seed=5, grad=True)
    op = torch.ops.gankernels.modulated_conv2d_weights_backward
    torch.library.opcheck(op, (g, weight, styles, dcoefs, backend))
    torch.library.opcheck(op, (g, weight, styles, None, backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck_epilogue(backend, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    y = randn(2, 3, 2, 3, seed=1).to(memory_format=fmt).requires_grad_(True)
    dcoefs, noise, bias = (
        randn(2, 3, seed=2, grad=True),
        randn(1, 1, 2, 3, seed=3, grad=True),
        randn(3, seed=4, grad=True),
    )
    op = torch.ops.gankernels.modulated_conv2d_epilogue
    torch.library.opcheck(op, (y, dcoefs, noise, bias, "lrelu", 0.2, 1.4, 0.5, backend))
    torch.library.opcheck(op, (y, None, None, None, "swish", 0.0, 1.0, -1.0, backend))
    g = randn(2, 3, 2, 3, seed=5).to(memory_format=fmt).requires_grad_(True)
    op = torch.ops.gankernels.modulated_conv2d_epilogue_backward
    torch.library.opcheck(op, (g, y, dcoefs, noise, bias, "tanh", 0.0, 1.0, 0.5, backend))
    torch.library.opcheck(op, (g, y, None, noise, None, "linear", 0.0, 2.0, -1.0, backend))


# ----------------------------------------------------------------------------------------------------------------
# The full op: the fused path ("triton") against the composed one ("ref")

FILTER = ops.setup_filter([1, 3, 3, 1]).double()

# batch, k, up, down, noise
FULL_CASES = [
    (2, 3, 1, 1, True),
    (1, 3, 1, 1, True),  # batch 1
    (2, 1, 1, 1, False),  # 1x1
    (2, 3, 2, 1, True),  # upsampling
    (2, 3, 1, 2, False),  # downsampling
]


def full_inputs(batch, k, size=4, i=3, o=4, dtype=torch.float64):
    x = randn(batch, i, size, size, seed=1, dtype=dtype, grad=True)
    weight, styles = randn(o, i, k, k, seed=2, grad=True), randn(batch, i, seed=3, grad=True, offset=1)
    return x, weight, styles


@needs_triton
@pytest.mark.parametrize("batch,k,up,down,use_noise", FULL_CASES)
@pytest.mark.parametrize("fused_modconv", [True, False])
@pytest.mark.parametrize("demodulate", [True, False])
def test_fused_path_equals_composed(batch, k, up, down, use_noise, fused_modconv, demodulate):
    x, weight, styles = full_inputs(batch, k)
    out_size = 4 * up // down
    noise = randn(batch, 1, out_size, out_size, seed=4, grad=True) if use_noise else None
    bias = randn(4, seed=5, grad=True)
    kwargs = dict(noise=noise, up=up, down=down, padding=k // 2, resample_filter=FILTER, demodulate=demodulate,
                  flip_weight=up == 1, fused_modconv=fused_modconv, bias=bias, act="lrelu", clamp=1.5)  # fmt: skip
    inputs = (x, weight, styles, noise, bias)
    with gankernels.use_backend("triton"):
        y = ops.modulated_conv2d(x, weight, styles, **kwargs)
        got = grads(y, inputs)
    assert type(y.grad_fn).__name__.startswith("ModulatedConv2dEpilogueFunction")  # the fused epilogue ran
    with gankernels.use_backend("ref"):
        want = ops.modulated_conv2d(x, weight, styles, **kwargs)
        want_grads = grads(want, inputs)
    assert_close(y, want)
    assert_close(y, ref.modulated_conv2d(x, weight, styles, **kwargs))
    for g, r in zip(got, want_grads, strict=True):
        assert_close(g, r)


@needs_triton
@pytest.mark.parametrize("fused_modconv", [True, False])
def test_fused_path_channels_last_and_noise_shapes(fused_modconv):
    x, weight, styles = full_inputs(2, 3)
    x_cl = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    for noise in (randn(4, 4, seed=4), randn(1, 1, 4, 4, seed=4), randn(2, 4, 4, 4, seed=4), None):
        kwargs = dict(noise=noise, padding=1, fused_modconv=fused_modconv, act="swish", gain=0.5)
        with gankernels.use_backend("triton"):
            y = ops.modulated_conv2d(x_cl, weight, styles, **kwargs)
        assert_close(y, ref.modulated_conv2d(x, weight, styles, **kwargs))


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fused_modconv", [True, False])
def test_fused_path_low_precision(dtype, fused_modconv):
    x, weight, styles = full_inputs(2, 3, dtype=dtype)
    weight, styles = weight.detach().float(), styles.detach().float()  # float32 parameters, as mixed precision keeps
    kwargs = dict(noise=randn(2, 1, 4, 4, seed=4, dtype=dtype), padding=1, fused_modconv=fused_modconv, act="lrelu")
    with gankernels.use_backend("triton"):
        y = ops.modulated_conv2d(x, weight, styles, **kwargs)
    with gankernels.use_backend("ref"):
        want = ops.modulated_conv2d(x, weight, styles, **kwargs)
    assert y.dtype == dtype
    exact = ref.modulated_conv2d(x.detach().double(), weight.double(), styles.double(), **kwargs)
    assert_close(y, exact, dtype, scale=4)
    assert_close(want, exact, dtype, scale=4)


@needs_triton
@pytest.mark.parametrize("fused_modconv", [True, False])
def test_fused_path_gradgradcheck(fused_modconv):
    """Path length regularisation differentiates G twice: second order with respect to x, weight and styles through
    the fused kernels (fast mode: one random direction; the pieces are checked in full above)."""
    x, weight, styles = full_inputs(2, 3, size=3, i=2, o=2)
    noise, bias = randn(2, 1, 3, 3, seed=4), randn(2, seed=5, grad=True)

    def fn(x, weight, styles, bias):
        return ops.modulated_conv2d(x, weight, styles, noise=noise, padding=1, fused_modconv=fused_modconv,
                                    bias=bias, act="lrelu", clamp=2.0)  # fmt: skip

    with gankernels.use_backend("triton"):
        assert torch.autograd.gradcheck(fn, (x, weight, styles, bias), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (x, weight, styles, bias), fast_mode=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fused_modconv", [True, False])
def test_torch_compile_fullgraph(backend, fused_modconv):
    """torch.compile traces the custom ops (fake impls + registered autograd) without a graph break."""
    torch._dynamo.reset()
    x, weight, styles = full_inputs(2, 3)
    noise, bias = randn(2, 1, 4, 4, seed=4), randn(4, seed=5, grad=True)

    def fn(x, weight, styles, bias):
        y = ops.modulated_conv2d(x, weight, styles, noise=noise, padding=1, fused_modconv=fused_modconv, bias=bias,
                                 act="lrelu", clamp=1.0)  # fmt: skip
        return y.square().sum()

    with gankernels.use_backend(backend):
        loss = torch.compile(fn, fullgraph=True, backend="aot_eager")(x, weight, styles, bias)
        got = torch.autograd.grad(loss, (x, weight, styles, bias))
    want_loss = fn(x, weight, styles, bias)
    assert_close(loss, want_loss)
    for g, r in zip(got, torch.autograd.grad(want_loss, (x, weight, styles, bias)), strict=True):
        assert_close(g, r)


# ----------------------------------------------------------------------------------------------------------------
# Dispatch and bad input


def test_dispatch_rule():
    assert mc.resolve_backend("cpu") == "ref"  # automatic on CPU tensors: the composed path (C++ bias_act)
    for name in ("ref", "cpu"):
        if gankernels.backend.why_unavailable(name, "bias_act", "cpu") is None:
            with gankernels.use_backend(name):
                assert mc.resolve_backend("cpu") == "ref"
    if HAS_TRITON:
        with gankernels.use_backend("triton"):
            assert mc.resolve_backend("cpu") == "triton"
    want_cuda = "triton" if gankernels.backend.why_unavailable("triton", OP, "cuda") is None else "ref"
    assert mc.resolve_backend("cuda") == want_cuda
    x, weight, styles = full_inputs(2, 1)
    y = ops.modulated_conv2d(x, weight, styles, bias=randn(4, seed=5))
    assert not type(y.grad_fn).__name__.startswith("ModulatedConv2dEpilogueFunction")  # composed on CPU by default


@needs_triton
def test_forced_triton_refused_where_it_cannot_run():
    with gankernels.use_backend("triton"), pytest.raises(RuntimeError, match="cannot run modulated_conv2d on meta"):
        mc.resolve_backend("meta")


BAD = [
    (dict(styles=torch.ones(2, 5)), ValueError, "styles must have shape"),
    (dict(weight=torch.ones(4, 5, 3, 3)), ValueError, "x has 3 channels but weight expects"),
    (dict(x=torch.ones(2, 3, 4, 4, dtype=torch.int64)), TypeError, "x must be float"),
    (dict(noise=torch.ones(2, 2, 4, 4)), ValueError, "noise of shape"),
    (dict(noise=torch.ones(5, 5)), ValueError, "noise of shape"),
    (dict(bias=torch.ones(3)), ValueError, r"bias must have shape \[O\]"),
    (dict(act="gelu"), ValueError, "unknown activation"),
    (dict(clamp=-1), ValueError, "clamp must be >= 0"),
    (dict(fused_modconv="no"), TypeError, "fused_modconv must be a bool"),
]


@needs_triton
@pytest.mark.parametrize("kwargs,error,match", BAD)
def test_bad_input_on_the_fused_path(kwargs, error, match):
    args = dict(x=torch.ones(2, 3, 4, 4), weight=torch.ones(4, 3, 3, 3), styles=torch.ones(2, 3), padding=1)
    args.update(kwargs)
    with gankernels.use_backend("triton"), pytest.raises(error, match=match):
        ops.modulated_conv2d(**args)


BAD_PIECES = [
    (lambda: mc.demodulation_coefficients(torch.ones(3, 2, 1), torch.ones(2, 2)), ValueError, "weight must be 4-D"),
    (lambda: mc.demodulation_coefficients(torch.ones(3, 2, 1, 1), torch.ones(2, 3)), ValueError, "styles must have"),
    (lambda: mc.demodulation_coefficients(torch.ones(3, 2, 1, 1), [1.0]), TypeError, "styles must be a torch.Tensor"),
    (lambda: mc.modulated_weights(torch.ones(3, 2, 1, 1), torch.ones(2, 2), torch.ones(3, 2)), ValueError, "dcoefs"),
    (lambda: mc.modulated_weights(torch.ones(3, 2, 1, 1), torch.ones(2, 2), dtype=torch.int32), TypeError, "dtype"),
    (lambda: mc.modulated_conv2d_epilogue(torch.ones(2, 3, 4)), ValueError, "y must be 4-D"),
    (lambda: mc.modulated_conv2d_epilogue(torch.ones(2, 3, 4, 4), torch.ones(3, 2)), ValueError, "dcoefs must have"),
    (lambda: mc.modulated_conv2d_epilogue(torch.ones(2, 3, 4, 4), noise=torch.ones(3, 4)), ValueError, "noise of"),
    (lambda: mc.modulated_conv2d_epilogue(torch.ones(2, 3, 4, 4), bias=torch.ones(2)), ValueError, "bias must have"),
    (lambda: mc.modulated_conv2d_epilogue(torch.ones(2, 3, 4, 4), act=1), TypeError, "act must be a str"),
    (lambda: mc.modulated_conv2d_epilogue(torch.ones(2, 3, 4, 4), alpha="x"), TypeError, "alpha must be a real"),
    (lambda: mc.modulated_conv2d_epilogue(torch.ones(2, 3, 4, 4), clamp=-2), ValueError, "clamp must be >= 0"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call,error,match", BAD_PIECES)
def test_bad_input_to_the_pieces(backend, call, error, match):
    with gankernels.use_backend(backend), pytest.raises(error, match=match):
        call()
