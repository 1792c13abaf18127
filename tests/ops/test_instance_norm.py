"""instance_norm_act on the reference, C++ (cpu) and Triton (interpreted on CPU) backends, and InstanceNormAct."""

import pytest
import torch
import torch.nn.functional as F

import gankernels
from gankernels.nn.instance_norm import InstanceNormAct
from gankernels.ops.instance_norm import instance_norm_act, resolve_backend
from gankernels.reference import instance_norm as ref
from tests.conftest import HAS_CUDA, backends_for

OP = "instance_norm"
# (backend, device) pairs: the reference and the (interpreted) Triton kernels on CPU, both on a GPU
CASES = [("ref", "cpu")] + [(b, "cpu") for b in backends_for(OP, "cpu")]
if HAS_CUDA:
    CASES += [pytest.param(b, "cuda", marks=pytest.mark.gpu) for b in ["ref"] + backends_for(OP, "cuda")]
KERNEL_CASES = [c for c in CASES if (c[0] if isinstance(c, tuple) else c.values[0]) != "ref"]
# max |y - y_ref| <= atol + rtol * |y_ref|, y_ref computed in float64 from the same (rounded) inputs
TOLERANCE = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 3e-2),
}


def assert_close(y, y_ref, dtype, scale=1.0):
    atol, rtol = TOLERANCE[dtype]
    assert y.dtype == dtype and y.shape == y_ref.shape
    if y.numel() == 0:
        return
    y, y_ref = y.double(), y_ref.double()
    assert not torch.isnan(y).any()
    err = (y - y_ref).abs() - rtol * y_ref.abs()
    assert err.max().item() <= atol * scale, f"max error {(y - y_ref).abs().max().item():.3g}"


def randn(*shape, dtype=torch.float64, device="cpu", channels_last=False, grad=False, offset=0.0):
    x = torch.randn(*shape, dtype=dtype, device=device) * 2 + offset
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.requires_grad_(grad)


def expected(x, w=None, b=None, act="linear", alpha=0.2, residual=None, eps=1e-5):
    """The definition, written out in float64."""
    x = x.double()
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True)
    z = (x - mean) / torch.sqrt(var + eps)
    if w is not None:
        z = z * w.double().view(1, -1, 1, 1)
    if b is not None:
        z = z + b.double().view(1, -1, 1, 1)
    z = {"linear": z, "relu": F.relu(z), "lrelu": F.leaky_relu(z, alpha)}[act]
    return z if residual is None else z + residual.double()


def inputs(shape, dtype=torch.float64, device="cpu", channels_last=False, affine=True, res=True, grad=False):
    x = randn(*shape, dtype=dtype, device=device, channels_last=channels_last, grad=grad, offset=1.5)
    w = randn(shape[1], dtype=dtype, device=device, grad=grad) if affine else None
    b = randn(shape[1], dtype=dtype, device=device, grad=grad) if affine else None
    r = randn(*shape, dtype=dtype, device=device, channels_last=channels_last, grad=grad) if res else None
    return x, w, b, r


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 4 elements: every plane of the tests takes the Triton kernels' multi-tile (two-read) path."""
    import gankernels.triton.instance_norm as kernels

    monkeypatch.setattr(kernels, "MAX_TILE", 4)


# ----------------------------------------------------------------------------------------------------------------
# Forward


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("act", ["linear", "relu", "lrelu"])
@pytest.mark.parametrize("affine,res", [(True, True), (False, False), (True, False)])
def test_forward_float64(backend, device, act, affine, res):
    x, w, b, r = inputs((2, 3, 5, 3), device=device, affine=affine, res=res)
    with gankernels.use_backend(backend):
        y = instance_norm_act(x, w, b, act=act, residual=r)
    assert_close(y, expected(x, w, b, act, residual=r), torch.float64)


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("which", ["weight", "bias"])
def test_weight_or_bias_alone(backend, device, which):
    x, w, b, _ = inputs((2, 3, 2, 3), device=device, res=False, grad=True)
    w, b = (w, None) if which == "weight" else (None, b)
    dy = randn(2, 3, 2, 3, device=device)
    with gankernels.use_backend(backend):
        y = instance_norm_act(x, w, b, act="lrelu")
        grads = torch.autograd.grad(y, [t for t in (x, w, b) if t is not None], dy)
    want = expected(x, w, b, "lrelu")
    assert_close(y, want, torch.float64)
    for got, wanted in zip(grads, torch.autograd.grad(want, [t for t in (x, w, b) if t is not None], dy), strict=True):
        assert_close(got, wanted, torch.float64)


@pytest.mark.parametrize("backend,device", CASES)
def test_matches_torch_instance_norm(backend, device):
    """CycleGAN's two uses: InstanceNorm2d + ReLU, and InstanceNorm2d + the block's input."""
    x, w, b, r = inputs((2, 4, 3, 5), device=device)
    with gankernels.use_backend(backend):
        y_relu = instance_norm_act(x, act="relu")
        y_res = instance_norm_act(x, residual=r)
        y_affine = instance_norm_act(x, w, b, act="lrelu", alpha=0.1, eps=1e-3)
    assert_close(y_relu, F.relu(F.instance_norm(x)), torch.float64)
    assert_close(y_res, F.instance_norm(x) + r, torch.float64)
    assert_close(y_affine, F.leaky_relu(F.instance_norm(x, weight=w, bias=b, eps=1e-3), 0.1), torch.float64)


@pytest.mark.filterwarnings("ignore:var_mean")  # the empty batch: torch warns about reducing over nothing
@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize(
    "shape,channels_last",
    [
        ((1, 3, 5, 7), False),  # batch 1, H*W = 35 (not a power of two)
        ((2, 5, 3, 3), True),  # channels_last: channels innermost in memory
        ((1, 37, 2, 3), True),  # channels_last, C over one program's block of channels
        ((2, 1, 4, 3), False),  # one channel
        ((2, 3, 1, 1), False),  # H*W == 1: var = 0, y = act(bias) + residual
        ((0, 3, 2, 2), False),  # empty batch
    ],
)
def test_layouts_and_sizes(backend, device, shape, channels_last):
    x, w, b, r = inputs(shape, device=device, channels_last=channels_last)
    with gankernels.use_backend(backend):
        y = instance_norm_act(x, w, b, act="lrelu", residual=r)
    assert_close(y, expected(x, w, b, "lrelu", residual=r), torch.float64)
    assert y.stride() == x.stride() or y.numel() == 0, "the output keeps the input's memory layout"


@pytest.mark.parametrize("backend,device", KERNEL_CASES)
@pytest.mark.parametrize("shape,channels_last", [((1, 2, 3, 5), False), ((2, 3, 3, 3), True), ((1, 2, 1, 3), False)])
def test_multi_tile_path(backend, device, shape, channels_last, small_tiles):
    """Planes larger than a tile: statistics from shifted sums over the tiles, then a second read."""
    x, w, b, r = inputs(shape, device=device, channels_last=channels_last, grad=True)
    x = (x.detach() + 100.0).requires_grad_(True)  # a large mean: the shifted sums keep the variance exact
    dy = randn(*shape, device=device)
    with gankernels.use_backend(backend):
        y = instance_norm_act(x, w, b, act="relu", residual=r)
        grads = torch.autograd.grad(y, (x, w, b, r), dy)
    want = expected(x, w, b, "relu", residual=r)
    assert_close(y, want, torch.float64, scale=100.0)
    for got, wanted in zip(grads, torch.autograd.grad(want, (x, w, b, r), dy), strict=True):
        assert_close(got, wanted, torch.float64, scale=100.0)


CPU_KERNELS = "cpu" in backends_for(OP, "cpu")
needs_cpu_kernels = pytest.mark.skipif(not CPU_KERNELS, reason="the C++ extension is not built")


@needs_cpu_kernels
@pytest.mark.parametrize("shape", [(2, 150, 3, 5), (1, 9, 2, 2), (3, 64, 1, 2)])
def test_cpu_channels_last_blocks(shape):
    """channels_last on the C++ kernels: images split into blocks of up to 64 channels (150: two full blocks and a
    short one; 9: one short block), each with its own running sums."""
    x, w, b, r = inputs(shape, channels_last=True, grad=True)
    dy = randn(*shape, channels_last=True)
    with gankernels.use_backend("cpu"):
        y = instance_norm_act(x, w, b, act="lrelu", residual=r)
        grads = torch.autograd.grad(y, (x, w, b, r), dy)
    want = expected(x, w, b, "lrelu", residual=r)
    assert_close(y, want, torch.float64)
    for got, wanted in zip(grads, torch.autograd.grad(want, (x, w, b, r), dy), strict=True):
        assert_close(got, wanted, torch.float64)


@needs_cpu_kernels
@pytest.mark.parametrize("channels_last", [False, True])
def test_cpu_kernels_give_the_same_bits_on_any_thread_count(channels_last):
    """Each plane's (each block's) sums are one task's, in a fixed order: 1 and 2 threads agree to the bit, on a size
    above the kernels' threshold for going parallel (2^15 elements)."""
    x, w, b, r = inputs((2, 40, 24, 24), dtype=torch.float32, channels_last=channels_last, grad=True)
    dy = randn(2, 40, 24, 24, dtype=torch.float32, channels_last=channels_last)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with gankernels.use_backend("cpu"):
                y = instance_norm_act(x, w, b, act="relu", residual=r)
                runs.append([y, *torch.autograd.grad(y, (x, w, b), dy)])
    finally:
        torch.set_num_threads(threads)
    for a, c in zip(*runs, strict=True):
        assert torch.equal(a, c)


@needs_cpu_kernels
def test_cpu_glue_refuses_what_would_leave_the_buffers():
    """gankernels._C.instance_norm_forward / _backward check every buffer against x (the Python layer validates user
    input; these are the last line of defence): a wrong shape, dtype, layout or an output on an input raises."""
    C = gankernels.backend.extension()
    x = torch.randn(2, 3, 4, 5)
    y, mean, rstd = torch.empty_like(x), torch.empty(2, 3), torch.empty(2, 3)
    C.instance_norm_forward(x, None, None, None, y, mean, rstd, 2, 0.0, 1e-5)  # valid
    bad = [
        (RuntimeError, "y has shape", dict(y=torch.empty(2, 3, 4, 4))),
        (TypeError, "y has dtype", dict(y=torch.empty_like(x, dtype=torch.float64))),
        (RuntimeError, "dense in x's memory format", dict(y=torch.empty_like(x, memory_format=torch.channels_last))),
        (RuntimeError, "weight must be a contiguous", dict(weight=torch.ones(4))),
        (RuntimeError, "mean must be a contiguous", dict(mean=torch.empty(3, 2))),
        (TypeError, "rstd has dtype", dict(rstd=torch.empty(2, 3, dtype=torch.float64))),
        (RuntimeError, "residual has shape", dict(residual=torch.empty(2, 3, 4, 4))),
        (RuntimeError, "x must be dense", dict(x=x.transpose(2, 3))),
        (RuntimeError, "overlaps an input", dict(y=x)),
        (RuntimeError, "act must be", dict(act=4)),
    ]
    for error, match, change in bad:
        args = dict(x=x, weight=None, bias=None, residual=None, y=y, mean=mean, rstd=rstd, act=2, alpha=0.0, eps=1e-5)
        args.update(change)
        with pytest.raises(error, match=match):
            C.instance_norm_forward(*args.values())
    dx, pw, pb = torch.empty_like(x), torch.empty(2, 3), torch.empty(2, 3)
    C.instance_norm_backward(x, x, None, None, mean, rstd, dx, pw, pb, 2, 0.0)  # valid
    with pytest.raises(RuntimeError, match="dweight_partial must be a contiguous"):
        C.instance_norm_backward(x, x, None, None, mean, rstd, dx, torch.empty(3), pb, 2, 0.0)
    with pytest.raises(RuntimeError, match="g has shape"):
        C.instance_norm_backward(x[:1], x, None, None, mean, rstd, dx, pw, pb, 2, 0.0)
    with pytest.raises(RuntimeError, match="overlaps an input"):
        C.instance_norm_backward(x, x, None, None, mean, rstd, x, pw, pb, 2, 0.0)


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_low_precision(backend, device, dtype, channels_last):
    x, w, b, r = inputs((2, 3, 4, 5), dtype=dtype, device=device, channels_last=channels_last, grad=True)
    dy = randn(2, 3, 4, 5, dtype=dtype, device=device)
    with gankernels.use_backend(backend):
        y = instance_norm_act(x, w, b, act="relu", residual=r)
        grads = torch.autograd.grad(y, (x, w, b, r), dy)
    # the reference in float64 from the same rounded inputs; the result rounded once to `dtype`
    x64, w64, b64, r64 = (t.detach().double().requires_grad_(True) for t in (x, w, b, r))
    want = ref.instance_norm_act(x64, w64, b64, "relu", 0.0, r64, 1e-5)
    assert_close(y, want.to(dtype), dtype)
    want_grads = torch.autograd.grad(want, (x64, w64, b64, r64), dy.double())
    for got, wanted, scale in zip(grads, want_grads, (4, 20, 20, 1), strict=True):  # dw, db: sums over 40 elements
        assert_close(got, wanted.to(dtype), dtype, scale=scale)


# ----------------------------------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("act", ["linear", "relu", "lrelu"])
@pytest.mark.parametrize("affine,res,channels_last", [(True, True, False), (False, True, True), (True, False, True)])
def test_gradcheck_gradgradcheck(backend, device, act, affine, res, channels_last):
    x, w, b, r = inputs((2, 2, 2, 3), device=device, channels_last=channels_last, affine=affine, res=res, grad=True)
    args = [t for t in (x, w, b, r) if t is not None]

    def fn(*args):
        it = iter(args)
        x = next(it)
        w, b = (next(it), next(it)) if affine else (None, None)
        return instance_norm_act(x, w, b, act=act, residual=next(it) if res else None)

    fast = backend != "ref"  # the interpreter runs each kernel call in numpy: random projections only
    with gankernels.use_backend(backend):
        assert torch.autograd.gradcheck(fn, args, fast_mode=fast)
        assert torch.autograd.gradgradcheck(fn, args, fast_mode=fast)


@pytest.mark.parametrize("backend,device", KERNEL_CASES)
def test_full_gradgradcheck(backend, device):
    x, w, b, r = inputs((1, 2, 2, 2), device=device, grad=True)
    with gankernels.use_backend(backend):
        fn = lambda x, w, b, r: instance_norm_act(x, w, b, act="lrelu", residual=r)  # noqa: E731
        assert torch.autograd.gradgradcheck(fn, (x, w, b, r))


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("act", ["relu", "linear"])
def test_second_order_matches_reference(backend, device, act):
    """The R1-style double backward: d/d(x, w, b) of |d sum(v * y) / dx|^2, fused kernels vs plain autograd."""
    x, w, b, _ = inputs((2, 3, 3, 2), device=device, res=False, grad=True)
    v = randn(2, 3, 3, 2, device=device)

    def penalty(fn):
        (gx,) = torch.autograd.grad((fn(x, w, b) * v).sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), (x, w, b), allow_unused=True, materialize_grads=True)

    with gankernels.use_backend(backend):
        got = penalty(lambda x, w, b: instance_norm_act(x, w, b, act=act))
    want = penalty(lambda x, w, b: expected(x, w, b, act))
    for g, r in zip(got, want, strict=True):
        assert_close(g, r, torch.float64)


@pytest.mark.parametrize("backend,device", KERNEL_CASES)
def test_third_order(backend, device):
    x, w, b, _ = inputs((1, 2, 2, 2), device=device, res=False, grad=True)
    with gankernels.use_backend(backend):

        def fn(x, w):
            return torch.autograd.grad(instance_norm_act(x, w, b, act="lrelu").square().sum(), x, create_graph=True)[0]

        assert torch.autograd.gradgradcheck(fn, (x, w), fast_mode=True)


@pytest.mark.parametrize("backend,device", CASES)
def test_partial_gradients_and_no_grad(backend, device):
    x, w, b, r = inputs((2, 3, 2, 3), device=device)
    b.requires_grad_(True)
    with gankernels.use_backend(backend):
        (db,) = torch.autograd.grad(instance_norm_act(x, w, b, residual=r).sum(), b)
        with torch.no_grad():
            y = instance_norm_act(x, w, b, residual=r)
    assert_close(db, torch.full_like(b, 2 * 6.0).detach(), torch.float64)  # d sum / d bias = N * H * W
    assert not y.requires_grad


# ----------------------------------------------------------------------------------------------------------------
# The custom ops


def _op_backends():
    return ["ref"] + backends_for(OP, "cpu")


@pytest.mark.parametrize("backend", _op_backends())
def test_registered_autograd_of_the_custom_ops(backend):
    """The custom op itself (what torch.compile sees), with all three outputs: y and the statistics mean, rstd."""
    x, w, b, r = inputs((1, 2, 2, 3), grad=True)

    def fn(x, w, b, r):
        return torch.ops.gankernels.instance_norm_act(x, w, b, r, "lrelu", 0.2, 1e-5, backend)

    assert torch.autograd.gradcheck(fn, (x, w, b, r), fast_mode=backend != "ref")
    assert torch.autograd.gradgradcheck(fn, (x, w, b, r), fast_mode=backend != "ref")


@pytest.mark.parametrize("backend", _op_backends())
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(backend, channels_last):
    x, w, b, r = inputs((2, 3, 2, 3), channels_last=channels_last, grad=True)
    op = torch.ops.gankernels.instance_norm_act
    torch.library.opcheck(op, (x, w, b, r, "relu", 0.0, 1e-5, backend))
    torch.library.opcheck(op, (x, None, None, None, "lrelu", 0.2, 1e-3, backend))
    g = randn(2, 3, 2, 3, channels_last=channels_last, grad=True)
    mean, rstd = (t.detach().requires_grad_(True) for t in ref.instance_norm_stats(x.detach(), 1e-5))
    op = torch.ops.gankernels.instance_norm_act_backward
    torch.library.opcheck(op, (g, x, w, b, mean, rstd, "relu", 0.0, backend))
    torch.library.opcheck(op, (g, x, None, None, mean, rstd, "linear", 0.0, backend))


def test_torch_compile_fullgraph():
    """torch.compile traces the custom op (fake impl + registered autograd); the ref impl runs inside it here."""
    torch._dynamo.reset()
    x, w, b, r = inputs((2, 3, 2, 3), grad=True)

    def fn(x, w, b, r):
        y, _, _ = torch.ops.gankernels.instance_norm_act(x * 2, w, b, r, "relu", 0.0, 1e-5, "ref")
        return (y * y).sum()

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    loss = compiled(x, w, b, r)
    grads = torch.autograd.grad(loss, (x, w, b, r))
    want_loss = (expected(x * 2, w, b, "relu", residual=r) ** 2).sum()
    want = torch.autograd.grad(want_loss, (x, w, b, r))
    assert_close(loss, want_loss, torch.float64)
    for g, v in zip(grads, want, strict=True):
        assert_close(g, v, torch.float64)


# ----------------------------------------------------------------------------------------------------------------
# Backend choice and bad input


def test_backend_choice():
    # automatic on CPU tensors: the C++ kernels when the extension is built, else the reference
    assert resolve_backend("cpu") == ("cpu" if "cpu" in backends_for(OP, "cpu") else "ref")
    if "cpu" in backends_for(OP, "cpu"):  # forced where its kernels cannot run: says so
        with gankernels.use_backend("cpu"), pytest.raises(RuntimeError, match="cpu backend runs on CPU tensors"):
            resolve_backend("cuda")
    with gankernels.use_backend("ref"):
        assert resolve_backend("cuda") == "ref"
    if "triton" in backends_for(OP, "cpu"):
        with gankernels.use_backend("triton"):
            assert resolve_backend("cpu") == "triton"


def test_ref_backend_is_plain_autograd():
    x = randn(2, 3, 2, 2, grad=True)
    with gankernels.use_backend("ref"):
        y = instance_norm_act(x, act="relu")
    assert "gankernels" not in type(y.grad_fn).__name__.lower()


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(x=torch.ones(2, 3, 4)), ValueError, "x must be 4-D"),
        (dict(x=torch.ones(2, 3, 4, 4, 1)), ValueError, "x must be 4-D"),
        (dict(x=torch.ones(2, 3, 0, 4)), ValueError, "H \\* W >= 1"),
        (dict(x=torch.ones(2, 3, 4, 4, dtype=torch.int32)), TypeError, "x must be float"),
        (dict(x=[1.0]), TypeError, "x must be a torch.Tensor"),
        (dict(weight=torch.ones(4)), ValueError, "weight must be 1-D of length C"),
        (dict(weight=torch.ones(3, 1)), ValueError, "weight must be 1-D"),
        (dict(weight=torch.ones(3, dtype=torch.float64)), TypeError, "weight has dtype"),
        (dict(bias=torch.ones(2)), ValueError, "bias must be 1-D of length C"),
        (dict(residual=torch.ones(2, 3, 4, 5)), ValueError, "residual must have x's shape"),
        (dict(residual=torch.ones(2, 3, 4, 4, dtype=torch.float16)), TypeError, "residual has dtype"),
        (dict(residual=torch.ones(2, 3, 4, 4, device="meta")), ValueError, "residual is on"),
        (dict(act="tanh"), ValueError, "unknown activation"),
        (dict(act=None), TypeError, "act must be a str"),
        (dict(alpha="0.2"), TypeError, "alpha must be a real number"),
        (dict(eps=-1.0), ValueError, "eps must be >= 0"),
        (dict(eps=float("inf")), ValueError, "eps must be finite"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = dict(x=torch.ones(2, 3, 4, 4), weight=torch.ones(3), bias=torch.zeros(3), act="lrelu", residual=None)
    args.update(kwargs)
    x, weight, bias = args.pop("x"), args.pop("weight"), args.pop("bias")
    with pytest.raises(error, match=match):
        instance_norm_act(x, weight, bias, **args)


# ----------------------------------------------------------------------------------------------------------------
# The module


@pytest.mark.parametrize("backend,device", CASES)
def test_module_matches_torch_instance_norm(backend, device):
    torch.manual_seed(0)
    theirs = torch.nn.InstanceNorm2d(4, affine=True).to(device)
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours = InstanceNormAct(4, affine=True, act="relu").to(device)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(InstanceNormAct(4).state_dict()) == list(torch.nn.InstanceNorm2d(4).state_dict()) == []
    x, r = torch.randn(2, 4, 3, 5, device=device), torch.randn(2, 4, 3, 5, device=device)
    with gankernels.use_backend(backend):
        assert_close(ours(x), F.relu(theirs(x)), torch.float32)
        assert_close(InstanceNormAct(4)(x, residual=r), F.instance_norm(x) + r, torch.float32)
        y = ours(x.half())  # affine parameters cast to the input's dtype
    assert y.dtype == torch.float16


def test_module_bad_arguments():
    with pytest.raises(ValueError, match="num_features"):
        InstanceNormAct(0)
    with pytest.raises(ValueError, match="unknown activation"):
        InstanceNormAct(3, act="gelu")
    assert "act=lrelu" in repr(InstanceNormAct(3, act="lrelu"))
