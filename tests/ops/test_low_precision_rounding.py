"""The C++ kernels' float16 / bfloat16 conversions (csrc/cpu/half.h: branch-free, so that the loops vectorise) give
torch's bits: every one of the 65536 values of each dtype, loaded (to float), scaled and stored back (rounded to
nearest even), through bias_act's kernel, against torch's own `.float()` and `.to(dtype)` of the same float."""

import pytest
import torch

import gankernels
from gankernels import ops
from tests.conftest import backends_for

pytestmark = pytest.mark.skipif("cpu" not in backends_for("bias_act", "cpu"), reason="the C++ extension is not built")

# gain 1: the round trip; 1.5 and 0.75: exact ties for every odd mantissa (round to even); 1.5 * 2^-10 and 3e-6: ties
# and roundings among the subnormals; 300 and 7e4: overflow to infinity; 1.37: ordinary rounding.
GAINS = [1.0, 1.5, 0.75, 1.5 * 2**-10, 3e-6, 1.37, 300.0, 7e4]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gain", GAINS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_every_value_rounds_as_torch_rounds(dtype, gain, channels_last):
    x = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(dtype).reshape(4, 16, 32, 32)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    b = torch.zeros(16, dtype=dtype)  # a bias: the kernel runs (z = x + 0 exactly, as torch's float sum)
    with gankernels.use_backend("cpu"):
        y = ops.bias_act(x, b, gain=gain)
    want = ((x.float() + b.float().reshape(1, -1, 1, 1)) * gain).to(dtype)
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(y), nan)
    same = y.contiguous().view(torch.int16) == want.contiguous().view(torch.int16)
    assert bool((same | nan.contiguous()).all()), f"{int((~same & ~nan.contiguous()).sum())} values differ"
