"""Triton kernels of modulated_conv2d (StyleGAN2): demodulation coefficients, per-sample weights and the epilogue.

Shapes: weight [O, I, K] (K = kh * kw, contiguous), styles [N, I], dcoefs [N, O], conv output y [N, O, H, W] (NCHW or
channels_last), noise [Nn, H * W] with Nn in {1, N}, bias [O]. fp16/bf16/fp32 are computed in fp32, fp64 in fp64.
Activation codes and math are bias_act's (gankernels.triton._common: `activation`, `activation_grad`), so every
activation runs fused.

- dcoefs:  d[n, o] = rsqrt(sum_i s[n, i]^2 wsq[o, i] + 1e-8), wsq[o, i] = sum_k weight[o, i, k]^2, as a tiled
           [N, I] x [I, O] reduction that never builds the [N, O, I, K] modulated weight. Its backward: two small
           reductions of the same shape (over o for dstyles, over n for dweight).
- weights: w[n, o, i, k] = weight[o, i, k] s[n, i] d[n, o], written once in the conv's dtype. Its backward reads the
           gradient once and gives dweight (over n), and the partial sums of dstyles (over o, k) and ddcoefs (i, k).
- epilogue: out = clamp(act(y d[n, o] + noise[n, hw] + b[o]) gain): one read of y, one write. Its backward: one read of
           g and y, one write of dy, with the reductions ddcoefs (over hw), dnoise (over o) and dbias (over n, hw)
           accumulated on the way (per-tile partials, summed by the caller: at most 1/BLOCK_HW of y's size).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    INT64_FROM,
    REF_BY_INDEX,
    activation,
    activation_gain_clamp,
    activation_grad,
    arange_from,
    block_offsets,
    compute_dtype,
    epilogue_z,
    is_f64,
    launch_meta,
    load,
    next_pow2,
    scalar,
    scalar_arg,
)

# Block sizes are guesses, not yet benchmarked on a GPU; tests lower them to reach the multi-block paths.
BLOCK = 1024  # elements per program of the elementwise kernels
TILE = 4096  # elements per program tile of the reduction kernels
MAX_BN, MAX_BO = 16, 32  # samples and output channels per dcoefs tile
MAX_WEIGHTS_BO = 16  # output channels per tile of the per-sample weights' backward
MAX_BLOCK_HW = 128  # pixels per program of the epilogue's backward
# The backward kernels keep tiles live across a loop (the epilogue's: y, g, z, act(z), the gradient, offsets; the
# weights': weight, acc and offsets over the batch): with TILE elements on 4 warps they compiled to 254-255
# registers per thread (tools/triton_compile_check.py), two blocks of 4 warps per multiprocessor, too few warps to
# hide memory latency. On 8 warps, with the epilogue's tile halved (8 elements per thread), the epilogue backward
# needs <= 80 registers and the weights' 128 (sm_80 and sm_90). Predicted, to be measured on a GPU: more resident
# warps and a higher fraction of the copy bandwidth for both (bench op stylegan2_ops).
BWD_TILE, BWD_WARPS = 2048, 8
NUM_WARPS = 4
EPS = 1e-8  # NVlabs' demodulation epsilon


def _meta(t: torch.Tensor, n: int, num_warps: int = NUM_WARPS) -> dict:
    return launch_meta(t, n + TILE, num_warps, INT64_FROM)


# ----------------------------------------------------------------------------------------------------------------
# Demodulation coefficients


@triton.jit
def _wsq(w_ptr, o, i, o_mask, i_mask, CI, K, F64: tl.constexpr):
    # wsq[o, i] = sum_k weight[o, i, k]^2 as a [BO, BI] tile; weight [O, I, K] is contiguous
    offs = o[:, None] * CI * K + i[None, :] * K
    mask = o_mask[:, None] & i_mask[None, :]
    acc = tl.zeros(offs.shape, tl.float64 if F64 else tl.float32)
    for k in range(K):
        w = load(w_ptr + k, offs, mask, F64)
        acc += w * w
    return acc


@triton.jit
def _dcoefs_fwd_kernel(
    s_ptr, w_ptr, d_ptr, N, CO, CI, K, eps,
    F64: tl.constexpr, INT64: tl.constexpr, BN: tl.constexpr, BO: tl.constexpr, BI: tl.constexpr,
):  # fmt: skip
    # reads styles [BN, I] and weight [BO, I, K] once, writes d [BN, BO]
    n = arange_from(tl.program_id(0) * BN, BN, INT64)
    o = arange_from(tl.program_id(1) * BO, BO, INT64)
    n_mask = n < N
    o_mask = o < CO
    acc = tl.zeros([BN, BO], tl.float64 if F64 else tl.float32)
    for i0 in range(0, CI, BI):
        i = i0 + tl.arange(0, BI)
        i_mask = i < CI
        s = load(s_ptr, n[:, None] * CI + i[None, :], n_mask[:, None] & i_mask[None, :], F64)
        wsq = _wsq(w_ptr, o, i, o_mask, i_mask, CI, K, F64)
        acc += tl.sum((s * s)[:, None, :] * wsq[None, :, :], axis=2)  # q[n, o] += sum_i s[n, i]^2 wsq[o, i]
    d = 1.0 / tl.sqrt(acc + scalar(eps, F64))
    tl.store(d_ptr + n[:, None] * CO + o[None, :], d.to(d_ptr.dtype.element_ty), mask=n_mask[:, None] & o_mask[None, :])


@triton.jit
def _gq(gd_ptr, d_ptr, n, o, n_mask, o_mask, CO, F64: tl.constexpr):
    # dL/dq = gd * dd/dq = -gd d^3 / 2, as a [BN, BO] tile
    offs = n[:, None] * CO + o[None, :]
    mask = n_mask[:, None] & o_mask[None, :]
    d = load(d_ptr, offs, mask, F64)
    return -0.5 * load(gd_ptr, offs, mask, F64) * d * d * d


@triton.jit
def _dcoefs_bwd_styles_kernel(
    gd_ptr, d_ptr, s_ptr, w_ptr, ds_ptr, N, CO, CI, K,
    F64: tl.constexpr, INT64: tl.constexpr, BN: tl.constexpr, BO: tl.constexpr, BI: tl.constexpr,
):  # fmt: skip
    # dstyles[n, i] = 2 s[n, i] sum_o gq[n, o] wsq[o, i]: reads gd, d [BN, O], weight [O, BI, K]; writes [BN, BI]
    n = arange_from(tl.program_id(0) * BN, BN, INT64)
    i = arange_from(tl.program_id(1) * BI, BI, INT64)
    n_mask = n < N
    i_mask = i < CI
    acc = tl.zeros([BN, BI], tl.float64 if F64 else tl.float32)
    for o0 in range(0, CO, BO):
        o = o0 + tl.arange(0, BO)
        o_mask = o < CO
        gq = _gq(gd_ptr, d_ptr, n, o, n_mask, o_mask, CO, F64)
        wsq = _wsq(w_ptr, o, i, o_mask, i_mask, CI, K, F64)
        acc += tl.sum(gq[:, :, None] * wsq[None, :, :], axis=1)
    offs = n[:, None] * CI + i[None, :]
    mask = n_mask[:, None] & i_mask[None, :]
    ds = 2.0 * load(s_ptr, offs, mask, F64) * acc
    tl.store(ds_ptr + offs, ds.to(ds_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dcoefs_bwd_weight_kernel(
    gd_ptr, d_ptr, s_ptr, w_ptr, dw_ptr, N, CO, CI, K,
    F64: tl.constexpr, INT64: tl.constexpr, BN: tl.constexpr, BO: tl.constexpr, BI: tl.constexpr,
):  # fmt: skip
    # dweight[o, i, k] = 2 weight[o, i, k] sum_n gq[n, o] s[n, i]^2: reads gd, d [N, BO], styles [N, BI], weight
    # [BO, BI, K]; writes dweight [BO, BI, K]
    o = arange_from(tl.program_id(0) * BO, BO, INT64)
    i = arange_from(tl.program_id(1) * BI, BI, INT64)
    o_mask = o < CO
    i_mask = i < CI
    acc = tl.zeros([BO, BI], tl.float64 if F64 else tl.float32)
    for n0 in range(0, N, BN):
        n = n0 + tl.arange(0, BN)
        n_mask = n < N
        gq = _gq(gd_ptr, d_ptr, n, o, n_mask, o_mask, CO, F64)
        s = load(s_ptr, n[:, None] * CI + i[None, :], n_mask[:, None] & i_mask[None, :], F64)
        acc += tl.sum(gq[:, :, None] * (s * s)[:, None, :], axis=0)
    offs = o[:, None] * CI * K + i[None, :] * K
    mask = o_mask[:, None] & i_mask[None, :]
    for k in range(K):
        dw = 2.0 * load(w_ptr + k, offs, mask, F64) * acc
        tl.store(dw_ptr + k + offs, dw.to(dw_ptr.dtype.element_ty), mask=mask)


def _dcoefs_blocks(n: int, o: int, i: int) -> tuple[int, int, int]:
    bn, bo = min(MAX_BN, next_pow2(n)), min(MAX_BO, next_pow2(o))
    return bn, bo, max(1, min(next_pow2(i), TILE // (bn * bo)))


def dcoefs_forward(styles, weight, d):
    """d [N, O] = rsqrt(styles^2 @ wsq^T + 1e-8); styles [N, I], weight [O, I, kh, kw] contiguous, one dtype."""
    (n, i), o = styles.shape, weight.shape[0]
    k = weight.shape[2] * weight.shape[3]
    bn, bo, bi = _dcoefs_blocks(n, o, i)
    grid = (triton.cdiv(n, bn), triton.cdiv(o, bo))
    meta = _meta(weight, max(weight.numel(), n * max(i, o)))
    _dcoefs_fwd_kernel[grid](styles, weight, d, n, o, i, k, scalar_arg(EPS, meta["F64"]), BN=bn, BO=bo, BI=bi, **meta)


def dcoefs_backward(gd, styles, weight, d, dstyles, dweight):
    """dstyles [N, I] and dweight [O, I, kh, kw] of d = dcoefs_forward(styles, weight), given gd = dL/dd."""
    (n, i), o = styles.shape, weight.shape[0]
    k = weight.shape[2] * weight.shape[3]
    bn, bo, bi = _dcoefs_blocks(n, o, i)
    meta = dict(BN=bn, BO=bo, BI=bi, **_meta(weight, max(weight.numel(), n * max(i, o))))
    _dcoefs_bwd_styles_kernel[(triton.cdiv(n, bn), triton.cdiv(i, bi))](
        gd, d, styles, weight, dstyles, n, o, i, k, **meta
    )
    _dcoefs_bwd_weight_kernel[(triton.cdiv(o, bo), triton.cdiv(i, bi))](
        gd, d, styles, weight, dweight, n, o, i, k, **meta
    )


# ----------------------------------------------------------------------------------------------------------------
# Per-sample weights (the grouped path)


@triton.jit
def _weights_fwd_kernel(
    w_ptr, s_ptr, d_ptr, out_ptr, total, CO, CI, K,
    HAS_D: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    # out[n, o, i, k] = weight[o, i, k] s[n, i] d[n, o]: writes N O I K elements once; weight (O I K) stays in cache
    idx = block_offsets(BLOCK, INT64)
    mask = idx < total
    IK = CI * K
    OIK = CO * IK
    n = idx // OIK
    r = idx - n * OIK  # flat index into weight [O, I, K]
    o = r // IK
    i = (r - o * IK) // K
    v = load(w_ptr, r, mask, F64) * load(s_ptr, n * CI + i, mask, F64)
    if HAS_D:
        v = v * load(d_ptr, n * CO + o, mask, F64)
    tl.store(out_ptr + idx, v.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _weights_bwd_kernel(
    g_ptr, w_ptr, s_ptr, d_ptr, dw_ptr, ps_ptr, pd_ptr, N, CO, CI, K,
    HAS_D: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr,
    BO: tl.constexpr, BI: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    # One program per [BO, BI, K] block of weight, looping over the batch: reads g [N, BO, BI, K] once, writes
    #   dweight[o, i, k] = sum_n g[n, o, i, k] s[n, i] d[n, o]                    (complete)
    #   ps[pid_o, n, i]  = sum_{o in block} d[n, o] h[n, o, i]                    (dstyles = ps.sum(0))
    #   pd[pid_i, n, o]  = sum_{i in block} s[n, i] h[n, o, i]                    (ddcoefs = pd.sum(0))
    # with h[n, o, i] = sum_k g[n, o, i, k] weight[o, i, k].
    pid_o = tl.program_id(0)
    pid_i = tl.program_id(1)
    o = arange_from(pid_o * BO, BO, INT64)
    i = arange_from(pid_i * BI, BI, INT64)
    k = tl.arange(0, BK)
    o_mask = o < CO
    i_mask = i < CI
    offs = (o[:, None] * CI + i[None, :])[:, :, None] * K + k[None, None, :]  # into [O, I, K]
    mask = (o_mask[:, None] & i_mask[None, :])[:, :, None] & (k < K)[None, None, :]
    w = load(w_ptr, offs, mask, F64)
    acc = tl.zeros([BO, BI, BK], tl.float64 if F64 else tl.float32)
    OIK = CO * CI * K
    ps_ptr += pid_o * N * CI
    pd_ptr += pid_i * N * CO
    for _ in range(N):  # pointers advance one sample per step (int64-safe pointer arithmetic)
        g = load(g_ptr, offs, mask, F64)
        s = load(s_ptr, i, i_mask, F64)
        if HAS_D:
            d = load(d_ptr, o, o_mask, F64)
        else:
            d = tl.where(o_mask, 1.0, 0.0).to(s.dtype)
        acc += g * (d[:, None] * s[None, :])[:, :, None]
        h = tl.sum(g * w, axis=2)
        tl.store(ps_ptr + i, tl.sum(h * d[:, None], axis=0), mask=i_mask)
        if HAS_D:
            tl.store(pd_ptr + o, tl.sum(h * s[None, :], axis=1), mask=o_mask)
        g_ptr += OIK
        s_ptr += CI
        d_ptr += CO
        ps_ptr += CI
        pd_ptr += CO
    tl.store(dw_ptr + offs, acc.to(dw_ptr.dtype.element_ty), mask=mask)


def weights_forward(weight, styles, d, out):
    """out [N, O, I, kh, kw] = weight * styles[n, i] * d[n, o] (d None: 1); inputs contiguous, one dtype."""
    o, i = weight.shape[:2]
    k = weight.shape[2] * weight.shape[3]
    total = out.numel()
    _weights_fwd_kernel[(triton.cdiv(total, BLOCK),)](
        weight, styles, weight if d is None else d, out, total, o, i, k, HAS_D=d is not None, BLOCK=BLOCK,
        **_meta(weight, total),
    )  # fmt: skip


def weights_backward(g, weight, styles, d, dweight):
    """Writes dweight; returns (dstyles [N, I], ddcoefs [N, O] or None) in the compute dtype."""
    o, i = weight.shape[:2]
    n, k = styles.shape[0], weight.shape[2] * weight.shape[3]
    bk = next_pow2(k)
    bo = min(MAX_WEIGHTS_BO, next_pow2(o))
    bi = max(1, min(next_pow2(i), TILE // (bo * bk)))
    grid = (triton.cdiv(o, bo), triton.cdiv(i, bi))
    cd = compute_dtype(weight)
    ps = torch.empty([grid[0], n, i], dtype=cd, device=weight.device)
    pd = torch.empty([grid[1], n, o], dtype=cd, device=weight.device) if d is not None else ps
    _weights_bwd_kernel[grid](
        g, weight, styles, weight if d is None else d, dweight, ps, pd, n, o, i, k,
        HAS_D=d is not None, BO=bo, BI=bi, BK=bk, **_meta(weight, g.numel(), BWD_WARPS),
    )  # fmt: skip
    return ps.sum(0), (pd.sum(0) if d is not None else None)


# ----------------------------------------------------------------------------------------------------------------
# Epilogue


@triton.jit
def _epilogue_fwd_kernel(
    y_ptr, d_ptr, noise_ptr, b_ptr, out_ptr, total, CO, HW, noise_nstride, alpha, gain, clamp,
    A: tl.constexpr, HAS_D: tl.constexpr, HAS_NOISE: tl.constexpr, HAS_B: tl.constexpr, HAS_CLAMP: tl.constexpr,
    CL: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    # reads y once (+ d, noise, bias: small, cached), writes out once: 2 elements of traffic per element
    idx = block_offsets(BLOCK, INT64)
    mask = idx < total
    if CL:  # channels_last: flat = (n HW + hw) O + o
        o = idx % CO
        hw = (idx // CO) % HW
    else:  # NCHW: flat = (n O + o) HW + hw
        hw = idx % HW
        o = (idx // HW) % CO
    n = idx // (CO * HW)
    y = load(y_ptr, idx, mask, F64)
    z = epilogue_z(y, d_ptr, noise_ptr, b_ptr, n * CO + o, n * noise_nstride + hw, o, mask, HAS_D, HAS_NOISE, HAS_B,
                    F64)  # fmt: skip
    v = activation_gain_clamp(z, scalar(alpha, F64), scalar(gain, F64), scalar(clamp, F64), A, HAS_CLAMP)
    tl.store(out_ptr + idx, v.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _epilogue_bwd_kernel(
    g_ptr, y_ptr, d_ptr, noise_ptr, b_ptr, dy_ptr, pdd_ptr, pdb_ptr, dnoise_ptr,
    N, CO, HW, o_stride, hw_stride, noise_nstride, alpha, gain, clamp,
    A: tl.constexpr, REF: tl.constexpr, HAS_D: tl.constexpr, HAS_NOISE: tl.constexpr, HAS_B: tl.constexpr,
    HAS_CLAMP: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_HW: tl.constexpr,
):  # fmt: skip
    # One program per (block of hw, n), looping over the channels in tiles [BLOCK_O, BLOCK_HW]. Reads g and y once,
    # writes dy = gz d once, with gz = g gain act'(z) [|out| < clamp] recomputed from z = y d + noise + b; and
    #   pdd[hb, n, o] = sum_{hw in block} gz y    (ddcoefs = pdd.sum(0))
    #   pdb[hb, n, o] = sum_{hw in block} gz      (dbias = pdb.sum((0, 1)))
    #   dnoise[n, hw] = sum_o gz                  (complete; summed over n by the caller for a shared noise)
    hb = tl.program_id(0)  # the pixel blocks on axis 0: CUDA allows 2^31 - 1 there, 65535 on axis 1
    n = tl.program_id(1)
    hw = arange_from(hb * BLOCK_HW, BLOCK_HW, INT64)
    if INT64:
        n = n.to(tl.int64)
        hb = hb.to(tl.int64)
    hw_mask = hw < HW
    alpha, gain, clamp = scalar(alpha, F64), scalar(gain, F64), scalar(clamp, F64)
    image = n * CO * HW
    g_ptr += image
    y_ptr += image
    dy_ptr += image
    acc_noise = tl.zeros([BLOCK_HW], tl.float64 if F64 else tl.float32)
    for o0 in range(0, CO, BLOCK_O):
        o = o0 + tl.arange(0, BLOCK_O)
        o_mask = o < CO
        mask = o_mask[:, None] & hw_mask[None, :]
        offs = o[:, None] * o_stride + hw[None, :] * hw_stride
        y = load(y_ptr, offs, mask, F64)
        g = load(g_ptr, offs, mask, F64)
        z = epilogue_z(y, d_ptr, noise_ptr, b_ptr, (n * CO + o)[:, None], (n * noise_nstride + hw)[None, :],
                        o[:, None], mask, HAS_D, HAS_NOISE, HAS_B, F64)  # fmt: skip
        a = activation(z, A, alpha)  # unused (and compiled away) unless REF == 2 or HAS_CLAMP
        if REF == 2:  # the factor as a function of act(z) (bias_act's saved-y form), else of z
            k = activation_grad(a, A, 1, alpha)
        else:
            k = activation_grad(z, A, 1, alpha)
        gz = g * (k * gain)
        if HAS_CLAMP:
            gz = tl.where(tl.abs(a * gain) < clamp, gz, 0.0)  # clamped outputs pass no gradient
        gz = tl.where(mask, gz, 0.0)
        if HAS_D:
            dy = gz * load(d_ptr, (n * CO + o)[:, None], mask, F64)
            tl.store(pdd_ptr + (hb * N + n) * CO + o, tl.sum(gz * y, axis=1), mask=o_mask)
        else:
            dy = gz
        tl.store(dy_ptr + offs, dy.to(dy_ptr.dtype.element_ty), mask=mask)
        if HAS_B:
            tl.store(pdb_ptr + (hb * N + n) * CO + o, tl.sum(gz, axis=1), mask=o_mask)
        if HAS_NOISE:
            acc_noise += tl.sum(gz, axis=0)
    if HAS_NOISE:
        tl.store(dnoise_ptr + n * HW + hw, acc_noise, mask=hw_mask)


def _epilogue_common(y, alpha, gain, clamp):
    f64 = is_f64(y)
    scalars = (scalar_arg(alpha, f64), scalar_arg(gain, f64), scalar_arg(clamp, f64))
    n, o = y.shape[:2]
    hw = y.shape[2] * y.shape[3]
    cl = not y.is_contiguous()  # dense: NCHW or channels_last
    return scalars, n, o, hw, cl


def epilogue_forward(y, d, noise, b, out, act, alpha, gain, clamp):
    """out = clamp(act(y d + noise + b) gain); y, out dense in one layout; noise [Nn, 1, H, W] contiguous or None."""
    scalars, n, o, hw, cl = _epilogue_common(y, alpha, gain, clamp)
    total = y.numel()
    _epilogue_fwd_kernel[(triton.cdiv(total, BLOCK),)](
        y, y if d is None else d, y if noise is None else noise, y if b is None else b, out, total, o, hw,
        0 if noise is None or noise.shape[0] == 1 else hw, *scalars,
        A=act, HAS_D=d is not None, HAS_NOISE=noise is not None, HAS_B=b is not None, HAS_CLAMP=clamp >= 0, CL=cl,
        BLOCK=BLOCK, **_meta(y, total),
    )  # fmt: skip


def epilogue_backward(g, y, d, noise, b, dy, act, alpha, gain, clamp):
    """Writes dy; returns (ddcoefs [N, O], dnoise [N, H W], dbias [O]) in the compute dtype, None where absent."""
    scalars, n, o, hw, cl = _epilogue_common(y, alpha, gain, clamp)
    block_hw = min(MAX_BLOCK_HW, next_pow2(hw))
    block_o = max(1, min(next_pow2(o), BWD_TILE // block_hw))
    grid = (triton.cdiv(hw, block_hw), n)
    cd = compute_dtype(y)
    new = dict(dtype=cd, device=y.device)
    pdd = torch.empty([grid[0], n, o], **new) if d is not None else None
    pdb = torch.empty([grid[0], n, o], **new) if b is not None else None
    dnoise = torch.empty([n, hw], **new) if noise is not None else None
    _epilogue_bwd_kernel[grid](
        g, y, y if d is None else d, y if noise is None else noise, y if b is None else b, dy,
        y if pdd is None else pdd, y if pdb is None else pdb, y if dnoise is None else dnoise,
        n, o, hw, 1 if cl else hw, o if cl else 1, 0 if noise is None or noise.shape[0] == 1 else hw, *scalars,
        A=act, REF=REF_BY_INDEX[act], HAS_D=d is not None, HAS_NOISE=noise is not None, HAS_B=b is not None,
        HAS_CLAMP=clamp >= 0, BLOCK_O=block_o, BLOCK_HW=block_hw, **_meta(y, y.numel(), BWD_WARPS),
    )  # fmt: skip
    return (
        None if pdd is None else pdd.sum(0),
        dnoise,
        None if pdb is None else pdb.sum((0, 1)),
    )
