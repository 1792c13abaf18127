"""gankernels.models.dcgan against pytorch/examples' DCGAN: the netG / netD layout rebuilt here from torch modules loads
with strict=True and gives the same outputs; shapes at several resolutions, the activations against torch's, the
init, a training step, a gradient penalty through the discriminator, and bad arguments."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gankernels
from gankernels.models import dcgan
from gankernels.ops import wgan_gp_penalty

NZ, NGF, NDF, NC = 16, 8, 8, 3


def examples_weights_init(m):
    """pytorch/examples' init, which matches modules by class name."""
    name = m.__class__.__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Examples(nn.Module):
    """pytorch/examples' netG / netD: one Sequential named `main` (their ngpu / data_parallel branch left out)."""

    def __init__(self, *layers):
        super().__init__()
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)


def examples_netG(nz, ngf, nc):
    """pytorch/examples' netG (64x64) from plain torch modules."""
    return Examples(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 8),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def examples_netD(ndf, nc):
    """pytorch/examples' netD (64x64) from plain torch modules, its final Sigmoid included."""
    return Examples(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        nn.Sigmoid(),
    )


def randomize(net, seed):
    """pytorch/examples' init, then non-trivial BatchNorm statistics (as after training)."""
    torch.manual_seed(seed)
    net.apply(examples_weights_init)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.num_batches_tracked.fill_(7)
    return net.eval()


# ----------------------------------------------------------------------------------------------------------------
# Shapes and layout


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_forward_shapes(resolution):
    ngf = 4 if resolution == 128 else NGF
    G = dcgan.Generator(nz=NZ, ngf=ngf, nc=NC, resolution=resolution)
    D = dcgan.Discriminator(ndf=ngf, nc=NC, resolution=resolution)
    z = torch.randn(2, NZ)
    img = G(z)
    assert img.shape == (2, NC, resolution, resolution)
    assert img.abs().max() < 1
    assert torch.equal(G.eval()(z), G(z.reshape(2, NZ, 1, 1)))  # both z layouts
    logits = D(img)
    assert logits.shape == (2,)
    assert D(img[:1]).shape == (1,)


def test_layout_per_resolution():
    """32 drops the widest block of 64, 128 adds one capped at 8 * ngf."""

    def widths(net, cls):
        return [m.out_channels for m in net.main if isinstance(m, cls)]

    convt, conv = dcgan.ConvTranspose2d, dcgan.Conv2d
    assert widths(dcgan.Generator(NZ, NGF, NC, 64), convt) == [64, 32, 16, 8, 3]
    assert widths(dcgan.Generator(NZ, NGF, NC, 32), convt) == [32, 16, 8, 3]
    assert widths(dcgan.Generator(NZ, NGF, NC, 128), convt) == [64, 64, 32, 16, 8, 3]
    assert widths(dcgan.Discriminator(NDF, NC, 64), conv) == [8, 16, 32, 64, 1]
    assert widths(dcgan.Discriminator(NDF, NC, 32), conv) == [8, 16, 32, 1]
    assert widths(dcgan.Discriminator(NDF, NC, 128), conv) == [8, 16, 32, 64, 64, 1]
    assert len(dcgan.Generator(NZ, NGF, NC, 128).main) == 17  # one more ConvT, BatchNorm, ReLU than the 14 at 64


# ----------------------------------------------------------------------------------------------------------------
# pytorch/examples compatibility


def same_conv_kernels():
    """oneDNN off for torch's convolutions as well as ours: both then run ATen's native kernels, bit for bit the same
    (by default ours take them below gankernels.ops.conv2d.NATIVE_CONV_MAX_MACS and torch's nn.Conv2d takes oneDNN)."""
    return torch.backends.mkldnn.flags(enabled=False)


def test_generator_loads_examples_state_dict():
    ref = randomize(examples_netG(NZ, NGF, NC), 0)
    G = dcgan.Generator(nz=NZ, ngf=NGF, nc=NC, resolution=64).eval()
    assert list(G.state_dict()) == list(ref.state_dict())  # main.0.weight, main.1.weight, main.1.running_mean, ...
    G.load_state_dict(ref.state_dict(), strict=True)
    z = torch.randn(2, NZ, 1, 1)
    with torch.no_grad(), same_conv_kernels():
        assert torch.equal(G.main[:-1](z), ref.main[:-1](z))  # everything up to the tanh: bit for bit
        # the cpu backend's tanh is 1 - 2 / (exp(2x) + 1): a few float32 ulps of 1 from torch.tanh
        torch.testing.assert_close(G(z), ref(z), rtol=0, atol=1e-6)
        torch.testing.assert_close(G.double()(z.double()), ref.double()(z.double()), rtol=0, atol=1e-14)
    with torch.no_grad():  # small convolutions on ATen's native kernels, torch's on oneDNN: float32 rounding apart
        torch.testing.assert_close(G.float()(z), ref.float()(z), rtol=1e-5, atol=1e-6)


def test_discriminator_loads_examples_state_dict():
    ref = randomize(examples_netD(NDF, NC), 1)
    D = dcgan.Discriminator(ndf=NDF, nc=NC, resolution=64).eval()
    assert list(D.state_dict()) == list(ref.state_dict())  # the Sigmoid (main.12) holds no state
    D.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, NC, 64, 64)
    with torch.no_grad(), same_conv_kernels():
        logits = D(x)
        assert torch.equal(logits, ref.main[:-1](x).reshape(2))
        torch.testing.assert_close(torch.sigmoid(logits), ref(x).reshape(2), rtol=1e-6, atol=0)
    with torch.no_grad():  # small convolutions on ATen's native kernels, torch's on oneDNN: float32 rounding apart
        torch.testing.assert_close(D(x), ref.main[:-1](x).reshape(2), rtol=1e-5, atol=1e-5)


def test_discriminator_double_backward_matches_torch():
    """A gradient penalty through our D (our conv2d and bias_act backward passes) equals one through torch's netD."""
    ref = randomize(examples_netD(NDF, NC), 2).double()
    D = dcgan.Discriminator(ndf=NDF, nc=NC, resolution=64).double().eval()
    D.load_state_dict(ref.state_dict())
    real, fake = torch.randn(2, 2, NC, 64, 64, dtype=torch.float64)
    eps = torch.rand(2, dtype=torch.float64)
    ours = wgan_gp_penalty(D, real, fake, eps=eps)
    want = wgan_gp_penalty(lambda x: ref.main[:-1](x).reshape(-1), real, fake, eps=eps)
    torch.testing.assert_close(ours, want, rtol=1e-12, atol=0)
    grads = torch.autograd.grad(ours, list(D.parameters()))
    grads_want = torch.autograd.grad(want, list(ref.parameters()))
    for g, w in zip(grads, grads_want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------------------------------------------
# Ops inside the models


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "act, torch_module", [("relu", nn.ReLU()), ("lrelu", nn.LeakyReLU(0.2)), ("tanh", nn.Tanh())], ids=str
)
def test_activations_equal_torch(act, torch_module, dtype):
    module = dcgan.activation(act)
    assert not list(module.parameters()) and not list(module.buffers()) and not module.state_dict()
    x = (torch.randn(2, 5, 7, 9, dtype=dtype) * 3).requires_grad_(True)
    y, want = module(x), torch_module(x)
    (dx,) = torch.autograd.grad(y.sum(), x)
    (dx_want,) = torch.autograd.grad(want.sum(), x)
    if act == "tanh":  # see test_generator_loads_examples_state_dict
        atol = 1e-6 if dtype == torch.float32 else 1e-14
        torch.testing.assert_close(y, want, rtol=0, atol=atol)
        torch.testing.assert_close(dx, dx_want, rtol=0, atol=4 * atol)
    else:
        assert torch.equal(y, want) and torch.equal(dx, dx_want)


def test_convs_equal_torch():
    conv, convt = dcgan.Conv2d(3, 4, 4, 2, 1), dcgan.ConvTranspose2d(4, 3, 4, 2, 1)
    x = torch.randn(2, 3, 8, 8)
    with same_conv_kernels():
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, 2, 1), rtol=0, atol=0)
        y = conv(x)
        torch.testing.assert_close(convt(y), F.conv_transpose2d(y, convt.weight, convt.bias, 2, 1), rtol=0, atol=0)
    # by default these small convolutions take ATen's native kernels, torch's own oneDNN: float32 rounding apart
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, 2, 1), rtol=1e-5, atol=1e-6)
    assert isinstance(conv, nn.Conv2d) and isinstance(convt, nn.ConvTranspose2d)
    with pytest.raises(ValueError, match="padding_mode"):
        dcgan.Conv2d(3, 4, 3, padding=1, padding_mode="circular")


# ----------------------------------------------------------------------------------------------------------------
# Init and training


def test_weights_init_statistics():
    torch.manual_seed(0)
    G = dcgan.Generator(nz=100, ngf=16, nc=NC)
    D = dcgan.Discriminator(ndf=16, nc=NC)
    for net in (G, D):
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        weights = torch.cat([m.weight.flatten() for m in convs])
        assert abs(weights.mean().item()) < 1e-3
        assert abs(weights.std().item() - 0.02) < 1e-3
        norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        gammas = torch.cat([m.weight for m in norms])
        assert abs(gammas.mean().item() - 1) < 5e-3 and abs(gammas.std().item() - 0.02) < 5e-3
        assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in norms)
    # weights_init is the function both constructors apply, usable with Module.apply
    bn = nn.BatchNorm2d(4)
    dcgan.weights_init(bn)
    assert not torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))


def test_training_step():
    torch.manual_seed(0)
    G = dcgan.Generator(nz=NZ, ngf=NGF, nc=NC, resolution=32)
    D = dcgan.Discriminator(ndf=NDF, nc=NC, resolution=32)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(2, NC, 32, 32) * 2 - 1
    before = [p.detach().clone() for p in (*G.parameters(), *D.parameters())]

    fake = G(torch.randn(2, NZ))
    ones, zeros = torch.ones(2), torch.zeros(2)
    loss_d = F.binary_cross_entropy_with_logits(D(real), ones) + F.binary_cross_entropy_with_logits(
        D(fake.detach()), zeros
    )
    opt_d.zero_grad()
    loss_d.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())
    opt_d.step()

    loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
    opt_g.zero_grad()
    loss_g.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.parameters())
    opt_g.step()

    assert torch.isfinite(loss_d) and torch.isfinite(loss_g)
    after = [p.detach() for p in (*G.parameters(), *D.parameters())]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_ref_backend_matches_default():
    torch.manual_seed(0)
    G = dcgan.Generator(nz=NZ, ngf=NGF, nc=NC, resolution=32).double().eval()
    D = dcgan.Discriminator(ndf=NDF, nc=NC, resolution=32).double().eval()
    z = torch.randn(2, NZ, dtype=torch.float64)
    with torch.no_grad():
        img, logits = G(z), D(G(z))
        with gankernels.use_backend("ref"):
            torch.testing.assert_close(G(z), img, rtol=0, atol=1e-14)
            torch.testing.assert_close(D(img), logits, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"resolution": 48}, "resolution"),
        ({"resolution": 16}, "resolution"),
        ({"resolution": 64.0}, "resolution"),
        ({"nz": 0}, "nz"),
        ({"ngf": -1}, "ngf"),
        ({"nc": 0}, "nc"),
        ({"nz": True}, "nz"),
    ],
)
def test_generator_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} "):
        dcgan.Generator(**kwargs)


@pytest.mark.parametrize("kwargs, name", [({"resolution": 100}, "resolution"), ({"ndf": 0}, "ndf"), ({"nc": -3}, "nc")])
def test_discriminator_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} "):
        dcgan.Discriminator(**kwargs)


def test_bad_input_shapes():
    G = dcgan.Generator(nz=NZ, ngf=NGF, nc=NC, resolution=32)
    D = dcgan.Discriminator(ndf=NDF, nc=NC, resolution=32)
    for z in (torch.randn(2, NZ + 1), torch.randn(2, NZ, 2, 2), torch.randn(NZ), torch.randn(2, NZ, 1)):
        with pytest.raises(ValueError, match="^z "):
            G(z)
    for x in (torch.randn(2, NC, 64, 64), torch.randn(2, NC + 1, 32, 32), torch.randn(NC, 32, 32)):
        with pytest.raises(ValueError, match="^x "):
            D(x)
    with pytest.raises(TypeError, match="^z "):
        G([0.0] * NZ)
