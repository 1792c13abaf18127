"""Triton kernels, one module per op. Imported lazily by gankernels.ops when the triton backend runs."""
