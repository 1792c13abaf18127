"""minibatch_std on the reference and Triton backends (Triton interpreted on CPU) against NVlabs' formula."""

import importlib

import pytest
import torch

import gankernels
from gankernels.ops.minibatch_std import minibatch_std, resolve_backend
from gankernels.reference import minibatch_std as ref
from tests.conftest import HAS_CUDA, backends_for

OP = "minibatch_std"
mbstd_module = importlib.import_module("gankernels.ops.minibatch_std")
# (backend, device) pairs: the reference and the (interpreted) Triton kernels on CPU, both on a GPU
KERNELS = [b for b in backends_for(OP, "cpu") if b == "triton"]  # the only kernels of this op
CASES = [("ref", "cpu")] + [(b, "cpu") for b in KERNELS]
if HAS_CUDA:
    CASES += [pytest.param(b, "cuda", marks=pytest.mark.gpu) for b in ["ref", "triton"]]
KERNEL_CASES = [c for c in CASES if (c[0] if isinstance(c, tuple) else c.values[0]) != "ref"]
# max |y - y64| <= atol + rtol |y64|, y64 computed in float64 from the same (rounded) inputs
TOLERANCE = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 2e-2),
}
# (shape, group_size, num_channels): odd sizes, batch 1, G = min(group_size, N), the whole batch, G = 1
SHAPES = [
    ((4, 4, 3, 5), 2, 2),
    ((4, 3, 2, 3), None, 1),
    ((8, 2, 3, 3), 4, 1),
    ((2, 6, 1, 5), 4, 3),
    ((3, 2, 2, 2), 1, 2),
    ((1, 3, 4, 4), 4, 1),
]


def nvlabs(x, group_size, num_channels=1):
    """MinibatchStdLayer.forward as NVlabs (and gankernels.models before this op) write it."""
    n, c, h, w = x.shape
    g = min(group_size, n) if group_size is not None else n
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = y - y.mean(dim=0)
    y = y.square().mean(dim=0)
    y = (y + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4])
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


def close_to(y, y64, dtype):
    atol, rtol = TOLERANCE[dtype]
    assert y.dtype == dtype and y.shape == y64.shape and not torch.isnan(y).any()
    err = (y.double() - y64).abs() - rtol * y64.abs()
    assert err.max().item() <= atol, f"max error {(y.double() - y64).abs().max().item():.3g}"


def randn(*shape, dtype=torch.float64, device="cpu", channels_last=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, generator=g, dtype=torch.float64) * 2 + 1).to(dtype=dtype, device=device)
    return x.to(memory_format=torch.channels_last) if channels_last else x


def run(backend, fn, *args):
    with gankernels.use_backend(backend):
        return fn(*args)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of at most 8 elements, 2 per program: several chunks per (group, part), the two-kernel forward."""
    import gankernels.triton.minibatch_std as kernels

    monkeypatch.setattr(kernels, "MAX_TILE", 8)
    monkeypatch.setattr(kernels, "TILES", 2)


# ----------------------------------------------------------------------------------------------------------------
# Forward and gradient


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("shape,group_size,num_channels", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_nvlabs(backend, device, shape, group_size, num_channels, channels_last):
    """Forward and gradient against NVlabs' formula and its autograd, float64."""
    x = randn(*shape, device=device, channels_last=channels_last).requires_grad_(True)
    dout = randn(shape[0], shape[1] + num_channels, *shape[2:], device=device, seed=1)
    y = run(backend, minibatch_std, x, group_size, num_channels)
    (dx,) = torch.autograd.grad(y, x, dout)
    want = nvlabs(x, group_size, num_channels)
    torch.testing.assert_close(y, want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(dx, torch.autograd.grad(want, x, dout)[0], atol=1e-12, rtol=1e-12)
    assert torch.equal(y[:, : shape[1]], x)
    if backend != "ref":  # the kernels keep the input's memory format
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        assert y.is_contiguous(memory_format=fmt) and dx.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_low_precision(backend, device, dtype, channels_last):
    """fp16/bf16/fp32 against the float64 values of the same (rounded) inputs."""
    shape, group_size, num_channels = SHAPES[0]
    x = randn(*shape, dtype=dtype, device=device, channels_last=channels_last).requires_grad_(True)
    dout = randn(shape[0], shape[1] + num_channels, *shape[2:], dtype=dtype, device=device, seed=1)
    y = run(backend, minibatch_std, x, group_size, num_channels)
    (dx,) = torch.autograd.grad(y, x, dout)
    x64 = x.detach().double().requires_grad_(True)
    y64 = nvlabs(x64, group_size, num_channels)
    close_to(y, y64.detach(), dtype)
    close_to(dx, torch.autograd.grad(y64, x64, dout.double())[0], dtype)


@pytest.mark.parametrize("backend,device", KERNEL_CASES)
@pytest.mark.parametrize("shape,group_size,num_channels", SHAPES[:3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_multi_chunk(small_tiles, backend, device, shape, group_size, num_channels, channels_last):
    """Several programs per (group, part): partial sums, then the maps kernel."""
    x = randn(*shape, device=device, channels_last=channels_last).requires_grad_(True)
    dout = randn(shape[0], shape[1] + num_channels, *shape[2:], device=device, seed=2)
    y = run(backend, minibatch_std, x, group_size, num_channels)
    want = nvlabs(x, group_size, num_channels)
    torch.testing.assert_close(y, want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(
        torch.autograd.grad(y, x, dout)[0], torch.autograd.grad(want, x, dout)[0], atol=1e-12, rtol=1e-12
    )


@pytest.mark.parametrize("backend,device", KERNEL_CASES)
def test_strided_input(backend, device):
    """Inputs whose H and W do not merge (a slice) take a contiguous copy; the values are unchanged."""
    base = randn(4, 2, 3, 6, device=device).requires_grad_(True)
    x = base[:, :, :, ::2]
    y = run(backend, minibatch_std, x, 2, 1)
    want = nvlabs(x, 2, 1)
    torch.testing.assert_close(y, want, atol=1e-12, rtol=1e-12)
    dout = randn(4, 3, 3, 3, device=device, seed=3)
    torch.testing.assert_close(
        torch.autograd.grad(y, base, dout)[0], torch.autograd.grad(want, base, dout)[0], atol=1e-12, rtol=1e-12
    )


def test_reference_gradient_formula():
    """reference.minibatch_std_grad, written out, is autograd of reference.minibatch_std; ref equals NVlabs'."""
    x = randn(6, 4, 2, 3).requires_grad_(True)
    dout = randn(6, 6, 2, 3, seed=4)
    y = ref.minibatch_std(x, 3, 2)
    assert torch.equal(y, nvlabs(x, 3, 2))
    torch.testing.assert_close(ref.minibatch_std_grad(dout, x, 3, 2), torch.autograd.grad(y, x, dout)[0])


# ----------------------------------------------------------------------------------------------------------------
# Second order, registration, dispatch


@pytest.mark.parametrize("backend,device", CASES)
@pytest.mark.parametrize("group_size,num_channels", [(2, 2), (None, 1)])
def test_gradcheck(backend, device, group_size, num_channels):
    x = randn(4, 2, 1, 2, device=device, channels_last=group_size is None).requires_grad_(True)
    fn = lambda x: run(backend, minibatch_std, x, group_size, num_channels)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("backend,device", CASES)
def test_opcheck(backend, device):
    x = randn(4, 4, 2, 3, device=device).requires_grad_(True)
    torch.library.opcheck(torch.ops.gankernels.minibatch_std, (x, 2, 2, backend))
    torch.library.opcheck(torch.ops.gankernels.minibatch_std, (x.to(memory_format=torch.channels_last), 4, 1, backend))
    dout = randn(4, 6, 2, 3, device=device, seed=5).requires_grad_(True)
    torch.library.opcheck(torch.ops.gankernels.minibatch_std_backward, (dout, x, 2, 2, backend))


def test_dispatch():
    """Automatic on CPU tensors: the reference formula; a forced triton: the custom op; cpu / cuda: automatic."""
    x = randn(2, 2, 2, 2).requires_grad_(True)
    assert resolve_backend("cpu") == "ref"
    assert "gankernels" not in type(minibatch_std(x, 2).grad_fn).__name__.lower()
    if KERNELS:
        with gankernels.use_backend("triton"):
            assert resolve_backend("cpu") == "triton"
            assert "MinibatchStd" in type(minibatch_std(x, 2).grad_fn).__name__
    if "cpu" in backends_for("bias_act", "cpu"):  # no C++ kernels of this op: a forced cpu says so
        with gankernels.use_backend("cpu"), pytest.raises(RuntimeError, match="minibatch_std has no cpu kernels"):
            resolve_backend("cpu")
        with gankernels.use_backend("cpu", strict=False):  # or leaves it on its automatic choice
            assert resolve_backend("cpu") == "ref"


# ----------------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "args,error,match",
    [
        ((torch.ones(6, 4, 2, 2), 4), ValueError, r"group_size=4: N=6 must be a multiple of the group size"),
        ((torch.ones(4, 3, 2, 2), 2, 2), ValueError, "num_channels=2: C=3 must be a multiple of num_channels"),
        ((torch.ones(4, 4, 2), 2), ValueError, "x must be 4-D"),
        ((torch.ones(0, 4, 2, 2), 2), ValueError, "x must have N, C, H, W >= 1"),
        ((torch.ones(2, 0, 2, 2), 2), ValueError, "x must have N, C, H, W >= 1"),
        ((torch.ones(2, 2, 2, 0), 2), ValueError, "x must have N, C, H, W >= 1"),
        ((torch.ones(4, 4, 2, 2, dtype=torch.int64), 2), TypeError, "x must be float"),
        (([1.0], 2), TypeError, "x must be a torch.Tensor"),
        ((torch.ones(4, 4, 2, 2), 0), ValueError, "group_size must be >= 1"),
        ((torch.ones(4, 4, 2, 2), 2.0), TypeError, "group_size must be an int"),
        ((torch.ones(4, 4, 2, 2), 2, 0), ValueError, "num_channels must be >= 1"),
        ((torch.ones(4, 4, 2, 2), 2, True), TypeError, "num_channels must be an int"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        minibatch_std(*args)
