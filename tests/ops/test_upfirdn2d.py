"""upfirdn2d and its wrappers on every backend against the float64 reference, gradients of any order, custom op
registration, torch.compile, memory formats, low-precision tolerances and bad input."""

import itertools
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gankernels
from gankernels import ops
from gankernels.ops._common import memory_format
from gankernels.ops.upfirdn2d import _upfirdn2d
from gankernels.reference import upfirdn2d as ref
from tests.conftest import HAS_CUDA, backends_for

CPU_BACKENDS = backends_for("upfirdn2d", "cpu")
GPU_BACKENDS = backends_for("upfirdn2d", "cuda") if HAS_CUDA else ["cuda", "triton"]
TARGETS = [pytest.param(b, "cpu", id=f"{b}-cpu") for b in CPU_BACKENDS] + [
    pytest.param(b, "cuda", id=f"{b}-cuda", marks=pytest.mark.gpu) for b in GPU_BACKENDS
]
WITH_REF = [pytest.param("ref", "cpu", id="ref-cpu")] + TARGETS
COMPILE_BACKENDS = ["ref"] + (["cpu"] if "cpu" in CPU_BACKENDS else [b for b in CPU_BACKENDS if b == "triton"])

# (atol, rtol) against the float64 reference, for outputs of magnitude about 1
TOLERANCES = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (6e-3, 6e-3),
    torch.bfloat16: (5e-2, 5e-2),
}


def _run(backend, fn, *args, **kwargs):
    with gankernels.use_backend(backend):
        return fn(*args, **kwargs)


def _filter(shape, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(shape, generator=g, dtype=torch.float64) + 0.25
    return (f / f.sum()).to(device=device, dtype=dtype)


def _x(shape, device="cpu", dtype=torch.float64, channels_last=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _check_against_ref(backend, device, x, f, **kwargs):
    y = _run(backend, ops.upfirdn2d, x, f, **kwargs)
    expected = ref.upfirdn2d(x.double().cpu(), None if f is None else f.double().cpu(), **kwargs)
    atol, rtol = TOLERANCES[x.dtype]
    assert y.dtype == x.dtype and y.device == x.device
    torch.testing.assert_close(y.double().cpu(), expected, atol=atol, rtol=rtol)
    return y


# ----------------------------------------------------------------------------------------------------------------
# The reference itself against the definition, and the wrappers against torch's own resampling


def _direct(x, f, up, down, padding, flip, gain):
    """out[o] = gain * sum_k u[o * down + k - pad0] * f[fh - 1 - k] (flip: f[k]), u the zero-inserted x."""
    x, f = x.numpy(), f.numpy()
    if f.ndim == 1:
        f = np.outer(f, f)
    upx, upy = ref.parse_scaling(up)
    downx, downy = ref.parse_scaling(down)
    px0, px1, py0, py1 = ref.parse_padding(padding)
    fh, fw = f.shape
    n, c, h, w = x.shape
    oh, ow = (h * upy + py0 + py1 - fh) // downy + 1, (w * upx + px0 + px1 - fw) // downx + 1
    fk = f if flip else f[::-1, ::-1]
    out = np.zeros([n, c, oh, ow])
    for oy, ox, ky, kx in itertools.product(range(oh), range(ow), range(fh), range(fw)):
        jy, jx = oy * downy + ky - py0, ox * downx + kx - px0
        if jy % upy or jx % upx or not (0 <= jy // upy < h and 0 <= jx // upx < w):
            continue
        out[:, :, oy, ox] += x[:, :, jy // upy, jx // upx] * fk[ky, kx]
    return torch.from_numpy(out * gain)


@pytest.mark.parametrize(
    "up, down, padding, fshape, flip",
    [
        (1, 1, 0, [3, 3], False),
        (2, 1, [2, 1], [4, 4], False),
        ([3, 1], [1, 2], [1, 0, -1, 2], [2, 5], True),
        (1, [2, 3], [-1, 2, 3, 0], [3, 2], False),
        ([2, 4], 3, [3, 1, 2, 2], [5], True),
    ],
)
def test_reference_matches_definition(up, down, padding, fshape, flip):
    x, f = _x([2, 2, 5, 6]), _filter(fshape, dtype=torch.float64)
    y = ref.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=1.5)
    torch.testing.assert_close(y, _direct(x, f, up, down, padding, flip, 1.5))


@pytest.mark.parametrize("backend, device", WITH_REF)
def test_wrappers_match_torch(backend, device):
    x = _x([2, 3, 6, 8], device)
    box = ops.setup_filter([1, 1], device=device)
    torch.testing.assert_close(_run(backend, ops.downsample2d, x, box), F.avg_pool2d(x, 2))
    torch.testing.assert_close(_run(backend, ops.upsample2d, x, box), F.interpolate(x, scale_factor=2.0))
    torch.testing.assert_close(_run(backend, ops.filter2d, x, ops.setup_filter([0, 1, 0], device=device)), x)
    blur = ops.setup_filter([1, 2, 1], device=device)
    expected = F.conv2d(x, blur.double()[None, None].repeat(3, 1, 1, 1), padding=1, groups=3)
    torch.testing.assert_close(_run(backend, ops.filter2d, x, blur), expected)
    assert _run(backend, ops.upsample2d, x, ops.setup_filter([1, 3, 3, 1], device=device), up=[2, 3]).shape == (
        2, 3, 18, 16,
    )  # fmt: skip


def test_setup_filter():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    assert ops.setup_filter([1] * 8).shape == (8,)
    assert ops.setup_filter([1, 2], separable=True).shape == (2,)
    assert ops.setup_filter(None).shape == (1, 1)
    torch.testing.assert_close(
        ops.setup_filter([1, 2, 3], flip_filter=True, normalize=False, separable=True), torch.tensor([3.0, 2, 1])
    )
    torch.testing.assert_close(ops.setup_filter([1] * 9, gain=4).sum(), torch.tensor(2.0))
    with pytest.raises(ValueError):
        ops.setup_filter(torch.ones(2, 2, 2))


# ----------------------------------------------------------------------------------------------------------------
# Every backend against the reference, float64


def _grid():
    scalings = [1, 2, 4, 3, [2, 1], [1, 3]]
    paddings = [0, 1, [2, -1], [1, 0, -1, 2], [3, 1, 0, 2], [-1, 2, 2, -1]]
    fshapes = [[1, 1], [2, 2], [3, 3], [4, 4], [3, 5], [6, 2], [5], [7, 7], [8, 8], [4, 1], [1, 6], [12]]
    cases = []
    for i, (up, down) in enumerate(itertools.product(scalings, scalings)):
        cases.append(
            (up, down, paddings[i % len(paddings)], fshapes[i % len(fshapes)], i % 2 == 1, [1, 0.5][i % 3 == 0])
        )
    return cases


def _pad_to_fit(x_shape, f_shape, up, down, padding):
    """padding grown just enough that the output is not empty."""
    upx, upy = ref.parse_scaling(up)
    p = list(ref.parse_padding(padding))
    fw, fh = f_shape[-1], f_shape[0]
    p[1] += max(0, fw - (x_shape[3] * upx + p[0] + p[1]))
    p[3] += max(0, fh - (x_shape[2] * upy + p[2] + p[3]))
    return p


@pytest.mark.parametrize("backend, device", TARGETS)
@pytest.mark.parametrize("up, down, padding, fshape, flip, gain", _grid())
def test_upfirdn2d_grid(backend, device, up, down, padding, fshape, flip, gain):
    x = _x([1, 2, 7, 5], device)
    f = _filter(fshape, device)
    padding = _pad_to_fit(x.shape, fshape, up, down, padding)
    _check_against_ref(backend, device, x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain)


@pytest.mark.parametrize("backend, device", TARGETS)
@pytest.mark.parametrize("taps", [1, 2, 3, 4, 5, 6, 7, 8, 12, 24])
def test_wrappers_filter_sizes(backend, device, taps):
    x = _x([1, 2, 6, 5], device, seed=taps)
    f = ops.setup_filter(list(range(1, taps + 1)), device=device, separable=taps >= 8)
    for fn, kwargs in [
        (ops.upsample2d, dict(up=2)),
        (ops.upsample2d, dict(up=[3, 1], padding=[1, -1])),
        (ops.downsample2d, dict(down=2)),
        (ops.downsample2d, dict(down=[1, 4], padding=[0, 1, 2, 0], flip_filter=True)),
        (ops.filter2d, dict(gain=2.0)),
    ]:
        y = _run(backend, fn, x, f, **kwargs)
        torch.testing.assert_close(y.cpu(), getattr(ref, fn.__name__)(x.cpu(), f.cpu(), **kwargs))


@pytest.mark.parametrize("backend, device", TARGETS)
def test_upfirdn2d_random(backend, device):
    rng = random.Random(1234)
    for seed in range(12):
        n, c, h, w = rng.randint(1, 2), rng.randint(1, 3), rng.randint(5, 9), rng.randint(5, 9)
        fshape = rng.choice([[rng.randint(1, 8)], [rng.randint(1, 8), rng.randint(1, 8)]])
        up, down = [rng.randint(1, 4), rng.randint(1, 4)], [rng.randint(1, 4), rng.randint(1, 4)]
        padding = _pad_to_fit([n, c, h, w], fshape, up, [0] * 4, [rng.randint(-2, 5) for _ in range(4)])
        x = _x([n, c, h, w], device, channels_last=rng.random() < 0.3, seed=seed)
        f = _filter(fshape, device, seed=seed)
        y = _check_against_ref(backend, device, x, f, up=up, down=down, padding=padding,
                               flip_filter=rng.random() < 0.5, gain=rng.uniform(-2, 2))  # fmt: skip
        assert y.is_contiguous(memory_format=memory_format(x))


@pytest.mark.parametrize("backend, device", WITH_REF)
def test_filter_none_and_dtypes_of_f(backend, device):
    x = _x([1, 2, 5, 6], device)
    _check_against_ref(backend, device, x, None, padding=[1, 0, 2, -1], gain=3.0)
    f = _filter([3, 2], device, dtype=torch.float32)
    y32 = _run(backend, ops.upfirdn2d, x, f, up=2)
    y64 = _run(backend, ops.upfirdn2d, x, f.double(), up=2)
    torch.testing.assert_close(y32, y64)
    _check_against_ref(backend, device, x.float(), f.half(), down=2, padding=1)


@pytest.mark.skipif("triton" not in CPU_BACKENDS, reason="triton does not run on CPU here")
def test_triton_int64_indexing(monkeypatch):
    import gankernels.triton.upfirdn2d as triton_upfirdn2d

    monkeypatch.setattr(triton_upfirdn2d, "INT64_FROM", 0)
    for channels_last in (False, True):
        x = _x([2, 3, 5, 6], channels_last=channels_last)
        _check_against_ref("triton", "cpu", x, _filter([3, 4]), up=[2, 1], down=[1, 2], padding=[1, 2, 3, 0])


@pytest.mark.parametrize("backend, device", WITH_REF)
def test_empty_and_strided_inputs(backend, device):
    f = _filter([3, 3], device)
    for shape in ([0, 2, 5, 5], [2, 0, 5, 5]):
        y = _run(backend, ops.upsample2d, _x(shape, device), f)
        assert y.shape == (shape[0], shape[1], 10, 10)
    x = _x([2, 4, 7, 9], device)[:, 1:3, ::2, 1:]
    _check_against_ref(backend, device, x, f, up=2, padding=1)
    _check_against_ref(backend, device, _x([2, 1, 5, 6], device, channels_last=True), f, down=2, padding=1)


# ----------------------------------------------------------------------------------------------------------------
# Memory formats and dtypes


@pytest.mark.parametrize("backend, device", WITH_REF)
@pytest.mark.parametrize("fshape", [[4, 4], [9]])
def test_channels_last(backend, device, fshape):
    x = _x([2, 3, 6, 7], device)
    xc = x.contiguous(memory_format=torch.channels_last)
    f = _filter(fshape, device)
    for kwargs in [dict(up=2, padding=[2, 1]), dict(down=[2, 1], padding=[4, 5, 3, 4], flip_filter=True)]:
        y = _run(backend, ops.upfirdn2d, x, f, **kwargs)
        yc = _run(backend, ops.upfirdn2d, xc, f, **kwargs)
        assert y.is_contiguous() and yc.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(yc, y)
    xc.requires_grad_(True)
    (dx,) = torch.autograd.grad(_run(backend, ops.upsample2d, xc, f).square().sum(), xc)
    x.requires_grad_(True)
    (dx_ref,) = torch.autograd.grad(ref.upsample2d(x, f).square().sum(), x)
    torch.testing.assert_close(dx, dx_ref)


@pytest.mark.parametrize("backend, device", WITH_REF)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision(backend, device, dtype):
    for channels_last in (False, True):
        x = _x([2, 3, 7, 6], device, dtype=dtype, channels_last=channels_last)
        _check_against_ref(backend, device, x, _filter([4, 4], device), up=2, padding=[2, 1])
        _check_against_ref(backend, device, x, _filter([3, 2], device), down=2, padding=[1, 0, 0, 1], flip_filter=True)
        _check_against_ref(backend, device, x, _filter([10], device), up=[1, 2], down=[3, 1], padding=5)


# ----------------------------------------------------------------------------------------------------------------
# Gradients, custom op registration, torch.compile

GRAD_CASES = [
    dict(up=2, padding=[2, 1], gain=1.5),
    dict(down=[2, 3], padding=[1, 0, -1, 2], flip_filter=True),
    dict(up=[1, 3], down=[2, 1], padding=[0, 2, 1, 1]),
]


@pytest.mark.parametrize("backend, device", WITH_REF)
@pytest.mark.parametrize("kwargs", GRAD_CASES)
@pytest.mark.parametrize("fshape", [[3, 2], [4]])
def test_gradcheck(backend, device, kwargs, fshape):
    x = _x([1, 2, 5, 4], device, seed=3).requires_grad_(True)
    f = _filter(fshape, device, dtype=torch.float64)

    def fn(x):
        return _run(backend, ops.upfirdn2d, x, f, **kwargs)

    assert torch.autograd.gradcheck(fn, x, fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, x, fast_mode=True)


@pytest.mark.parametrize("backend, device", TARGETS)
def test_third_order(backend, device):
    x = _x([1, 2, 5, 6], device).requires_grad_(True)
    f = _filter([3, 3], device)

    def third(run):
        y = run(x, f, up=2, down=[1, 2], padding=[1, 2, 0, 1])
        (g,) = torch.autograd.grad(y.pow(3).sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(gg.sin().sum(), x)[0]

    torch.testing.assert_close(third(lambda *a, **k: _run(backend, ops.upfirdn2d, *a, **k)), third(ref.upfirdn2d))


@pytest.mark.parametrize("backend, device", TARGETS)
def test_opcheck(backend, device):
    x = _x([1, 2, 5, 6], device, dtype=torch.float32)
    xc = _x([2, 3, 5, 4], device, channels_last=True).requires_grad_(True)
    for args in [
        (x, _filter([4, 4], device), 2, 2, 1, 1, 2, 1, 2, 1, False, 1.0, backend),
        (xc, _filter([3, 2], device), 1, 2, 3, 1, -1, 2, 1, 0, True, 0.5, backend),
        (xc, _filter([9], device), 2, 1, 1, 2, 4, 4, 4, 4, False, 1.5, backend),
    ]:
        torch.library.opcheck(_upfirdn2d.custom, args)


@pytest.mark.parametrize("backend,device", TARGETS)
def test_registered_autograd_of_the_custom_op(backend, device):
    """Eager calls run an autograd.Function; torch.compile sees the custom op and its registered autograd."""
    x = _x([1, 2, 5, 4], device).requires_grad_(True)
    f = _filter([3, 4], device)

    def fn(x):
        return torch.ops.gankernels.upfirdn2d(x, f, 2, 1, 1, 2, 1, 2, 2, 1, False, 1.5, backend)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_compile_fullgraph(backend):
    torch._dynamo.reset()
    f = ops.setup_filter([1, 3, 3, 1])
    x = _x([1, 2, 5, 6], dtype=torch.float32).requires_grad_(True)

    def fn(x):
        return ops.upsample2d(x, f).sin() * 2

    with gankernels.use_backend(backend):
        y = torch.compile(fn, fullgraph=True)(x)
        (dx,) = torch.autograd.grad(y.sum(), x)
        y_eager = fn(x)
        (dx_eager,) = torch.autograd.grad(y_eager.sum(), x)
    torch.testing.assert_close(y, y_eager)
    torch.testing.assert_close(dx, dx_eager)


# ----------------------------------------------------------------------------------------------------------------
# Bad input


def test_bad_input():
    x, f = _x([1, 2, 5, 5]), _filter([3, 3])
    cases = [
        (TypeError, "x", lambda: ops.upfirdn2d(x.numpy(), f)),
        (ValueError, "x must be 4-D", lambda: ops.upfirdn2d(x[0], f)),
        (TypeError, "x must be", lambda: ops.upfirdn2d(x.long(), f)),
        (ValueError, "f must be", lambda: ops.upfirdn2d(x, torch.ones(2, 2, 2))),
        (ValueError, "f must be", lambda: ops.upfirdn2d(x, torch.ones(0))),
        (TypeError, "f must be", lambda: ops.upfirdn2d(x, torch.ones(2, 2, dtype=torch.int64))),
        (ValueError, "up", lambda: ops.upfirdn2d(x, f, up=0)),
        (ValueError, "down", lambda: ops.upfirdn2d(x, f, down=-1)),
        (ValueError, "down", lambda: ops.upfirdn2d(x, f, down=[1, 0])),
        (TypeError, "up", lambda: ops.upfirdn2d(x, f, up=2.0)),
        (TypeError, "up", lambda: ops.upfirdn2d(x, f, up=[1, 2, 3])),
        (ValueError, "padding", lambda: ops.upfirdn2d(x, f, padding=[1, 2, 3])),
        (TypeError, "padding", lambda: ops.upfirdn2d(x, f, padding=[1.5, 2])),
        (TypeError, "padding", lambda: ops.upfirdn2d(x, f, padding="1")),
        (ValueError, "empty output", lambda: ops.upfirdn2d(x, f, padding=-2)),
        (ValueError, "empty output", lambda: ops.upsample2d(x, f, padding=[0, 0, -10, 0])),
        (ValueError, "not supported", lambda: ops.upfirdn2d(x, f.clone().requires_grad_(True))),
        (TypeError, "gain", lambda: ops.upfirdn2d(x, f, gain="2")),
        (ValueError, "f must be", lambda: ops.filter2d(x, torch.ones(1, 2, 2))),
        (ValueError, "padding", lambda: ops.downsample2d(x, f, padding=[1, 2, 3, 4, 5])),
        (ValueError, "f is on", lambda: ops.upfirdn2d(x, f.to("meta"))),
    ]
    for i, (exc, match, fn) in enumerate(cases):
        with pytest.raises(exc, match=match):
            fn()
            pytest.fail(f"case {i} did not raise")


@pytest.mark.gpu
def test_filter_on_other_device():
    with pytest.raises(ValueError, match="f is on"):
        ops.upfirdn2d(_x([1, 2, 5, 5], "cuda"), _filter([3, 3]))
