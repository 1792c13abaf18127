"""CycleGAN networks: shapes, junyanz's state-dict layout and outputs, ImagePool, one LSGAN training step."""

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gankernels
from gankernels.models.cyclegan import (
    ImagePool,
    NLayerDiscriminator,
    ResnetGenerator,
    default_n_blocks,
    init_weights,
)
from tests.conftest import backends_for

HAS_TRITON = "triton" in backends_for("instance_norm", "cpu")

# ----------------------------------------------------------------------------------------------------------------
# junyanz's layout, built here from plain torch modules (their defaults: norm='instance', no dropout, reflect pad)


class TheirResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        norm = lambda: nn.InstanceNorm2d(dim, affine=False, track_running_stats=False)  # noqa: E731
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), norm(), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), norm(),
        )  # fmt: skip

    def forward(self, x):
        return x + self.conv_block(x)


def their_generator(input_nc, output_nc, ngf, n_blocks):
    norm = lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)  # noqa: E731
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, padding=0, bias=True), norm(ngf), nn.ReLU(True)]
    for i in range(2):
        m = 2**i
        layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=True), norm(ngf * m * 2), nn.ReLU(True)]
    layers += [TheirResnetBlock(ngf * 4) for _ in range(n_blocks)]
    for i in range(2):
        m = 2 ** (2 - i)
        layers += [
            nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
            norm(ngf * m // 2),
            nn.ReLU(True),
        ]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
    net = nn.Module()
    net.model = nn.Sequential(*layers)
    net.forward = lambda x: net.model(x)
    return net


def their_discriminator(input_nc, ndf, n_layers):
    norm = lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)  # noqa: E731
    layers = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers):
        prev, mult = mult, min(2**n, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True), norm(ndf * mult)]
        layers += [nn.LeakyReLU(0.2, True)]
    prev, mult = mult, min(2**n_layers, 8)
    layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True), norm(ndf * mult)]
    layers += [nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
    net = nn.Module()
    net.model = nn.Sequential(*layers)
    net.forward = lambda x: net.model(x)
    return net


def patchgan_size(s, n_layers=3):
    for _ in range(n_layers):
        s = (s + 2 - 4) // 2 + 1  # conv 4x4, stride 2, padding 1
    return s - 2  # two convs 4x4, stride 1, padding 1


# ----------------------------------------------------------------------------------------------------------------
# Networks


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_generator_and_discriminator_shapes(resolution):
    g = ResnetGenerator(3, 2, ngf=4, n_blocks=1)
    d = NLayerDiscriminator(2, ndf=4)
    x = torch.randn(2, 3, resolution, resolution)
    with torch.no_grad():
        y = g(x)
        logits = d(y)
    assert y.shape == (2, 2, resolution, resolution) and y.abs().max() <= 1
    assert logits.shape == (2, 1, patchgan_size(resolution), patchgan_size(resolution))


def test_patchgan_size_formula():
    assert patchgan_size(256) == 30  # the 70x70 PatchGAN's [N, 1, 30, 30] at 256
    assert patchgan_size(32) == 2 and patchgan_size(64) == 6
    d = NLayerDiscriminator(1, ndf=2, n_layers=2)  # another depth: channels ndf * min(2^n, 8), size s / 4 - 2
    with torch.no_grad():
        assert d(torch.randn(1, 1, 36, 36)).shape == (1, 1, patchgan_size(36, 2), patchgan_size(36, 2)) == (1, 1, 7, 7)


def test_default_n_blocks():
    assert default_n_blocks(256) == 9 and default_n_blocks(512) == 9
    assert default_n_blocks(128) == 6 and default_n_blocks(32) == 6
    with pytest.raises(ValueError, match="resolution"):
        default_n_blocks(0)


def test_generator_state_dict_names():
    names = list(ResnetGenerator(ngf=64, n_blocks=9).state_dict())
    assert names[:4] == ["model.1.weight", "model.1.bias", "model.4.weight", "model.4.bias"]
    assert "model.10.conv_block.1.weight" in names and "model.18.conv_block.5.bias" in names
    assert names[-6:] == [
        "model.19.weight", "model.19.bias", "model.22.weight", "model.22.bias", "model.26.weight", "model.26.bias",
    ]  # fmt: skip
    assert list(NLayerDiscriminator().state_dict()) == [
        f"model.{i}.{p}" for i in (0, 2, 5, 8, 11) for p in ("weight", "bias")
    ]


def _backends():
    return ["ref"] + (["triton"] if HAS_TRITON else [])


@pytest.mark.parametrize("backend", _backends())
def test_generator_matches_junyanz_layout(backend):
    torch.manual_seed(0)
    theirs = init_weights(their_generator(3, 3, ngf=4, n_blocks=2), gain=0.2)
    ours = ResnetGenerator(3, 3, ngf=4, n_blocks=2)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    with gankernels.use_backend(backend, strict=False):
        # the reflection pads are read in the convs' loads on triton (one fused kernel), torch's reflect conv on ref
        assert ours.model[1].fuses_padding(x) == ours.model[10].conv_block[1].fuses_padding(x) == (backend == "triton")
        y = ours(x)
        grads = torch.autograd.grad(y.square().sum(), (x, ours.model[1].weight, ours.model[10].conv_block[5].bias))
    want = theirs(x)
    want_grads = torch.autograd.grad(
        want.square().sum(), (x, theirs.model[1].weight, theirs.model[10].conv_block[5].bias)
    )
    torch.testing.assert_close(y, want, atol=2e-5, rtol=1e-4)
    for got, wanted in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(got, wanted, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("backend", _backends())
def test_discriminator_matches_junyanz_layout(backend):
    torch.manual_seed(1)
    theirs = init_weights(their_discriminator(3, ndf=4, n_layers=3), gain=0.2)
    ours = NLayerDiscriminator(3, ndf=4, n_layers=3)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with gankernels.use_backend(backend, strict=False):
        y = ours(x)
    torch.testing.assert_close(y, theirs(x), atol=2e-5, rtol=1e-4)


def test_init_weights():
    g = torch.Generator().manual_seed(0)
    net = init_weights(ResnetGenerator(ngf=8, n_blocks=1), gain=0.02, generator=g)
    w = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    assert all(m.bias.abs().max() == 0 for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    again = init_weights(ResnetGenerator(ngf=8, n_blocks=1), generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.model[1].weight, net.model[1].weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_blocks"):
        ResnetGenerator(n_blocks=-1)
    with pytest.raises(ValueError, match="ngf"):
        ResnetGenerator(ngf=0)
    with pytest.raises(ValueError, match="n_layers"):
        NLayerDiscriminator(n_layers=0)
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(-1)
    with pytest.raises(TypeError, match="generator"):
        ImagePool(2, generator=0)


# ----------------------------------------------------------------------------------------------------------------
# ImagePool


def _batches(count, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, 4, 4, generator=g) for _ in range(count)]


def test_image_pool_fills_then_swaps_half():
    pool = ImagePool(4, generator=torch.Generator().manual_seed(0))
    batches = _batches(60)
    seen = []
    for i, b in enumerate(batches):
        out = pool.query(b)
        assert out.shape == b.shape and not out.requires_grad
        if i < 2:  # filling: returned as is, stored
            assert torch.equal(out, b)
        seen.append(out)
    assert len(pool) == 4
    # once full, each image comes back as is with probability 0.5, else an older one from the pool
    fresh = [torch.equal(o[k], b[k]) for o, b in zip(seen[2:], batches[2:], strict=True) for k in range(2)]
    assert 0.35 < sum(fresh) / len(fresh) < 0.65
    earlier = torch.cat(batches)
    for o in seen[2:]:
        for img in o:  # every image returned is one of the images queried so far
            assert (earlier - img).abs().flatten(1).amax(1).min() == 0


def test_image_pool_size_zero_and_grad():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    assert ImagePool(0).query(x) is x
    assert not ImagePool(2).query(x * 2).requires_grad


def test_image_pool_deterministic_and_exact_resume():
    batches = _batches(20)
    a = ImagePool(3, generator=torch.Generator().manual_seed(7))
    b = ImagePool(3, generator=torch.Generator().manual_seed(7))
    outs_a = [a.query(x) for x in batches]
    assert all(torch.equal(p, q) for p, q in zip(outs_a, [b.query(x) for x in batches], strict=True))

    run = ImagePool(3, generator=torch.Generator().manual_seed(3))
    for x in batches[:8]:
        run.query(x)
    buffer = io.BytesIO()
    torch.save(run.state_dict(), buffer)
    uninterrupted = [run.query(x) for x in batches[8:]]
    resumed = ImagePool(3)  # another seed: load_state_dict restores the generator's state
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert all(torch.equal(p, q) for p, q in zip(uninterrupted, [resumed.query(x) for x in batches[8:]], strict=True))
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(5).load_state_dict(run.state_dict())


# ----------------------------------------------------------------------------------------------------------------
# Training


def test_lsgan_training_step():
    """One CycleGAN-style step (one direction): G's LSGAN + L1 loss, then D's LSGAN loss on a pooled fake."""
    torch.manual_seed(0)
    res = 32
    g = init_weights(ResnetGenerator(3, 3, ngf=8, n_blocks=2))
    d = init_weights(NLayerDiscriminator(3, ndf=8))
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    pool = ImagePool(50, generator=torch.Generator().manual_seed(0))
    real_a, real_b = torch.rand(2, 3, res, res) * 2 - 1, torch.rand(2, 3, res, res) * 2 - 1

    fake_b = g(real_a)
    pred = d(fake_b)
    loss_g = F.mse_loss(pred, torch.ones_like(pred)) + 10.0 * F.l1_loss(fake_b, real_b)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()

    pred_real, pred_fake = d(real_b), d(pool.query(fake_b.detach()))
    loss_d = 0.5 * (
        F.mse_loss(pred_real, torch.ones_like(pred_real)) + F.mse_loss(pred_fake, torch.zeros_like(pred_fake))
    )
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()

    assert torch.isfinite(loss_g) and torch.isfinite(loss_d)
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not available")
def test_r1_penalty_through_discriminator_matches_reference():
    """A gradient penalty differentiates D twice: through the fused norm's backward op on triton, as on ref."""
    torch.manual_seed(0)
    d = init_weights(NLayerDiscriminator(3, ndf=4), gain=0.2).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)

    def r1_grads(backend):
        with gankernels.use_backend(backend, strict=False):
            images = x.clone().requires_grad_(True)
            (gx,) = torch.autograd.grad(d(images).sum(), images, create_graph=True)
            return torch.autograd.grad(
                gx.square().sum(), list(d.parameters()), allow_unused=True, materialize_grads=True
            )

    for got, want in zip(r1_grads("triton"), r1_grads("ref"), strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)
