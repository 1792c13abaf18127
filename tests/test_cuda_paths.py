"""The automatic backend choice on CUDA tensors against the `ref` backend on the same tensors, through the models
(make gpu-check-1). The op tests run the Triton kernels under the interpreter on CPU; here they run compiled, as a
user's first call does: the modulated-conv pieces (both fused_modconv modes, up/down), minibatch std, instance norm
with reflection padding, bias_act and upfirdn2d, and the penalties' first and second order (R1, path length,
WGAN-GP's fused kernels). float32 with TF32 off, compared with relative norms.

GANKERNELS_CUDA_PATHS_DEVICE=cpu runs the same comparisons on CPU tensors (Triton interpreted, slow): a rehearsal of
this file on a machine without a GPU.
"""

import os

import pytest
import torch

import gankernels
from gankernels import ops
from gankernels.models import cyclegan, wgan_gp
from gankernels.models.stylegan2 import Discriminator, Generator

DEVICE = os.environ.get("GANKERNELS_CUDA_PATHS_DEVICE", "cuda")
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else []
FWD_RTOL, GRAD_RTOL = 2e-5, 2e-4  # ||ours - ref|| / ||ref|| in float32 (TF32 off)


@pytest.fixture(autouse=True)
def _exact_float32(monkeypatch):
    if DEVICE == "cuda":
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def both(fn):
    """fn() under the automatic choice and under ref, each from the global seed 0: (ours, ref) lists of tensors."""
    out = {}
    for backend in (None, "ref"):
        torch.manual_seed(0)
        with gankernels.use_backend(backend):
            out[backend] = [t.detach() for t in fn()]
    return out[None], out["ref"]


def check(fn, n_outputs):
    """fn() returns outputs (the first n_outputs) then gradients: each within its tolerance of ref's, relative to its
    own norm, or for a gradient that is zero up to rounding (a bias before a normalization) to a thousandth of the
    largest gradient's norm."""
    ours, ref = both(fn)
    assert len(ours) == len(ref)
    grad_scale = max([b.double().norm().item() for b in ref[n_outputs:]] + [0.0])
    for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype and a.device.type == DEVICE
        assert torch.isfinite(a).all(), f"tensor {i} is not finite"
        tol, floor = (FWD_RTOL, 0.0) if i < n_outputs else (GRAD_RTOL, 1e-3 * grad_scale)
        err, norm = (a.double() - b.double()).norm().item(), b.double().norm().item()
        kind = "output" if i < n_outputs else "gradient"
        assert err <= tol * max(norm, floor, 1e-30), f"tensor {i} ({kind}): error {err:.3g}, norm {norm:.3g}"


def stylegan2(architecture="skip", resolution=16):
    torch.manual_seed(1)
    common = dict(c_dim=0, img_resolution=resolution, img_channels=3, channel_base=256, channel_max=32)
    G = Generator(z_dim=32, w_dim=32, mapping_kwargs={"num_layers": 2}, num_fp16_res=0, conv_clamp=256,
                  architecture=architecture, **common).to(DEVICE)  # fmt: skip
    D = Discriminator(num_fp16_res=0, conv_clamp=256, epilogue_kwargs={"mbstd_group_size": 2}, **common).to(DEVICE)
    return G, D


@pytest.mark.parametrize("fused_modconv", [False, True])
@pytest.mark.parametrize("architecture", ["skip", "resnet"])
def test_stylegan2_generator_and_path_length(fused_modconv, architecture):
    """G's forward and parameter gradients (modulated conv pieces, up=2 with the FIR filter, toRGB, skip
    upsampling), and the path-length penalty's gradients (a second-order pass through them)."""
    G, _ = stylegan2(architecture)
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    params = list(G.parameters())

    def run():
        ws = G.mapping(z, None)
        img = G.synthesis(ws, noise_mode="const", fused_modconv=fused_modconv)
        cot = torch.randn(img.shape, generator=torch.Generator().manual_seed(3)).to(DEVICE)
        g = torch.autograd.grad((img * cot).sum(), params)
        ws = G.mapping(z, None)
        img = G.synthesis(ws, noise_mode="const", fused_modconv=fused_modconv)
        noise = torch.randn(img.shape, generator=torch.Generator().manual_seed(4)).to(DEVICE)
        penalty, _ = ops.path_length_penalty(img, ws, torch.zeros([], device=DEVICE), noise=noise,
                                             no_weight_grad=not fused_modconv)  # fmt: skip
        g_pl = torch.autograd.grad(penalty.sum(), params, allow_unused=True, materialize_grads=True)
        return [img, penalty, *g, *g_pl]

    check(run, 2)


def test_stylegan2_discriminator_and_r1():
    """D's logits and parameter gradients (resnet blocks, downsampling, minibatch std, the epilogue), and R1's."""
    _, D = stylegan2()
    img = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    params = list(D.parameters())

    def run():
        unused = dict(allow_unused=True, materialize_grads=True)  # fromrgb of the inner resnet blocks: unused
        logits = D(img, None)
        g = torch.autograd.grad(logits.sum(), params, **unused)
        real = img.detach().requires_grad_(True)
        r1 = ops.r1_penalty(D(real, None), real)
        g_r1 = torch.autograd.grad(r1.sum(), params, **unused)
        return [logits, r1, *g, *g_r1]

    check(run, 2)


@pytest.mark.parametrize("arch", ["resnet", "dcgan"])
def test_wgan_gp_critic_and_penalty(arch):
    """The critic and generator of WGAN-GP and the gradient penalty (its fused interpolation and norm kernels)."""
    torch.manual_seed(1)
    if arch == "resnet":
        G, D = wgan_gp.ResNetGenerator(z_dim=16, channels=16), wgan_gp.ResNetCritic(channels=16)
    else:
        G, D = wgan_gp.DCGANGenerator(z_dim=16, channels=16), wgan_gp.DCGANCritic(channels=16)
    G, D = G.to(DEVICE), D.to(DEVICE)
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    real = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    eps = torch.rand(4, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    params = list(G.parameters()) + list(D.parameters())

    def run():
        fake = G(z)
        penalty = ops.wgan_gp_penalty(D, real, fake.detach(), eps=eps)
        loss = D(fake).mean() - D(real).mean() + penalty
        return [fake, penalty, *torch.autograd.grad(loss, params)]

    check(run, 2)


def test_cyclegan_generator_and_patchgan():
    """The ResnetGenerator (instance norm + relu / residual epilogues, reflection-padded convs) and the PatchGAN."""
    torch.manual_seed(1)
    G = cyclegan.ResnetGenerator(3, 3, ngf=8, n_blocks=2).to(DEVICE)
    D = cyclegan.NLayerDiscriminator(3, ndf=8).to(DEVICE)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    params = list(G.parameters()) + list(D.parameters())

    def run():
        y = G(x)
        pred = D(y)
        return [y, pred, *torch.autograd.grad(pred.square().mean() + y.abs().mean(), params)]

    check(run, 2)
