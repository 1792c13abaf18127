"""csrc/cuda/bias_act.cu's grid-stride loop indexes in int32 only where none of its indices can wrap.

The loop `for (v = block * 256 + thread; v < packs; v += blocks * 256)` with grid_for's blocks (at most 2^20) forms
indices up to packs - 1 + 2^28: with one element per pack (vector width 1: unaligned or odd sizes) the old bound
n < 2^31 - 256 let them pass 2^31 - 1 for 1.88e9-2.1e9 elements. The host rule is in csrc/include/gankernels/common.h,
shared by the .cu file and the extension; the CPU tests check it against the loop, the GPU test runs the size.
"""

import pytest
import torch

from gankernels import backend
from gankernels.ops import bias_act

INT32_MAX = 2**31 - 1
THREADS = 256  # kThreads of csrc/cuda/bias_act.cu


def _extension():
    ext = backend.extension() if backend.why_unavailable("cpu", "bias_act", "cpu") is None else None
    if ext is None or not hasattr(ext, "grid_stride_fits_int32"):
        pytest.skip("the compiled extension (with grid_stride_fits_int32) is not built")
    return ext


def _largest_index(work: int, blocks: int, threads: int) -> int:
    """The largest value the loop variable takes: the thread that starts last (blocks * threads - 1) steps by the
    stride until it passes work - 1; the value that ends its loop is the largest any thread forms."""
    stride = blocks * threads
    start = stride - 1
    if start >= work:
        return start
    return start + ((work - 1 - start) // stride + 1) * stride


@pytest.mark.parametrize("n", [1, 1000, 2**28, 10**9, 1_879_048_191, 1_879_048_193, 1_880_000_000, 2_000_000_000,
                               2_100_000_000, INT32_MAX, 2**31, 5 * 10**9])  # fmt: skip
@pytest.mark.parametrize("vec", [1, 2, 4, 8])
def test_int32_only_where_no_index_wraps(n, vec):
    ext = _extension()
    packs = n // vec
    blocks = ext.grid_for(packs, THREADS)
    assert 1 <= blocks <= 2**20
    largest = _largest_index(packs, blocks, THREADS)
    fits = ext.grid_stride_fits_int32(packs, THREADS)
    if fits:  # the rule may be conservative by less than a stride, never unsafe
        assert largest <= INT32_MAX, (n, vec, largest)
    else:
        assert packs - 1 + blocks * THREADS > INT32_MAX
    if vec == 1 and 1_880_000_000 <= n <= 2_100_000_000:
        assert not fits, "the sizes the int32 loop overflowed for now index in int64"


def test_int32_boundary_is_exact():
    ext = _extension()
    # with 2^20 blocks of 256 threads the stride is 2^28: the last work that fits is 2^31 - 2^28
    limit = 2**31 - 2**28
    assert ext.grid_stride_fits_int32(limit, THREADS)
    assert not ext.grid_stride_fits_int32(limit + 1, THREADS)


@pytest.mark.gpu
def test_cuda_bias_act_at_2_1e9_elements_vector_width_1():
    """2.1e9 float32 elements, an odd count (no 16-byte packs: vector width 1), on the CUDA kernel: every element
    written, none twice or out of place (x[i] = i mod 2^20 - 2^19, y = lrelu)."""
    if backend.why_unavailable("cuda", "bias_act", "cuda") is not None:
        pytest.skip("no CUDA bias_act kernel built")
    n = 2_100_000_001
    free, _ = torch.cuda.mem_get_info()
    need = 6 * 4 * n  # x, y, the reference and their temporaries
    if free < need:
        pytest.skip(f"needs {need / 2**30:.0f} GiB of free GPU memory")
    x = (torch.arange(n, device="cuda", dtype=torch.int32) % 2**20 - 2**19).float()
    with backend.use_backend("cuda"):
        y = bias_act(x, None, dim=0, act="lrelu", alpha=0.5, gain=1.0)
    torch.cuda.synchronize()
    expected = torch.where(x > 0, x, x * 0.5)
    del x
    assert torch.equal(y, expected)
