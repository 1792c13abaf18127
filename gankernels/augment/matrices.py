"""Batched homogeneous transformation matrices for the augmentation pipeline.

Every builder takes scalars or tensors of one batch shape ([N] in the pipeline) and returns [..., 3, 3] (2-D) or
[..., 4, 4] (3-D colour space) matrices; Python numbers are broadcast to the tensors' shape. The `_inv` variants
build the inverse transform, as the geometric pipeline composes the map from output pixels to input pixels.
"""

from __future__ import annotations

import torch


def matrix(*rows, device=None, dtype=torch.float32) -> torch.Tensor:
    """Stack `rows` (lists of equal length holding numbers or tensors of one shape S) into [*S, len(rows), cols]."""
    if any(len(row) != len(rows[0]) for row in rows):
        raise ValueError("matrix: every row must have the same length")
    elems = [e for row in rows for e in row]
    like = next((e for e in elems if isinstance(e, torch.Tensor)), None)
    if like is None:
        return torch.tensor([list(row) for row in rows], device=device, dtype=dtype)
    elems = [e if isinstance(e, torch.Tensor) else torch.full_like(like, float(e)) for e in elems]
    return torch.stack(elems, dim=-1).reshape(*like.shape, len(rows), -1)


def translate2d(tx, ty, **kwargs) -> torch.Tensor:
    return matrix([1, 0, tx], [0, 1, ty], [0, 0, 1], **kwargs)


def scale2d(sx, sy, **kwargs) -> torch.Tensor:
    return matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1], **kwargs)


def rotate2d(theta: torch.Tensor, **kwargs) -> torch.Tensor:
    """Counter-clockwise rotation by `theta` radians (in image coordinates, y down: clockwise on screen)."""
    c, s = torch.cos(theta), torch.sin(theta)
    return matrix([c, -s, 0], [s, c, 0], [0, 0, 1], **kwargs)


def translate2d_inv(tx, ty, **kwargs) -> torch.Tensor:
    return translate2d(-tx, -ty, **kwargs)


def scale2d_inv(sx, sy, **kwargs) -> torch.Tensor:
    return scale2d(1 / sx, 1 / sy, **kwargs)


def rotate2d_inv(theta: torch.Tensor, **kwargs) -> torch.Tensor:
    return rotate2d(-theta, **kwargs)


def translate3d(tx, ty, tz, **kwargs) -> torch.Tensor:
    return matrix([1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1], **kwargs)


def scale3d(sx, sy, sz, **kwargs) -> torch.Tensor:
    return matrix([sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1], **kwargs)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor, **kwargs) -> torch.Tensor:
    """Rotation by `theta` about the unit vector `axis` ([3] or [4], the last entry ignored): Rodrigues' formula
    R = cos(t) I + sin(t) [axis]_x + (1 - cos(t)) axis axis^T, in homogeneous [..., 4, 4] form."""
    x, y, z = (float(v) for v in axis[:3])
    s, c = torch.sin(theta), torch.cos(theta)
    k = 1 - c
    return matrix(
        [x * x * k + c, x * y * k - z * s, x * z * k + y * s, 0],
        [y * x * k + z * s, y * y * k + c, y * z * k - x * s, 0],
        [z * x * k - y * s, z * y * k + x * s, z * z * k + c, 0],
        [0, 0, 0, 1],
        **kwargs,
    )


def is_identity(m: torch.Tensor) -> torch.Tensor:
    """[N] bool: which of the [N, K, K] matrices are exactly the identity."""
    eye = torch.eye(m.shape[-1], device=m.device, dtype=m.dtype)
    return (m == eye).flatten(1).all(dim=1)
