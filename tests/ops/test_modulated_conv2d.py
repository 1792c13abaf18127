"""modulated_conv2d against the plain formula (gankernels.reference.modulated_conv2d) in float64 on every backend
of its epilogue and resampling: both fused_modconv modes, up/down, noise, demodulate off, batch 1, 1x1 and 3x3,
the fused epilogue, gradients of first and second order with respect to x, weight and styles, fp16, bad input."""

import itertools

import pytest
import torch

import gankernels
from gankernels import ops
from gankernels.reference.modulated_conv2d import modulated_conv2d as reference
from tests.conftest import backends_for

# bias_act and upfirdn2d run on these; "triton" is interpreted on CPU, so its cases stay tiny
BACKENDS = ["ref"] + [b for b in backends_for("bias_act", "cpu") if b in backends_for("upfirdn2d", "cpu")]


def randn(*shape, grad=False, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_(grad)


def assert_close(a, b, atol=1e-12, rtol=1e-12):
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def make_inputs(batch, in_channels, out_channels, k, size, grad=True):
    x = randn(batch, in_channels, size, size, grad=grad, seed=1)
    weight = randn(out_channels, in_channels, k, k, grad=grad, seed=2)
    styles = (randn(batch, in_channels, seed=3) + 1).requires_grad_(grad)
    return x, weight, styles


FILTER = ops.setup_filter([1, 3, 3, 1]).double()

# batch, k, up, down, demodulate, noise
CASES = [
    (2, 3, 1, 1, True, False),
    (2, 3, 1, 1, False, True),
    (1, 3, 1, 1, True, True),  # batch 1
    (2, 1, 1, 1, True, True),  # 1x1
    (2, 3, 2, 1, True, True),  # upsampling
    (2, 1, 2, 1, False, False),  # 1x1 upsampling, as a toRGB of a skip generator would not, but may
    (2, 3, 1, 2, True, False),  # downsampling
    (1, 1, 1, 2, False, True),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch,k,up,down,demodulate,use_noise", CASES)
@pytest.mark.parametrize("fused_modconv", [True, False])
def test_matches_reference(backend, batch, k, up, down, demodulate, use_noise, fused_modconv):
    x, weight, styles = make_inputs(batch, 3, 4, k, 4)
    out_size = 4 * up // down
    noise = randn(batch, 1, out_size, out_size, seed=4, grad=True) if use_noise else None
    kwargs = dict(noise=noise, up=up, down=down, padding=k // 2, resample_filter=FILTER, demodulate=demodulate,
                  flip_weight=up == 1, fused_modconv=fused_modconv)  # fmt: skip
    with gankernels.use_backend(backend):
        y = ops.modulated_conv2d(x, weight, styles, **kwargs)
    want = reference(x, weight, styles, **kwargs)
    assert y.shape == (batch, 4, out_size, out_size)
    assert_close(y, want)
    inputs = [t for t in (x, weight, styles, noise) if t is not None]
    dy = randn(*want.shape, seed=5)
    with gankernels.use_backend(backend):
        got = torch.autograd.grad(y, inputs, dy)
    for g, r in zip(got, torch.autograd.grad(want, inputs, dy), strict=True):
        assert_close(g, r)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "act,gain,clamp,noise_shape",
    [
        ("lrelu", None, None, (2, 1, 4, 4)),
        ("lrelu", 0.7, 0.5, (4, 4)),
        ("linear", 2.0, None, None),
        ("tanh", None, 0.3, None),
    ],
)
@pytest.mark.parametrize("fused_modconv", [True, False])
def test_fused_epilogue(backend, act, gain, clamp, noise_shape, fused_modconv):
    x, weight, styles = make_inputs(2, 3, 4, 3, 4)
    bias = randn(4, seed=6, grad=True)
    noise = randn(*noise_shape, seed=7) if noise_shape else None
    kwargs = dict(noise=noise, padding=1, fused_modconv=fused_modconv, bias=bias, act=act, gain=gain, clamp=clamp)
    with gankernels.use_backend(backend):
        y = ops.modulated_conv2d(x, weight, styles, **kwargs)
        # the same as the NVlabs layer: the conv, then bias_act
        plain = ops.modulated_conv2d(x, weight, styles, noise=noise, padding=1, fused_modconv=fused_modconv)
        want_layer = ops.bias_act(plain, bias, act=act, gain=gain, clamp=clamp)
    want = reference(x, weight, styles, **kwargs)
    assert_close(y, want)
    assert_close(y, want_layer)
    dy = randn(*want.shape, seed=8)
    with gankernels.use_backend(backend):
        got = torch.autograd.grad(y, (x, weight, styles, bias), dy)
    for g, r in zip(got, torch.autograd.grad(want, (x, weight, styles, bias), dy), strict=True):
        assert_close(g, r)


def test_reference_is_the_plain_formula():
    """The reference against the per-sample loop: y[n] = conv2d(x[n], weight * s[n] * d[n])."""
    x, weight, styles = make_inputs(2, 3, 4, 3, 5, grad=False)
    y = reference(x, weight, styles, padding=1)
    for n in range(2):
        w = weight * styles[n].reshape(1, 3, 1, 1)
        w = w / w.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        assert_close(y[n : n + 1], torch.nn.functional.conv2d(x[n : n + 1], w, padding=1))


def test_composed_dcoefs_in_matmul_form():
    """The composed path's d = rsqrt(styles^2 @ wsq^T + 1e-8) equals NVlabs' sum over the [N, O, I, kh, kw] modulated
    weight (to 1e-12 in float64) and, with fused_modconv=False, builds no 5-D tensor."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from gankernels.reference.modulated_conv2d import demodulation_coefficients

    x, weight, styles = make_inputs(3, 4, 5, 3, 5, grad=False)
    nvlabs = ((weight.unsqueeze(0) * styles.reshape(3, 1, 4, 1, 1)).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    assert_close(demodulation_coefficients(weight, styles), nvlabs, atol=0, rtol=1e-12)

    class LargestRank(TorchDispatchMode):
        rank = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    self.rank = max(self.rank, t.dim())
            return out

    with gankernels.use_backend("ref"), LargestRank() as mode:
        y = ops.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=False)
    assert mode.rank == 4
    assert_close(y, reference(x, weight, styles, padding=1))


@pytest.mark.parametrize(
    "fused_modconv,up,down,demodulate,backend",
    [
        (True, 1, 1, True, "cpu"),
        (False, 1, 1, True, "cpu"),
        (True, 2, 1, True, "cpu"),
        (False, 1, 2, False, "cpu"),
        (True, 1, 1, True, "triton"),
    ],
)
def test_gradcheck_gradgradcheck(fused_modconv, up, down, demodulate, backend):
    """Path-length regularisation differentiates G twice: second order with respect to x, weight and styles."""
    if backend not in BACKENDS:
        pytest.skip(f"backend {backend} does not run here")
    size = 4 if down == 1 else 6
    x, weight, styles = make_inputs(2, 2, 2, 3, size)
    noise = randn(2, 1, size * up // down, size * up // down, seed=9)
    bias = randn(2, seed=10, grad=True)

    def fn(x, weight, styles, bias):
        return ops.modulated_conv2d(x, weight, styles, noise=noise, up=up, down=down, padding=1,
                                    resample_filter=FILTER, demodulate=demodulate, flip_weight=up == 1,
                                    fused_modconv=fused_modconv, bias=bias, act="swish")  # fmt: skip

    with gankernels.use_backend(backend):
        assert torch.autograd.gradcheck(fn, (x, weight, styles, bias))
        assert torch.autograd.gradgradcheck(fn, (x, weight, styles, bias))


@pytest.mark.parametrize("fused_modconv", [True, False])
def test_path_length_double_backward_matches_reference(fused_modconv):
    """d/d(weight, styles) of |d sum(y * r) / d styles|^2 (path length penalty's structure) against autograd of the
    reference."""
    x, weight, styles = make_inputs(2, 3, 4, 3, 4)
    r = randn(2, 4, 4, 4, seed=11)

    def penalty(fn):
        y = fn(x, weight, styles, padding=1, fused_modconv=fused_modconv, act="lrelu", bias=torch.ones(4).double())
        (gs,) = torch.autograd.grad((y * r).sum(), styles, create_graph=True)
        return torch.autograd.grad(gs.square().sum(), (x, weight, styles))

    for g, w in zip(penalty(ops.modulated_conv2d), penalty(reference), strict=True):
        assert_close(g, w)


@pytest.mark.parametrize("fused_modconv", [True, False])
def test_no_weight_gradients_same_input_gradient(fused_modconv):
    x, weight, styles = make_inputs(2, 3, 4, 3, 4)
    y = ops.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused_modconv, act="lrelu")
    (want,) = torch.autograd.grad(y.tanh().sum(), x, create_graph=True)
    y = ops.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused_modconv, act="lrelu")
    with ops.no_weight_gradients():
        (got,) = torch.autograd.grad(y.tanh().sum(), x, create_graph=True)
    assert_close(got, want)


@pytest.mark.parametrize("fused_modconv", [True, False])
def test_fp16_prenormalization(fused_modconv):
    """fp16 with demodulation: weight and styles are pre-normalized, so large styles do not overflow."""
    x, weight, styles = make_inputs(2, 8, 4, 3, 6, grad=False)
    styles = styles * 1e5  # x * styles would overflow float16 (max 65504) without the pre-normalization
    y = ops.modulated_conv2d(x.half(), weight.float(), styles.float(), padding=1, fused_modconv=fused_modconv)
    want = reference(x.half().double(), weight, styles, padding=1)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.double(), want, atol=2e-2, rtol=2e-2)
    if fused_modconv:  # the same arithmetic as the reference, step for step
        assert_close(reference(x.half(), weight.float(), styles.float(), padding=1), y)


def test_channels_last_input():
    x, weight, styles = make_inputs(2, 3, 4, 3, 5, grad=False)
    x_cl = x.to(memory_format=torch.channels_last)
    for fused_modconv in (True, False):
        y = ops.modulated_conv2d(x_cl, weight, styles, padding=1, fused_modconv=fused_modconv)
        assert_close(y, reference(x, weight, styles, padding=1))


# ----------------------------------------------------------------------------------------------------------------
# Bad input

BAD = [
    (dict(styles=torch.ones(2, 5)), ValueError, r"styles must have shape \[N, I\] = \[2, 3\]"),
    (dict(styles=torch.ones(3, 3)), ValueError, "styles must have shape"),
    (dict(styles=torch.ones(2, 3, 1)), ValueError, "styles must have shape"),
    (dict(weight=torch.ones(4, 5, 3, 3)), ValueError, "x has 3 channels but weight expects"),
    (dict(weight=torch.ones(4, 3, 3)), ValueError, "weight must be 4-D"),
    (dict(x=torch.ones(3, 4, 4)), ValueError, "x must be 4-D"),
    (dict(x=torch.ones(2, 3, 4, 4, dtype=torch.int64)), TypeError, "x must be float"),
    (dict(styles=torch.ones(2, 3, dtype=torch.int32)), TypeError, "styles must be float"),
    (dict(weight=[1.0]), TypeError, "weight must be a torch.Tensor"),
    (dict(noise=torch.ones(2, 2, 4, 4)), ValueError, "noise of shape"),
    (dict(noise=torch.ones(5, 5)), ValueError, "noise of shape"),
    (dict(bias=torch.ones(3)), ValueError, r"bias must have shape \[O\]"),
    (dict(act="gelu"), ValueError, "unknown activation"),
    (dict(act=None), TypeError, "act must be a str"),
    (dict(clamp=-1), ValueError, "clamp must be >= 0"),
    (dict(gain="2"), TypeError, "gain must be a real number"),
    (dict(up=0), ValueError, "up must be >= 1"),
    (dict(down=1.5), TypeError, "down must be an int"),
    (dict(demodulate="yes"), TypeError, "demodulate must be a bool"),
    (dict(resample_filter=torch.ones(2, 2, dtype=torch.int64)), TypeError, "resample_filter must be float"),
]


@pytest.mark.parametrize("kwargs,error,match", BAD)
def test_bad_input(kwargs, error, match):
    args = dict(x=torch.ones(2, 3, 4, 4), weight=torch.ones(4, 3, 3, 3), styles=torch.ones(2, 3), padding=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.modulated_conv2d(**args)


def test_bad_input_on_another_device():
    with pytest.raises(ValueError, match="styles is on"):
        ops.modulated_conv2d(torch.ones(2, 3, 4, 4), torch.ones(4, 3, 3, 3), torch.ones(2, 3, device="meta"))


def test_all_flags_combinations_smoke():
    """Every combination of the flags runs and agrees with the reference (3x3, no resampling)."""
    x, weight, styles = make_inputs(2, 2, 3, 3, 4, grad=False)
    for demodulate, fused, flip in itertools.product([True, False], repeat=3):
        kwargs = dict(padding=1, demodulate=demodulate, fused_modconv=fused, flip_weight=flip)
        assert_close(ops.modulated_conv2d(x, weight, styles, **kwargs), reference(x, weight, styles, **kwargs))
