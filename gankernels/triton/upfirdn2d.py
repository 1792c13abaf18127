"""Triton kernel of upfirdn2d: upsample by zero insertion, pad, FIR filter and downsample in one pass.

Each program computes a tile of BLOCK_C channels x (BLOCK_H x BLOCK_W) output pixels of one image, reading x
and writing out through their strides, so NCHW and channels_last run without a copy (NCHW: a wide pixel
tile, several channels only for small images; channels_last: many channels per tile, as they are contiguous).
Polyphase: an output pixel visits only the ceil(fh / upy) x ceil(fw / upx) taps that land on input samples,
never the inserted zeros. fp16/bf16/fp32 are computed in fp32, fp64 in fp64.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._common import INT64_FROM, is_f64, next_pow2, scalar, scalar_arg

TILE = 512  # outputs per program
NUM_WARPS = 4


@triton.jit
def _first_tap(o, down, pad0, up):
    # j = o * down - pad0 is where tap 0 of output o lands in the unpadded upsampled signal; the first tap
    # k0 with (j + k0) % up == 0 hits input sample i0 = (j + k0) / up, the next ones i0 + 1, ... every `up` taps.
    j = o * down - pad0
    k0 = ((-j) % up + up) % up
    return k0, (j + k0) // up


@triton.jit
def _upfirdn2d_fwd_kernel(
    x_ptr, f_ptr, out_ptr,
    C, H, W, out_h, out_w, fh, fw,
    sxn, sxc, sxh, sxw, son, soc, soh, sow,
    upx, upy, downx, downy, padx0, pady0, gain,
    tiles_x, tiles_y, c_blocks,
    UPX1: tl.constexpr, UPY1: tl.constexpr, FLIP: tl.constexpr, F64: tl.constexpr, INT64: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    tile_x = pid % tiles_x
    rest = pid // tiles_x
    tile_y = rest % tiles_y
    rest = rest // tiles_y
    cb = rest % c_blocks
    n = rest // c_blocks

    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)[:, None]  # [BLOCK_C, 1]
    p = tl.arange(0, BLOCK_H * BLOCK_W)[None, :]  # [1, BLOCK_H * BLOCK_W]
    oy = tile_y * BLOCK_H + p // BLOCK_W
    ox = tile_x * BLOCK_W + p % BLOCK_W
    if INT64:
        n = n.to(tl.int64)
        c = c.to(tl.int64)
        oy = oy.to(tl.int64)
        ox = ox.to(tl.int64)
    out_mask = (c < C) & (oy < out_h) & (ox < out_w)

    ky0, iy0 = _first_tap(oy, downy, pady0, upy)
    kx0, ix0 = _first_tap(ox, downx, padx0, upx)
    x_cols = x_ptr + n * sxn + c * sxc + ix0 * sxw

    acc = tl.zeros([BLOCK_C, BLOCK_H * BLOCK_W], dtype=tl.float64 if F64 else tl.float32)
    for ty in range(0, tl.cdiv(fh, upy)):
        iy = iy0 + ty
        row_ok = (iy >= 0) & (iy < H)
        if UPY1:  # every tap lands on a sample: tap ty, one filter row for the whole tile
            f_row = f_ptr + (ty if FLIP else fh - 1 - ty) * fw
        else:
            ky = ky0 + ty * upy
            row_ok = row_ok & (ky < fh)
            f_row = f_ptr + (ky if FLIP else fh - 1 - ky) * fw  # flip_filter False: f[fh - 1 - k] weighs tap k
        x_row = x_cols + iy * sxh
        for tx in range(0, tl.cdiv(fw, upx)):
            ok = row_ok & (ix0 >= -tx) & (ix0 < W - tx)  # 0 <= ix0 + tx < W
            if UPX1:
                fx = tx if FLIP else fw - 1 - tx
                if UPY1:
                    w = tl.load(f_row + fx)
                else:
                    w = tl.load(f_row + fx, mask=row_ok, other=0.0)
            else:
                kx = kx0 + tx * upx
                ok = ok & (kx < fw)
                w = tl.load(f_row + (kx if FLIP else fw - 1 - kx), mask=ok, other=0.0)
            v = tl.load(x_row + tx * sxw, mask=out_mask & ok, other=0.0)
            acc += v.to(acc.dtype) * w.to(acc.dtype)  # out = gain * sum_k u[o * down + k] * f[fh - 1 - k]
    if not F64:  # fp64: the exact gain is in the filter
        acc = acc * scalar(gain, F64)
    tl.store(out_ptr + n * son + c * soc + oy * soh + ox * sow, acc.to(out_ptr.dtype.element_ty), mask=out_mask)


def _tile(channels_last: bool, C: int, out_h: int, out_w: int) -> tuple[int, int, int]:
    """(BLOCK_C, BLOCK_H, BLOCK_W): about TILE outputs. channels_last: channels first, they are contiguous; NCHW:
    pixels first, then as many channels as fill the tile (small images)."""
    block_w = min(next_pow2(out_w), 64)
    if channels_last:
        block_c = min(next_pow2(C), 64)
        block_w = min(block_w, max(TILE // block_c, 1))
        block_h = max(min(next_pow2(out_h), TILE // (block_c * block_w)), 1)
    else:
        block_h = max(min(next_pow2(out_h), TILE // block_w), 1)
        block_c = min(next_pow2(C), max(TILE // (block_h * block_w), 1))
    return block_c, block_h, block_w


def upfirdn2d_forward(x, f, out, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain):
    """out = downsample(FIR(pad(upsample(x)))) * gain, NVlabs' upfirdn2d.

    x: [N, C, H, W], NCHW or channels_last. f: [fh, fw] contiguous, float64 for float64 x, else float32 (true
    convolution unless flip, which correlates). out: [N, C, out_h, out_w] preallocated, in x's memory format,
    out_w = (W * upx + padx0 + padx1 - fw) // downx + 1 and out_h likewise. Negative padding crops.
    """
    N, C, H, W = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    fh, fw = f.shape
    if out.numel() == 0:
        return
    f64 = is_f64(x)
    if f64 and gain != 1:
        f = f * gain  # as the reference: the gain in the filter (float64 scalars: see triton._common)
    channels_last = C > 1 and out.stride(1) == 1 and x.stride(1) == 1
    block_c, block_h, block_w = _tile(channels_last, C, out_h, out_w)
    tiles_x, tiles_y, c_blocks = triton.cdiv(out_w, block_w), triton.cdiv(out_h, block_h), triton.cdiv(C, block_c)
    grid = (N * c_blocks * tiles_y * tiles_x,)
    int64 = max(x.numel(), out.numel()) >= INT64_FROM
    _upfirdn2d_fwd_kernel[grid](
        x, f, out,
        C, H, W, out_h, out_w, fh, fw,
        *x.stride(), *out.stride(),
        upx, upy, downx, downy, padx0, pady0, scalar_arg(gain, f64),
        tiles_x, tiles_y, c_blocks,
        UPX1=upx == 1, UPY1=upy == 1, FLIP=bool(flip), F64=f64, INT64=int64,
        BLOCK_C=block_c, BLOCK_H=block_h, BLOCK_W=block_w,
        num_warps=max(1, min(NUM_WARPS, block_c * block_h * block_w // 128)),
    )  # fmt: skip
