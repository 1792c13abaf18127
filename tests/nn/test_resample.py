"""Upsample2d, Downsample2d, FIRFilter2d (Blur): shapes, buffers, state dicts, values and gradients."""

import pytest
import torch

import gankernels
import gankernels.nn as gnn
from gankernels import ops
from gankernels.reference import upfirdn2d as ref
from tests.conftest import backends_for

BACKENDS = ["ref"] + backends_for("upfirdn2d", "cpu")


def _x(*shape, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_modules_match_reference(backend):
    x = _x(2, 3, 6, 5)
    cases = [
        (gnn.Upsample2d(), ref.upsample2d, {}, [2, 3, 12, 10]),
        (gnn.Upsample2d(up=[2, 1], resample_filter=[1, 2, 1], gain=2.0), ref.upsample2d, dict(up=[2, 1], gain=2.0),
         [2, 3, 6, 10]),
        (gnn.Downsample2d(), ref.downsample2d, {}, [2, 3, 3, 2]),
        (gnn.Downsample2d(down=[1, 2], padding=1, flip_filter=True), ref.downsample2d,
         dict(down=[1, 2], padding=1, flip_filter=True), [2, 3, 4, 7]),
        (gnn.FIRFilter2d(), ref.filter2d, {}, [2, 3, 6, 5]),
        (gnn.Blur(resample_filter=[1] * 9, padding=[1, 0]), ref.filter2d, dict(padding=[1, 0]), [2, 3, 6, 7]),
    ]  # fmt: skip
    for module, reference, kwargs, shape in cases:
        module = module.double()
        with gankernels.use_backend(backend):
            y = module(x)
        assert list(y.shape) == shape
        torch.testing.assert_close(y, reference(x, module.resample_filter, **kwargs))


def test_filter_buffer_and_state_dict():
    up = gnn.Upsample2d()
    assert "resample_filter" in dict(up.named_buffers()) and not list(up.parameters())
    assert "resample_filter" in up.state_dict()
    torch.testing.assert_close(up.resample_filter, ops.setup_filter([1, 3, 3, 1]))
    assert gnn.Blur is gnn.FIRFilter2d
    assert gnn.Downsample2d(resample_filter=[1] * 8).resample_filter.shape == (8,)
    assert gnn.Downsample2d(resample_filter=[1] * 8, separable=False).resample_filter.shape == (8, 8)
    unnormalized = gnn.FIRFilter2d(resample_filter=[1, 2, 1], normalize=False)
    torch.testing.assert_close(unnormalized.resample_filter.sum(), torch.tensor(16.0))
    other = gnn.Upsample2d(resample_filter=[1, 1, 1, 1])
    other.load_state_dict(up.state_dict())
    torch.testing.assert_close(other.resample_filter, up.resample_filter)
    assert "up=2" in repr(up) and "filter=[4, 4]" in repr(up)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_and_channels_last(backend, dtype):
    x = _x(1, 4, 5, 6, dtype=dtype).contiguous(memory_format=torch.channels_last)
    for module in (gnn.Upsample2d(), gnn.Downsample2d(), gnn.Blur()):
        with gankernels.use_backend(backend):
            y = module(x)
        assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
        expected = type(module).forward(module.double(), x.double())
        torch.testing.assert_close(y.double(), expected, atol=5e-2, rtol=5e-2)
        module.float()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_through_modules(backend):
    x = _x(1, 2, 5, 5).requires_grad_(True)
    net = torch.nn.Sequential(gnn.Upsample2d(), gnn.Blur(), gnn.Downsample2d()).double()
    with gankernels.use_backend(backend):
        assert torch.autograd.gradcheck(net, x, fast_mode=True)
        assert torch.autograd.gradgradcheck(net, x, fast_mode=True)
