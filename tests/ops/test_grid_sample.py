"""grid_sample on every backend (reference, C++ cpu, Triton interpreted on CPU) against torch.nn.functional.grid_sample:
values and first-order gradients, points far outside and non-finite, gradients of any order, custom op registration,
torch.compile, memory formats, low precision and bad input."""

import importlib

import pytest
import torch
import torch.nn.functional as F

import gankernels
from gankernels.ops import grid_sample
from gankernels.reference import grid_sample as ref
from tests.conftest import HAS_CUDA, backends_for

OP = "grid_sample"
gs_module = importlib.import_module("gankernels.ops.grid_sample")
KERNELS = [b for b in backends_for(OP, "cpu") if b in ("cpu", "triton")]
CASES = [("ref", "cpu")] + [(b, "cpu") for b in KERNELS]
if HAS_CUDA:
    CASES += [pytest.param(b, "cuda", marks=pytest.mark.gpu) for b in ["ref", "triton"]]
KERNEL_CASES = [c for c in CASES if (c[0] if isinstance(c, tuple) else c.values[0]) != "ref"]
PADDING = ["zeros", "border", "reflection"]
# (x shape, grid's Ho, Wo): odd sizes, batch 1, a single row / column / pixel
SHAPES = [((2, 3, 5, 7), (4, 6)), ((1, 2, 1, 4), (3, 1)), ((1, 3, 3, 1), (2, 3)), ((1, 1, 1, 1), (2, 2))]
# max |y - y64| <= atol * max(1, max |y64|) + rtol |y64|, y64 computed in float64 from the same (rounded) inputs
TOLERANCE = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 3e-2),
}


def randn(*shape, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def random_grid(n, ho, wo, spread=3.0, dtype=torch.float64, device="cpu", seed=1):
    """Uniform in [-spread, spread]: about 2/3 of the points outside the image for spread 3."""
    g = torch.Generator().manual_seed(seed)
    grid = (torch.rand(n, ho, wo, 2, generator=g, dtype=torch.float64) * 2 - 1) * spread
    return grid.to(dtype=dtype, device=device)


def image(shape, channels_last=False, dtype=torch.float64, device="cpu", seed=0):
    x = randn(*shape, dtype=dtype, device=device, seed=seed)
    return x.to(memory_format=torch.channels_last) if channels_last else x


def run(backend, *args, **kwargs):
    with gankernels.use_backend(backend):
        return grid_sample(*args, **kwargs)


def grads(y, inputs, dy):
    found = torch.autograd.grad(y, inputs, dy, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(found, inputs, strict=True)]


def close_to(y, y64, dtype):
    atol, rtol = TOLERANCE[dtype]
    assert y.dtype == dtype and y.shape == y64.shape and not torch.isnan(y).any()
    err = (y.double() - y64).abs() - rtol * y64.abs()
    scale = max(1.0, y64.abs().max().item())
    assert err.max().item() <= atol * scale, f"max error {(y.double() - y64).abs().max().item():.3g}"


# ----------------------------------------------------------------------------------------------------------------
# Values and first-order gradients against torch


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("padding_mode", PADDING)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape,out_size", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_torch(backend, device, padding_mode, align_corners, shape, out_size, channels_last):
    """float64: y, dx and dgrid equal torch's, for random grids with most points outside the image."""
    x = image(shape, channels_last, device=device).requires_grad_(True)
    grid = random_grid(shape[0], *out_size, device=device).requires_grad_(True)
    kw = dict(padding_mode=padding_mode, align_corners=align_corners)
    y = run(backend, x, grid, **kw)
    want = F.grid_sample(x, grid, **kw)
    torch.testing.assert_close(y, want, atol=1e-12, rtol=1e-12)
    dy = randn(*want.shape, device=device, seed=2)
    for got, exp in zip(grads(y, (x, grid), dy), grads(want, (x, grid), dy), strict=True):
        torch.testing.assert_close(got, exp, atol=1e-12, rtol=1e-12)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)  # the output keeps x's memory format


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("padding_mode", PADDING)
@pytest.mark.parametrize("align_corners", [False, True])
def test_far_and_non_finite_points(backend, device, padding_mode, align_corners):
    """Coordinates far outside, +-inf and NaN: the forward equals torch's (NaN where torch gives NaN); the gradients
    equal torch's where torch's backward runs (it crashes on NaN with border and on +-inf / NaN with reflection), and
    the reference's everywhere. Never an out-of-bounds read (the kernels index in bounds by construction)."""
    specials = [1e30, -1e30, 1e10, -3e9, 50.0, -17.25, float("inf"), float("-inf"), float("nan")]
    x = image((2, 3, 4, 5), device=device).requires_grad_(True)
    base = random_grid(2, 3, len(specials), spread=1.2, device=device)
    grid = base.clone()
    grid[:, 0, :, 0] = torch.tensor(specials)  # x coordinate special, y ordinary
    grid[:, 1, :, 1] = torch.tensor(specials)  # y special
    grid[:, 2, :, :] = torch.tensor(specials)[:, None]  # both
    grid.requires_grad_(True)
    kw = dict(padding_mode=padding_mode, align_corners=align_corners)
    y = run(backend, x, grid, **kw)
    torch.testing.assert_close(y, F.grid_sample(x, grid, **kw), atol=1e-12, rtol=1e-12, equal_nan=True)
    if padding_mode != "zeros":
        assert torch.isfinite(y).all()
    dy = randn(*y.shape, device=device, seed=3)
    got = grads(y, (x, grid), dy)
    with gankernels.use_backend("ref"):
        want = grads(grid_sample(x, grid, **kw), (x, grid), dy)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-12, equal_nan=True)
    assert torch.isfinite(got[0]).all()
    safe = {"zeros": specials, "border": specials[:-1], "reflection": specials[:6]}[padding_mode]
    keep = torch.tensor([s in safe for s in specials])
    grid_t = grid.detach()[:, :, keep].requires_grad_(True)  # torch's backward runs on these
    y_t = F.grid_sample(x, grid_t, **kw)
    with gankernels.use_backend(backend):
        y_o = grid_sample(x, grid_t, **kw)
    dy = dy[:, :, :, keep]
    for g, w in zip(grads(y_o, (x, grid_t), dy), grads(y_t, (x, grid_t), dy), strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-12, equal_nan=True)
    if padding_mode != "zeros":  # a clamped non-finite coordinate has gradient 0
        assert torch.isfinite(got[1]).all()


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflection"])
def test_low_precision(backend, device, dtype, channels_last, padding_mode):
    """fp32 / fp16 / bf16 (computed in fp32) against the float64 values of the same rounded inputs."""
    x = image((2, 3, 5, 6), channels_last, dtype=dtype, device=device).requires_grad_(True)
    grid = random_grid(2, 4, 3, spread=1.3, dtype=dtype, device=device).requires_grad_(True)
    dy = randn(2, 3, 4, 3, dtype=dtype, device=device, seed=4)
    kw = dict(padding_mode=padding_mode, align_corners=False)
    y = run(backend, x, grid, **kw)
    x64, g64 = (t.detach().double().requires_grad_(True) for t in (x, grid))
    y64 = F.grid_sample(x64, g64, **kw)
    close_to(y, y64.detach(), dtype)
    for got, exp in zip(grads(y, (x, grid), dy), grads(y64, (x64, g64), dy.double()), strict=True):
        close_to(got, exp, dtype)


@pytest.mark.parametrize("backend,device", KERNEL_CASES)
def test_strided_and_empty(backend, device):
    """A sliced (non-dense) x and grid take dense copies; empty batch, channels or output give empty / zero results."""
    base = image((2, 3, 5, 8), device=device).requires_grad_(True)
    x = base[:, :, :, ::2]
    grid_base = random_grid(2, 3, 8, device=device).requires_grad_(True)
    grid = grid_base[:, :, ::2]
    y = run(backend, x, grid, padding_mode="border")
    want = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    torch.testing.assert_close(y, want, atol=1e-12, rtol=1e-12)
    dy = randn(*want.shape, device=device, seed=5)
    for got, exp in zip(grads(y, (base, grid_base), dy), grads(want, (base, grid_base), dy), strict=True):
        torch.testing.assert_close(got, exp, atol=1e-12, rtol=1e-12)
    for shape, out_size in [((0, 2, 3, 3), (2, 2)), ((2, 0, 3, 3), (2, 2)), ((2, 2, 3, 3), (0, 2))]:
        x = image(shape, device=device).requires_grad_(True)
        grid = random_grid(shape[0], *out_size, device=device).requires_grad_(True)
        y = run(backend, x, grid)
        assert y.shape == (shape[0], shape[1], *out_size)
        dx, dgrid = grads(y, (x, grid), torch.ones_like(y))
        assert dx.shape == x.shape and not dx.any() and dgrid.shape == grid.shape and not dgrid.any()


def test_reference_gradient_formula():
    """reference.grid_sample_grad, written out, is autograd of reference.grid_sample."""
    x = image((2, 3, 4, 5)).requires_grad_(True)
    grid = random_grid(2, 3, 4).requires_grad_(True)
    for padding_mode in PADDING:
        for align_corners in (False, True):
            y = ref.grid_sample(x, grid, padding_mode, align_corners)
            dy = randn(*y.shape, seed=6)
            dx, dgrid = ref.grid_sample_grad(dy, x, grid, padding_mode, align_corners)
            want = grads(y, (x, grid), dy)
            torch.testing.assert_close(dx, want[0])
            torch.testing.assert_close(dgrid, want[1])


# ----------------------------------------------------------------------------------------------------------------
# Second order and beyond


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("padding_mode", PADDING)
@pytest.mark.parametrize("align_corners", [False, True])
def test_gradcheck(backend, device, padding_mode, align_corners):
    """gradcheck and gradgradcheck in float64 with respect to x and grid (points in and around the image)."""
    x = image((1, 2, 3, 4), channels_last=align_corners, device=device).requires_grad_(True)
    grid = random_grid(1, 2, 3, spread=1.4, device=device, seed=7).requires_grad_(True)
    fn = lambda x, grid: run(backend, x, grid, padding_mode=padding_mode, align_corners=align_corners)
    assert torch.autograd.gradcheck(fn, (x, grid))
    assert torch.autograd.gradgradcheck(fn, (x, grid))


def _r1_like(backend, x, grid, padding_mode, align_corners):
    """Second-order quantities: d/d(x, grid) of |dy/dx . v|^2 + <dgrid, u>, with create_graph."""
    with gankernels.use_backend(backend):
        y = grid_sample(x, grid, padding_mode=padding_mode, align_corners=align_corners)
        v = randn(*y.shape, device=x.device, seed=8)
        dx, dgrid = torch.autograd.grad(y, (x, grid), v, create_graph=True)
        loss = dx.square().sum() + (dgrid * randn(*grid.shape, device=x.device, seed=9)).sum()
        return (dx, dgrid, *grads(loss, (x, grid), torch.ones_like(loss)))


@pytest.mark.parametrize("backend,device", KERNEL_CASES)
@pytest.mark.parametrize("padding_mode", PADDING)
@pytest.mark.parametrize("channels_last", [False, True])
def test_second_order_equals_reference(backend, device, padding_mode, channels_last):
    """First and second order on each backend equal the reference's to ~1e-12 in float64 (the R1 path)."""
    x = image((2, 3, 4, 5), channels_last, device=device).requires_grad_(True)
    grid = random_grid(2, 3, 4, spread=1.5, device=device, seed=10).requires_grad_(True)
    got = _r1_like(backend, x, grid, padding_mode, True)
    want = _r1_like("ref", x, grid, padding_mode, True)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("padding_mode", PADDING)
def test_r1_constant_grid(backend, device, padding_mode):
    """ADA's R1: the grid is a constant, x requires grad; the double backward's dy part runs on the forward op.
    gradgradcheck with respect to x (and dy), and the penalty's gradient equal to the reference's."""
    grid = random_grid(2, 3, 4, spread=1.3, device=device, seed=14)
    x = image((2, 2, 4, 3), channels_last=padding_mode == "border", device=device).requires_grad_(True)
    fn = lambda x: run(backend, x, grid, padding_mode=padding_mode)
    assert torch.autograd.gradgradcheck(fn, (x,))
    w = randn(2, 2, 3, 4, device=device, seed=15).requires_grad_(True)
    found = []
    for name in (backend, "ref"):
        with gankernels.use_backend(name):
            (dx,) = torch.autograd.grad(
                (w * grid_sample(x, grid, padding_mode=padding_mode)).sum(), x, create_graph=True
            )
            found.append((dx, *grads(dx.square().sum(), (x, w), None)))
    for g, r in zip(*found, strict=True):
        torch.testing.assert_close(g, r, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend,device", CASES)
def test_third_order(backend, device):
    """Any order: the third derivative with respect to grid through the backward op's reference backward."""
    x = image((1, 2, 3, 3), device=device).requires_grad_(True)
    grid = random_grid(1, 2, 2, spread=0.9, device=device, seed=11).requires_grad_(True)
    fn = lambda grid: run(backend, x, grid, padding_mode="zeros").square().sum()
    (g1,) = torch.autograd.grad(fn(grid), grid, create_graph=True)
    (g2,) = torch.autograd.grad(g1.square().sum(), grid, create_graph=True)
    (g3,) = torch.autograd.grad(g2.sum(), grid)
    x2 = x.detach().requires_grad_(False)
    grid2 = grid.detach().requires_grad_(True)
    h = lambda grid: ref.grid_sample(x2, grid, "zeros", False).square().sum()
    (r1,) = torch.autograd.grad(h(grid2), grid2, create_graph=True)
    (r2,) = torch.autograd.grad(r1.square().sum(), grid2, create_graph=True)
    (r3,) = torch.autograd.grad(r2.sum(), grid2)
    torch.testing.assert_close(g3, r3, atol=1e-10, rtol=1e-10)


# ----------------------------------------------------------------------------------------------------------------
# Registration, compile, dispatch, determinism


@pytest.mark.parametrize("backend,device", CASES)
def test_opcheck(backend, device):
    x = image((2, 3, 4, 5), device=device).requires_grad_(True)
    grid = random_grid(2, 3, 2, device=device).requires_grad_(True)
    torch.library.opcheck(torch.ops.gankernels.grid_sample, (x, grid, "zeros", False, backend))
    x_cl = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    torch.library.opcheck(torch.ops.gankernels.grid_sample, (x_cl, grid, "reflection", True, backend))
    dy = randn(2, 3, 3, 2, device=device, seed=12).requires_grad_(True)
    for want in [(True, True), (True, False), (False, True)]:
        torch.library.opcheck(torch.ops.gankernels.grid_sample_backward, (dy, x, grid, "border", False, backend, *want))


@pytest.mark.parametrize("backend", ["ref"] + KERNELS)
def test_compile_fullgraph(backend):
    torch._dynamo.reset()
    x = image((1, 2, 5, 6), dtype=torch.float32).requires_grad_(True)
    grid = random_grid(1, 3, 4, spread=1.2, dtype=torch.float32).requires_grad_(True)

    def fn(x, grid):
        return grid_sample(x, grid, padding_mode="reflection").sin() * 2

    with gankernels.use_backend(backend):
        y = torch.compile(fn, fullgraph=True)(x, grid)
        got = grads(y.sum(), (x, grid), None)
        y_eager = fn(x, grid)
        want = grads(y_eager.sum(), (x, grid), None)
    torch.testing.assert_close(y, y_eager)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_dispatch():
    """Automatic on CPU tensors: the C++ kernels when built, else the reference; forced backends are honoured."""
    cpu_built = "cpu" in KERNELS
    assert gs_module.resolve_backend("cpu") == ("cpu" if cpu_built else "ref")
    x = image((1, 1, 2, 2)).requires_grad_(True)
    grid = random_grid(1, 1, 1)
    name = type(grid_sample(x, grid).grad_fn).__name__
    assert ("GridSample" in name) == cpu_built
    with gankernels.use_backend("ref"):
        assert gs_module.resolve_backend("cpu") == "ref"
    if "triton" in KERNELS:
        with gankernels.use_backend("triton"):
            assert gs_module.resolve_backend("cpu") == "triton"
            assert "GridSample" in type(grid_sample(x, grid).grad_fn).__name__
    if cpu_built:
        with gankernels.use_backend("cpu"):
            assert gs_module.resolve_backend("cpu") == "cpu"
            with pytest.raises(RuntimeError, match="cannot run grid_sample on cuda tensors"):
                gs_module.resolve_backend("cuda")


@pytest.mark.parametrize("backend,device", KERNEL_CASES)
def test_deterministic_cpu_backward(backend, device):
    """Many output points on few pixels: dx is the same bit for bit on every run (cpu; Triton on CPU is serial)."""
    x = image((1, 4, 3, 3), device=device, dtype=torch.float32).requires_grad_(True)
    grid = random_grid(1, 16, 16, spread=1.0, dtype=torch.float32, device=device)
    dy = randn(1, 4, 16, 16, dtype=torch.float32, device=device, seed=13)
    first = grads(run(backend, x, grid), (x,), dy)[0]
    for _ in range(3):
        assert torch.equal(grads(run(backend, x, grid), (x,), dy)[0], first)


@pytest.mark.parametrize("backend,device", KERNEL_CASES)
def test_deterministic_algorithms_mode(backend, device):
    """Under torch.use_deterministic_algorithms(True) the Triton dx (an atomic scatter) comes from the reference
    formula; the values are unchanged on every backend."""
    x = image((2, 3, 4, 5), device=device).requires_grad_(True)
    grid = random_grid(2, 3, 4, spread=1.2, device=device).requires_grad_(True)
    dy = randn(2, 3, 3, 4, device=device, seed=16)
    want = grads(run(backend, x, grid), (x, grid), dy)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        got = grads(run(backend, x, grid), (x, grid), dy)
    finally:
        torch.use_deterministic_algorithms(previous)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Bad input


X = torch.ones(2, 3, 4, 4)
G = torch.zeros(2, 3, 3, 2)


@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        ((X, torch.zeros(2, 3, 3, 3)), {}, ValueError, r"grid must be \[N, Ho, Wo, 2\]"),
        ((X, torch.zeros(2, 3, 2)), {}, ValueError, r"grid must be \[N, Ho, Wo, 2\]"),
        ((X, torch.zeros(3, 3, 3, 2)), {}, ValueError, "grid has batch size 3 but x has 2"),
        ((torch.ones(3, 4, 4), G), {}, ValueError, "x must be 4-D"),
        ((torch.ones(1, 2, 3, 4, 4), G), {}, ValueError, "x must be 4-D"),
        ((torch.ones(2, 3, 0, 4), G), {}, ValueError, "x must have H, W >= 1"),
        ((X, G), {"mode": "nearest"}, ValueError, "only mode='bilinear' is supported"),
        ((X, G), {"mode": "bicubic"}, ValueError, "only mode='bilinear' is supported"),
        ((X, G), {"mode": "linear"}, ValueError, "mode='linear' is unknown"),
        ((X, G), {"mode": 1}, TypeError, "mode must be a str"),
        ((X, G), {"padding_mode": "circular"}, ValueError, "padding_mode must be one of"),
        ((X, G), {"padding_mode": None}, TypeError, "padding_mode must be a str"),
        ((X, G), {"align_corners": 1}, TypeError, "align_corners must be a bool"),
        ((X, G.double()), {}, TypeError, "grid has dtype torch.float64 but x has torch.float32"),
        ((X.half(), G), {}, TypeError, "grid has dtype torch.float32 but x has torch.float16"),
        ((X, G.long()), {}, TypeError, "grid must be float"),
        ((X.long(), G), {}, TypeError, "x must be float"),
        ((X.numpy(), G), {}, TypeError, "x must be a torch.Tensor"),
        ((X, [[0.0, 0.0]]), {}, TypeError, "grid must be a torch.Tensor"),
        ((X, G.to("meta")), {}, ValueError, "grid is on meta but x is on cpu"),
    ],
)
def test_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        grid_sample(*args, **kwargs)


def test_align_corners_none_is_false():
    x, grid = image((1, 2, 3, 4)), random_grid(1, 2, 2)
    torch.testing.assert_close(grid_sample(x, grid, align_corners=None), grid_sample(x, grid))
