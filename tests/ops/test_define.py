"""_define.Op's eager dispatch: the autograd.Function where a graph is recorded, the impl itself where none is."""

import importlib

import pytest
import torch

import gankernels
from gankernels import ops

bias_act_module = importlib.import_module("gankernels.ops.bias_act")  # gankernels.ops.bias_act is the function


@pytest.fixture
def function_calls(monkeypatch):
    """Counts the calls of bias_act's two eager Functions (forward and gradient-with-bias-gradient)."""
    calls = []
    for op in (bias_act_module._bias_act, bias_act_module._bias_act_grad_db):
        record = op._record  # the Function's apply

        def counted(*args, _record=record, _name=op.name):
            calls.append(_name)
            return _record(*args)

        monkeypatch.setattr(op, "_record", counted)
    return calls


def _x(requires_grad=True):
    return torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=requires_grad)


def test_function_only_where_a_graph_is_recorded(function_calls):
    x, b = _x(), torch.randn(4, dtype=torch.float64, requires_grad=True)
    with gankernels.use_backend("cpu"):
        with torch.no_grad():  # inference: the impl itself
            y0 = ops.bias_act(x, b, act="lrelu")
        assert function_calls == [] and y0.grad_fn is None
        y = ops.bias_act(x, b, act="lrelu")
        assert function_calls == ["bias_act"]
        gx, gb = torch.autograd.grad(y.sum(), (x, b))  # a backward that builds no graph: the gradient op's impl
        assert function_calls == ["bias_act"]
        y = ops.bias_act(x, b, act="lrelu")
        gx2, gb2 = torch.autograd.grad(y.sum(), (x, b), create_graph=True)  # a graph of the gradient: its Function
        assert function_calls == ["bias_act", "bias_act", "bias_act_grad_db"]
        assert gx2.requires_grad
    torch.testing.assert_close(y0, y, rtol=0, atol=0)
    torch.testing.assert_close((gx, gb), (gx2.detach(), gb2.detach()), rtol=0, atol=0)


def test_a_tensor_escaped_from_a_torch_func_transform_is_unwrapped():
    leaked = []

    def f(x):
        leaked.append(x)
        return (x * 2).sum()

    x = _x(requires_grad=False)
    torch.func.grad(f)(x)
    assert torch._C._functorch.is_functorch_wrapped_tensor(leaked[0])
    with torch.no_grad(), gankernels.use_backend("cpu"):
        y = ops.bias_act(leaked[0], None, act="lrelu")
    assert not torch._C._functorch.is_functorch_wrapped_tensor(y)
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(x, 0.2) * 2**0.5)
