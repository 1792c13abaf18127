"""no_weight_gradients() skips only gradients that reach parameters alone: a weight computed from several tensors (a
fused modulated conv's per-sample weights, weight * styles) keeps its gradient, so path length under the switch equals
path length without it, for a model that mixes fused and unfused modulated convs."""

from __future__ import annotations

import pytest
import torch

import gankernels
from gankernels import ops
from gankernels.nn import SynthesisLayer
from gankernels.ops.conv2d import no_weight_gradients
from tests.conftest import WeightGradCounter, backends_for


def _mixed_synthesis(seed=0):
    torch.manual_seed(seed)
    first = SynthesisLayer(3, 4, w_dim=5, resolution=6).double()
    second = SynthesisLayer(4, 3, w_dim=5, resolution=6).double()
    for layer in (first, second):  # non-trivial weights, as after training
        for p in layer.parameters():
            p.data.add_(torch.randn_like(p) * 0.1)

    def synthesis(x, ws):
        y = first(x, ws[:, 0], noise_mode="const", fused_modconv=True)  # per-sample weights: depend on ws
        return second(y, ws[:, 1], noise_mode="const", fused_modconv=False)  # the shared weight

    return synthesis, list(first.parameters()) + list(second.parameters())


@pytest.mark.parametrize("backend", ["ref"] + [b for b in backends_for("bias_act", "cpu") if b != "triton"])
def test_path_length_is_the_same_with_and_without_the_switch(backend):
    synthesis, params = _mixed_synthesis()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    ws = torch.randn(2, 2, 5, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    results = {}
    with gankernels.use_backend(backend, strict=False):
        for skip in (False, True):
            penalty, _ = ops.path_length_penalty(synthesis(x, ws), ws, 0.5, noise=noise, no_weight_grad=skip)
            grads = torch.autograd.grad(penalty.sum(), [ws, *params])
            results[skip] = (penalty, grads)
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-12, atol=1e-14)
    for with_switch, without in zip(results[True][1], results[False][1], strict=True):
        torch.testing.assert_close(with_switch, without, rtol=1e-10, atol=1e-13)


def test_a_parameter_derived_weight_is_still_skipped():
    """weight * gain (NVlabs' Conv2dLayer) comes from one parameter: its gradient is skipped under the switch."""
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    y = ops.conv2d(x, (w * 0.5).flip([2, 3]), padding=1)
    counter = WeightGradCounter()
    with no_weight_gradients(), counter:
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    assert counter.calls == 0 and gx.shape == x.shape
    # styles * weight depends on two tensors: kept
    s = torch.randn(3, requires_grad=True)
    y = ops.conv2d(x, w * s[None, :, None, None], padding=1)
    with no_weight_gradients(), counter:
        torch.autograd.grad(y.square().sum(), x, create_graph=True)
    assert counter.calls == 1
