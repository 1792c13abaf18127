"""gankernels.nn.BiasAct and FusedLeakyReLU."""

import pytest
import torch

from gankernels import nn as gnn


def test_fused_leaky_relu_parameters_and_values():
    m = gnn.FusedLeakyReLU(8)
    assert list(dict(m.named_parameters())) == ["bias"] and m.bias.shape == (8,)
    with torch.no_grad():
        m.bias.normal_()
    x = torch.randn(2, 8, 5, 5)
    want = torch.nn.functional.leaky_relu(x + m.bias.view(1, 8, 1, 1), 0.2) * 2**0.5
    torch.testing.assert_close(m(x), want)
    assert gnn.FusedLeakyReLU(8, bias=False).bias is None


def test_fused_leaky_relu_trains():
    m = gnn.FusedLeakyReLU(4, negative_slope=0.1, scale=1.0)
    x = torch.randn(3, 4, 2, 2)
    m(x).square().sum().backward()
    assert m.bias.grad is not None and m.bias.grad.shape == (4,)


def test_bias_act_module():
    m = gnn.BiasAct(6, act="tanh", clamp=0.5)
    x = torch.randn(2, 6, 3)
    torch.testing.assert_close(m(x), torch.tanh(x).clamp(-0.5, 0.5))
    assert "act=tanh" in repr(m)
    assert gnn.BiasAct(act="relu")(torch.tensor([-1.0, 2.0])).tolist() == pytest.approx([0.0, 2 * 2**0.5])


def test_bias_act_module_bad_arguments():
    with pytest.raises(ValueError, match="act"):
        gnn.BiasAct(4, act="gelu")
    with pytest.raises(ValueError, match="channels"):
        gnn.BiasAct(0)
