"""FullyConnectedLayer, Conv2dLayer, SynthesisLayer, ToRGBLayer: NVlabs' names, init and state dicts, values and
gradients against the reference formulas, noise modes, torch.compile, and an NVlabs network's outputs rebuilt from
these layers (shared/fixtures/nvlabs_stylegan2_tiny)."""

import math

import numpy as np
import pytest
import torch

import gankernels
import gankernels.nn as gnn
from gankernels import ops
from gankernels.reference import bias_act as ref_bias_act
from gankernels.reference import conv2d as ref_conv2d
from gankernels.reference.modulated_conv2d import modulated_conv2d as ref_modulated_conv2d
from tests.conftest import STYLEGAN2_FIXTURE as FIXTURE
from tests.conftest import backends_for, needs_fixture

BACKENDS = ["ref"] + [b for b in backends_for("bias_act", "cpu") if b in backends_for("upfirdn2d", "cpu")]


def randn(*shape, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(grad)


def assert_close(a, b, atol=1e-12, rtol=1e-12):
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def ref_act(x, b, act, gain=None, clamp=None):
    spec = ref_bias_act.ACTIVATIONS[act]
    return ref_bias_act.bias_act(x, b, 1, act, spec.alpha, spec.gain if gain is None else gain,
                                 -1.0 if clamp is None else clamp)  # fmt: skip


def load_fixture():
    data = np.load(FIXTURE)
    return {k: torch.from_numpy(data[k]) for k in data.files}


def sub_state(fixture, prefix):
    return {k[len(prefix) :]: v for k, v in fixture.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------------------------------------------
# Names, shapes and init


def test_names_shapes_and_init():
    torch.manual_seed(0)
    fc = gnn.FullyConnectedLayer(64, 32, activation="lrelu", lr_multiplier=0.01, bias_init=0.5)
    assert {k: list(v.shape) for k, v in fc.state_dict().items()} == {"weight": [32, 64], "bias": [32]}
    assert abs(fc.weight.std().item() * 0.01 - 1) < 0.1 and torch.all(fc.bias == 0.5)
    assert math.isclose(fc.weight_gain, 0.01 / 8) and fc.bias_gain == 0.01

    conv = gnn.Conv2dLayer(3, 8, kernel_size=3, down=2, channels_last=True)
    assert {k: list(v.shape) for k, v in conv.state_dict().items()} == {
        "weight": [8, 3, 3, 3], "bias": [8], "resample_filter": [4, 4]}  # fmt: skip
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.padding == 1
    assert conv(torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)).shape == (2, 8, 4, 4)
    assert torch.allclose(conv.resample_filter, ops.setup_filter([1, 3, 3, 1]))
    assert gnn.Conv2dLayer(3, 8, 1, bias=False).bias is None

    frozen = gnn.Conv2dLayer(3, 8, 3, trainable=False)
    assert not list(frozen.parameters()) and set(frozen.state_dict()) == {"weight", "bias", "resample_filter"}
    assert set(gnn.FullyConnectedLayer(4, 5, trainable=False).state_dict()) == {"weight", "bias"}

    layer = gnn.SynthesisLayer(8, 16, w_dim=12, resolution=8, up=2)
    shapes = {k: list(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == {
        "weight": [16, 8, 3, 3], "noise_strength": [], "bias": [16], "resample_filter": [4, 4], "noise_const": [8, 8],
        "affine.weight": [8, 12], "affine.bias": [8]}  # fmt: skip
    assert torch.all(layer.affine.bias == 1) and layer.noise_strength.item() == 0 and torch.all(layer.bias == 0)
    assert "noise_const" not in gnn.SynthesisLayer(8, 16, 12, 8, use_noise=False).state_dict()

    rgb = gnn.ToRGBLayer(16, 3, w_dim=12)
    assert {k: list(v.shape) for k, v in rgb.state_dict().items()} == {
        "weight": [3, 16, 1, 1], "bias": [3], "affine.weight": [16, 12], "affine.bias": [16]}  # fmt: skip
    assert math.isclose(rgb.weight_gain, 1 / 4)
    assert "resolution=8, up=2, activation=lrelu" in repr(layer)


@needs_fixture
def test_nvlabs_state_dicts_load_strict():
    fixture = load_fixture()
    cases = [
        ("G.synthesis.b8.conv0.", gnn.SynthesisLayer(64, 64, w_dim=64, resolution=8, up=2)),
        ("G.synthesis.b32.conv1.", gnn.SynthesisLayer(32, 32, w_dim=64, resolution=32)),
        ("G.synthesis.b32.torgb.", gnn.ToRGBLayer(32, 3, w_dim=64)),
        ("G.mapping.fc1.", gnn.FullyConnectedLayer(64, 64, activation="lrelu", lr_multiplier=0.01)),
        ("D.b32.fromrgb.", gnn.Conv2dLayer(3, 32, kernel_size=1, activation="lrelu")),
        ("D.b32.conv1.", gnn.Conv2dLayer(32, 64, kernel_size=3, activation="lrelu", down=2)),
        ("D.b32.skip.", gnn.Conv2dLayer(32, 64, kernel_size=1, bias=False, down=2)),
        ("D.b4.fc.", gnn.FullyConnectedLayer(1024, 64, activation="lrelu")),
    ]
    for prefix, module in cases:
        state = sub_state(fixture, prefix)
        module.load_state_dict(state, strict=True)
        for k, v in module.state_dict().items():
            assert torch.equal(v, state[k]), prefix + k


# ----------------------------------------------------------------------------------------------------------------
# Values and gradients against the formulas


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation,shape", [("linear", (3, 6)), ("lrelu", (3, 6)), ("swish", (2, 4, 6))])
def test_fully_connected(backend, activation, shape):
    fc = gnn.FullyConnectedLayer(6, 5, activation=activation, lr_multiplier=0.1, bias_init=[0.5]).double()
    x = randn(*shape, grad=True)
    with gankernels.use_backend(backend, strict=False):
        y = fc(x)
    spec = ref_bias_act.ACTIVATIONS[activation]
    z = x @ (fc.weight * 0.1 / math.sqrt(6)).t() + fc.bias * 0.1
    want = ref_bias_act._activation(z, activation, spec.alpha) * spec.gain
    assert_close(y, want)
    dy = randn(*want.shape, seed=1)
    params = (x, fc.weight, fc.bias)
    for g, r in zip(torch.autograd.grad(y, params, dy), torch.autograd.grad(want, params, dy), strict=True):
        assert_close(g, r)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k,up,down,clamp", [(3, 1, 1, None), (3, 1, 2, 0.5), (1, 1, 2, None), (3, 2, 1, 1.0)])
def test_conv2d_layer(backend, k, up, down, clamp):
    layer = gnn.Conv2dLayer(3, 4, kernel_size=k, activation="lrelu", up=up, down=down, conv_clamp=clamp).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = randn(2, 3, 6, 6, grad=True)
    with gankernels.use_backend(backend, strict=False):
        y = layer(x, gain=0.5)
    w = layer.weight / math.sqrt(3 * k * k)
    z = ref_conv2d.conv2d_resample(x, w, layer.resample_filter.double(), up=up, down=down, padding=k // 2,
                                   flip_weight=up == 1)  # fmt: skip
    want = ref_act(z, layer.bias, "lrelu", gain=math.sqrt(2) * 0.5, clamp=None if clamp is None else clamp * 0.5)
    assert y.shape == (2, 4, 6 * up // down, 6 * up // down)
    assert_close(y, want)
    params = (x, layer.weight, layer.bias)
    dy = randn(*want.shape, seed=1)
    with gankernels.use_backend(backend, strict=False):
        got = torch.autograd.grad(y, params, dy)
    for g, r in zip(got, torch.autograd.grad(want, params, dy), strict=True):
        assert_close(g, r)


def _synthesis_layer(up=1, kernel_size=3, conv_clamp=None, use_noise=True):
    torch.manual_seed(1)
    layer = gnn.SynthesisLayer(3, 4, w_dim=5, resolution=4 * up, kernel_size=kernel_size, up=up, use_noise=use_noise,
                               conv_clamp=conv_clamp).double()  # fmt: skip
    with torch.no_grad():
        layer.bias.normal_()
        if use_noise:
            layer.noise_strength.fill_(0.3)
    return layer


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("up,k,clamp", [(1, 3, None), (2, 3, 0.8), (1, 1, None)])
@pytest.mark.parametrize("fused_modconv", [True, False])
def test_synthesis_layer(backend, up, k, clamp, fused_modconv):
    layer = _synthesis_layer(up, k, clamp)
    x, w = randn(2, 3, 4, 4, grad=True), randn(2, 5, seed=1, grad=True)
    with gankernels.use_backend(backend, strict=False):
        y = layer(x, w, noise_mode="const", fused_modconv=fused_modconv, gain=0.5)
    styles = w @ (layer.affine.weight / math.sqrt(5)).t() + layer.affine.bias
    want = ref_modulated_conv2d(x, layer.weight, styles, noise=layer.noise_const * layer.noise_strength, up=up,
                                padding=k // 2, resample_filter=layer.resample_filter, flip_weight=up == 1,
                                bias=layer.bias, act="lrelu", gain=math.sqrt(2) * 0.5,
                                clamp=None if clamp is None else clamp * 0.5)  # fmt: skip
    assert y.shape == (2, 4, 4 * up, 4 * up)
    assert_close(y, want)
    params = (x, w, layer.weight, layer.bias, layer.noise_strength, layer.affine.weight, layer.affine.bias)
    dy = randn(*want.shape, seed=2)
    with gankernels.use_backend(backend, strict=False):
        got = torch.autograd.grad(y, params, dy)
    for g, r in zip(got, torch.autograd.grad(want, params, dy), strict=True):
        assert_close(g, r)


def test_synthesis_layer_noise_modes():
    layer = _synthesis_layer()
    x, w = randn(2, 3, 4, 4), randn(2, 5, seed=1)
    none = layer(x, w, noise_mode="none")
    const = layer(x, w, noise_mode="const")
    assert not torch.allclose(none, const)
    torch.manual_seed(5)
    random_a = layer(x, w, noise_mode="random")
    torch.manual_seed(5)
    random_b = layer(x, w)  # the default is "random"
    assert_close(random_a, random_b)
    assert not torch.allclose(random_a, const) and not torch.allclose(random_a, none)
    quiet = _synthesis_layer(use_noise=False)
    quiet.load_state_dict(layer.state_dict(), strict=False)  # all but noise_const and noise_strength
    assert_close(quiet(x, w, noise_mode="const"), none)


@pytest.mark.parametrize("fused_modconv", [True, False])
def test_to_rgb_layer(fused_modconv):
    torch.manual_seed(2)
    layer = gnn.ToRGBLayer(4, 3, w_dim=5, conv_clamp=0.4).double()
    with torch.no_grad():
        layer.bias.normal_()
    x, w = randn(2, 4, 5, 5, grad=True), randn(2, 5, seed=1, grad=True)
    y = layer(x, w, fused_modconv=fused_modconv)
    styles = (w @ (layer.affine.weight / math.sqrt(5)).t() + layer.affine.bias) / 2
    want = ref_modulated_conv2d(x, layer.weight, styles, demodulate=False, bias=layer.bias, clamp=0.4)
    assert_close(y, want)
    params = (x, w, layer.weight, layer.bias)
    for g, r in zip(torch.autograd.grad(y.sum(), params), torch.autograd.grad(want.sum(), params), strict=True):
        assert_close(g, r)


def test_torch_compile_synthesis_layer():
    torch._dynamo.reset()
    layer = _synthesis_layer(up=2, conv_clamp=1.0)
    x, w = randn(2, 3, 4, 4, grad=True), randn(2, 5, seed=1, grad=True)

    def fn(x, w):
        return layer(x, w, noise_mode="const")

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    y = compiled(x, w)
    want = fn(x, w)
    assert_close(y, want)
    dy = randn(*want.shape, seed=3)
    params = (x, w, layer.weight)
    for g, r in zip(torch.autograd.grad(y, params, dy), torch.autograd.grad(want, params, dy), strict=True):
        assert_close(g, r)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda m: m(torch.ones(2, 4, 4, 4), torch.ones(2, 5)), ValueError, r"x must have shape \[N, 3, 4, 4\]"),
        (lambda m: m(torch.ones(2, 3, 8, 8), torch.ones(2, 5)), ValueError, "x must have shape"),
        (lambda m: m(torch.ones(2, 3, 4, 4), torch.ones(2, 6)), ValueError, r"w must have shape \[2, 5\]"),
        (lambda m: m(torch.ones(2, 3, 4, 4), torch.ones(2, 5), noise_mode="on"), ValueError, "noise_mode"),
        (lambda m: m([1.0], torch.ones(2, 5)), TypeError, "x must be a torch.Tensor"),
        (lambda m: m.affine(torch.ones(2, 4)), ValueError, "x must have 5 features"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(gnn.SynthesisLayer(3, 4, w_dim=5, resolution=4))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="activation"):
        gnn.Conv2dLayer(3, 4, 3, activation="gelu")
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        gnn.SynthesisLayer(0, 4, 5, 4)
    with pytest.raises(ValueError, match="out_features"):
        gnn.FullyConnectedLayer(3, -1)


# ----------------------------------------------------------------------------------------------------------------
# An NVlabs generator (mapping + skip synthesis, 32x32, 64 channels) rebuilt from these layers


def _mapping(fixture, z):
    x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()  # normalize_2nd_moment
    for i in range(2):
        fc = gnn.FullyConnectedLayer(64, 64, activation="lrelu", lr_multiplier=0.01)
        fc.load_state_dict(sub_state(fixture, f"G.mapping.fc{i}."), strict=True)
        x = fc(x)
    return x


def _synthesis(fixture, ws, noise_mode):
    channels = {4: 64, 8: 64, 16: 64, 32: 32}
    x = img = None
    w_idx = 0
    for res in (4, 8, 16, 32):
        prefix = f"G.synthesis.b{res}."
        layers = []
        if res > 4:
            layers.append(gnn.SynthesisLayer(channels[res // 2], channels[res], 64, res, up=2, conv_clamp=256))
            layers[-1].load_state_dict(sub_state(fixture, prefix + "conv0."), strict=True)
        layers.append(gnn.SynthesisLayer(channels[res], channels[res], 64, res, conv_clamp=256))
        layers[-1].load_state_dict(sub_state(fixture, prefix + "conv1."), strict=True)
        torgb = gnn.ToRGBLayer(channels[res], 3, 64, conv_clamp=256)
        torgb.load_state_dict(sub_state(fixture, prefix + "torgb."), strict=True)
        if res == 4:
            x = fixture[prefix + "const"].unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        for layer in layers:
            x = layer(x, ws[:, w_idx], noise_mode=noise_mode)
            w_idx += 1
        if img is not None:
            img = ops.upsample2d(img, fixture[prefix + "resample_filter"])
        y = torgb(x, ws[:, w_idx])
        img = y if img is None else img + y
    return img


@needs_fixture
@pytest.mark.parametrize("fused_modconv", [True, False])
def test_nvlabs_generator_outputs(fused_modconv, monkeypatch):
    fixture = load_fixture()
    ws = _mapping(fixture, fixture["in.z"])
    torch.testing.assert_close(ws, fixture["out.ws"][:, 0], atol=1e-5, rtol=1e-5)
    if not fused_modconv:
        original = gnn.SynthesisLayer.forward
        monkeypatch.setattr(gnn.SynthesisLayer, "forward", lambda s, x, w, **kw: original(s, x, w, fused_modconv=False,
                                                                                           **kw))  # fmt: skip
    with torch.no_grad():
        for mode, key in (("const", "out.img_const"), ("none", "out.img_none")):
            img = _synthesis(fixture, fixture["out.ws"], mode)
            torch.testing.assert_close(img, fixture[key], atol=1e-4, rtol=1e-4)
