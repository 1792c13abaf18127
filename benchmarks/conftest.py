"""pytest-benchmark glue over gankernels.bench: each test module names its op in `OP`; every (case, impl) pair
becomes one benchmark. GPU times are CUDA-event medians, recorded in extra_info with the bandwidth and the ratios
to eager and torch.compile measured in the same session. With --benchmark-disable (CI) every pair runs once on
tiny shapes, as a smoke test."""

import os

import torch

if os.environ.get("TRITON_INTERPRET") is None and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from gankernels import backend as gk_backend  # noqa: E402
from gankernels import bench as harness  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_medians: dict = {}  # (case, impl) -> ms, for the ratios


def pytest_generate_tests(metafunc):
    if "bench_item" not in metafunc.fixturenames:
        return
    quick = metafunc.config.getoption("benchmark_disable", False)
    op = metafunc.module.OP
    items, ids = [], []
    for case in harness.cases(op, DEVICE, quick=quick):
        # eager and compile first, so that the kernels' ratios to them are known when they run
        for impl in harness.implementations(case, DEVICE):
            items.append((case, impl))
            ids.append(f"{case.name}-{impl}".replace(" ", "_"))
    metafunc.parametrize("bench_item", items, ids=ids)


@pytest.fixture
def run_bench(benchmark):
    def run(item):
        case, impl = item
        name, fn = harness.implementations(case, DEVICE)[impl]
        inputs = case.make_inputs()
        if impl == "triton" and DEVICE.type == "cpu" and inputs[0].numel() > 4096:
            pytest.skip("the Triton interpreter is for correctness, not timing")
        with gk_backend.use_backend(name):
            if DEVICE.type == "cuda" and not benchmark.disabled:
                ms = harness.time_fn(lambda: fn(*inputs), DEVICE)
                _medians[(case.name, impl)] = ms
                bw = case.bytes / ms / 1e6
                benchmark.extra_info.update(
                    median_ms_cuda_events=ms, gb_s=bw, copy_fraction=bw / harness.copy_bandwidth(DEVICE),
                    vs_eager=_ratio(case, "eager", ms), vs_compile=_ratio(case, "compile", ms),
                )  # fmt: skip

            def call():
                fn(*inputs)
                if DEVICE.type == "cuda":
                    torch.cuda.synchronize()

            benchmark(call)

    return run


def _ratio(case, impl, ms):
    other = _medians.get((case.name, impl))
    return other / ms if other else None
