"""AugmentPipe: p = 0 is the identity, each augmentation does what it says, output shape / dtype / format, R1
through D(augment(x)) on every backend against the reference in float64, gradgradcheck, presets and bad input."""

import math

import pytest
import torch

import gankernels
from gankernels import backend as gk_backend
from gankernels import ops
from gankernels.augment import AUGMENTATIONS, PRESETS, AugmentPipe
from gankernels.augment.filters import filter_bank

BACKENDS = ["ref", "cpu", "triton"]
BIG_ENOUGH = 24  # imgfilter's reflect padding needs images larger than 21 pixels


def images(n=2, c=3, size=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn([n, c, size, size], generator=g, dtype=torch.float64).to(dtype)


def smooth(n=1, c=3, size=32, dtype=torch.float32):
    """A low-frequency image (where the resampling filters pass everything), different in every quadrant."""
    u = torch.linspace(-1, 1, size, dtype=torch.float64)
    base = torch.sin(2.0 * u)[None, :] * torch.cos(1.5 * u)[:, None] + 0.3 * u[None, :] + 0.2 * u[:, None] ** 2
    colours = torch.tensor([1.0, 0.5, -0.7][:c], dtype=torch.float64)[:, None, None]
    return (base[None, None] * colours).to(dtype).repeat(n, 1, 1, 1)


def blob(size=48, cx=0.0, cy=0.0, std=4.0):
    """A Gaussian blob centred (cx, cy) pixels from the image centre, [1, 1, size, size] float64."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.exp(-(((r[None, :] - cx) ** 2) + (r[:, None] - cy) ** 2) / (2 * std**2))[None, None]


def moments(img):
    """(mean x, mean y, std x, std y) in pixels from the centre, of a non-negative image [1, 1, H, W]."""
    w = img[0, 0].clamp(min=0)
    h, wd = w.shape
    ry = torch.arange(h, dtype=w.dtype) - (h - 1) / 2
    rx = torch.arange(wd, dtype=w.dtype) - (wd - 1) / 2
    total = w.sum()
    mx, my = (w.sum(0) * rx).sum() / total, (w.sum(1) * ry).sum() / total
    sx = ((w.sum(0) * (rx - mx) ** 2).sum() / total).sqrt()
    sy = ((w.sum(1) * (ry - my) ** 2).sum() / total).sqrt()
    return mx.item(), my.item(), sx.item(), sy.item()


def erfinv(v):
    return torch.erfinv(torch.tensor(v, dtype=torch.float32)).item()


# -- p = 0, shapes, dtypes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", list(PRESETS))
def test_p0_is_identity_bit_exact(preset):
    x = images(size=BIG_ENOUGH)
    pipe = AugmentPipe.from_preset(preset, p=0.0)
    torch.manual_seed(0)
    assert torch.equal(pipe(x), x)


@pytest.mark.parametrize("preset", ["bgc", "bgcfnc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_output_finite_same_shape_dtype(preset, dtype):
    x = images(size=BIG_ENOUGH, dtype=dtype)
    pipe = AugmentPipe.from_preset(preset, p=1.0)
    torch.manual_seed(1)
    y = pipe(x)
    assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()
    assert not torch.equal(y, x)


def test_channels_last_kept_and_same_values():
    x = images(size=16)
    pipe = AugmentPipe.from_preset("bgc", p=0.7)
    torch.manual_seed(2)
    y = pipe(x)
    torch.manual_seed(2)
    y_cl = pipe(x.contiguous(memory_format=torch.channels_last))
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_cl, y, atol=1e-5, rtol=1e-5)


def test_unaugmented_images_unchanged_at_partial_p():
    """p < 1: the images that drew nothing come back bit-exact, the others change."""
    x = images(n=16, size=16)
    pipe = AugmentPipe.from_preset("bgc", p=0.05)
    torch.manual_seed(3)
    y = pipe(x)
    same = [torch.equal(y[i], x[i]) for i in range(16)]
    assert any(same) and not all(same)


def test_seeded_draws_reproducible_and_dtype_independent():
    x = images(size=16)
    pipe = AugmentPipe.from_preset("bgc", p=0.8)
    torch.manual_seed(4)
    a = pipe(x)
    torch.manual_seed(4)
    b = pipe(x)
    torch.manual_seed(4)
    c = pipe(x.double())
    assert torch.equal(a, b)
    torch.testing.assert_close(c.float(), a, atol=1e-4, rtol=1e-4)  # the same draws in float64


# -- each augmentation alone at p = 1 (debug_percentile: every enabled augmentation, a known parameter) -------------


def test_xflip_flips():
    x = smooth()
    y = AugmentPipe(xflip=1)(x, debug_percentile=0.75)  # floor(0.75 * 2) = 1: flip
    assert (y - x.flip(3)).abs().max() < 0.03 < (y - x).abs().max()
    assert torch.equal(AugmentPipe(xflip=1)(x, debug_percentile=0.25), x)  # 0: no flip


@pytest.mark.parametrize("quarter_turns", [1, 2, 3])
def test_rotate90_rotates(quarter_turns):
    x = smooth()
    y = AugmentPipe(rotate90=1)(x, debug_percentile=(quarter_turns + 0.5) / 4)
    expected = torch.rot90(x, quarter_turns, dims=(2, 3))  # counter-clockwise on screen, as NVlabs
    assert (y - expected).abs().max() < 0.03


def test_xint_shifts_by_whole_pixels():
    x = images(n=1, size=32)
    y = AugmentPipe(xint=1)(x, debug_percentile=0.75)  # t = 0.5 * xint_max = 1/16 of the size: 2 pixels
    torch.testing.assert_close(y[..., 2:, 2:], x[..., :-2, :-2], atol=1e-4, rtol=0)  # exact up to rounding


def test_scale_and_aniso_scale_the_content():
    x = blob()
    _, _, sx0, sy0 = moments(x)
    s = 2 ** (erfinv(2 * 0.8 - 1) * 0.2)  # the 80th "percentile" of scale_std 0.2
    y = AugmentPipe(scale=1)(x, debug_percentile=0.8)
    _, _, sx, sy = moments(y)
    assert sx / sx0 == pytest.approx(s, rel=0.01) and sy / sy0 == pytest.approx(s, rel=0.01)
    y = AugmentPipe(aniso=1)(x, debug_percentile=0.8)
    _, _, sx, sy = moments(y)
    assert sx / sx0 == pytest.approx(s, rel=0.01) and sy / sy0 == pytest.approx(1 / s, rel=0.01)


def test_rotate_rotates():
    x = smooth()
    y = AugmentPipe(rotate=1)(x, debug_percentile=0.75)  # (0.75 * 2 - 1) * pi = a quarter turn
    assert (y - torch.rot90(x, 1, dims=(2, 3))).abs().max() < 0.03
    x = blob(cx=6.0, std=2.5)  # small and central: the reflect padding's mirror images stay out of reach
    y = AugmentPipe(rotate=1, rotate_max=0.5)(x, debug_percentile=0.75)  # 45 degrees counter-clockwise (y down)
    mx, my, _, _ = moments(y)
    # The symlet filter is not symmetric: once the axes turn, its up- and downsampling delays add up to ~0.1 pixel
    # instead of cancelling (NVlabs' pipeline does the same).
    assert math.hypot(mx, my) == pytest.approx(6.0, abs=0.15)
    assert math.degrees(math.atan2(-my, mx)) == pytest.approx(45.0, abs=0.5)


def test_xfrac_translates_by_fractions_of_a_pixel():
    x = blob()
    y = AugmentPipe(xfrac=1)(x, debug_percentile=0.6)
    t = erfinv(2 * 0.6 - 1) * 0.125 * 48  # pixels, in x and in y
    mx, my, _, _ = moments(y)
    assert 0 < t % 1 and mx == pytest.approx(t, abs=0.01) and my == pytest.approx(t, abs=0.01)


def test_brightness_shifts_the_mean():
    x = images()
    y = AugmentPipe(brightness=1)(x, debug_percentile=0.9)
    b = erfinv(2 * 0.9 - 1) * 0.2
    torch.testing.assert_close(y, x + b, atol=1e-6, rtol=0)


def test_contrast_scales_around_zero():
    x = images()
    y = AugmentPipe(contrast=1)(x, debug_percentile=0.2)
    c = 2 ** (erfinv(2 * 0.2 - 1) * 0.5)
    torch.testing.assert_close(y, x * c, atol=1e-6, rtol=1e-6)


def luma_chroma(x):
    luma = x.mean(dim=1, keepdim=True)
    return luma, x - luma


def test_lumaflip_negates_luma_keeps_chroma():
    x = images()
    y = AugmentPipe(lumaflip=1)(x, debug_percentile=0.75)
    (l0, c0), (l1, c1) = luma_chroma(x), luma_chroma(y)
    torch.testing.assert_close(l1, -l0, atol=1e-5, rtol=0)
    torch.testing.assert_close(c1, c0, atol=1e-5, rtol=0)


def test_hue_rotates_chroma_keeps_luma():
    x = images()
    y = AugmentPipe(hue=1)(x, debug_percentile=0.75)  # a quarter turn about the grey axis
    (l0, c0), (l1, c1) = luma_chroma(x), luma_chroma(y)
    torch.testing.assert_close(l1, l0, atol=1e-5, rtol=0)
    torch.testing.assert_close(c1.norm(dim=1), c0.norm(dim=1), atol=1e-5, rtol=1e-5)
    cos = (c0 * c1).sum(dim=1) / (c0.norm(dim=1) * c1.norm(dim=1))
    torch.testing.assert_close(cos, torch.zeros_like(cos), atol=1e-4, rtol=0)


def test_saturation_scales_chroma_keeps_luma():
    x = images()
    y = AugmentPipe(saturation=1)(x, debug_percentile=0.9)
    s = 2 ** erfinv(2 * 0.9 - 1)
    (l0, c0), (l1, c1) = luma_chroma(x), luma_chroma(y)
    torch.testing.assert_close(l1, l0, atol=1e-5, rtol=0)
    torch.testing.assert_close(c1, c0 * s, atol=1e-5, rtol=1e-5)


def test_single_channel_colour():
    x = images(c=1)
    y = AugmentPipe(brightness=1, contrast=1, hue=1, saturation=1)(x, debug_percentile=0.9)
    b, c = erfinv(0.8) * 0.2, 2 ** (erfinv(0.8) * 0.5)
    torch.testing.assert_close(y, (x + b) * c, atol=1e-5, rtol=1e-5)  # hue and saturation skip grey images


def high_frequency_energy(x):
    return (x[..., 1:, :] - x[..., :-1, :]).square().mean() + (x[..., :, 1:] - x[..., :, :-1]).square().mean()


def test_imgfilter_amplifies_the_chosen_band():
    x = images(size=32)
    pipe = AugmentPipe(imgfilter=1, imgfilter_bands=[0, 0, 0, 1])  # only the highest octave
    y = pipe(x, debug_percentile=0.95)
    assert high_frequency_energy(y) > 1.5 * high_frequency_energy(x)
    flat = torch.full([1, 3, 32, 32], 0.5)
    y = pipe(flat, debug_percentile=0.95)
    torch.testing.assert_close(y, torch.full_like(y, y[0, 0, 0, 0].item()), atol=1e-5, rtol=0)  # flat stays flat


def test_filter_bank_sums_to_a_delta():
    bank = filter_bank()
    delta = torch.zeros(bank.shape[1], dtype=torch.float64)
    delta[bank.shape[1] // 2] = 1
    torch.testing.assert_close(torch.as_tensor(bank.sum(0)), delta, atol=1e-12, rtol=0)


def test_noise_adds_noise_of_the_drawn_sigma():
    x = images(n=2, size=64)
    torch.manual_seed(5)
    y = AugmentPipe(noise=1)(x, debug_percentile=0.5)
    sigma = erfinv(0.5) * 0.1
    assert (y - x).mean().abs() < 0.01 and (y - x).std().item() == pytest.approx(sigma, rel=0.05)


def test_cutout_zeros_a_rectangle():
    x = images(size=32)
    y = AugmentPipe(cutout=1)(x, debug_percentile=0.5)  # centre 0.5, size 0.5: pixels 8 .. 23
    inside = torch.zeros_like(x, dtype=torch.bool)
    inside[..., 8:24, 8:24] = True
    assert torch.equal(y[inside], torch.zeros_like(y[inside])) and torch.equal(y[~inside], x[~inside])


# -- differentiability -----------------------------------------------------------------------------------------------


def tiny_D(x, w1, w2):
    h = ops.bias_act(ops.conv2d(x, w1, padding=1), act="lrelu")
    h = ops.bias_act(ops.conv2d(h, w2, stride=2), act="lrelu")
    return h.mean(dim=[1, 2, 3])


def r1_through_pipe(backend, pipe, x, w1, w2, seed=0):
    """(the input gradient of sum D(augment(x)), then the gradient of its squared norm w.r.t. D's weights)."""
    with gankernels.use_backend(backend):
        x = x.detach().requires_grad_(True)
        torch.manual_seed(seed)
        logits = tiny_D(pipe(x), w1, w2)
        (g,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        dw1, dw2 = torch.autograd.grad(g.square().sum(), [w1, w2])
    return g.detach(), dw1, dw2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", ["bgc", "bgcfnc"])
def test_r1_through_augment_matches_reference(backend, preset):
    if backend == "triton" and preset == "bgcfnc":  # 24x24 images: minutes under the interpreter
        pytest.skip("triton under the interpreter: bgc at 8x8 covers grid_sample and upfirdn2d; f, n, c add no op")
    for op in ("upfirdn2d", "grid_sample", "bias_act"):
        missing = None if backend == "ref" else gk_backend.why_unavailable(backend, op, "cpu")
        if missing is not None:
            pytest.skip(f"{backend} cannot run {op} here: {missing}")
    size = BIG_ENOUGH if "f" in preset else 8
    g = torch.Generator().manual_seed(1)
    x = images(n=2, size=size, dtype=torch.float64)
    w1 = torch.randn([4, 3, 3, 3], generator=g, dtype=torch.float64).requires_grad_(True)
    w2 = torch.randn([2, 4, 2, 2], generator=g, dtype=torch.float64).requires_grad_(True)
    pipe = AugmentPipe.from_preset(preset, p=0.9)
    ours = r1_through_pipe(backend, pipe, x, w1, w2)
    expected = r1_through_pipe("ref", pipe, x, w1, w2)
    assert all(torch.isfinite(t).all() for t in ours)
    assert ours[1].abs().sum() > 0  # the double backward reached D's weights
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("kwargs,size", [(dict(PRESETS["bgc"], noise=1, cutout=1), 6), (dict(imgfilter=1), 23)])
def test_gradgradcheck_fixed_draws(kwargs, size):
    pipe = AugmentPipe(**kwargs, p=1.0)
    x = images(n=1, c=3 if size < 10 else 1, size=size, dtype=torch.float64).requires_grad_(True)

    def fn(x):
        torch.manual_seed(6)  # the same draws every call: a fixed (random) transform of x
        return pipe(x)

    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def test_pipe_moves_with_to_and_keeps_nvlabs_buffers():
    pipe = AugmentPipe.from_preset("bgcfnc").double()
    assert set(dict(pipe.named_buffers())) == {"p", "Hz_geom", "Hz_fbank"}
    assert pipe.Hz_geom.shape == (12,) and pipe.Hz_fbank.shape == (4, 43)
    state = pipe.state_dict()
    other = AugmentPipe.from_preset("bgcfnc", p=0.0)
    other.load_state_dict(state)
    assert other.p.item() == 1.0


# -- presets and bad input -------------------------------------------------------------------------------------------


def test_presets_as_nvlabs():
    assert list(PRESETS) == ["blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn",
                             "bgcfnc"]  # fmt: skip
    assert set(PRESETS["bgc"]) == set(AUGMENTATIONS[:12]) and set(PRESETS["bgcfnc"]) == set(AUGMENTATIONS)
    pipe = AugmentPipe.from_preset("bgc")
    assert pipe.p.item() == 1.0 and pipe.xflip == 1 and pipe.imgfilter == 0 and pipe.xint_max == 0.125
    assert AugmentPipe.from_preset("blit", xint_max=0.25).xint_max == 0.25


def test_bad_input():
    with pytest.raises(ValueError, match="unknown preset 'bgx'"):
        AugmentPipe.from_preset("bgx")
    with pytest.raises(ValueError, match="xflip"):
        AugmentPipe(xflip=-1)
    with pytest.raises(ValueError, match="p must be in"):
        AugmentPipe(p=1.5)
    with pytest.raises(ValueError, match="p must be in"):
        AugmentPipe().set_p(-0.1)
    with pytest.raises(ValueError, match="imgfilter_bands"):
        AugmentPipe(imgfilter_bands=[1, 1])
    pipe = AugmentPipe.from_preset("bgc")
    with pytest.raises(ValueError, match="images must be 4-D"):
        pipe(torch.zeros(3, 8, 8))
    with pytest.raises(TypeError, match="images must be a floating-point"):
        pipe(torch.zeros(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        pipe(torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="imgfilter needs images larger"):
        AugmentPipe(imgfilter=1)(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="debug_percentile"):
        pipe(torch.zeros(1, 3, 8, 8), debug_percentile=2.0)
