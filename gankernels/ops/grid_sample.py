"""Bilinear grid_sample (torch.nn.functional.grid_sample for 4-D inputs), differentiable to any order on every backend.

    y[n, c, i, j] = sum over the 4 corners k of (ix, iy) = coordinates(grid[n, i, j]) of w_k x[n, c, k]

torch's own grid_sample has no double backward (pytorch/pytorch#34704), which StyleGAN2-ADA's R1 penalty through
the augmentations needs. Two torch custom ops carry the work: `gankernels::grid_sample` (the forward kernel) and
`gankernels::grid_sample_backward` (dx and dgrid from dy, x and grid, in one kernel), whose own backward is autograd
through the reference gradient formula (gankernels.reference.grid_sample.grid_sample_grad), so that any order is
exact. Both are declared through _define.define_op: eager calls run the same impl / setup / backward through
torch.autograd.Functions.
"""

from __future__ import annotations

import torch

from .. import backend as _backend
from ..reference import grid_sample as ref
from ._common import check_4d, check_float_tensor, check_same, dense, empty_as, empty_like, kernels, memory_format
from ._define import define_op, through_reference

OP = "grid_sample"  # the backend op name: gankernels._C.grid_sample_* and gankernels.triton.grid_sample
PADDING_CODES = {"zeros": 0, "border": 1, "reflection": 2}  # the kernels' padding argument


def resolve_backend(device_type: str) -> str:
    """The backend that runs grid_sample on `device_type` tensors: "cpu", "triton" or "ref" (gankernels.backend.resolve:
    its kernels are KERNELS["grid_sample"]; a forced "cuda", which it has no kernels for, says so). Automatic: the C++
    kernels on CPU tensors when the extension has them, Triton on CUDA tensors when it runs, else the reference.
    No GPU measurement yet; the Triton forward reads x about once (4 gathers per output, mostly cache hits for the
    near-identity grids of augmentation) and writes y once, where the reference makes ~12 x-sized passes.
    """
    return _backend.resolve(OP, device_type)


def _empty_out(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """[N, C, Ho, Wo] in x's dtype, device and memory format."""
    return empty_as(x, (x.shape[0], x.shape[1], grid.shape[1], grid.shape[2]))


def _empty_grads(x: torch.Tensor, grid: torch.Tensor, want_x: bool, want_grid: bool):
    """(dx like x, dgrid contiguous like grid); an empty [0] tensor for a gradient not wanted."""
    dx = empty_like(x) if want_x else x.new_empty(0)
    dgrid = torch.empty_like(grid, memory_format=torch.contiguous_format) if want_grid else grid.new_empty(0)
    return dx, dgrid


# ----------------------------------------------------------------------------------------------------------------
# Forward op


def _grid_sample_impl(x, grid, padding_mode, align_corners, backend):
    out = _empty_out(x, grid)
    if backend == "ref":
        return out.copy_(ref.grid_sample(x, grid, padding_mode, align_corners))
    if out.numel():
        forward = kernels(backend, OP).grid_sample_forward
        forward(dense(x), grid.contiguous(), out, PADDING_CODES[padding_mode], align_corners)
    return out


def _grid_sample_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:2])  # x, grid
    ctx.params = inputs[2:]  # padding_mode, align_corners, backend


def _grid_sample_backward(ctx, dy):
    x, grid = ctx.saved_tensors
    want_x, want_grid = ctx.needs_input_grad[:2]
    if not (want_x or want_grid):
        return None, None, None, None, None
    dx, dgrid = _grid_sample_backward_op(dy, x, grid, *ctx.params, want_x, want_grid, ctx=ctx)
    return (dx if want_x else None), (dgrid if want_grid else None), None, None, None


# Each sample reads its own image at its own grid: a vmapped dimension folds into the batch.
_grid_sample_op = define_op(
    "grid_sample", "(Tensor x, Tensor grid, str padding_mode, bool align_corners, str backend) -> Tensor",
    _grid_sample_impl, fake=lambda x, grid, padding_mode, align_corners, backend: _empty_out(x, grid),
    setup_context=_grid_sample_setup, backward=_grid_sample_backward, vmap=([0, 0, None, None, None], [0]),
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Backward op: (dx, dgrid) from dy [N, C, Ho, Wo], x and grid; an empty [0] tensor for one not wanted


def _grid_sample_backward_impl(dy, x, grid, padding_mode, align_corners, backend, want_x, want_grid):
    dx, dgrid = _empty_grads(x, grid, want_x, want_grid)
    if backend == "ref":
        rdx, rdgrid = ref.grid_sample_grad(dy, x, grid, padding_mode, align_corners, want_x, want_grid)
        if want_x:
            dx.copy_(rdx)
        if want_grid:
            dgrid.copy_(rdgrid)
        return dx, dgrid
    kernel_x = want_x and dx.numel() > 0
    if kernel_x and backend == "triton" and torch.are_deterministic_algorithms_enabled():
        # the Triton dx is an atomic scatter (gankernels/triton/grid_sample.py): the reference's scatter_add instead
        dx.copy_(ref.grid_sample_grad(dy, x, grid, padding_mode, align_corners, True, False)[0])
        kernel_x = False
    if kernel_x or (want_grid and dgrid.numel()):
        kernels(backend, OP).grid_sample_backward(
            dense(dy, memory_format(x)), dense(x), grid.contiguous(), dx if kernel_x else None,
            dgrid if want_grid else None, PADDING_CODES[padding_mode], align_corners,
        )  # fmt: skip
    return dx, dgrid


def _grid_sample_backward_setup(ctx, inputs, output):
    dy, x, grid, padding_mode, align_corners, backend, want_x, want_grid = inputs
    ctx.save_for_backward(dy, x, grid)
    ctx.params = (padding_mode, align_corners, want_x, want_grid)
    ctx.backend = backend


def _grid_sample_backward_backward(ctx, gdx, gdgrid):
    """Gradients of <gdx, dx(dy, x, grid)> + <gdgrid, dgrid(dy, x, grid)> with respect to dy, x and grid, by autograd
    through the reference formula (differentiable again: any order).

    R1 through an augmentation with a constant grid needs only the dy part of the dx term: dx is linear in dy and
    does not depend on x, and the adjoint of the scatter is the forward sampling itself, so that part runs on the
    forward op (the kernels; any order too): d<gdx, dx>/d dy = grid_sample(gdx, grid), d/dx = 0."""
    want_x, want_grid = ctx.params[2:]
    dy, x, grid = ctx.saved_tensors
    needs = ctx.needs_input_grad
    if want_x and not want_grid and not needs[2]:
        gdy = None
        if needs[0]:
            forward = _grid_sample_op(gdx, grid, *ctx.params[:2], ctx.backend, ctx=ctx) if gdx is not None else None
            gdy = torch.zeros_like(dy) if forward is None else forward
        return gdy, (torch.zeros_like(x) if needs[1] else None), None, None, None, None, None, None
    grad_outputs = (gdx if want_x else None, gdgrid if want_grid else None)
    grads = through_reference(ref.grid_sample_grad, ctx.saved_tensors, ctx.needs_input_grad, grad_outputs, ctx.params)
    return (*grads, None, None, None, None, None)


# An output not wanted is a [0] placeholder, which does not unflatten: under vmap this op runs once per index.
_grid_sample_backward_op = define_op(
    "grid_sample_backward",
    "(Tensor dy, Tensor x, Tensor grid, str padding_mode, bool align_corners, str backend, bool want_x, bool want_grid)"
    " -> (Tensor, Tensor)",
    _grid_sample_backward_impl,
    fake=lambda dy, x, grid, padding_mode, align_corners, backend, want_x, want_grid: (
        _empty_grads(x, grid, want_x, want_grid)),
    setup_context=_grid_sample_backward_setup, backward=_grid_sample_backward_backward,
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Public API


def _check_args(x, grid, mode, padding_mode, align_corners) -> bool:
    """Validate; return align_corners as a bool."""
    check_4d(x, "x")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"x must have H, W >= 1 (there is nothing to sample), got shape {list(x.shape)}")
    check_float_tensor(grid, "grid")
    check_same(grid, x, "grid", "x")
    if grid.dim() != 4 or grid.shape[3] != 2:
        raise ValueError(f"grid must be [N, Ho, Wo, 2] (x, y in [-1, 1]), got shape {list(grid.shape)}")
    if grid.shape[0] != x.shape[0]:
        raise ValueError(f"grid has batch size {grid.shape[0]} but x has {x.shape[0]}; they must match")
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, got {type(mode).__name__}")
    if mode != "bilinear":
        what = "is not supported" if mode in ("nearest", "bicubic") else "is unknown"
        raise ValueError(f"mode={mode!r} {what}: only mode='bilinear' is supported")
    if not isinstance(padding_mode, str):
        raise TypeError(f"padding_mode must be a str, got {type(padding_mode).__name__}")
    if padding_mode not in PADDING_CODES:
        raise ValueError(f"padding_mode must be one of {tuple(PADDING_CODES)}, got {padding_mode!r}")
    if align_corners is None:  # torch's default (with a warning there): False
        return False
    if not isinstance(align_corners, bool):
        raise TypeError(f"align_corners must be a bool, got {type(align_corners).__name__}")
    return align_corners


def grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False):
    """Sample x [N, C, H, W] bilinearly at grid [N, Ho, Wo, 2] -> [N, C, Ho, Wo], as torch.nn.functional.grid_sample.

    grid[n, i, j] = (gx, gy): -1 and 1 are the left / top and right / bottom of the image (align_corners=False,
    the default: the outer edges of the corner pixels; True: their centres). padding_mode "zeros" (default) reads 0
    outside the image, "border" the nearest border pixel, "reflection" the image mirrored at its borders. mode must be
    "bilinear". Any float dtype for x, grid the same dtype on the same device (fp16/bf16 computed in fp32, fp64 in
    fp64); NCHW or channels_last x (the output keeps x's memory format). Values and first-order gradients equal
    torch's; differentiable to second order and beyond with respect to x and grid, on every backend.

    Grid points anywhere are safe (never a read outside x). Non-finite coordinates give what torch gives on CPU:
    zeros: a +-inf or NaN coordinate makes that point's output NaN (no gradient into x; NaN grid gradient; torch on
    CUDA gives 0 there instead, ours gives NaN on every device and backend);
    border: +inf clamps to the last pixel, -inf and NaN to the first; reflection: +-inf and NaN go to the first pixel;
    a clamped coordinate has gradient 0 (torch's CPU backward crashes on NaN with border / reflection; ours gives 0).
    """
    align_corners = _check_args(x, grid, mode, padding_mode, align_corners)
    name = resolve_backend(x.device.type)
    if name == "ref":
        return ref.grid_sample(x, grid, padding_mode, align_corners).contiguous(memory_format=memory_format(x))
    return _grid_sample_op(x, grid, padding_mode, align_corners, name)
