"""WGAN-GP, R1 and path-length penalties on every backend against plain-PyTorch formulas in float64 (values and the
gradients of every parameter), the per-sample penalty op, WGAN-GP's fused kernels (triton, interpreted on CPU) and
their ops, lazy regularisation, and bad input."""

import importlib
import math

import pytest
import torch

import gankernels
import gankernels.nn as gnn
from gankernels import backend as gk_backend
from gankernels import ops
from gankernels.reference import bias_act as ref_bias_act
from gankernels.reference import conv2d as ref_conv2d
from gankernels.reference import penalties as ref
from gankernels.reference.modulated_conv2d import modulated_conv2d as ref_modulated_conv2d
from tests.conftest import WeightGradCounter, backends_for

penalties_module = importlib.import_module("gankernels.ops.penalties")
BACKENDS = ["ref"] + [b for b in backends_for("bias_act", "cpu") if b in backends_for("upfirdn2d", "cpu")]
N = 3


def randn(*shape, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(grad)


def assert_close(a, b, atol=1e-11, rtol=1e-9):
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def grad(y, inputs):
    """dy/d(inputs); zeros for an input y does not depend on (the last bias does not affect a penalty)."""
    return torch.autograd.grad(y, inputs, allow_unused=True, materialize_grads=True)


def perturbed(module, seed):
    """`module` in float64 with every parameter moved off its init (zero biases, unit gains)."""
    module = module.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


# ----------------------------------------------------------------------------------------------------------------
# Plain-PyTorch twins of the gankernels.nn layers: the reference formulas on the same parameters


def act(x, b, layer_act, gain):
    spec = ref_bias_act.ACTIVATIONS[layer_act]
    return ref_bias_act.bias_act(x, b, 1, layer_act, spec.alpha, gain, -1.0)


def plain_fc(layer, x):
    y = x @ (layer.weight * layer.weight_gain).t()
    return act(y, layer.bias * layer.bias_gain, layer.activation, ref_bias_act.ACTIVATIONS[layer.activation].gain)


def plain_conv(layer, x):
    y = ref_conv2d.conv2d_resample(x, layer.weight * layer.weight_gain, f=layer.resample_filter, up=layer.up,
                                   down=layer.down, padding=layer.padding, flip_weight=layer.up == 1)  # fmt: skip
    return act(y, layer.bias, layer.activation, layer.act_gain)


class Critic(torch.nn.Module):
    """[N, 3, 8, 8] -> [N, 1]: two lrelu Conv2dLayers (the second downsampling), two FullyConnectedLayers."""

    def __init__(self, channels=3, hidden=4, resolution=8):
        super().__init__()
        self.conv0 = gnn.Conv2dLayer(channels, hidden, 3, activation="lrelu")
        self.conv1 = gnn.Conv2dLayer(hidden, hidden, 3, activation="lrelu", down=2)
        self.fc = gnn.FullyConnectedLayer(hidden * (resolution // 2) ** 2, hidden, activation="lrelu")
        self.out = gnn.FullyConnectedLayer(hidden, 1)

    def forward(self, x):
        return self.out(self.fc(self.conv1(self.conv0(x)).flatten(1)))

    def plain(self, x):
        return plain_fc(self.out, plain_fc(self.fc, plain_conv(self.conv1, plain_conv(self.conv0, x)).flatten(1)))


def make_critic(seed=1):
    torch.manual_seed(seed)
    return perturbed(Critic(), seed)


class TinyGenerator(torch.nn.Module):
    """z [N, 4] -> ws [N, 2, 4] (mapping) -> [N, 3, 8, 8] (const 4x4, SynthesisLayer up=2, ToRGBLayer)."""

    def __init__(self, z_dim=4, w_dim=4, channels=3):
        super().__init__()
        self.fc0 = gnn.FullyConnectedLayer(z_dim, w_dim, activation="lrelu")
        self.fc1 = gnn.FullyConnectedLayer(w_dim, w_dim, activation="lrelu")
        self.const = torch.nn.Parameter(torch.randn([channels, 4, 4]))
        self.conv = gnn.SynthesisLayer(channels, channels, w_dim, resolution=8, up=2)
        self.torgb = gnn.ToRGBLayer(channels, 3, w_dim)

    def mapping(self, z, plain=False):
        fc = (lambda layer, x: plain_fc(layer, x)) if plain else (lambda layer, x: layer(x))
        return fc(self.fc1, fc(self.fc0, z)).unsqueeze(1).repeat(1, 2, 1)

    def synthesis(self, ws, fused_modconv=False):
        x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        x = self.conv(x, ws[:, 0], noise_mode="const", fused_modconv=fused_modconv)
        return self.torgb(x, ws[:, 1], fused_modconv=fused_modconv)

    def plain_synthesis(self, ws):
        x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        c = self.conv
        x = ref_modulated_conv2d(x, c.weight, plain_fc(c.affine, ws[:, 0]), noise=c.noise_const * c.noise_strength,
                                 up=2, padding=c.padding, resample_filter=c.resample_filter, flip_weight=False,
                                 bias=c.bias, act="lrelu", gain=c.act_gain)  # fmt: skip
        t = self.torgb
        styles = plain_fc(t.affine, ws[:, 1]) * t.weight_gain
        return ref_modulated_conv2d(x, t.weight, styles, demodulate=False, bias=t.bias)


def make_generator(seed=2):
    torch.manual_seed(seed)
    return perturbed(TinyGenerator(), seed)


def test_plain_twins_match_the_layers():
    critic, G = make_critic(), make_generator()
    x, z = randn(N, 3, 8, 8), randn(N, 4, seed=1)
    assert_close(critic(x), critic.plain(x))
    ws = G.mapping(z)
    assert_close(ws, G.mapping(z, plain=True))
    assert_close(G.synthesis(ws), G.plain_synthesis(ws))


# ----------------------------------------------------------------------------------------------------------------
# WGAN-GP


def plain_wgan_gp(critic, real, fake, eps, weight, center, one_sided):
    x_hat = (eps.reshape(-1, 1, 1, 1) * real + (1 - eps.reshape(-1, 1, 1, 1)) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    d = g.flatten(1).norm(dim=1) - center
    return weight * (torch.relu(d) if one_sided else d).square().mean(), g.flatten(1).norm(dim=1)


def wgan_gp_case():
    critic = make_critic()
    real, fake, eps = randn(N, 3, 8, 8, seed=3), randn(N, 3, 8, 8, seed=4), torch.rand(N, dtype=torch.float64)
    # center between the two smallest gradient norms, so that one-sided and two-sided penalties differ
    norms = plain_wgan_gp(critic.plain, real, fake, eps, 1.0, 0.0, False)[1].detach().sort().values
    return critic, real, fake, eps, float(norms[:2].mean())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("one_sided", [False, True])
def test_wgan_gp_matches_plain(backend, one_sided):
    critic, real, fake, eps, center = wgan_gp_case()
    params = list(critic.parameters())
    with gankernels.use_backend(backend):
        value = ops.wgan_gp_penalty(critic, real, fake, weight=7.0, center=center, eps=eps, one_sided=one_sided)
        grads = grad(value, params)
    want = plain_wgan_gp(critic.plain, real, fake, eps, 7.0, center, one_sided)[0]
    assert_close(value, want)
    for g, w in zip(grads, grad(want, params), strict=True):
        assert_close(g, w)
    if one_sided:
        two_sided = plain_wgan_gp(critic.plain, real, fake, eps, 7.0, center, False)[0]
        assert 0 < value.item() < two_sided.item()


def test_wgan_gp_random_eps_and_eps_shapes():
    critic, real, fake, _, _ = wgan_gp_case()
    torch.manual_seed(7)
    drawn = ops.wgan_gp_penalty(critic, real, fake)
    torch.manual_seed(7)
    eps = torch.rand(N, 1, 1, 1, dtype=torch.float64)
    assert_close(drawn, ops.wgan_gp_penalty(critic, real, fake, eps=eps))
    assert_close(drawn, ops.wgan_gp_penalty(critic, real, fake, eps=eps.reshape(N)))
    assert_close(drawn, ref.wgan_gp_penalty(critic.plain, real, fake, eps=eps))


def test_wgan_gp_closed_form_and_plain_critic():
    """A linear critic <a, x> + c has gradient a at every x: the penalty is weight (||a|| - center)^2. Also flat
    [N, D] samples (eps [N, 1]) and a critic of torch.nn modules returning [N]."""
    a = randn(5, seed=5)
    linear = torch.nn.Linear(5, 1).double()
    with torch.no_grad():
        linear.weight.copy_(a)
    real, fake = randn(4, 5, seed=6), randn(4, 5, seed=7)
    for eps in (None, torch.rand(4, 1, dtype=torch.float64)):
        for fn in (ops.wgan_gp_penalty, ref.wgan_gp_penalty):
            value = fn(lambda x: linear(x).squeeze(1), real, fake, weight=3.0, center=0.5, eps=eps)
            assert_close(value, 3.0 * (a.norm() - 0.5).square())
    value = ops.wgan_gp_penalty(linear, real, fake, center=a.norm().item() + 1, one_sided=True)
    assert value.item() == 0.0


def test_wgan_gp_detaches_real_and_fake():
    critic = make_critic()
    source = randn(N, 3, 8, 8, seed=8, grad=True)
    value = ops.wgan_gp_penalty(critic, randn(N, 3, 8, 8), source * 2, eps=torch.rand(N, dtype=torch.float64))
    assert torch.autograd.grad(value, [source, critic.out.bias], allow_unused=True)[0] is None


def test_wgan_gp_low_precision():
    critic = make_critic().float()
    real, fake = randn(N, 3, 8, 8).float(), randn(N, 3, 8, 8, seed=9).float()
    eps = torch.rand(N)
    value = ops.wgan_gp_penalty(critic, real, fake, eps=eps)
    want = ops.wgan_gp_penalty(critic.double(), real.double(), fake.double(), eps=eps.double())
    assert value.dtype == torch.float32
    assert abs(value.item() - want.item()) <= 1e-4 * max(1.0, abs(want.item()))


# ----------------------------------------------------------------------------------------------------------------
# The per-sample penalty op


@pytest.mark.parametrize("center,one_sided", [(1.0, False), (0.0, False), (2.5, True)])
def test_gradient_penalty_op_gradcheck(center, one_sided):
    g = randn(4, 2, 3, seed=10, grad=True)  # norms around 2.5: some above center, some below
    fn = lambda g: ops.gradient_penalty(g, center, one_sided)
    assert_close(fn(g), ref.gradient_penalty(g, center, one_sided))
    assert torch.autograd.gradcheck(fn, (g,))
    assert torch.autograd.gradgradcheck(fn, (g,))


def test_gradient_penalty_op_registration_and_edge_cases():
    g = randn(3, 4, seed=11, grad=True)
    torch.library.opcheck(torch.ops.gankernels.gradient_penalty, (g, 1.0, False))
    torch.library.opcheck(torch.ops.gankernels.gradient_penalty, (g, 2.0, True))
    zero = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)  # ||g|| = 0: value center^2, gradient 0
    p = ops.gradient_penalty(zero)
    assert_close(p, torch.ones(2, dtype=torch.float64))
    assert_close(torch.autograd.grad(p.sum(), zero)[0], torch.zeros(2, 3, dtype=torch.float64))
    half = randn(3, 4, seed=12).half().requires_grad_(True)  # float16 in: float32 out, float16 gradient
    p = ops.gradient_penalty(half)
    assert p.dtype == torch.float32 and torch.autograd.grad(p.sum(), half)[0].dtype == torch.float16
    with gankernels.use_backend("ref"):
        assert "gankernels" not in type(ops.gradient_penalty(g).grad_fn).__name__.lower()


# ----------------------------------------------------------------------------------------------------------------
# The fused WGAN-GP kernels (triton backend; interpreted on CPU) and the reference twins of their ops

needs_triton = pytest.mark.skipif(
    gk_backend.why_unavailable("triton", "penalties", "cpu") is not None, reason="triton cannot run on CPU here"
)
FUSED = ["ref", pytest.param("triton", marks=needs_triton)]
# max |y - y64| <= atol + rtol |y64|, y64 computed in float64 from the same (rounded) inputs
TOLERANCE = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 2e-2),
}
LAYOUTS = [((3, 2, 5, 7), False), ((3, 2, 5, 7), True), ((1, 3, 4, 4), True), ((2, 37), False)]


def close_to(y, y64, dtype):
    atol, rtol = TOLERANCE[dtype]
    assert not torch.isnan(y).any()
    err = (y.double() - y64).abs() - rtol * y64.abs()
    assert err.max().item() <= atol, f"max error {(y.double() - y64).abs().max().item():.3g}"


def sample(shape, dtype=torch.float64, channels_last=False, seed=0, scale=1.0):
    x = (randn(*shape, seed=seed) * scale).to(dtype)
    return x.to(memory_format=torch.channels_last) if channels_last else x


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 4 elements, 2 per program: the reduction takes its two-stage (multi-chunk) path."""
    import gankernels.triton.penalties as kernels

    monkeypatch.setattr(kernels, "MAX_BLOCK", 4)
    monkeypatch.setattr(kernels, "TILES", 2)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("shape,channels_last", LAYOUTS)
@pytest.mark.parametrize("center,one_sided", [(1.5, False), (4.0, True)])
def test_fused_gradient_penalty(backend, dtype, shape, channels_last, center, one_sided):
    """Penalty and gradient (layout kept) against float64; norms around 4: one-sided cases are mixed."""
    g = sample(shape, dtype, channels_last, scale=4 / math.prod(shape[1:]) ** 0.5).requires_grad_(True)
    dp = torch.linspace(-1, 2, shape[0], dtype=torch.float64)
    with gankernels.use_backend(backend):
        p = ops.gradient_penalty(g, center, one_sided)
        (dg,) = torch.autograd.grad(p, g, dp.to(p.dtype))
    g64 = g.detach().double().requires_grad_(True)
    p64 = ref.gradient_penalty(g64, center, one_sided)
    (dg64,) = torch.autograd.grad(p64, g64, dp)
    assert p.dtype == ref.compute_dtype(dtype) and dg.dtype == dtype
    assert dg.stride() == g.stride() or backend == "ref"  # the kernels keep any layout without a copy
    close_to(p, p64, dtype)
    close_to(dg, dg64, dtype)


@needs_triton
@pytest.mark.parametrize("shape", [(3, 2, 5, 7), (2, 1, 1, 3), (1, 65)])
def test_fused_gradient_penalty_two_stage(small_tiles, shape):
    g = sample(shape, seed=1).requires_grad_(True)
    with gankernels.use_backend("triton"):
        p = ops.gradient_penalty(g, 2.0)
        (dg,) = torch.autograd.grad(p.sum(), g)
    assert_close(p, ref.gradient_penalty(g, 2.0))
    assert_close(dg, torch.autograd.grad(ref.gradient_penalty(g, 2.0).sum(), g)[0])


@pytest.mark.parametrize("backend", FUSED)
def test_fused_gradient_penalty_zero_norm_and_layouts(backend):
    """||g_n|| = 0: penalty center^2 (0 one-sided), gradient defined as 0. Any order of the non-batch dimensions runs
    without a copy; other strides (a slice) through a dense copy."""
    g = torch.cat([torch.zeros(1, 2, 3, 4, dtype=torch.float64), randn(2, 2, 3, 4)]).requires_grad_(True)
    with gankernels.use_backend(backend):
        for one_sided, want in ((False, 2.25), (True, 0.0)):
            p = ops.gradient_penalty(g, 1.5, one_sided)
            (dg,) = torch.autograd.grad(p.sum(), g)
            assert p[0].item() == want and not dg[0].any() and dg[1:].abs().sum() > 0
            assert_close(p, ref.gradient_penalty(g, 1.5, one_sided))
        for view in (g.permute(0, 3, 1, 2), g.transpose(1, 3), g[:, :, 1:], g[:, ::2]):
            p = ops.gradient_penalty(view)
            (dg,) = torch.autograd.grad(p.sum(), g)
            assert_close(p, ref.gradient_penalty(view))
            assert_close(dg, torch.autograd.grad(ref.gradient_penalty(view).sum(), g)[0])
    dense_views = (g, g.permute(0, 3, 1, 2), g.transpose(1, 3), g[1:], g[:1, :1])
    assert all(penalties_module._samples_dense(v) for v in dense_views)
    not_dense = (g[:, :, 1:], g[:, ::2], g.transpose(0, 1), randn(3, 1, 4)[:, :, :1])
    assert not any(penalties_module._samples_dense(v) for v in not_dense)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize(
    "center,one_sided,channels_last", [(1.0, False, False), (0.0, False, True), (2.5, True, False)]
)
def test_fused_gradient_penalty_gradcheck(backend, center, one_sided, channels_last):
    g = sample((3, 2, 1, 3), channels_last=channels_last, seed=10).requires_grad_(True)  # norms about 2.5
    with gankernels.use_backend(backend):
        fn = lambda g: ops.gradient_penalty(g, center, one_sided)
        assert torch.autograd.gradcheck(fn, (g,))
        assert torch.autograd.gradgradcheck(fn, (g,))


@pytest.mark.parametrize("backend", FUSED)
def test_fused_gradient_norm_output(backend):
    """The norm (second output, what the backward reuses) is differentiable too: d||g|| / dg = g / ||g||, any order."""
    op = torch.ops.gankernels.gradient_norm_penalty
    g = randn(2, 3, 2, seed=11, grad=True)
    p, norm = op(g, 0.5, False, backend)
    assert_close(norm, g.detach().flatten(1).norm(dim=1))
    assert_close(p, (norm - 0.5).square())
    (dg,) = torch.autograd.grad((norm * torch.tensor([2.0, -1.0], dtype=torch.float64)).sum(), g)
    weights = torch.tensor([2.0, -1.0], dtype=torch.float64).reshape(2, 1, 1)
    assert_close(dg, g.detach() / norm.detach().reshape(2, 1, 1) * weights)
    fn = lambda g: torch.stack(op(g, 0.5, False, backend))
    assert torch.autograd.gradcheck(fn, (g,)) and torch.autograd.gradgradcheck(fn, (g,))


@pytest.mark.parametrize("backend", FUSED)
def test_fused_penalty_opcheck(backend):
    g = randn(3, 2, 3, seed=12, grad=True)
    p, norm = torch.ops.gankernels.gradient_norm_penalty(g, 1.0, False, backend)
    torch.library.opcheck(torch.ops.gankernels.gradient_norm_penalty, (g, 1.0, False, backend))
    torch.library.opcheck(torch.ops.gankernels.gradient_norm_penalty, (g, 2.0, True, backend))
    bwd = torch.ops.gankernels.gradient_norm_penalty_backward
    dp, dnorm = randn(3, seed=13, grad=True), randn(3, seed=14, grad=True)
    for args in ((dp, None), (None, dnorm), (dp, dnorm)):
        torch.library.opcheck(bwd, (*args, g, norm.detach().requires_grad_(True), 1.0, True, backend))


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("shape,channels_last", LAYOUTS)
def test_fused_interpolate(backend, dtype, shape, channels_last):
    real, fake = sample(shape, dtype, channels_last, seed=15), sample(shape, dtype, seed=16)  # fake: NCHW
    eps = torch.tensor([0.0, 1.0, 0.3][: shape[0]], dtype=dtype)  # 0 and 1 give fake and real exactly
    with gankernels.use_backend(backend):
        x = ops.wgan_gp_interpolate(real, fake, eps)
    e = eps.double().reshape(ref.eps_shape(real))
    close_to(x, e * real.double() + (1 - e) * fake.double(), dtype)
    assert x.dtype == dtype and torch.equal(x[0], fake[0])
    if shape[0] > 1:
        assert torch.equal(x[1], real[1])
    if backend == "triton":
        assert x.stride() == real.stride()


@pytest.mark.parametrize("backend", FUSED)
def test_fused_interpolate_gradcheck_and_opcheck(backend):
    """Differentiable with respect to real, fake and eps, to any order."""
    real, fake = randn(3, 2, 1, 3, seed=17, grad=True), randn(3, 2, 1, 3, seed=18, grad=True)
    eps = torch.rand(3, dtype=torch.float64, requires_grad=True)
    with gankernels.use_backend(backend):
        for e in (eps, eps.reshape(3, 1, 1, 1)):
            assert torch.autograd.gradcheck(ops.wgan_gp_interpolate, (real, fake, e))
            assert torch.autograd.gradgradcheck(ops.wgan_gp_interpolate, (real, fake, e))
    op = torch.ops.gankernels.wgan_gp_interpolate
    torch.library.opcheck(op, (real, fake, eps, backend))
    torch.library.opcheck(op, (real.detach(), fake.detach().to(memory_format=torch.channels_last), eps, backend))


@needs_triton
@pytest.mark.parametrize("channels_last,one_sided", [(False, False), (True, True)])
def test_fused_wgan_gp_equals_ref(monkeypatch, channels_last, one_sided):
    """A whole WGAN-GP penalty through the critic on the triton backend (fused interpolation, penalty and its
    gradient) equals the reference backend: value and every critic parameter's gradient, float64."""
    import gankernels.triton.penalties as kernels

    calls = []
    for name in ("interpolate_forward", "gradient_penalty_forward", "gradient_penalty_backward"):
        original = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    critic, real, fake, eps, center = wgan_gp_case()
    if channels_last:
        real, fake = real.to(memory_format=torch.channels_last), fake.to(memory_format=torch.channels_last)
    params = list(critic.parameters())
    results = {}
    for backend in ("ref", "triton"):
        with gankernels.use_backend(backend):
            value = ops.wgan_gp_penalty(critic, real, fake, weight=3.0, center=center, eps=eps, one_sided=one_sided)
            results[backend] = value, grad(value, params)
    assert calls == ["interpolate_forward", "gradient_penalty_forward", "gradient_penalty_backward"]
    assert_close(results["triton"][0], results["ref"][0])
    for g, w in zip(results["triton"][1], results["ref"][1], strict=True):
        assert_close(g, w)


def test_penalties_dispatch():
    """triton: the fused ops; cpu / cuda / automatic on CPU tensors: torch ops in gankernels::gradient_penalty; ref: the
    plain formula."""
    g = randn(2, 3, seed=19, grad=True)
    names = {}
    for backend in [None, "ref"] + backends_for("bias_act", "cpu"):
        with gankernels.use_backend(backend):
            names[backend] = type(ops.gradient_penalty(g).grad_fn).__name__
            want = {"triton": "triton", "ref": "ref"}.get(backend, "torch")
            assert penalties_module.resolve_backend("cpu") == want
    assert "GradientNormPenalty" in names.get("triton", "GradientNormPenalty")
    assert all("GradientNormPenalty" not in n for b, n in names.items() if b != "triton")
    assert "gankernels" not in names["ref"].lower() and "Pow" in names["ref"]


# ----------------------------------------------------------------------------------------------------------------
# R1


def plain_r1(critic, images):
    (g,) = torch.autograd.grad(critic(images).sum(), images, create_graph=True)
    return g.square().flatten(1).sum(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_r1_matches_plain(backend):
    critic, images, weights = make_critic(), randn(N, 3, 8, 8, seed=13, grad=True), randn(N, seed=14)
    params = list(critic.parameters())
    with gankernels.use_backend(backend):
        r1 = ops.r1_penalty(critic(images), images)
        grads = grad((r1 * weights).sum(), params + [images])
    want = plain_r1(critic.plain, images)
    assert_close(r1, want)
    for g, w in zip(grads, grad((want * weights).sum(), params + [images]), strict=True):
        assert_close(g, w)


def test_r1_no_weight_gradients():
    """The inner gradient skips the convolutions' weight gradients; penalty and parameter gradients are unchanged."""
    critic, images = make_critic(), randn(N, 3, 8, 8, seed=15, grad=True)
    params = list(critic.parameters())
    results = {}
    for no_weight_grad in (True, False):
        logits = critic(images)
        with WeightGradCounter() as counter:
            r1 = ops.r1_penalty(logits, images, no_weight_grad=no_weight_grad)
        assert bool(counter.calls) != no_weight_grad
        results[no_weight_grad] = r1, grad(r1.sum(), params)
    assert_close(results[True][0], results[False][0])
    for g, w in zip(results[True][1], results[False][1], strict=True):
        assert_close(g, w)


def test_r1_closed_form():
    """D(x) = ||x||^2 / 2 per sample has gradient x: R1 = ||x_n||^2 (R2 on fakes is the same call)."""
    x = randn(2, 3, 4, seed=16, grad=True)
    for fn in (ops.r1_penalty, ref.r1_penalty):
        assert_close(fn(0.5 * x.square().sum((1, 2)), x), x.detach().square().sum((1, 2)))


# ----------------------------------------------------------------------------------------------------------------
# Path length


def plain_path_length(img, ws, pl_mean, decay, noise):
    (g,) = torch.autograd.grad((img * noise / math.sqrt(img.shape[2] * img.shape[3])).sum(), ws, create_graph=True)
    lengths = g.square().sum(2).mean(1).sqrt()
    new_mean = pl_mean + decay * (lengths.mean() - pl_mean)
    return (lengths - new_mean).square(), new_mean.detach()


@pytest.mark.parametrize(
    "backend,fused_modconv",
    [(b, False) for b in BACKENDS] + [("ref", True), pytest.param(BACKENDS[-1], True, id="last-fused")],
)
def test_path_length_matches_plain(backend, fused_modconv):
    G, z = make_generator(), randn(N, 4, seed=17)
    noise, weights = randn(N, 3, 8, 8, seed=18), randn(N, seed=19)
    params = list(G.parameters())
    pl_mean = torch.tensor(0.3, dtype=torch.float64)
    with gankernels.use_backend(backend):
        ws = G.mapping(z)
        img = G.synthesis(ws, fused_modconv=fused_modconv)
        # per-sample weights of fused_modconv depend on ws: no_weight_gradients would cut that path
        penalty, new_mean = ops.path_length_penalty(img, ws, pl_mean, decay=0.1, noise=noise,
                                                    no_weight_grad=not fused_modconv)  # fmt: skip
        grads = grad((penalty * weights).sum(), params)
    ws = G.mapping(z, plain=True)
    want, want_mean = plain_path_length(G.plain_synthesis(ws), ws, pl_mean, 0.1, noise)
    assert_close(penalty, want)
    assert_close(new_mean, want_mean)
    assert not new_mean.requires_grad and pl_mean.item() == 0.3
    for g, w in zip(grads, grad((want * weights).sum(), params), strict=True):
        assert_close(g, w)
    if fused_modconv:
        with pytest.raises(ValueError, match="no_weight_grad=False"):
            ops.path_length_penalty(img, G.mapping(z), pl_mean, noise=noise)


def test_path_length_noise_mean_and_decay():
    G = make_generator()
    ws = G.mapping(randn(N, 4, seed=20))
    img = G.synthesis(ws)
    torch.manual_seed(21)
    drawn, _ = ops.path_length_penalty(img, ws, 0.0)
    torch.manual_seed(21)
    noise = torch.randn_like(img)
    penalty, new_mean = ops.path_length_penalty(img, ws, 0.0, noise=noise)
    assert_close(drawn, penalty)
    assert new_mean.shape == () and new_mean.dtype == torch.float32  # a number gives a 0-d float32 mean
    assert_close(drawn, ref.path_length_penalty(img, ws, torch.tensor(0.0, dtype=torch.float64), noise=noise)[0])
    lengths = plain_path_length(img, ws, 0.0, 0.0, noise)[0].sqrt()  # decay 0: the mean stays, here 0
    _, same = ops.path_length_penalty(img, ws, torch.full([1], 0.5), decay=0.0, noise=noise)
    _, full = ops.path_length_penalty(img, ws, torch.full([1], 0.5), decay=1.0, noise=noise)
    assert same.tolist() == [0.5] and math.isclose(full.item(), lengths.mean().item(), rel_tol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Lazy regularisation


def test_lazy_regularization():
    reg = ops.LazyRegularization(16)
    r = 16 / 17
    assert reg.mb_ratio == r
    kwargs = reg.adam_kwargs(lr=0.0025, betas=(0, 0.99), eps=1e-8)
    assert kwargs == {"lr": 0.0025 * r, "betas": (0.0, 0.99**r), "eps": 1e-8}
    torch.optim.Adam([torch.zeros(1, requires_grad=True)], **kwargs)
    assert reg.gain() == 16 and reg.gain(5.0) == 80.0
    assert [reg.due(s) for s in (0, 1, 15, 16, 32)] == [True, False, False, True, True]
    every = ops.LazyRegularization()
    assert every.mb_ratio == 1.0 and every.gain(2.0) == 2.0 and every.due(3)
    assert every.adam_kwargs(0.002) == {"lr": 0.002, "betas": (0.0, 0.99)}
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="interval"):
            ops.LazyRegularization(bad)
    with pytest.raises(ValueError, match="betas"):
        reg.adam_kwargs(0.002, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas"):
        reg.adam_kwargs(0.002, betas=0.9)
    with pytest.raises(ValueError, match="step"):
        reg.due(-1)


# ----------------------------------------------------------------------------------------------------------------
# Bad input

LINEAR_CRITIC = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(fake=torch.ones(2, 3, 2, 3)), ValueError, "real has shape .* but fake has"),
        (dict(fake=torch.ones(2, 3, 2, 2, dtype=torch.float64)), TypeError, "fake has dtype"),
        (dict(fake=torch.ones(2, 3, 2, 2, device="meta")), ValueError, "fake is on"),
        (dict(real=torch.ones(2, 3, 2, 2, dtype=torch.int64)), TypeError, "real must be float"),
        (dict(real=torch.ones(0, 3, 2, 2), fake=torch.ones(0, 3, 2, 2)), ValueError, "N >= 1"),
        (dict(critic=lambda x: x.flatten(1)[:, :2]), ValueError, r"critic must return one value per sample"),
        (dict(critic=lambda x: x.sum()), ValueError, r"critic must return one value per sample, shape \[2\]"),
        (dict(critic=lambda x: x.flatten(1)[:, :1, None]), ValueError, "critic must return one value per sample"),
        (dict(critic=lambda x: [x.sum()]), TypeError, "critic must return a torch.Tensor"),
        (dict(critic=lambda x: torch.zeros(2)), ValueError, "critic's output does not depend on its input"),
        (dict(critic="D"), TypeError, "critic must be callable"),
        (dict(eps=torch.ones(2, 1)), ValueError, r"eps must have shape \[2\] or \[2, 1, 1, 1\]"),
        (dict(eps=torch.ones(3)), ValueError, "eps must have shape"),
        (dict(eps=torch.ones(2, dtype=torch.int64)), TypeError, "eps must be float"),
        (dict(center=-1.0), ValueError, "center must be >= 0"),
        (dict(weight="10"), TypeError, "weight must be a real number"),
        (dict(one_sided="yes"), TypeError, "one_sided must be a bool"),
    ],
)
def test_wgan_gp_bad_input(kwargs, error, match):
    args = dict(critic=LINEAR_CRITIC, real=torch.ones(2, 3, 2, 2), fake=torch.zeros(2, 3, 2, 2))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.wgan_gp_penalty(**args)


def test_r1_bad_input():
    x = torch.ones(2, 3, 2, 2, requires_grad=True)
    logits = LINEAR_CRITIC(x)
    with pytest.raises(ValueError, match="images must require grad"):
        ops.r1_penalty(logits, x.detach())
    with pytest.raises(ValueError, match="logits must have N=2 rows"):
        ops.r1_penalty(logits[:1], x)
    with pytest.raises(ValueError, match="logits does not depend on images"):
        ops.r1_penalty(torch.zeros(2, 1), x)
    with pytest.raises(ValueError, match="logits does not depend on images"):
        ops.r1_penalty(LINEAR_CRITIC(torch.ones(2, 3, 2, 2, requires_grad=True)), x)
    with pytest.raises(TypeError, match="logits must be float"):
        ops.r1_penalty(torch.zeros(2, 1, dtype=torch.int64), x)
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        ops.r1_penalty(logits, [1.0])


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(fake_images=torch.ones(2, 3, 4)), ValueError, "fake_images must be"),
        (dict(ws=torch.ones(2, 4, requires_grad=True)), ValueError, "ws must be"),
        (dict(ws=torch.ones(3, 2, 4, requires_grad=True)), ValueError, "ws must be .* N=2"),
        (dict(ws=torch.ones(2, 2, 4)), ValueError, "ws must require grad"),
        (dict(pl_mean=torch.zeros(2)), ValueError, "pl_mean must hold one value"),
        (dict(pl_mean="0"), TypeError, "pl_mean must be a real number"),
        (dict(decay=1.5), ValueError, r"decay must be in \[0, 1\]"),
        (dict(noise=torch.ones(2, 3, 4, 5)), ValueError, "noise must have fake_images' shape"),
        (dict(noise=torch.ones(2, 3, 4, 4, dtype=torch.int32)), TypeError, "noise must be float"),
    ],
)
def test_path_length_bad_input(kwargs, error, match):
    ws = torch.ones(2, 2, 4, requires_grad=True)
    args = dict(fake_images=ws.sum((1, 2)).reshape(2, 1, 1, 1).expand(2, 3, 4, 4), ws=ws, pl_mean=torch.zeros([]))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.path_length_penalty(**args)


def test_gradient_penalty_bad_input():
    with pytest.raises(ValueError, match="grads must be"):
        ops.gradient_penalty(torch.ones(0, 3))
    with pytest.raises(TypeError, match="grads must be float"):
        ops.gradient_penalty(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="eps must have shape"):
        ops.wgan_gp_interpolate(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3))
    assert_close(
        ops.wgan_gp_interpolate(randn(2, 3), randn(2, 3, seed=1), torch.tensor([0.25, 1.0], dtype=torch.float64)),
        torch.stack([0.25 * randn(2, 3)[0] + 0.75 * randn(2, 3, seed=1)[0], randn(2, 3)[1]]),
    )
