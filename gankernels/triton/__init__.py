"""Triton kernels, one module per op. Imported lazily by gankernels.ops when the triton backend runs."""

import torch

# True while tools/triton_compile_check.py compiles the kernels for a GPU on a machine without one: launch
# configurations are then the GPU's even for the CPU tensors it uses.
COMPILE_FOR_GPU = False


def gpu_launch(t: torch.Tensor) -> bool:
    """Whether a launch on `t` is a GPU one (CUDA tensors, or a compile check), not the interpreter's."""
    return t.is_cuda or COMPILE_FOR_GPU
