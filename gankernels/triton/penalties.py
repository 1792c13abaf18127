"""Triton kernels of WGAN-GP's pieces: the per-sample interpolation, the per-sample gradient norm and penalty (a
two-stage reduction) and the penalty's gradient.

Every kernel works on the flat memory of tensors whose samples are dense blocks of M = numel / N consecutive elements
(sample n at [n M, (n + 1) M): NCHW, channels_last, or any order of the non-batch dimensions), so element i belongs
to sample i // M and no layout needs a copy. fp16/bf16/fp32 are computed in fp32, fp64 in fp64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import INT64_FROM, block_offsets, is_f64, launch_meta, load, next_pow2, scalar, scalar_arg

BLOCK = 1024  # elements per program of the elementwise kernels
MAX_BLOCK = 1024  # elements per tile of the reduction; tests lower it to reach the multi-tile, multi-chunk paths
TILES = 8  # tiles per program of the reduction's first stage: one partial sum per TILES * block elements
NUM_WARPS = 4  # a guess: not yet benchmarked on a GPU


@triton.jit
def _finish(s, p_ptr, norm_ptr, sample, center, ONE_SIDED: tl.constexpr):
    # s = sum of squares of sample n: norm = sqrt(s), p = (norm - center)^2, one-sided max(0, norm - center)^2
    norm = tl.sqrt(s)
    d = norm - center
    if ONE_SIDED:
        d = tl.maximum(d, 0.0)
    tl.store(norm_ptr + sample, norm)
    tl.store(p_ptr + sample, d * d)


@triton.jit
def _interpolate_fwd_kernel(
    real_ptr, fake_ptr, eps_ptr, out_ptr, n, M,
    F64: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n
    w = load(eps_ptr, offs // M, mask, F64)  # eps of the element's sample
    a = load(fake_ptr, offs, mask, F64)
    b = load(real_ptr, offs, mask, F64)
    # lerp(a, b, w) = a + w (b - a) as torch.lerp computes it: from the nearer end, exact at w = 0 and w = 1
    out = tl.where(tl.abs(w) < 0.5, a + w * (b - a), b - (b - a) * (1.0 - w))
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gradient_penalty_partial_kernel(
    g_ptr, partial_ptr, p_ptr, norm_ptr, M, chunks, center,
    ONE_SIDED: tl.constexpr, FINISH: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
    TILES: tl.constexpr,
):  # fmt: skip
    # program (sample, chunk) sums the squares of TILES * BLOCK elements of its sample
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    sample = pid // chunks
    chunk = pid % chunks
    j = chunk * (TILES * BLOCK) + tl.arange(0, BLOCK)
    base = g_ptr + sample * M
    acc = tl.zeros([BLOCK], tl.float64 if F64 else tl.float32)
    for t in tl.static_range(TILES):
        o = j + t * BLOCK
        v = load(base, o, o < M, F64)
        acc += v * v
    s = tl.sum(acc, axis=0)
    if FINISH:  # the sample is one chunk: no second stage
        _finish(s, p_ptr, norm_ptr, sample, scalar(center, F64), ONE_SIDED)
    else:
        tl.store(partial_ptr + pid, s)


@triton.jit
def _gradient_penalty_finish_kernel(
    partial_ptr, p_ptr, norm_ptr, chunks, center,
    ONE_SIDED: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    # program n adds up its sample's `chunks` partial sums
    sample = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.float64 if F64 else tl.float32)
    for start in range(0, chunks, BLOCK):
        acc += tl.load(partial_ptr + sample * chunks + start + idx, mask=start + idx < chunks, other=0.0)
    _finish(tl.sum(acc, axis=0), p_ptr, norm_ptr, sample, scalar(center, F64), ONE_SIDED)


@triton.jit
def _gradient_penalty_bwd_kernel(
    g_ptr, dp_ptr, dnorm_ptr, norm_ptr, dg_ptr, n, M, center,
    HAS_DP: tl.constexpr, HAS_DNORM: tl.constexpr, ONE_SIDED: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n
    sample = offs // M  # the per-sample values below are gathers of a few cached [N] entries
    norm = load(norm_ptr, sample, mask, F64)
    coef = tl.zeros([BLOCK], tl.float64 if F64 else tl.float32)
    if HAS_DP:  # d p / d g = 2 (norm - center) g / norm (one-sided: the clamped difference)
        d = norm - scalar(center, F64)
        if ONE_SIDED:
            d = tl.maximum(d, 0.0)
        coef += 2.0 * load(dp_ptr, sample, mask, F64) * d
    if HAS_DNORM:  # d norm / d g = g / norm
        coef += load(dnorm_ptr, sample, mask, F64)
    # the gradient is defined as 0 where norm = 0 (g = 0 there: torch's subgradient of the norm)
    scale = tl.where(norm > 0, coef / tl.where(norm > 0, norm, 1.0), 0.0)
    dg = load(g_ptr, offs, mask, F64) * scale
    tl.store(dg_ptr + offs, dg.to(dg_ptr.dtype.element_ty), mask=mask)


def _meta(t: torch.Tensor, block: int) -> dict:
    return launch_meta(t, t.numel() + block * TILES, NUM_WARPS, INT64_FROM)


def interpolate_forward(real, fake, eps, out):
    """out = lerp(fake, real, eps[n]); real, fake, out of one layout with dense samples, eps contiguous [N]."""
    n = out.numel()
    _interpolate_fwd_kernel[(triton.cdiv(n, BLOCK),)](
        real, fake, eps, out, n, n // out.shape[0], BLOCK=BLOCK, **_meta(out, BLOCK)
    )


def gradient_penalty_forward(g, p, norm, center, one_sided):
    """norm[n] = ||g_n||, p[n] = (norm[n] - center)^2 (one-sided: max(0, .)^2). g with dense samples, numel >= 1;
    p, norm contiguous [N] in the compute dtype (fp32 or fp64)."""
    samples = g.shape[0]
    m = g.numel() // samples
    block = max(1, min(MAX_BLOCK, next_pow2(m)))
    chunks = triton.cdiv(m, block * TILES)
    partial = norm if chunks == 1 else norm.new_empty([samples * chunks])
    meta = _meta(g, block)
    center = scalar_arg(center, meta["F64"])
    _gradient_penalty_partial_kernel[(samples * chunks,)](
        g, partial, p, norm, m, chunks, center,
        ONE_SIDED=one_sided, FINISH=chunks == 1, BLOCK=block, TILES=TILES, **meta,
    )  # fmt: skip
    if chunks > 1:
        finish_block = max(1, min(MAX_BLOCK, next_pow2(chunks)))
        _gradient_penalty_finish_kernel[(samples,)](
            partial, p, norm, chunks, center,
            ONE_SIDED=one_sided, F64=meta["F64"], BLOCK=finish_block, num_warps=1,
        )  # fmt: skip


def gradient_penalty_backward(dp, dnorm, g, norm, dg, center, one_sided):
    """dg = g * (2 dp[n] d[n] + dnorm[n]) / norm[n] (0 where norm is 0), d = norm - center (clamped at 0 when
    one_sided); dp, dnorm contiguous [N] or None; g, dg of one layout with dense samples."""
    n = g.numel()
    _gradient_penalty_bwd_kernel[(triton.cdiv(n, BLOCK),)](
        g, norm if dp is None else dp, norm if dnorm is None else dnorm, norm, dg, n, n // g.shape[0],
        scalar_arg(center, is_f64(g)),
        HAS_DP=dp is not None, HAS_DNORM=dnorm is not None, ONE_SIDED=one_sided, BLOCK=BLOCK, **_meta(g, BLOCK),
    )  # fmt: skip
