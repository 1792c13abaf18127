"""bias_act's activations to relative accuracy near 0 and in the tails, forward and first and second derivatives, on
every backend here (ref, cpu, triton under the interpreter), against the derivatives written in float64 in forms
that do not cancel (sech^2 for tanh', sigmoid(z) sigmoid(-z) for sigmoid', ...), evaluated at the same rounded z.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import gankernels
from gankernels.ops import bias_act
from gankernels.reference.bias_act import SELU_ALPHA, SELU_SCALE
from tests.conftest import HAS_CUDA, backends_for

BACKENDS = [("ref", "cpu")] + [(b, "cpu") for b in backends_for("bias_act", "cpu")]
if HAS_CUDA:
    BACKENDS += [pytest.param(b, "cuda", marks=pytest.mark.gpu) for b in ["ref", *backends_for("bias_act", "cuda")]]
SMALL = [s * v for v in (1e-6, 1e-5, 1e-4, 1e-3) for s in (1, -1)]
TAILS = [-80.0, -30.0, 30.0]
# Relative tolerance: a few ulps of the dtype (the kernels' expm1 / log1p are within 2-3 ulps, the chain rule of the
# second order adds one rounding per factor).
RTOL = {torch.float64: 1e-14, torch.float32: 8 * 2.0**-23}


def _derivatives(z: torch.Tensor, act: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """act(z), act'(z), act''(z) in float64, in non-cancelling forms."""
    s, sm = torch.sigmoid(z), torch.sigmoid(-z)
    neg = z < 0
    if act == "tanh":
        sech2 = 1 / torch.cosh(z).square()
        return torch.tanh(z), sech2, -2 * torch.tanh(z) * sech2
    if act == "sigmoid":
        return s, s * sm, s * sm * (sm - s)
    if act == "elu":
        e = torch.exp(torch.clamp_max(z, 0))
        return F.elu(z), torch.where(neg, e, 1.0), torch.where(neg, e, 0.0)
    if act == "selu":
        e = SELU_SCALE * SELU_ALPHA * torch.exp(torch.clamp_max(z, 0))
        return F.selu(z), torch.where(neg, e, SELU_SCALE), torch.where(neg, e, 0.0)
    if act == "softplus":
        return torch.clamp_min(z, 0) + torch.log1p(torch.exp(-z.abs())), s, s * sm
    assert act == "swish"
    return z * s, s + z * s * sm, s * sm * (2 + z * (sm - s))


def _lost_in_y(act: str, z: float, order: int) -> bool:
    """Whether the derivative of this order is a function of the saved output y = act(z) that has rounded away what
    it depends on: the saturated tails, where act'(z) = 1 - y^2 (tanh), y (1 - y) (sigmoid, z >> 0), y + 1 (elu),
    y + scale alpha (selu) cancel, and sigmoid'' = (1 - 2 y) y (1 - y) near 0 (1 - 2 y ~ -z / 2 from y ~ 1/2). Those
    are accurate to an ulp of y times the derivative's scale, not relatively (as NVlabs' kernels, which save y too)."""
    return order > 0 and (act == "tanh" and abs(z) >= 30 or act == "sigmoid" and (z >= 30 or order == 2 and abs(z) < 1)
                          or act in ("elu", "selu") and z <= -30)  # fmt: skip


def _torch_cancels(backend: str, act: str, z: float, order: int) -> bool:
    """The ref backend is torch's autograd through F.softplus / sigmoid: their double backward computes
    1 - sigmoid(z), which cancels for z >> 0 (1e-3 relative at z = 30 in float64). Accurate to an ulp of 1 there
    (times |z| for swish: z sigmoid''(z))."""
    return backend == "ref" and order == 2 and act in ("softplus", "swish") and z >= 30


def _run(backend, device, act, z):
    x = z.to(device).requires_grad_()
    with gankernels.use_backend(backend):
        y = bias_act(x, None, dim=0, act=act, gain=1.0)
        (d1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), x)
    return [t.detach().cpu() for t in (y, d1, d2)]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "elu", "selu", "softplus", "swish"])
def test_relative_accuracy_near_zero_and_in_tails(backend, device, dtype, act):
    values = SMALL + TAILS
    z = torch.tensor(values, dtype=dtype)
    got = _run(backend, device, act, z)
    want = _derivatives(z.double(), act)
    eps = torch.finfo(dtype).eps
    for order, (g, w) in enumerate(zip(got, want, strict=True)):
        for k, v in enumerate(values):
            gv, wv = g[k].item(), w[k].item()
            if _lost_in_y(act, v, order):
                ok = abs(gv - wv) <= 4 * eps  # an ulp of y, times a derivative scale <= 2 (sigmoid' <= 1/4)
            elif _torch_cancels(backend, act, v, order):
                ok = abs(gv - wv) <= 4 * eps * max(1.0, abs(v))
            else:
                ok = abs(gv - wv) <= RTOL[dtype] * abs(wv) or (wv == 0 and gv == 0)
            assert ok, f"{act} order {order} at z={v} ({dtype}): {gv!r} vs {wv!r}, rel {abs(gv - wv) / abs(wv):.3g}"


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_softplus_does_not_flush_below_minus_17(backend, device):
    """Triton's old log(1 + exp(-|z|)) returned 0 below z = -17 in float32; log1p keeps exp(z)."""
    z = torch.tensor([-17.5, -20.0, -40.0, -80.0])
    y = _run(backend, device, "softplus", z)[0]
    assert torch.allclose(y.double(), torch.exp(z.double()), rtol=1e-6, atol=0)
    assert math.isfinite(y.sum().item())


def _ulps(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """|got - want| in units of the float32 spacing at want (float32 got, float64 want)."""
    w32 = want.float()
    spacing = (torch.nextafter(w32.abs(), torch.tensor(math.inf)) - w32.abs()).double()
    spacing = spacing.clamp_min(2.0**-149)
    return (got.double() - want).abs() / spacing


@pytest.mark.skipif("cpu" not in backends_for("bias_act", "cpu"), reason="the C++ extension is not built")
def test_cpu_float_exp_expm1_log1p_over_their_whole_range():
    """The CPU kernels' vectorised float expm1 (elu below 0), exp (softplus' second derivative, exp(-y)) and log1p
    (softplus: log1p(exp(-|z|))) against float64 at the same float32 z, over the whole range, subnormal results and
    the special values included: within 2 ulps (csrc/include/gankernels/vmath.h)."""
    mags = torch.logspace(-30, math.log10(104.0), 200_000, dtype=torch.float64)
    z = torch.cat([-mags, torch.linspace(-104, 0, 200_000, dtype=torch.float64)]).float()
    with gankernels.use_backend("cpu"):
        elu = bias_act(z, None, dim=0, act="elu", gain=1.0)
        softplus = bias_act(z, None, dim=0, act="softplus", gain=1.0)
        y = softplus.detach().requires_grad_()  # exp(-y) = 1 - sigmoid: the order-2 factor of softplus, from y
    zd = z.double()
    assert _ulps(elu, torch.expm1(zd)).max() <= 2
    assert _ulps(softplus, torch.log1p(torch.exp(zd))).max() <= 2
    with gankernels.use_backend("cpu"):
        one = torch.ones_like(y)
        s = torch.ops.gankernels.bias_act_grad(one, one, None, None, y, 0, "softplus", 0.0, 1.0, -1.0, "cpu", 2)
    assert _ulps(s, torch.exp(-y.detach().double())).max() <= 2
    special = torch.tensor([math.inf, -math.inf, math.nan, 0.0, 88.7, -87.5, -103.0])
    with gankernels.use_backend("cpu"):
        got_elu = bias_act(special, None, dim=0, act="elu", gain=1.0)
        got_softplus = bias_act(-special, None, dim=0, act="softplus", gain=1.0)
    torch.testing.assert_close(got_elu, torch.nn.functional.elu(special), equal_nan=True, rtol=3e-7, atol=0)
    torch.testing.assert_close(got_softplus, torch.nn.functional.softplus(-special.double()).float(), equal_nan=True,
                               rtol=3e-7, atol=0)  # fmt: skip


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("act", ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"])
@pytest.mark.parametrize("clamp", [None, 1.0])
def test_nan_and_infinities_come_out_as_torchs(backend, device, act, clamp):
    """A NaN activation stays NaN (a clamp inside an activation must not hide it from the loss), and +-inf give
    torch's limits, with and without an output clamp."""
    x = torch.tensor([math.nan, math.inf, -math.inf, 0.0, 1.5, -1.5], device=device)
    with gankernels.use_backend("ref"):
        want = bias_act(x, None, dim=0, act=act, clamp=clamp)
    with gankernels.use_backend(backend):
        got = bias_act(x, None, dim=0, act=act, clamp=clamp)
    torch.testing.assert_close(got, want, equal_nan=True, rtol=1e-6, atol=0)
