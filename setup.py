"""Builds gankernels._C: csrc/cpu always, csrc/cuda when torch has CUDA and nvcc is found.

    pip install -e . --no-build-isolation

Honours TORCH_CUDA_ARCH_LIST (default: the visible GPU, else 8.0;8.6;8.9;9.0), MAX_JOBS, and
GANKERNELS_NO_CUDA=1 (CPU kernels only) and GANKERNELS_NATIVE=1 (CPU kernels with -march=native: tuned to the
building CPU's instruction set, so the result may crash with SIGILL on an older CPU; off by default, so that what is
built on one machine runs on another; benchmarks/NOTES.md has what it gains). Nothing is ever compiled at import or
first use.
"""

import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # pragma: no cover - the Makefile installs torch first
    sys.exit(
        "gankernels: torch must be installed before building (pip install torch, then "
        "pip install -e . --no-build-isolation)"
    )

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;8.6;8.9;9.0"


def rel(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def want_cuda():
    if os.environ.get("GANKERNELS_NO_CUDA", "0") == "1":
        return False, "GANKERNELS_NO_CUDA=1"
    if torch.version.cuda is None:
        return False, "torch was built without CUDA"
    if cpp_extension.CUDA_HOME is None:
        return False, "nvcc not found (set CUDA_HOME)"
    return True, f"torch {torch.__version__} with CUDA {torch.version.cuda}, nvcc at {cpp_extension.CUDA_HOME}"


def cuda_arch_list():
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"]
    if torch.cuda.is_available():
        caps = {"{}.{}".format(*torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())}
        return ";".join(sorted(caps))
    return DEFAULT_ARCHS


def extension():
    with_cuda, why = want_cuda()
    # -fno-trapping-math: no kernel reads the floating-point exception flags, so the compiler may evaluate both sides
    # of a select (lrelu's z > 0 ? z : z * alpha) and vectorise it; with trapping math GCC keeps such loops scalar
    # unless the ISA has masked operations (AVX-512), which is why the portable build lost up to 23x
    # (benchmarks/NOTES.md). Results are unchanged: it allows no reassociation or contraction.
    cxx = ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
    if os.environ.get("GANKERNELS_NATIVE", "0") == "1":
        cxx.append("-march=native")  # opt-in: only for a build that runs on the CPU that built it
    # csrc/cpu/isa/*.cpp: the CPU kernels again for AVX2 and AVX-512, chosen at run time (csrc/cpu/isa.h)
    sources = ["csrc/bindings.cpp"] + rel("csrc/ops/*.cpp") + rel("csrc/cpu/*.cpp") + rel("csrc/cpu/isa/*.cpp")
    include_dirs = [os.path.join(ROOT, "csrc", "include")]
    native = "-march=native" if "-march=native" in cxx else "portable, GANKERNELS_NATIVE=1 for -march=native"
    print(f"gankernels: building CPU kernels ({native}); CUDA kernels: {'yes' if with_cuda else 'no'} ({why})")
    if not with_cuda:
        return cpp_extension.CppExtension(
            "gankernels._C",
            sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp"],
        )
    os.environ["TORCH_CUDA_ARCH_LIST"] = cuda_arch_list()
    print(f"gankernels: CUDA architectures {os.environ['TORCH_CUDA_ARCH_LIST']}")
    nvcc = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo", "--expt-relaxed-constexpr"]
    return cpp_extension.CUDAExtension(
        "gankernels._C",
        sources + rel("csrc/cuda/*.cu"),
        include_dirs=include_dirs,
        define_macros=[("GANKERNELS_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx + ["-DGANKERNELS_WITH_CUDA"], "nvcc": nvcc},
        extra_link_args=["-fopenmp"],
    )


setup(
    packages=find_packages(include=["gankernels", "gankernels.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
