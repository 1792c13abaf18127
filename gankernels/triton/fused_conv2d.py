"""Triton kernel of fused_conv2d: an implicit-GEMM stride-1 convolution with the input scale applied while loading,
zero or reflection padding done by the load's index arithmetic, and StyleGAN2's layer epilogue applied while storing.

    out[n, o, p] = clamp(act(y[n, o, p] d[n, o] + noise[n, p] + b[o]) gain),
    y[n, o, p]   = sum_{i, kh, kw} w[o, i, kh, kw] s[n, i] x[n, i, src(p, kh, kw)]

as a GEMM out[M, O] = A[M, K] B[K, O] with M = N H' W' output pixels, K = I k k and A never built: a program owns a
[BLOCK_M, BLOCK_N] tile of (pixels, output channels) and walks K tap by tap (kh, kw) and, within a tap, over the
input channels in blocks of BLOCK_K. For one tap the source pixel of each output pixel is computed once (padding
decided there: masked for zeros, mirrored for reflect); the A tile is then x at those pixels for BLOCK_K channels
(times s[n, i]), the B tile the weight, pre-transposed to [k, k, I, O] so that its rows are contiguous in o.
Accumulation is fp32 (fp64 for fp64 inputs) through tl.dot; fp16/bf16 tiles enter the dot in their own dtype, fp32 as
TF32 when torch allows TF32 for cuDNN convolutions (torch.backends.cudnn.allow_tf32), else exactly.

Reads x once per tap (k k times in all, from cache after the first), the weight once per pixel tile, s, d, noise and
b once per tile; writes out once, and y (the conv before the epilogue, which the backward needs) only when asked.
x and out may be NCHW or channels_last (any strides: they are kernel arguments).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import gpu_launch
from ._common import INT64_FROM, activation_gain_clamp, epilogue_z, is_f64, next_pow2, scalar, scalar_arg

# Tile sizes are guesses, not yet benchmarked on a GPU (none was available): (BLOCK_M, BLOCK_N, BLOCK_K, num_warps,
# num_stages) per compute dtype. Tests lower BLOCK_* (they cap these) to reach the multi-tile paths. Compiled for
# sm_80/sm_90 (tools/triton_compile_check.py), fp32 (TF32) on 4 warps spilled 192-232 bytes per thread with 3x3
# and 7x7 kernels; on 8 warps it does not spill. The 16-bit configs do not spill either (171 registers at most).
GPU_CONFIGS = {
    torch.float16: (128, 128, 32, 8, 3),
    torch.bfloat16: (128, 128, 32, 8, 3),
    torch.float32: (128, 64, 32, 8, 3),
    torch.float64: (64, 32, 16, 4, 2),
}
BLOCK_M, BLOCK_N, BLOCK_K = 128, 128, 32  # caps on every device (the interpreter: the only config it runs)
GPU_MIN_BLOCK = 16  # tl.dot on NVIDIA wants K >= 16 for 16-bit inputs; M and N tiles below 16 waste tensor cores


@triton.jit
def _fused_conv2d_fwd_kernel(
    x_ptr, w_ptr, s_ptr, d_ptr, noise_ptr, b_ptr, out_ptr, y_ptr,
    M, CI, CO, H, W, HO, WO, PH, PW,
    sx_n, sx_c, sx_h, sx_w, so_n, so_c, so_h, so_w, noise_nstride, alpha, gain, clamp,
    KSIZE: tl.constexpr, REFLECT: tl.constexpr, HAS_S: tl.constexpr, HAS_D: tl.constexpr, HAS_NOISE: tl.constexpr,
    HAS_B: tl.constexpr, HAS_Y: tl.constexpr, A: tl.constexpr, HAS_CLAMP: tl.constexpr, F64: tl.constexpr,
    INT64: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # pixel tiles on axis 0 (CUDA allows 2^31 - 1 programs there, 65535 on axis 1)
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # flat output pixel m = (n H' + oh) W' + ow
    o = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # output channel
    c = tl.arange(0, BLOCK_K)  # input channel within a K block
    if INT64:  # everything that multiplies a stride is int64 from here on
        m = m.to(tl.int64)
        o = o.to(tl.int64)
        c = c.to(tl.int64)
    m_mask = m < M
    o_mask = o < CO
    HWO = HO * WO
    n = m // HWO
    p = m - n * HWO  # pixel within the output plane: p = oh W' + ow
    oh = p // WO
    ow = p - oh * WO
    x_image = n * sx_n  # [BLOCK_M] start of sample n in x
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float64 if F64 else tl.float32)
    for tap in range(KSIZE * KSIZE):  # K = (kh, kw, i): the tap is the outer loop, its source pixels computed once
        kh = tap // KSIZE
        kw = tap - kh * KSIZE
        ih = oh + kh - PH  # source pixel in the unpadded input (padded coordinate oh + kh, minus the pad)
        iw = ow + kw - PW
        if REFLECT:
            # mirror about the edge pixel (ReflectionPad2d: -1 -> 1, H -> H - 2); pad < size, so one reflection
            # lands inside: ih >= -PH > -H and ih <= H' - 1 + k - 1 - PH = H + PH - 1 < 2H - 1
            ih = tl.where(ih < 0, -ih, ih)
            ih = tl.where(ih >= H, 2 * (H - 1) - ih, ih)
            iw = tl.where(iw < 0, -iw, iw)
            iw = tl.where(iw >= W, 2 * (W - 1) - iw, iw)
            row_mask = m_mask
        else:  # zeros: taps outside the input read nothing (masked loads give 0)
            row_mask = m_mask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x_row = x_image + ih * sx_h + iw * sx_w  # [BLOCK_M] offset of x[n, 0, ih, iw]
        w_tap = tap * CI  # row of (kh, kw, i = 0) in the [k k I, O] weight
        for i0 in range(0, CI, BLOCK_K):
            i = i0 + c
            i_mask = i < CI
            a_mask = row_mask[:, None] & i_mask[None, :]
            a = tl.load(x_ptr + x_row[:, None] + i[None, :] * sx_c, mask=a_mask, other=0.0)  # [BLOCK_M, BLOCK_K]
            if HAS_S:  # modulation while loading: x[n, i, ...] s[n, i], rounded to x's dtype as x * s would be
                s = tl.load(s_ptr + n[:, None] * CI + i[None, :], mask=a_mask, other=0.0)
                if F64:
                    a = a.to(tl.float64) * s.to(tl.float64)
                else:
                    a = (a.to(tl.float32) * s.to(tl.float32)).to(x_ptr.dtype.element_ty)
            b_mask = i_mask[:, None] & o_mask[None, :]
            b = tl.load(w_ptr + (w_tap + i)[:, None] * CO + o[None, :], mask=b_mask, other=0.0)  # [BLOCK_K, BLOCK_N]
            acc = tl.dot(a, b, acc, input_precision=PRECISION)  # y[m, o] += sum_i A[m, (tap, i)] B[(tap, i), o]

    mask = m_mask[:, None] & o_mask[None, :]
    out_offs = (n * so_n + oh * so_h + ow * so_w)[:, None] + o[None, :] * so_c
    if HAS_Y:  # the conv output, saved for the backward
        tl.store(y_ptr + out_offs, acc.to(y_ptr.dtype.element_ty), mask=mask)
    # z = y d[n, o] + noise[n, p] + b[o]: modulated_conv2d's epilogue on the fp32 (fp64) accumulator
    z = epilogue_z(acc, d_ptr, noise_ptr, b_ptr, n[:, None] * CO + o[None, :], (n * noise_nstride + p)[:, None],
                    o[None, :], mask, HAS_D, HAS_NOISE, HAS_B, F64)  # fmt: skip
    v = activation_gain_clamp(z, scalar(alpha, F64), scalar(gain, F64), scalar(clamp, F64), A, HAS_CLAMP)
    tl.store(out_ptr + out_offs, v.to(out_ptr.dtype.element_ty), mask=mask)


def _config(x: torch.Tensor, m: int, o: int, i: int) -> tuple[int, int, int, dict]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, launch options): the dtype's GPU config capped by the problem (and BLOCK_*)."""
    bm, bn, bk, warps, stages = GPU_CONFIGS[x.dtype]
    bm, bn, bk = min(bm, BLOCK_M), min(bn, BLOCK_N), min(bk, BLOCK_K)
    floor = GPU_MIN_BLOCK if gpu_launch(x) else 1  # the interpreter takes any tile; keep its numpy work small
    bm = min(bm, max(floor, next_pow2(m)))
    bn = min(bn, max(floor, next_pow2(o)))
    bk = min(bk, max(floor, next_pow2(i)))
    return bm, bn, bk, dict(num_warps=warps, num_stages=stages) if gpu_launch(x) else dict(num_warps=4)


def _precision(x: torch.Tensor) -> str:
    # fp32 on a GPU: TF32 tensor cores exactly when torch lets cuDNN use them for its own fp32 convolutions
    if gpu_launch(x) and x.dtype == torch.float32 and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "ieee"


def fused_conv2d_forward(x, weight, in_scale, out_scale, noise, bias, out, y, padding, reflect, act, alpha, gain,
                         clamp):  # fmt: skip
    """out = clamp(act(conv(pad(x s), weight) d + noise + b) gain); y = the conv alone, when not None.

    x: [N, I, H, W] dense (NCHW or channels_last); weight: [O, I, k, k]; in_scale s [N, I], out_scale d [N, O],
    bias [O] contiguous or None; noise [Nn, 1, H', W'] contiguous (Nn in {1, N}) or None; out, y: [N, O, H', W'],
    one layout; padding (py, px); reflect: mirror instead of zeros; act: the bias_act activation code; clamp < 0:
    none. One dtype throughout."""
    batch, ci, h, w = x.shape
    co, _, ksize, _ = weight.shape
    ho, wo = out.shape[2:]
    m = batch * ho * wo
    wt = weight.permute(2, 3, 1, 0).contiguous()  # [k, k, I, O]: B[(kh, kw, i), o] rows contiguous in o
    f64 = is_f64(x)
    bm, bn, bk, launch = _config(x, m, co, ci)
    largest = max(x.numel(), out.numel(), wt.numel()) + (bm + bk) * max(x.stride() + out.stride())
    grid = (triton.cdiv(m, bm), triton.cdiv(co, bn))
    _fused_conv2d_fwd_kernel[grid](
        x, wt, x if in_scale is None else in_scale, x if out_scale is None else out_scale,
        x if noise is None else noise, x if bias is None else bias, out, out if y is None else y,
        m, ci, co, h, w, ho, wo, padding[0], padding[1], *x.stride(), *out.stride(),
        0 if noise is None or noise.shape[0] == 1 else ho * wo, *(scalar_arg(v, f64) for v in (alpha, gain, clamp)),
        KSIZE=ksize, REFLECT=bool(reflect), HAS_S=in_scale is not None, HAS_D=out_scale is not None,
        HAS_NOISE=noise is not None, HAS_B=bias is not None, HAS_Y=y is not None, A=act, HAS_CLAMP=clamp >= 0,
        F64=f64, INT64=largest >= INT64_FROM, PRECISION=_precision(x), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
        **launch,
    )  # fmt: skip
