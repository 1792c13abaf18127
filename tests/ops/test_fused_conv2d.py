"""fused_conv2d (modulation + zero/reflection padding + conv + StyleGAN2 epilogue) on the reference and Triton backends
(Triton interpreted on CPU: tiny shapes, float32/float64) against the float64 reference: kernel sizes, padding modes,
optional inputs, activations, layouts, odd sizes, gradients of first and second order, opcheck, torch.compile, the
dispatch rule, the StyleGAN2 and CycleGAN compositions it replaces, and bad input."""

import importlib

import pytest
import torch
import torch.nn.functional as F

import gankernels
from gankernels import ops
from gankernels.reference import fused_conv2d as ref
from gankernels.reference.bias_act import ACTIVATIONS
from tests.conftest import WeightGradCounter, backends_for

fc = importlib.import_module("gankernels.ops.fused_conv2d")
OP = "fused_conv2d"
HAS_TRITON = "triton" in backends_for(OP, "cpu")
BACKENDS = ["ref"] + (["triton"] if HAS_TRITON else [])
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton cannot run on CPU tensors here")
# max |y - y_ref| <= tol * (1 + max |y_ref|), y_ref in float64 from the same inputs (sums of up to I k k terms)
TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
INPUTS = ("x", "weight", "in_scale", "out_scale", "noise", "bias")


def assert_close(y, want, dtype=torch.float64, scale=1.0):
    assert y.shape == want.shape, (y.shape, want.shape)
    y, want = y.double(), want.double()
    err = (y - want).abs().max().item() if y.numel() else 0.0
    assert err <= TOLERANCE[dtype] * scale * (1 + want.abs().max().item()), f"max error {err:.3g}"


def randn(*shape, seed=0, dtype=torch.float64, grad=False, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) + offset).to(dtype).requires_grad_(grad)


def make(n=2, i=3, o=4, h=6, w=5, k=3, dtype=torch.float64, grad=True, use=INPUTS, noise_shape=None, fmt=None):
    """x, weight and the optional inputs named in `use` (the rest None), as a kwargs dict."""
    x = randn(n, i, h, w, seed=1, dtype=dtype)
    if fmt is not None:
        x = x.to(memory_format=fmt)
    args = dict(x=x.requires_grad_(grad), weight=randn(o, i, k, k, seed=2, dtype=dtype, grad=grad))
    pad = (h + 2 * (k // 2) - k + 1, w + 2 * (k // 2) - k + 1)
    extra = dict(
        in_scale=lambda: randn(n, i, seed=3, dtype=dtype, grad=grad, offset=1.0),
        out_scale=lambda: randn(n, o, seed=4, dtype=dtype, grad=grad, offset=0.5),
        noise=lambda: randn(*(noise_shape or (n, 1, *pad)), seed=5, dtype=dtype, grad=grad),
        bias=lambda: randn(o, seed=6, dtype=dtype, grad=grad),
    )
    for name, fn in extra.items():
        args[name] = fn() if name in use else None
    return args


def run(backend, args, **kwargs):
    with gankernels.use_backend(backend):
        return fc.fused_conv2d(args["x"], args["weight"], **{k: args[k] for k in INPUTS[2:]}, **kwargs)


def reference(args, **kwargs):
    return ref.fused_conv2d(args["x"], args["weight"], **{k: args[k] for k in INPUTS[2:]}, **kwargs)


def grads(backend, out, args, seed=9):
    names = [k for k in INPUTS if args[k] is not None and args[k].requires_grad]
    g = randn(*out.shape, seed=seed, dtype=out.dtype)
    with gankernels.use_backend(backend):
        return torch.autograd.grad(out, [args[k] for k in names], g)


def check(backend, args, dtype=torch.float64, scale=1.0, **kwargs):
    """Forward and first-order gradients against the reference on the same inputs, made float64."""
    out = run(backend, args, **kwargs)
    assert out.dtype == args["x"].dtype
    args64 = {k: None if t is None else t.detach().double().requires_grad_(t.requires_grad) for k, t in args.items()}
    if args["x"].is_contiguous(memory_format=torch.channels_last) and not args["x"].is_contiguous():
        args64["x"] = args64["x"].detach().to(memory_format=torch.channels_last).requires_grad_(True)
    want = reference(args64, **kwargs)
    assert_close(out, want, dtype, scale)
    if out.requires_grad:
        for got, exp in zip(grads(backend, out, args), grads("ref", want, args64), strict=True):
            assert_close(got, exp, dtype, scale * 4)
    return out


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiles of 2-4 elements and int64 indexing: the multi-tile loops, masks and int64 paths of the kernel."""
    if not HAS_TRITON:
        pytest.skip("triton cannot run on CPU tensors here")
    kernels = importlib.import_module("gankernels.triton.fused_conv2d")
    for name, value in dict(BLOCK_M=4, BLOCK_N=2, BLOCK_K=2, INT64_FROM=0).items():
        monkeypatch.setattr(kernels, name, value)


# ----------------------------------------------------------------------------------------------------------------
# The reference is the composition it replaces


def test_reference_is_the_composition():
    args = make(grad=False)
    x, w, s, d, noise, b = (args[k] for k in INPUTS)
    for mode in ("zeros", "reflect"):
        xs = x * s[:, :, None, None]
        xp = F.pad(xs, [1, 1, 1, 1], mode="reflect") if mode == "reflect" else F.pad(xs, [1, 1, 1, 1])
        y = F.conv2d(xp, w) * d[:, :, None, None] + noise
        want = ops.bias_act(y, b, act="lrelu", clamp=0.5)
        assert_close(reference(args, padding_mode=mode, act="lrelu", clamp=0.5), want)
    pad_conv = torch.nn.Sequential(torch.nn.ReflectionPad2d(2), torch.nn.Conv2d(3, 4, 5)).double()
    got = ref.fused_conv2d(x, pad_conv[1].weight, padding_mode="reflect", bias=pad_conv[1].bias, act="relu", gain=1)
    assert_close(got, F.relu(pad_conv(x)))


# ----------------------------------------------------------------------------------------------------------------
# Values and first-order gradients


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_kernel_sizes_and_padding_modes(backend, k, mode):
    check(backend, make(h=8, w=7, k=k), padding_mode=mode, act="lrelu", clamp=2.0)


USE = [(), ("in_scale",), ("out_scale",), ("noise",), ("bias",), ("in_scale", "out_scale"), ("noise", "bias")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("use", USE, ids=lambda u: "+".join(u) or "none")
def test_optional_inputs(backend, use):
    check(backend, make(use=use), padding_mode="reflect" if "bias" in use else "zeros")
    check(backend, make(use=use), act="relu", gain=0.5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_activations_gain_clamp(backend, act):
    args = make(n=1, i=2, o=3, h=4, w=4)
    # |z| < 20: torch's softplus is exactly z above 20, bias_act's kernel adds log1p(exp(-z)) (~1e-9) there
    args["weight"] = (0.3 * args["weight"]).detach().requires_grad_(True)
    check(backend, args, act=act)
    check(backend, args, act=act, alpha=0.3, gain=0.7, clamp=0.4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_channels_last(backend, mode):
    args = make(fmt=torch.channels_last)
    args["weight"] = args["weight"].detach().to(memory_format=torch.channels_last).requires_grad_(True)  # as ToRGB's
    out = check(backend, args, padding_mode=mode, act="swish", clamp=1.0)
    assert out.is_contiguous(memory_format=torch.channels_last)
    plain = run(backend, make(), padding_mode=mode, act="swish", clamp=1.0)
    assert plain.is_contiguous()
    assert_close(out, plain)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "shape,padding,mode",
    [
        ((1, 3, 5, 7, 9, 3), None, "zeros"),  # batch 1, M = 63, O = 5, K = 27: no multiple of any tile
        ((3, 5, 1, 1, 1, 1), None, "zeros"),  # 1x1 images, one output channel
        ((2, 3, 4, 5, 5, 3), 0, "zeros"),  # valid convolution: smaller output
        ((2, 3, 4, 5, 5, 3), (2, 0), "zeros"),  # asymmetric: larger in H, smaller in W
        ((2, 3, 4, 4, 6, 5), (3, 1), "reflect"),  # reflect pad up to size - 1
        ((1, 2, 3, 2, 2, 3), 1, "reflect"),  # 2x2 images: every tap reflects
    ],
)
def test_odd_sizes_and_explicit_padding(backend, shape, padding, mode):
    n, i, o, h, w, k = shape
    args = make(n=n, i=i, o=o, h=h, w=w, k=k, use=("in_scale", "out_scale", "bias"))
    check(backend, args, padding=padding, padding_mode=mode, act="lrelu")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("noise_shape", [(1, 1, 6, 5), (6, 5), (5,), (2, 1, 1, 1), (1, 6, 5)])
def test_noise_shapes(backend, noise_shape):
    check(backend, make(use=("noise", "out_scale"), noise_shape=noise_shape), act="tanh")


def test_small_blocks(small_blocks):
    test_kernel_sizes_and_padding_modes("triton", 3, "reflect")
    test_odd_sizes_and_explicit_padding("triton", (1, 3, 5, 7, 9, 3), None, "zeros")
    test_channels_last("triton", "zeros")


@needs_triton
def test_float32_on_the_kernel():
    check("triton", make(dtype=torch.float32, k=5), dtype=torch.float32, padding_mode="reflect", act="lrelu")
    check("triton", make(dtype=torch.float32, fmt=torch.channels_last), dtype=torch.float32, act="swish")


@needs_triton
def test_without_gradients_skips_the_saved_conv():
    """The forward writes y (the conv before the epilogue) only when a gradient will be needed; same result."""
    args = make(grad=False)
    with torch.no_grad():
        a = run("triton", make(), act="lrelu")
    b = run("triton", args, act="lrelu")
    assert not b.requires_grad
    assert_close(a, b)
    with gankernels.use_backend("triton"):
        y_shape = torch.ops.gankernels.fused_conv2d(args["x"], args["weight"], None, None, None, None, [1, 1], False,
                                                    "linear", 0.0, 1.0, -1.0, False, "triton")[1].shape  # fmt: skip
    assert y_shape == (0,)


# ----------------------------------------------------------------------------------------------------------------
# Gradients of second order, no_weight_gradients


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode,act,clamp", [("zeros", "lrelu", 1.0), ("reflect", "swish", None)])
def test_gradcheck_and_gradgradcheck(backend, mode, act, clamp):
    args = make(n=2, i=2, o=2, h=3, w=3)
    names = list(INPUTS)

    def fn(*tensors):
        kw = dict(zip(names, tensors, strict=True))
        with gankernels.use_backend(backend):
            return fc.fused_conv2d(kw.pop("x"), kw.pop("weight"), **kw, padding_mode=mode, act=act, clamp=clamp)

    inputs = tuple(args[k] for k in names)
    fast = backend == "triton"  # fast mode: random directions (the forward kernel runs interpreted)
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=fast)
    assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=fast)


@needs_triton
def test_second_order_matches_reference():
    """An R1 / path-length shape of double backward: d/d(params) of |d out / d x|^2, triton against the reference."""
    args = make(n=2, i=3, o=2, h=5, w=4)
    params = [args[k] for k in INPUTS]

    def second(fn):
        out = fn(args, padding_mode="reflect", act="lrelu", clamp=1.5)
        (gx,) = torch.autograd.grad((out * out.detach().sin()).sum(), args["x"], create_graph=True)
        return torch.autograd.grad(gx.square().sum(), params)

    got = second(lambda a, **kw: run("triton", a, **kw))
    for g, r in zip(got, second(reference), strict=True):
        assert_close(g, r)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_weight_gradients(backend):
    args = make(use=("in_scale", "out_scale"))
    out = run(backend, args, padding_mode="reflect", act="lrelu")
    with WeightGradCounter() as counter, ops.no_weight_gradients():
        (gx,) = torch.autograd.grad(out.sum(), args["x"], create_graph=True)
    assert counter.calls == 0
    (gx_want,) = torch.autograd.grad(reference(args, padding_mode="reflect", act="lrelu").sum(), args["x"])
    assert_close(gx, gx_want)


# ----------------------------------------------------------------------------------------------------------------
# The custom op, torch.compile


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    args = make(n=2, i=2, o=3, h=3, w=4, fmt=fmt)
    x, w, s, d, _, b = (args[k] for k in INPUTS)
    noise = randn(1, 1, 3, 4, seed=5, grad=True)
    op = torch.ops.gankernels.fused_conv2d
    torch.library.opcheck(op, (x, w, s, d, noise, b, [1, 1], True, "lrelu", 0.2, 1.4, 0.5, True, "triton"))
    torch.library.opcheck(op, (x, w, None, None, None, None, [0, 2], False, "linear", 0.0, 1.0, -1.0, False, "triton"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_torch_compile_fullgraph(backend, mode):
    """torch.compile traces the custom op (fake impl + registered autograd) without a graph break."""
    torch._dynamo.reset()
    args = make(n=2, i=2, o=3, h=4, w=4)
    tensors = [args[k] for k in INPUTS]

    def fn(x, weight, in_scale, out_scale, noise, bias):
        y = fc.fused_conv2d(x, weight, padding_mode=mode, in_scale=in_scale, out_scale=out_scale, noise=noise,
                            bias=bias, act="lrelu", clamp=1.0)  # fmt: skip
        return y.square().sum()

    with gankernels.use_backend(backend):
        loss = torch.compile(fn, fullgraph=True, backend="aot_eager")(*tensors)
        got = torch.autograd.grad(loss, tensors)
    want = fn(*tensors)
    assert_close(loss, want)
    for g, r in zip(got, torch.autograd.grad(want, tensors), strict=True):
        assert_close(g, r)


# ----------------------------------------------------------------------------------------------------------------
# What it replaces: a StyleGAN2 layer (fused_modconv=False) and CycleGAN's ReflectionPad2d + Conv2d


@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_a_stylegan2_layer(backend):
    x, weight = randn(2, 3, 5, 5, seed=1, grad=True), randn(4, 3, 3, 3, seed=2, grad=True)
    styles, noise, bias = randn(2, 3, seed=3, offset=1, grad=True), randn(2, 1, 5, 5, seed=4), randn(4, seed=5)
    layer = dict(noise=noise, padding=1, fused_modconv=False, bias=bias, act="lrelu", clamp=256.0)
    with gankernels.use_backend("ref"):
        want = ops.modulated_conv2d(x, weight, styles, **layer)
    mc = importlib.import_module("gankernels.ops.modulated_conv2d")
    with gankernels.use_backend(backend):
        dcoefs = mc.demodulation_coefficients(weight, styles)
        got = fc.fused_conv2d(x, weight, in_scale=styles, out_scale=dcoefs, noise=noise, bias=bias, act="lrelu",
                              clamp=256.0)  # fmt: skip
    assert_close(got, want)
    for g, r in zip(grads(backend, got, dict(x=x, weight=weight, in_scale=styles, out_scale=None, noise=None,
                                             bias=None)),
                    grads("ref", want, dict(x=x, weight=weight, in_scale=styles, out_scale=None, noise=None,
                                            bias=None)), strict=True):  # fmt: skip
        assert_close(g, r)


@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_cyclegan_reflection_pad_and_conv(backend):
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.ReflectionPad2d(3), torch.nn.Conv2d(3, 4, 7), torch.nn.ReLU()).double()
    x = randn(1, 3, 8, 8, seed=1).to(memory_format=torch.channels_last)
    conv = block[1]
    got = run(backend, dict(x=x, weight=conv.weight, in_scale=None, out_scale=None, noise=None, bias=conv.bias),
              padding_mode="reflect", act="relu", gain=1.0)  # fmt: skip
    assert_close(got, block(x))
    assert got.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------------------------------------
# Dispatch and bad input


def test_dispatch_rule():
    assert fc.resolve_backend("cpu") == "ref"  # automatic: composed everywhere until a GPU benchmark says otherwise
    assert fc.resolve_backend("cuda") == "ref"
    with gankernels.use_backend("ref"):
        assert fc.resolve_backend("cpu") == "ref"
    if HAS_TRITON:
        with gankernels.use_backend("triton"):
            assert fc.resolve_backend("cpu") == "triton"
            with pytest.raises(RuntimeError, match="cannot run fused_conv2d on meta"):
                fc.resolve_backend("meta")
    args = make(use=("bias",))
    assert not type(run(None, args, act="relu").grad_fn).__name__.startswith("FusedConv2dFunction")
    if HAS_TRITON:
        assert type(run("triton", args, act="relu").grad_fn).__name__.startswith("FusedConv2dFunction")


def _call(**kwargs):
    args = dict(x=torch.ones(2, 3, 4, 4), weight=torch.ones(5, 3, 3, 3))
    args.update(kwargs)
    return fc.fused_conv2d(args.pop("x"), args.pop("weight"), **args)


BAD = [
    (dict(weight=torch.ones(5, 3, 2, 2)), ValueError, "weight must have a square kernel of odd size"),
    (dict(weight=torch.ones(5, 3, 3, 1)), ValueError, "weight must have a square kernel"),
    (dict(weight=torch.ones(5, 3, 3)), ValueError, "weight must be 4-D"),
    (dict(weight=torch.ones(5, 4, 3, 3)), ValueError, "x has 3 channels but weight expects"),
    (dict(weight=torch.ones(5, 3, 3, 3, dtype=torch.float64)), TypeError, "weight has dtype"),
    (dict(x=torch.ones(2, 3, 4)), ValueError, "x must be 4-D"),
    (dict(x=torch.ones(2, 3, 4, 4, dtype=torch.int32)), TypeError, "x must be float"),
    (dict(stride=2), ValueError, "stride must be 1"),
    (dict(stride="1"), TypeError, "stride must be an int"),
    (dict(groups=3), ValueError, "groups must be 1"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(padding="same"), TypeError, "padding must be None, an int or a pair"),
    (dict(padding=[1, 2, 3]), TypeError, "padding must be None, an int or a pair"),
    (dict(padding_mode="circular"), ValueError, "padding_mode must be 'zeros' or 'reflect'"),
    (dict(padding_mode=None), TypeError, "padding_mode must be a str"),
    (dict(padding=4, padding_mode="reflect"), ValueError, "padding .* must be smaller than the input's size"),
    (dict(x=torch.ones(2, 3, 1, 4), padding_mode="reflect"), ValueError, "must be smaller than the input's size"),
    (dict(x=torch.ones(2, 3, 1, 1), padding=0), ValueError, "smaller than the 3x3 kernel"),
    (dict(in_scale=torch.ones(2, 5)), ValueError, r"in_scale must have shape \[N, I\]"),
    (dict(out_scale=torch.ones(2, 3)), ValueError, r"out_scale must have shape \[N, O\]"),
    (dict(out_scale=[1.0]), TypeError, "out_scale must be a torch.Tensor"),
    (dict(bias=torch.ones(3)), ValueError, r"bias must have shape \[O\]"),
    (dict(noise=torch.ones(2, 5, 4, 4)), ValueError, "noise of shape"),
    (dict(noise=torch.ones(3, 3)), ValueError, "noise of shape"),
    (dict(act="gelu"), ValueError, "unknown activation"),
    (dict(act=None), TypeError, "act must be a str"),
    (dict(clamp=-1), ValueError, "clamp must be >= 0"),
    (dict(gain="2"), TypeError, "gain must be a real"),
    (dict(alpha="x"), TypeError, "alpha must be a real"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kwargs,error,match", BAD)
def test_bad_input(backend, kwargs, error, match):
    with gankernels.use_backend(backend), pytest.raises(error, match=match):
        _call(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# On a GPU: half precision through tl.dot, TF32 off for an exact float32 comparison


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_cuda_dtypes(dtype, mode, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    args = make(n=4, i=40, o=36, h=17, w=19, dtype=dtype)
    args = {k: None if t is None else t.detach().cuda().requires_grad_(True) for k, t in args.items()}
    check("triton", args, dtype=dtype, scale=8, padding_mode=mode, act="lrelu", clamp=100.0)
