"""gankernels.models.wgan_gp: the box-filter resampling against torch's nearest upsampling and mean pooling, the
residual blocks against the paper's formulas written in torch, shapes, layout, init, a WGAN-GP training step, and the
gradient penalty's double backward on the default backend against the `ref` one."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gankernels
from gankernels.models import wgan_gp
from gankernels.ops import downsample2d, setup_filter, upsample2d, wgan_gp_penalty
from tests.conftest import backends_for

Z, CH = 16, 8
FAMILIES = [(wgan_gp.ResNetGenerator, wgan_gp.ResNetCritic), (wgan_gp.DCGANGenerator, wgan_gp.DCGANCritic)]
FAMILY_IDS = ["resnet", "dcgan"]


def make(family, resolution=32, seed=0):
    torch.manual_seed(seed)
    G_cls, D_cls = family
    return G_cls(z_dim=Z, channels=CH, resolution=resolution), D_cls(channels=CH, resolution=resolution)


# ----------------------------------------------------------------------------------------------------------------
# Resampling and blocks


@pytest.mark.parametrize("backend", ["ref"] + backends_for("upfirdn2d", "cpu"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_resampling_equals_torch(backend, dtype):
    """upsample2d / downsample2d with the 2-tap box filter are nearest x2 and 2x2 mean pooling, bit for bit."""
    f = setup_filter(wgan_gp.BOX_FILTER)
    x = torch.randn(2, 3, 6, 10, dtype=dtype)
    with gankernels.use_backend(backend, strict=False):
        assert torch.equal(upsample2d(x, f, up=2), F.interpolate(x, scale_factor=2, mode="nearest"))
        assert torch.equal(downsample2d(x, f, down=2), F.avg_pool2d(x, 2))
        assert torch.equal(wgan_gp.UpBlock(3, 3).upsample(x), F.interpolate(x, scale_factor=2, mode="nearest"))
        assert torch.equal(wgan_gp.OptimizedBlock(3, 3).pool(x), F.avg_pool2d(x, 2))


def test_box_resampling_gradients_equal_torch():
    f = setup_filter(wgan_gp.BOX_FILTER)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    for ours, want in [
        (lambda t: upsample2d(t, f, up=2), lambda t: F.interpolate(t, scale_factor=2, mode="nearest")),
        (lambda t: downsample2d(t, f, down=2), lambda t: F.avg_pool2d(t, 2)),
    ]:
        g = torch.randn_like(want(x))
        (dx,) = torch.autograd.grad(ours(x), x, g)
        (dx_want,) = torch.autograd.grad(want(x), x, g)
        torch.testing.assert_close(dx, dx_want, rtol=0, atol=1e-15)


def _bn(m, x):
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)


def _conv(m, x):
    return F.conv2d(x, m.weight, m.bias, padding=m.padding)


def _randomize(block):
    """Random non-zero parameters and BatchNorm statistics, so that every term of a block shows."""
    for p in block.parameters():
        p.data.normal_(0, 0.3)
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return block.double().eval()


def test_blocks_equal_paper_formulas():
    """Each block against the paper's formula in torch: upsample before the 1x1 shortcut conv, pool after it."""
    torch.manual_seed(0)
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")
    pool = lambda t: F.avg_pool2d(t, 2)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)

    b = _randomize(wgan_gp.UpBlock(4, 6))
    h = _conv(b.conv1, up(F.relu(_bn(b.norm1, x))))
    want = _conv(b.shortcut, up(x)) + _conv(b.conv2, F.relu(_bn(b.norm2, h)))
    torch.testing.assert_close(b(x), want, rtol=1e-12, atol=1e-12)

    b = _randomize(wgan_gp.OptimizedBlock(4, 6))
    want = _conv(b.shortcut, pool(x)) + pool(_conv(b.conv2, F.relu(_conv(b.conv1, x))))
    torch.testing.assert_close(b(x), want, rtol=1e-12, atol=1e-12)

    b = _randomize(wgan_gp.CriticBlock(4, 6, down=True))
    assert b.conv1.out_channels == 4  # the paper's down block: conv in -> in, then ConvMeanPool in -> out
    want = pool(_conv(b.shortcut, x)) + pool(_conv(b.conv2, F.relu(_conv(b.conv1, F.relu(x)))))
    torch.testing.assert_close(b(x), want, rtol=1e-12, atol=1e-12)

    b = _randomize(wgan_gp.CriticBlock(4, 4, down=False))
    assert b.shortcut is None  # identity
    want = x + _conv(b.conv2, F.relu(_conv(b.conv1, F.relu(x))))
    torch.testing.assert_close(b(x), want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Shapes and layout


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("resolution", [8, 16, 32, 64])
def test_forward_shapes(family, resolution):
    G, D = make(family, resolution)
    img = G(torch.randn(2, Z))
    assert img.shape == (2, 3, resolution, resolution)
    assert img.abs().max() < 1
    scores = D(img)
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    assert D(img[:1]).shape == (1,)


def test_paper_layout_at_32():
    G = wgan_gp.ResNetGenerator()
    D = wgan_gp.ResNetCritic()
    assert G.fc.out_features == 4 * 4 * 128 and len(G.blocks) == 3 and G.conv_out.out_channels == 3
    kinds = [(type(b).__name__, getattr(b, "down", None)) for b in D.blocks]
    assert kinds == [("OptimizedBlock", None), ("CriticBlock", True), ("CriticBlock", False), ("CriticBlock", False)]
    assert D.fc.in_features == 128 and D.fc.out_features == 1
    # the DCGAN variant at 32: gan_cifar.py's 4, 2, 1 times the width, 5x5 stride-2 layers
    G, D = wgan_gp.DCGANGenerator(channels=CH), wgan_gp.DCGANCritic(channels=CH)
    assert G.fc.out_features == 4 * 4 * 4 * CH
    assert [m.out_channels for m in G.main if isinstance(m, nn.ConvTranspose2d)] == [2 * CH, CH, 3]
    assert [m.out_channels for m in D.main if isinstance(m, nn.Conv2d)] == [CH, 2 * CH, 4 * CH]
    assert D.fc.in_features == 4 * 4 * 4 * CH


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_critic_has_no_normalisation(family):
    _, D = make(family)
    norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    assert not any(isinstance(m, norms) for m in D.modules())
    assert not [name for name, _ in D.named_buffers() if "running" in name]
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(D(x)[1:2], D(x[1:2]), rtol=1e-5, atol=1e-6)  # per-sample: no batch statistics


# ----------------------------------------------------------------------------------------------------------------
# Init


def _bound(m):
    taps = m.kernel_size[0] * m.kernel_size[1]
    s2 = m.stride[0] * m.stride[1]
    fan_in, fan_out = m.in_channels * taps, m.out_channels * taps
    if isinstance(m, nn.ConvTranspose2d):
        fan_in /= s2
    else:
        fan_out /= s2
    return math.sqrt(3 * (4 if getattr(m, "he_init", True) else 2) / (fan_in + fan_out))


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_init_statistics(family):
    G, D = make(family, 32)
    for net in (G, D):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                bound = _bound(m)
                assert m.weight.abs().max() <= bound
                assert m.weight.abs().max() > 0.8 * bound  # filled, uniform up to the bound
                if m.weight.numel() >= 2000:
                    assert abs(m.weight.std().item() - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)
            if isinstance(m, nn.Linear):
                bound = math.sqrt(6 / (m.in_features + m.out_features))
                assert bound * 0.8 < m.weight.abs().max() <= bound
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.bias is not None:
                assert torch.equal(m.bias, torch.zeros_like(m.bias))
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                assert torch.equal(m.weight, torch.ones_like(m.weight))
                assert torch.equal(m.bias, torch.zeros_like(m.bias))
    if family[0] is wgan_gp.ResNetGenerator:  # Glorot (he_init=False) for the shortcuts and the output conv
        assert G.conv_out.he_init is False and G.blocks[0].shortcut.he_init is False
        assert not hasattr(G.blocks[0].conv1, "he_init")


# ----------------------------------------------------------------------------------------------------------------
# Training and the gradient penalty


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_training_step(family):
    """One critic and one generator Adam step of WGAN-GP (the paper's lr 1e-4, betas (0, 0.9))."""
    G, D = make(family, 32)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.9))
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    before = [p.detach().clone() for p in (*G.parameters(), *D.parameters())]

    fake = G(torch.randn(2, Z)).detach()
    penalty = wgan_gp_penalty(D, real, fake)
    loss_d = D(fake).mean() - D(real).mean() + penalty
    opt_d.zero_grad()
    loss_d.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())
    # a WGAN loss and the penalty do not depend on the critic's output bias: it alone keeps a zero gradient
    assert torch.equal(D.fc.bias.grad, torch.zeros_like(D.fc.bias))
    opt_d.step()

    loss_g = -D(G(torch.randn(2, Z))).mean()
    opt_g.zero_grad()
    loss_g.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.parameters())
    opt_g.step()

    assert torch.isfinite(penalty) and penalty > 0 and torch.isfinite(loss_d) and torch.isfinite(loss_g)
    moved = [not torch.equal(a, b) for a, b in zip(before, (*G.parameters(), *D.parameters()), strict=True)]
    assert moved == [True] * (len(moved) - 1) + [False]


def _penalty_grads(D, real, fake, eps, **kwargs):
    penalty = wgan_gp_penalty(D, real, fake, eps=eps, **kwargs)
    params = {n: p for n, p in D.named_parameters() if n != "fc.bias"}  # the penalty does not depend on fc.bias
    return penalty, dict(zip(params, torch.autograd.grad(penalty, list(params.values())), strict=True))


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_penalty_double_backward_matches_ref(family):
    """The penalty's parameter gradients (a double backward through conv2d, bias_act and downsample2d) on the default
    backend equal those of the `ref` backend, and those computed without no_weight_gradients, in float64."""
    _, D = make(family, 16)
    for p in D.parameters():  # non-zero biases, so that every ReLU sees both signs
        p.data.add_(torch.randn_like(p) * 0.05)
    D = D.double()
    real, fake = torch.rand(2, 2, 3, 16, 16, dtype=torch.float64) * 2 - 1
    eps = torch.tensor([0.3, 0.8], dtype=torch.float64)

    penalty, grads = _penalty_grads(D, real, fake, eps)
    assert torch.isfinite(penalty) and all(torch.isfinite(g).all() for g in grads.values())
    # The critics are piecewise linear in x (ReLU / LeakyReLU, convs, pooling, linear): d critic / dx does not depend
    # on the biases, so their penalty gradients vanish; every weight's does not.
    assert all(g.abs().max() > 0 for n, g in grads.items() if n.endswith("weight"))
    with gankernels.use_backend("ref"):
        penalty_ref, grads_ref = _penalty_grads(D, real, fake, eps)
    torch.testing.assert_close(penalty, penalty_ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(grads, grads_ref, rtol=1e-10, atol=1e-13)
    _, grads_all = _penalty_grads(D, real, fake, eps, no_weight_grad=False)
    torch.testing.assert_close(grads, grads_all, rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------------------------------------------------------
# Bad input

ALL_CLASSES = [wgan_gp.ResNetGenerator, wgan_gp.ResNetCritic, wgan_gp.DCGANGenerator, wgan_gp.DCGANCritic]


BAD_ARGUMENTS = [
    ({"resolution": 4}, "resolution"),
    ({"resolution": 24}, "resolution"),
    ({"resolution": "32"}, "resolution"),
    ({"channels": 0}, "channels"),
    ({"img_channels": -1}, "img_channels"),
]
CASES = [(cls, *case) for cls in ALL_CLASSES for case in BAD_ARGUMENTS]
CASES += [(cls, {"z_dim": 0}, "z_dim") for cls in (wgan_gp.ResNetGenerator, wgan_gp.DCGANGenerator)]


@pytest.mark.parametrize("cls, kwargs, name", CASES, ids=lambda v: getattr(v, "__name__", None))
def test_bad_arguments(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} "):
        cls(**kwargs)


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_bad_input_shapes(family):
    G, D = make(family, 16)
    for z in (torch.randn(2, Z + 1), torch.randn(2, Z, 1, 1), torch.randn(Z)):
        with pytest.raises(ValueError, match="^z "):
            G(z)
    for x in (torch.randn(2, 3, 32, 32), torch.randn(2, 1, 16, 16), torch.randn(3, 16, 16)):
        with pytest.raises(ValueError, match="^x "):
            D(x)
