"""Every op with kernels (Triton, and the C++ kernels on CPU) against the reference backend: float64 agreement to
1e-12 (first and second order), and float32 error against float64 no worse than the reference's own on inputs with
an offset (mean 3, std 0.5: D's activations are not centred, and a variance or mean in a cancelling form shows there).

Under the interpreter Python float scalars are not rounded to fp32 (they are on a GPU): tools/triton_compile_check.py
refuses fp32 values in compiled float64 kernels, which covers that part.
"""

import pytest
import torch

import gankernels
from gankernels import ops
from tests.conftest import HAS_CUDA, backends_for

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if HAS_CUDA else [])


def _bias_act(t):
    x, b = t(2, 3, 4, 5), t(3)
    return ops.bias_act(x, b, act="swish", gain=1.3, clamp=2.5), (x, b)


def _upsample2d(t):
    x = t(1, 2, 5, 6)
    return ops.upsample2d(x, ops.setup_filter([1, 3, 3, 1], device=x.device), gain=1.7), (x,)


def _downsample2d(t):
    x = t(1, 2, 6, 7)
    return ops.downsample2d(x, ops.setup_filter([1, 3, 3, 1], device=x.device), gain=0.3), (x,)


def _instance_norm(t):
    x, w, b, r = t(2, 3, 4, 5), t(3), t(3), t(2, 3, 4, 5)
    return ops.instance_norm_act(x, w, b, act="lrelu", alpha=0.1, residual=r, eps=1e-3), (x, w, b, r)


def _minibatch_std(t):
    x = t(4, 6, 3, 3)  # groups of 4: with 2, std = |x1 - x2| / 2 makes the second order ill-conditioned (1e-11 apart)
    return ops.minibatch_std(x, group_size=4, num_channels=2), (x,)


def _gradient_penalty(t):
    g = t(3, 2, 3, 3)
    return ops.gradient_penalty(g, center=0.3), (g,)


def _interpolate(t):
    real, fake, eps = t(3, 2, 3, 3), t(3, 2, 3, 3), t(3).detach().sigmoid()
    return ops.wgan_gp_interpolate(real, fake, eps), (real, fake)


def _modulated_conv2d(fused):
    def run(t):
        x, w, s, b = t(2, 3, 5, 5), t(4, 3, 3, 3), t(2, 3), t(4)
        noise = t(2, 1, 5, 5)
        y = ops.modulated_conv2d(x, w, s, noise=noise, padding=1, fused_modconv=fused, bias=b, act="lrelu",
                                 gain=1.1, clamp=2.0)  # fmt: skip
        return y, (x, w, s, b)

    return run


def _fused_conv2d(t):
    x, w, s, d, b = t(2, 3, 5, 5), t(4, 3, 3, 3), t(2, 3), t(2, 4), t(4)
    return ops.fused_conv2d(x, w, padding=1, in_scale=s, out_scale=d, bias=b, act="lrelu", gain=1.1), (x, w, s, d, b)


OPS = {
    "bias_act": _bias_act,
    "upsample2d": _upsample2d,
    "downsample2d": _downsample2d,
    "instance_norm_act": _instance_norm,
    "minibatch_std": _minibatch_std,
    "gradient_penalty": _gradient_penalty,
    "wgan_gp_interpolate": _interpolate,
    "modulated_conv2d": _modulated_conv2d(False),
    "modulated_conv2d_fused": _modulated_conv2d(True),
    "fused_conv2d": _fused_conv2d,
}
OP_NAMES = {"upsample2d": "upfirdn2d", "downsample2d": "upfirdn2d", "instance_norm_act": "instance_norm",
            "gradient_penalty": "penalties", "wgan_gp_interpolate": "penalties",
            "modulated_conv2d_fused": "modulated_conv2d"}  # fmt: skip


def _outputs(name, backend, dtype, device, seed, mean=0.0, std=1.0, order=2):
    """[forward, first-order gradients..., second-order gradients...] of op `name`, on inputs drawn in float64 then
    rounded to dtype (the same values for every dtype and backend)."""
    gen = torch.Generator().manual_seed(seed)

    def t(*shape):
        v = torch.randn(*shape, generator=gen, dtype=torch.float64) * std + mean
        return v.to(device=device, dtype=dtype).requires_grad_()

    with gankernels.use_backend(backend):
        y, inputs = OPS[name](t)
        w = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
        first = torch.autograd.grad((y * w).sum(), inputs, create_graph=order > 1)
        out = [y, *first]
        total = sum((g * g).sum() for g in first)
        if order > 1 and total.requires_grad:  # (linear ops: the gradient is constant, no second order)
            out += torch.autograd.grad(total, inputs, allow_unused=True)
    return [o.detach().double().cpu() for o in out if o is not None]


def _rel(a, b):
    """max |a - b| / max |b|: the error on the scale of the result."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def _needs(name, backend, device):
    if backend not in backends_for(OP_NAMES.get(name, name), "cpu"):
        pytest.skip(f"no {backend} backend for {name} here")
    if backend == "cpu" and device != "cpu":
        pytest.skip("the cpu backend runs on CPU tensors")


KERNEL_BACKENDS = ["triton", "cpu"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", sorted(OPS))
def test_float64_matches_reference(name, backend, device):
    _needs(name, backend, device)
    got = _outputs(name, backend, torch.float64, device, seed=1)
    want = _outputs(name, "ref", torch.float64, device, seed=1)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert _rel(g, w) <= 1e-12, f"{name} output {k}: {_rel(g, w):.3g} relative to the reference"


# float32 error, relative to float64, a kernel backend <= FACTOR * ref + FLOOR. Both compute the same sums in float32 in
# different but equally stable orders (tiles of partial sums against torch's cascade sums), whose errors are of one
# order of magnitude and whose ratio varies by about 2x between inputs; FACTOR 4 keeps margin for that. A cancelling
# form (E[x^2] - E[x]^2, a single centring pass) costs a factor (mean / std)^2 = 36 or mean / std = 6 here: outside it.
# FLOOR, two ulps of 1, is for outputs that the reference computes exactly (0 error) or nearly.
FACTOR, FLOOR = 4.0, 2 * 2.0**-23


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", sorted(OPS))
def test_float32_error_with_offset_inputs_no_worse_than_reference(name, backend, device):
    _needs(name, backend, device)
    truth = _outputs(name, "ref", torch.float64, device, seed=2, mean=3.0, std=0.5, order=1)
    ref = _outputs(name, "ref", torch.float32, device, seed=2, mean=3.0, std=0.5, order=1)
    got = _outputs(name, backend, torch.float32, device, seed=2, mean=3.0, std=0.5, order=1)
    for k, (g, r, w) in enumerate(zip(got, ref, truth, strict=True)):
        err, ref_err = _rel(g, w), _rel(r, w)
        assert err <= FACTOR * ref_err + FLOOR, f"{name} output {k}: {backend} {err:.3g}, ref {ref_err:.3g}"


def test_minibatch_std_gradient_through_the_statistic_alone():
    """The gradient through the std maps only, inputs with mean 3 and std 0.5 ([8, 64, 4, 4], D's last block in
    miniature): triton was 2.2e-6 off float64 (a single centring pass), ref 1.9e-7."""
    if "triton" not in backends_for("minibatch_std", "cpu"):
        pytest.skip("no triton backend here")
    gen = torch.Generator().manual_seed(0)
    x64 = torch.randn(8, 64, 4, 4, generator=gen, dtype=torch.float64) * 0.5 + 3
    dout = torch.zeros(8, 65, 4, 4, dtype=torch.float64)
    dout[:, 64] = torch.randn(8, 4, 4, generator=gen, dtype=torch.float64)

    def grad(x, backend):
        x = x.clone().requires_grad_()
        with gankernels.use_backend(backend):
            return torch.autograd.grad(ops.minibatch_std(x, group_size=4), x, dout.to(x.dtype))[0].double()

    truth = grad(x64.float().double(), "ref")
    err, ref_err = _rel(grad(x64.float(), "triton"), truth), _rel(grad(x64.float(), "ref"), truth)
    assert err <= FACTOR * ref_err + FLOOR, (err, ref_err)
