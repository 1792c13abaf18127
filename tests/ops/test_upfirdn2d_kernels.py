"""The compiled upfirdn2d kernels (gankernels._C.upfirdn2d_forward, CPU and CUDA) against a direct torch computation.

The oracle here is written independently of gankernels/reference: zero insertion by reshape + pad, F.pad and slicing
for the (possibly negative) padding, a depthwise F.conv2d with the flipped filter, then striding, in float64.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from gankernels import backend as gk_backend

_C = gk_backend.extension()
if _C is None or not hasattr(_C, "upfirdn2d_forward"):
    pytest.skip(
        "gankernels._C is not built or has no upfirdn2d_forward (pip install -e . --no-build-isolation)",
        allow_module_level=True,
    )

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
FORMATS = [torch.contiguous_format, torch.channels_last]
# Relative tolerance per dtype; the absolute one is this times gain * sum|f| * max|x|.
RTOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """The shapes here are tiny: on a small shared machine, waking a second thread costs more than the work. (The
    kernels' multi-threaded paths have their own test.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _device(device: str) -> torch.device:
    if device == "cuda" and not _C.has_cuda():
        pytest.skip("gankernels._C was built without CUDA kernels")
    return torch.device(device)


def direct(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain):
    """upfirdn2d written out step by step, in float64."""
    x, f = x.double(), f.double()
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])  # zero insertion
    x = x.reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
    x = x[:, :, max(-pady0, 0) : x.shape[2] - max(-pady1, 0), max(-padx0, 0) : x.shape[3] - max(-padx1, 0)]
    weight = f if flip else f.flip([0, 1])  # conv2d correlates: flip for a true convolution
    x = F.conv2d(x, weight[None, None].repeat(c, 1, 1, 1), groups=c) * gain
    return x[:, :, ::downy, ::downx]


def out_size(size, up, down, pad0, pad1, taps):
    return (size * up + pad0 + pad1 - taps) // down + 1


def run_kernel(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain, fmt):
    n, c, h, w = x.shape
    shape = (n, c, out_size(h, upy, downy, pady0, pady1, f.shape[0]), out_size(w, upx, downx, padx0, padx1, f.shape[1]))
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt).fill_(float("nan"))
    _C.upfirdn2d_forward(x, f, out, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain)
    return out


def check(
    x,
    f,
    upx=1,
    upy=1,
    downx=1,
    downy=1,
    padx0=0,
    padx1=0,
    pady0=0,
    pady1=0,
    flip=False,
    gain=1.0,
    fmt=torch.contiguous_format,
):
    args = (upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain)
    out = run_kernel(x, f, *args, fmt)
    ref = direct(x, f, *args)
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=fmt)
    assert not out.isnan().any(), "the kernel left part of the output unwritten"
    rtol = RTOL[x.dtype]
    scale = max(abs(gain) * f.double().abs().sum().item() * x.double().abs().max().item(), 1e-30)
    torch.testing.assert_close(out.double(), ref, rtol=rtol, atol=rtol * scale)


def make_input(shape, dtype, device, fmt, seed, misalign=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if misalign:  # a dense tensor whose data starts one element into its storage
        flat = torch.empty(x.numel() + 1, dtype=dtype, device=device)
        dims = (0, 2, 3, 1) if fmt == torch.channels_last else (0, 1, 2, 3)
        target = flat[1:].view([shape[d] for d in dims]).permute(*[dims.index(d) for d in range(4)])
        target.copy_(x)
        assert target.is_contiguous(memory_format=fmt) and target.data_ptr() % 16 != 0
        return target
    return x.to(device=device, dtype=dtype).contiguous(memory_format=fmt)


def make_filter(fh, fw, dtype, device, seed):
    gen = torch.Generator().manual_seed(seed + 1)
    f = torch.rand(fh, fw, generator=gen, dtype=torch.float64) + 0.1
    f = f / f.sum()
    return f.to(device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)


FILTER_SIZES = [(k, k) for k in range(1, 9)] + [(3, 5), (7, 2), (24, 24), (1, 12), (12, 1), (1, 4), (4, 1)]


def random_case(seed):
    """A random call: up/down 1..4 per axis, paddings including negative ones, odd sizes, any filter size."""
    rng = random.Random(seed)
    fh, fw = rng.choice(FILTER_SIZES)
    while True:
        upx, upy, downx, downy = (rng.randint(1, 4) for _ in range(4))
        h, w = rng.randint(1, 11), rng.randint(1, 11)
        padx0, padx1 = (rng.randint(-3, fw + 2) for _ in range(2))
        pady0, pady1 = (rng.randint(-3, fh + 2) for _ in range(2))
        if out_size(h, upy, downy, pady0, pady1, fh) >= 1 and out_size(w, upx, downx, padx0, padx1, fw) >= 1:
            break
    shape = (rng.choice([1, 2]), rng.choice([1, 3, 4, 8]), h, w)
    kw = dict(
        upx=upx,
        upy=upy,
        downx=downx,
        downy=downy,
        padx0=padx0,
        padx1=padx1,
        pady0=pady0,
        pady1=pady1,
        flip=rng.random() < 0.5,
        gain=rng.choice([1.0, 0.5, 4.0, -2.0]),
    )
    return shape, (fh, fw), kw


# ----------------------------------------------------------------------------------------------------------------
# Correctness


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize("seed", range(120))
def test_random_calls_float64(device, fmt, seed):
    device = _device(device)
    shape, (fh, fw), kw = random_case(seed)
    x = make_input(shape, torch.float64, device, fmt, seed)
    check(x, make_filter(fh, fw, torch.float64, device, seed), fmt=fmt, **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("seed", range(200, 230))
def test_random_calls_low_precision(device, fmt, dtype, seed):
    device = _device(device)
    shape, (fh, fw), kw = random_case(seed)
    x = make_input(shape, dtype, device, fmt, seed)
    check(x, make_filter(fh, fw, dtype, device, seed), fmt=fmt, **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize("axis", ["x", "y"])
def test_every_up_down_pair(device, fmt, axis):
    """up, down in 1..4 on one axis (the other at 1), with a 5-tap filter along it and assorted paddings."""
    device = _device(device)
    x = make_input((1, 3, 7, 9), torch.float64, device, fmt, 7)
    for up in range(1, 5):
        for down in range(1, 5):
            for pad0, pad1 in [(0, 0), (2, 3), (-1, 4), (3, -2)]:
                if axis == "x":
                    f = make_filter(1, 5, torch.float64, device, up * down)
                    kw = dict(upx=up, downx=down, padx0=pad0, padx1=pad1 + 4)
                else:
                    f = make_filter(5, 1, torch.float64, device, up * down)
                    kw = dict(upy=up, downy=down, pady0=pad0, pady1=pad1 + 4)
                check(x, f, fmt=fmt, flip=up % 2 == 0, gain=1.5, **kw)


# The calls StyleGAN2 makes (upsample2d, downsample2d, filter2d with a 4x4 filter, as one 2-D pass or two 1-D passes):
# the CUDA kernels have compile-time paths for them. Odd channel counts and misaligned pointers take the scalar paths.
COMMON = {
    "up2": ((4, 4), dict(upx=2, upy=2, padx0=2, padx1=1, pady0=2, pady1=1, gain=4.0)),
    "down2": ((4, 4), dict(downx=2, downy=2, padx0=1, padx1=1, pady0=1, pady1=1)),
    "filter2d": ((4, 4), dict(padx0=2, padx1=1, pady0=2, pady1=1)),
    "up2-odd-pad": ((4, 4), dict(upx=2, upy=2, padx0=1, padx1=2, pady0=3, pady1=0)),
    "down2-odd-pad": ((4, 4), dict(downx=2, downy=2, padx0=2, padx1=1, pady0=0, pady1=3)),
    "filter2d-crop": ((4, 4), dict(padx0=-1, padx1=0, pady0=1, pady1=-2)),
    "up2-x": ((1, 4), dict(upx=2, padx0=2, padx1=1, gain=2.0)),
    "up2-y": ((4, 1), dict(upy=2, pady0=2, pady1=1, gain=2.0)),
    "down2-x": ((1, 4), dict(downx=2, padx0=1, padx1=1)),
    "down2-y": ((4, 1), dict(downy=2, pady0=1, pady1=1)),
    "filter-x": ((1, 4), dict(padx0=2, padx1=1)),
    "filter-y": ((4, 1), dict(pady0=1, pady1=2)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", list(COMMON))
def test_common_calls(device, fmt, dtype, case):
    device = _device(device)
    (fh, fw), kw = COMMON[case]
    for i, (shape, misalign) in enumerate([((2, 8, 10, 12), False), ((1, 3, 9, 7), False), ((3, 4, 6, 5), True)]):
        x = make_input(shape, dtype, device, fmt, i, misalign=misalign)
        for flip in (False, True):
            check(x, make_filter(fh, fw, dtype, device, i), fmt=fmt, flip=flip, **kw)


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", ["up2", "down2", "filter2d", "up2-x", "down2-y"])
def test_common_calls_large_cuda(fmt, dtype, case):
    """Shapes with more work than one wave of the grid, so the CUDA grid-stride loops go round."""
    device = _device("cuda")
    (fh, fw), kw = COMMON[case]
    x = make_input((4, 64, 128, 96), dtype, device, fmt, 3)
    check(x, make_filter(fh, fw, dtype, device, 3), fmt=fmt, **kw)


@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", ["up2", "down2", "up2-x"])
def test_multithreaded_cpu(fmt, case):
    """Enough work for the CPU kernels to split it across threads (bands of rows, or rows)."""
    torch.set_num_threads(max(2, torch.get_num_threads()))
    (fh, fw), kw = COMMON[case]
    x = make_input((2, 24, 48, 40), torch.float32, torch.device("cpu"), fmt, 5)
    check(x, make_filter(fh, fw, torch.float32, torch.device("cpu"), 5), fmt=fmt, **kw)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_one_and_degenerate_sizes(device):
    device = _device(device)
    for fmt in FORMATS:
        x = make_input((1, 1, 1, 1), torch.float64, device, fmt, 0)
        check(x, make_filter(3, 3, torch.float64, device, 0), padx0=1, padx1=1, pady0=1, pady1=1, fmt=fmt)
        check(x, make_filter(1, 1, torch.float64, device, 0), upx=4, upy=3, padx0=2, pady1=5, fmt=fmt)
        x = make_input((1, 5, 1, 13), torch.float64, device, fmt, 1)
        check(x, make_filter(2, 24, torch.float64, device, 1), downx=3, padx0=12, padx1=12, pady0=1, fmt=fmt)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_input_is_padded_with_zeros(device):
    device = _device(device)
    x = torch.empty(2, 3, 0, 4, dtype=torch.float32, device=device)
    f = make_filter(1, 1, torch.float32, device, 0)
    out = run_kernel(x, f, 1, 1, 1, 1, 0, 0, 2, 1, False, 1.0, torch.contiguous_format)
    assert out.shape == (2, 3, 3, 4) and (out == 0).all()


@pytest.mark.gpu
@pytest.mark.gpu_serial  # 8 GiB of input and output: alone, not beside the parallel workers
def test_int64_indexing_cuda():
    """A plane of more than 2^31 elements takes the 64-bit path; a delta filter makes the answer exact."""
    device = _device("cuda")
    if torch.cuda.mem_get_info()[0] < 16 * 2**30:
        pytest.skip("needs 16 GiB of free GPU memory")
    side = 46400  # side^2 > 2^31
    x = torch.randn(1, 1, side, side, dtype=torch.float16, device=device)
    f = torch.zeros(4, 4, dtype=torch.float32, device=device)
    f[3, 3] = 1  # f'[0, 0] = 1 (not flipped): out[oy, ox] = 2 x[oy, ox]
    out = run_kernel(x, f, 1, 1, 1, 1, 0, 0, 0, 0, False, 2.0, torch.contiguous_format)
    assert out.shape == (1, 1, side - 3, side - 3)
    assert torch.equal(out, x[:, :, : side - 3, : side - 3] * 2)


# ----------------------------------------------------------------------------------------------------------------
# The glue refuses calls that would put the kernels out of bounds


@pytest.mark.parametrize("device", DEVICES)
def test_refuses_bad_calls(device):
    device = _device(device)
    x = make_input((2, 3, 8, 8), torch.float32, device, torch.contiguous_format, 0)
    f = make_filter(4, 4, torch.float32, device, 0)
    args = (2, 2, 1, 1, 2, 1, 2, 1, False, 1.0)  # upsample2d: out is [2, 3, 16, 16]
    good = torch.empty(2, 3, 16, 16, device=device)
    _C.upfirdn2d_forward(x, f, good, *args)

    def refuses(x=x, f=f, out=good, args=args, error=RuntimeError):
        with pytest.raises(error):
            _C.upfirdn2d_forward(x, f, out, *args)

    refuses(out=torch.empty(2, 3, 16, 15, device=device))  # wrong shape
    refuses(out=torch.empty(2, 3, 17, 16, device=device))
    refuses(out=torch.empty(2, 4, 16, 16, device=device))
    refuses(out=torch.empty(2, 3, 16, 16, device=device, dtype=torch.float64))  # wrong dtype
    refuses(out=torch.empty(2, 3, 16, 16, device=device, dtype=torch.float16))
    refuses(out=torch.empty(2, 3, 16, 16, device=device, memory_format=torch.channels_last))  # wrong layout
    refuses(out=torch.empty(2, 3, 16, 32, device=device)[..., ::2])  # not dense
    refuses(out=torch.empty(2, 3, 16, 16, device=device).transpose(2, 3))
    refuses(x=x.contiguous(memory_format=torch.channels_last))  # x and out in different layouts
    refuses(f=f.double())  # filter dtype: float32 for float32 x
    refuses(x=x.double(), out=good.double())  # ... and float64 for float64 x
    refuses(f=f.half())
    refuses(f=f[None])  # not 2-D
    refuses(x=x[0], out=good[0])
    refuses(f=torch.empty(4, 8, device=device)[:, ::2])  # not contiguous
    refuses(args=(0, 2, 1, 1, 2, 1, 2, 1, False, 1.0))  # up 0
    refuses(args=(2, 2, 1, -1, 2, 1, 2, 1, False, 1.0))  # down -1
    refuses(args=(1, 1, 1, 1, -4, -4, 0, 0, False, 1.0), out=torch.empty(2, 3, 5, 1, device=device))  # nothing left
    refuses(out=x, args=(1, 1, 1, 1, 2, 1, 2, 1, False, 1.0))  # out is x: the kernels read what they write
    refuses(x=x.to(torch.int32), error=TypeError)  # not a float (dtype_of raises TypeError)
