"""What every Triton kernel module of gankernels.triton shares: loads and offsets, int64 indexing, exact float64
scalars, accurate expm1 / log1p, launch sizes.

Float64 end to end: a kernel launched on float64 tensors computes in float64, and so must every scalar it is given.
Triton passes a Python float argument as fp32 (rounding it), and a Python float constant (a global constexpr, a
literal such as 1e-8) is an fp32 constant before it meets a float64 tensor. So float64 launches pass each float scalar
as the int64 bit pattern of its float64 value (`scalar_arg`), which the kernel bitcasts back (`scalar`); constants
that are not exact in fp32 go through `const`. tools/triton_compile_check.py compiles the float64 launches and
refuses a kernel whose IR holds any fp32 value.
"""

from __future__ import annotations

import struct

import torch
import triton
import triton.language as tl

from ..reference import bias_act as _ref_bias_act

INT64_FROM = 2**31  # tensors (or offsets) with this many elements or more are indexed in int64
_F64 = struct.Struct("<d")
_I64 = struct.Struct("<q")
# globals read inside @triton.jit must be constexpr; `const` makes them exact in fp64
SELU_SCALE = tl.constexpr(_ref_bias_act.SELU_SCALE)
SELU_ALPHA = tl.constexpr(_ref_bias_act.SELU_ALPHA)


def next_pow2(v: int) -> int:
    """The smallest power of two >= max(v, 1)."""
    return triton.next_power_of_2(max(int(v), 1))


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 for float64 tensors, else float32 (fp16 / bf16 / fp32 are computed in fp32)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def is_f64(t: torch.Tensor) -> bool:
    return t.dtype == torch.float64


def scalar_arg(v: float, f64: bool) -> float | int:
    """The kernel argument that carries the Python float v: float64 launches get its float64 bit pattern as an int
    (the kernel's `scalar` bitcasts it back: exact, and no tensor per call), the others v itself (fp32 in the kernel).
    """
    return _I64.unpack(_F64.pack(float(v)))[0] if f64 else float(v)


def launch_meta(t: torch.Tensor, reach: int, num_warps: int, int64_from: int = INT64_FROM) -> dict:
    """F64 (compute in float64), INT64 (index in int64: `reach`, the largest offset a program may form, is int64_from
    or more; modules pass their own INT64_FROM, which tests lower) and num_warps: what every kernel takes."""
    return dict(F64=is_f64(t), INT64=reach >= int64_from, num_warps=num_warps)


@triton.jit
def scalar(v, F64: tl.constexpr):
    """A float scalar argument as the kernel computes with it: float64 from the bits of `scalar_arg`, else fp32."""
    if F64:
        v = v.to(tl.int64).to(tl.float64, bitcast=True)  # Triton types small ints as i32: widen before the bitcast
    return v


@triton.jit
def const(v: tl.constexpr, like):
    """The constant v in like's dtype, exactly (a bare float constant is rounded to fp32 first), like's shape."""
    return tl.full(like.shape, v, like.dtype)


@triton.jit
def block_offsets(BLOCK: tl.constexpr, INT64: tl.constexpr):
    """The flat offsets [BLOCK] of this program's block (axis 0), int64 when INT64."""
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    return pid * BLOCK + tl.arange(0, BLOCK)


@triton.jit
def arange_from(start, BLOCK: tl.constexpr, INT64: tl.constexpr):
    """start + [0, BLOCK), int64 when INT64."""
    r = tl.arange(0, BLOCK)
    if INT64:
        r = r.to(tl.int64)
    return start + r


@triton.jit
def load(ptr, offs, mask, F64: tl.constexpr):
    """Masked load (0 off the mask), upcast to the compute dtype: fp64 when F64, else fp32."""
    v = tl.load(ptr + offs, mask=mask, other=0.0)
    return v.to(tl.float64) if F64 else v.to(tl.float32)


@triton.jit
def expm1(x):
    """exp(x) - 1, accurate to a few ulps also where it cancels (|x| small): Kahan's (u - 1) x / log(u), u = exp(x),
    exact at u = 1 (x) and u = 0 (-1). For x <= 0 (u in [0, 1]; every caller): tl.math has no expm1 on every Triton
    version, and libdevice's does not run under the interpreter."""
    u = tl.exp(x)
    um1 = u - 1.0
    inner = (um1 != 0.0) & (um1 != -1.0)
    r = um1 * x / tl.log(tl.where(inner, u, 2.0))  # log(2) where the branch is not taken: no 0 / 0 or log(0)
    return tl.where(inner, r, tl.where(um1 == 0.0, x, um1))


@triton.jit
def log1p(x):
    """log(1 + x), accurate also for |x| small: Kahan's log(u) x / (u - 1), u = 1 + x, exact (x) at u = 1. For x >= 0
    (every caller)."""
    u = 1.0 + x
    um1 = u - 1.0
    inner = um1 != 0.0
    return tl.where(inner, tl.log(u) * x / tl.where(inner, um1, 1.0), x)


# ----------------------------------------------------------------------------------------------------------------
# Activations (codes of gankernels.reference.bias_act.ACTIVATIONS): bias_act, modulated_conv2d's and fused_conv2d's
# epilogues

# what the gradient kernel reads its factor from, by activation code: 0 nothing, 1 saved x, 2 saved y
REF_BY_INDEX = {spec.index: {"": 0, "x": 1, "y": 2}[spec.ref] for spec in _ref_bias_act.ACTIVATIONS.values()}


@triton.jit
def activation(z, A: tl.constexpr, alpha):
    # forward activations; z = x + b. expm1 / log1p where exp(z) - 1 or log(1 + e) would cancel.
    if A == 1:  # linear
        r = z
    elif A == 2:  # relu
        r = tl.where(z < 0, 0.0, z)  # NaN stays NaN, as torch.relu
    elif A == 3:  # lrelu
        r = tl.where(z > 0, z, z * alpha)
    elif A == 4:  # tanh = -sign(z) t / (t + 2), t = expm1(-2 |z|) in (-1, 0]: no cancellation near 0, no overflow
        t = expm1(-2.0 * tl.abs(z))
        r = -t / (t + 2.0)
        r = tl.where(z < 0, -r, r)
    elif A == 5:  # sigmoid
        r = 1.0 / (1.0 + tl.exp(-z))
    elif A == 6:  # elu; tl.where(z > 0, 0, z): min(z, 0) that keeps a NaN z (tl.minimum need not)
        r = tl.where(z >= 0, z, expm1(tl.where(z > 0, 0.0, z)))
    elif A == 7:  # selu
        r = const(SELU_SCALE, z) * tl.where(z > 0, z, const(SELU_ALPHA, z) * expm1(tl.where(z > 0, 0.0, z)))
    elif A == 8:  # softplus = max(z, 0) + log1p(exp(-|z|))
        r = tl.maximum(z, 0.0) + log1p(tl.exp(-tl.abs(z)))
    else:  # swish = z * sigmoid(z)
        r = z / (1.0 + tl.exp(-z))
    return r


@triton.jit
def activation_grad(ref, A: tl.constexpr, ORDER: tl.constexpr, alpha):
    # ORDER 1: act'(z); ORDER 2: d act'(z) / d(saved). `ref` is z for swish, else yy = y / gain.
    if A == 1:
        r = tl.full(ref.shape, 1.0, ref.dtype)
    elif A == 2:
        r = tl.where(ref > 0, 1.0, 0.0)
    elif A == 3:
        r = tl.where(ref > 0, 1.0, alpha)
    elif A == 4:
        r = 1.0 - ref * ref if ORDER == 1 else -2.0 * ref
    elif A == 5:
        r = ref * (1.0 - ref) if ORDER == 1 else 1.0 - 2.0 * ref
    elif A == 6:
        if ORDER == 1:
            r = tl.where(ref >= 0, 1.0, ref + 1.0)
        else:
            r = tl.where(ref >= 0, 0.0, 1.0)
    elif A == 7:
        if ORDER == 1:
            r = tl.where(ref > 0, const(SELU_SCALE, ref), ref + const(SELU_SCALE * SELU_ALPHA, ref))
        else:
            r = tl.where(ref > 0, 0.0, 1.0)
    elif A == 8:  # softplus' = 1 - exp(-y), as -expm1(-y): accurate where y is small (z << 0)
        r = -expm1(-ref) if ORDER == 1 else tl.exp(-ref)
    else:  # swish: s = sigmoid(z), sm = 1 - s = sigmoid(-z) (not 1 - s: it cancels for z >> 0);
        # act' = s + z s sm; act'' = s sm (2 + z (sm - s))
        s = 1.0 / (1.0 + tl.exp(-ref))
        sm = 1.0 / (1.0 + tl.exp(ref))
        r = s + ref * s * sm if ORDER == 1 else s * sm * (2.0 + ref * (sm - s))
    return r


@triton.jit
def activation_gain_clamp(z, alpha, gain, clamp, A: tl.constexpr, HAS_CLAMP: tl.constexpr):
    """clamp(act(z) gain, -clamp, clamp): the forward epilogue of bias_act, modulated_conv2d and fused_conv2d."""
    v = activation(z, A, alpha) * gain
    if HAS_CLAMP:
        v = tl.where(v > clamp, clamp, tl.where(v < -clamp, -clamp, v))  # NaN stays NaN, as torch.clamp
    return v


@triton.jit
def epilogue_z(y, d_ptr, noise_ptr, b_ptr, d_offs, noise_offs, b_offs, mask,
                HAS_D: tl.constexpr, HAS_NOISE: tl.constexpr, HAS_B: tl.constexpr, F64: tl.constexpr):  # fmt: skip
    """z = y d + noise + b (each when present), in the reference's order of operations: the epilogue of
    modulated_conv2d and fused_conv2d before the activation."""
    z = y
    if HAS_D:
        z = z * load(d_ptr, d_offs, mask, F64)
    if HAS_NOISE:
        z = z + load(noise_ptr, noise_offs, mask, F64)
    if HAS_B:
        z = z + load(b_ptr, b_offs, mask, F64)
    return z
