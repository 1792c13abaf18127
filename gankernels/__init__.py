"""gankernels: fused CUDA / Triton / C++ kernels for training GANs, and the models built on them."""

from . import ops
from .backend import get_backend, set_backend, use_backend

__version__ = "0.1.0"
__all__ = ["ops", "set_backend", "get_backend", "use_backend", "__version__"]
