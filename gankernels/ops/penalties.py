"""Gradient penalties (WGAN-GP, R1 / R2, StyleGAN2's path length) and NVlabs' lazy regularisation.

A penalty differentiates the network twice: an inner torch.autograd.grad(..., create_graph=True) gives the gradient
with respect to the images (or ws), and the training step back-propagates the penalty of that gradient to the
parameters. Both passes run on gankernels' ops, whose backward passes are differentiable custom ops on every
backend. The inner gradient runs under no_weight_gradients() (as NVlabs' StyleGAN2Loss): the convolutions skip their
weight gradient there, which that gradient does not need.

WGAN-GP is split into two pieces, each with fused Triton kernels on the "triton" backend (see `resolve_backend`):

- the per-sample interpolation `wgan_gp_interpolate`: custom op `gankernels::wgan_gp_interpolate` (one kernel: one
  read of real and fake, one write), its backward in differentiable torch ops; elsewhere one torch.lerp.
- the per-sample norm and penalty `gradient_penalty`: custom op `gankernels::gradient_norm_penalty` (a two-stage
  reduction giving the penalty and the norm, which its backward reuses) and its backward op
  `gankernels::gradient_norm_penalty_backward` (one elementwise kernel: read g, write dg), whose own backward is
  autograd through the reference formula (any order). Elsewhere the custom op `gankernels::gradient_penalty` computes
  it in torch ops, its backward too (any order); the "ref" backend runs the plain formula.

The ops are declared through _define.define_op (the backward op through define_gradient_op); each is separable
along the batch, so vmap folds into it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from .. import backend as _backend
from ..reference import penalties as ref
from ._common import check_bool, check_float_tensor, check_on, check_real, check_same, dense, kernels
from ._define import define_gradient_op, define_op
from .conv2d import no_weight_gradients

OP = "penalties"  # the backend op name: kernels in gankernels.triton.penalties


def resolve_backend(device_type: str) -> str:
    """The backend that runs WGAN-GP's interpolation and gradient penalty on `device_type` tensors: "triton" (the
    fused kernels), "ref" (the plain formulas) or "torch" (torch ops inside a custom op, as before the kernels).

    A forced "triton" or "ref" (gankernels.set_backend / use_backend / GANKERNELS_BACKEND) is honoured (RuntimeError
    when triton cannot run here); a forced "cpu" or "cuda" (no kernels of these ops there) takes the torch ops.
    Automatic: triton on CUDA tensors when it is available, else the torch ops. No GPU measurement of these ops yet;
    the rule follows passes over memory. For fp32 NCHW gradients the torch penalty reads g once forward and twice
    backward (the norm again, then g * scale) plus a write and ~8 launches on [N]; float16 / bfloat16 (the .to()) and
    channels_last (the reshape) add a copy of g to each. The fused ops read g once forward, once backward and write
    dg: no copies in any layout or dtype. The interpolation ties with torch.lerp (3 streams either way); it follows
    the same rule so that a WGAN-GP step runs on one backend.
    """
    return _backend.resolve_triton_op(OP, device_type, otherwise="torch")


def _samples_dense(t: torch.Tensor) -> bool:
    """Whether each sample of t [N, ...] is one dense block of numel / N consecutive elements in memory (NCHW,
    channels_last, any order of the non-batch dimensions): what the kernels index without a copy."""
    dims = sorted((t.stride(d), t.shape[d]) for d in range(1, t.dim()) if t.shape[d] != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return t.shape[0] == 1 or t.stride(0) == expected


def _by_sample(t: torch.Tensor) -> torch.Tensor:
    """t itself when its samples are dense blocks, else a dense copy in its memory format."""
    return t if _samples_dense(t) else dense(t)


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a and b (one shape) have equal strides along every dimension of size > 1."""
    return all(a.stride(d) == b.stride(d) for d in range(a.dim()) if a.shape[d] > 1)


# ----------------------------------------------------------------------------------------------------------------
# Per-sample norm and penalty: [N, ...] -> [N]


def _norm_empty(grads: torch.Tensor) -> torch.Tensor:
    """[N] in the dtype of the norm and the penalty: float32 for float16 / bfloat16 grads, else grads'."""
    return grads.new_empty([grads.shape[0]], dtype=ref.compute_dtype(grads.dtype))


def _gradient_penalty_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.params = inputs[1:]  # center, one_sided


def _gradient_penalty_backward(ctx, dp):
    (grads,) = ctx.saved_tensors
    return ref.gradient_penalty_backward(dp, grads, *ctx.params), None, None


_gradient_penalty_op = define_op(
    "gradient_penalty", "(Tensor grads, float center, bool one_sided) -> Tensor", ref.gradient_penalty,
    fake=lambda grads, center, one_sided: _norm_empty(grads),
    setup_context=_gradient_penalty_setup, backward=_gradient_penalty_backward, vmap=((0, None, None), (0,)),
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# The fused ops (triton backend): (penalty, norm) from a two-stage reduction, and the gradient from the saved norm.


def _gradient_norm_penalty_impl(grads, center, one_sided, backend):
    if backend == "ref":
        return ref.gradient_norm_penalty(grads, center, one_sided)
    grads = _by_sample(grads)
    p, norm = _norm_empty(grads), _norm_empty(grads)
    if grads.numel():
        kernels(backend, OP).gradient_penalty_forward(grads, p, norm, center, one_sided)
    else:  # no elements: norm 0
        norm.zero_()
        p.copy_(ref.penalty_of_norm(norm, center, one_sided))
    return p, norm


def _gradient_norm_penalty_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], output[1])  # grads, norm
    ctx.params = inputs[1:]  # center, one_sided, backend
    ctx.set_materialize_grads(False)  # the norm's gradient is usually None: no work for it


def _gradient_norm_penalty_backward(ctx, dp, dnorm):
    grads, norm = ctx.saved_tensors
    dg = None
    if ctx.needs_input_grad[0] and (dp is not None or dnorm is not None):
        dg = _gradient_norm_penalty_backward_op(dp, dnorm, grads, norm, *ctx.params, ctx=ctx)
    return dg, None, None, None


_gradient_norm_penalty_op = define_op(
    "gradient_norm_penalty", "(Tensor grads, float center, bool one_sided, str backend) -> (Tensor, Tensor)",
    _gradient_norm_penalty_impl,
    fake=lambda grads, center, one_sided, backend: (_norm_empty(grads), _norm_empty(grads)),
    setup_context=_gradient_norm_penalty_setup, backward=_gradient_norm_penalty_backward,
    vmap=((0, None, None, None), (0, 0)),
)  # fmt: skip


def _gradient_norm_penalty_backward_impl(dp, dnorm, grads, norm, center, one_sided, backend):
    grads = _by_sample(grads)
    dg = torch.empty_like(grads)
    if backend == "ref":
        return dg.copy_(ref.gradient_norm_penalty_grad(dp, dnorm, grads, norm, center, one_sided))
    if grads.numel():
        cd = ref.compute_dtype(grads.dtype)
        dp, dnorm = (None if t is None else t.to(cd).contiguous() for t in (dp, dnorm))
        kernels(backend, OP).gradient_penalty_backward(dp, dnorm, grads, norm.contiguous(), dg, center, one_sided)
    return dg


# Its own backward: autograd through ref.gradient_norm_penalty_grad with respect to dp, dnorm, grads and norm. The
# norm is an input here: its own gradient reaches grads through the forward op's second output.
_gradient_norm_penalty_backward_op = define_gradient_op(
    "gradient_norm_penalty_backward",
    "(Tensor? dp, Tensor? dnorm, Tensor grads, Tensor norm, float center, bool one_sided, str backend) -> Tensor",
    _gradient_norm_penalty_backward_impl,
    fake=lambda dp, dnorm, grads, norm, center, one_sided, backend: torch.empty_like(_by_sample(grads)),
    formula=ref.gradient_norm_penalty_grad, saved=4, vmap=((0, 0, 0, 0, None, None, None), (0,)),
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Interpolation (triton backend): x_hat = lerp(fake, real, eps[n]) in one kernel; the backward in torch ops.


def _interpolate_impl(real, fake, eps, backend):
    real = _by_sample(real)
    out = torch.empty_like(real)
    if backend == "ref":
        return out.copy_(ref.interpolate(real, fake, eps.reshape(ref.eps_shape(real))))
    if out.numel():
        if not _same_layout(fake, real):
            fake = torch.empty_like(real).copy_(fake)
        kernels(backend, OP).interpolate_forward(real, fake, eps.to(real.dtype).contiguous(), out)
    return out


def _interpolate_setup(ctx, inputs, output):
    real, fake, eps, backend = inputs
    needs_eps = ctx.needs_input_grad[2]
    ctx.save_for_backward(real if needs_eps else None, fake if needs_eps else None, eps)
    ctx.set_materialize_grads(False)


def _interpolate_backward(ctx, dx):
    real, fake, eps = ctx.saved_tensors
    if dx is None:
        return None, None, None, None
    w = eps.reshape(ref.eps_shape(dx)).to(dx.dtype)
    needs = ctx.needs_input_grad
    dreal = dx * w if needs[0] else None  # x = w real + (1 - w) fake
    dfake = dx * (1 - w) if needs[1] else None
    deps = (dx * (real - fake)).reshape(dx.shape[0], -1).sum(1).to(eps.dtype) if needs[2] else None
    return dreal, dfake, deps, None


_interpolate_op = define_op(
    "wgan_gp_interpolate", "(Tensor real, Tensor fake, Tensor eps, str backend) -> Tensor", _interpolate_impl,
    fake=lambda real, fake, eps, backend: torch.empty_like(_by_sample(real)),
    setup_context=_interpolate_setup, backward=_interpolate_backward, vmap=((0, 0, 0, None), (0,)),
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Public API of the two pieces


def gradient_penalty(grads, center=1.0, one_sided=False):
    """Per-sample (||g_n|| - center)^2, or max(0, ||g_n|| - center)^2 when one_sided (default False).

    grads: [N, ...] (N >= 1), the L2 norm taken over every dimension but the first; center default 1.0. Returns [N]
    (float32 for float16 / bfloat16 grads). Differentiable to any order. The norm has no derivative at g_n = 0: the
    gradient there is defined as 0 (the subgradient torch's norm takes), so a zero gradient sample contributes its
    penalty center^2 but no gradient. On the triton backend, grads in any layout whose samples are dense blocks
    (NCHW, channels_last, ...) are read in place and the gradient keeps that layout.
    """
    check_float_tensor(grads, "grads")
    _check_samples(grads, "grads")
    center = check_real(center, "center")
    one_sided = check_bool(one_sided, "one_sided")
    name = resolve_backend(grads.device.type)
    if name == "ref":
        return ref.gradient_penalty(grads, center, one_sided)
    if name == "torch":
        return _gradient_penalty_op(grads, center, one_sided)
    return _gradient_norm_penalty_op(_by_sample(grads), center, one_sided, name)[0]


def wgan_gp_interpolate(real, fake, eps):
    """x_hat = eps * real + (1 - eps) * fake, one eps per sample. real, fake: [N, ...]; eps: [N] or [N, 1, ..., 1].
    Returns [N, ...] in real's dtype (and real's memory layout on the triton backend). One fused kernel on the triton
    backend, one torch.lerp elsewhere; differentiable (any order) with respect to real, fake and eps."""
    eps = _check_real_fake_eps(real, fake, eps)
    return _interpolate(real, fake, eps, resolve_backend(real.device.type))


def _interpolate(real, fake, eps, name):
    """wgan_gp_interpolate on backend `name`, eps: [N, 1, ..., 1] in real's dtype."""
    if name != "triton":
        return ref.interpolate(real, fake, eps)
    return _interpolate_op(real, fake, eps.reshape(real.shape[0]), name)


# ----------------------------------------------------------------------------------------------------------------
# Penalties


def wgan_gp_penalty(critic, real, fake, weight=10.0, center=1.0, eps=None, one_sided=False, *, no_weight_grad=True):
    """WGAN-GP's gradient penalty (Gulrajani et al. 2017): weight * mean_n (||d critic(x_hat) / d x_hat_n|| - center)^2.

    critic: a callable (e.g. an nn.Module) mapping [N, ...] to one value per sample, [N] or [N, 1].
    real, fake: [N, ...] of one shape, dtype and device; both are detached, as in the paper.
    x_hat = eps * real + (1 - eps) * fake with eps: [N] or [N, 1, ..., 1], or None (default) to draw
    torch.rand([N, 1, ..., 1]) in real's dtype. The gradient of critic(x_hat).sum() with respect to x_hat is taken
    with create_graph=True; its L2 norm per sample runs over every dimension but the first. weight default 10.0,
    center default 1.0 (0.0 gives the zero-centred penalty); one_sided=True penalises only norms above center:
    max(0, norm - center)^2. Returns a 0-d tensor (float32 for float16 / bfloat16 inputs); backward() on it gives the
    critic's parameter gradients. no_weight_grad (default True) runs the inner gradient under no_weight_gradients();
    pass False when the weights of the critic's gankernels convolutions depend on its input.
    """
    if not callable(critic):
        raise TypeError(f"critic must be callable (e.g. an nn.Module), got {type(critic).__name__}")
    eps = _check_real_fake_eps(real, fake, eps)
    weight = check_real(weight, "weight")
    center = check_real(center, "center")
    if center < 0:
        raise ValueError(f"center must be >= 0, got {center}")
    one_sided = check_bool(one_sided, "one_sided")
    if eps is None:
        eps = torch.rand(ref.eps_shape(real), dtype=real.dtype, device=real.device)
    eps = eps.detach()
    name = resolve_backend(real.device.type)
    with torch.enable_grad():
        x_hat = _interpolate(real.detach(), fake.detach(), eps, name).requires_grad_(True)
        out = critic(x_hat)
        _check_per_sample(out, real.shape[0])
        grads = _input_gradient(out, x_hat, no_weight_grad, "critic's output", "its input")
        return weight * gradient_penalty(grads, center, one_sided).mean()


def r1_penalty(logits, images, *, no_weight_grad=True):
    """Per-sample squared gradient norm ||d logits.sum() / d images_n||^2: R1 (Mescheder et al. 2018) on reals, R2 on
    fakes. NVlabs' StyleGAN2 loss adds r1_penalty(D(x, c), x).mean() * (r1_gamma / 2) to D's loss.

    images: [N, ...], requiring grad (x.detach().requires_grad_(True) before D runs); logits: D(images), [N] or
    [N, ...] with logits.shape[0] == N. The gradient is taken with create_graph=True under no_weight_gradients()
    (no_weight_grad=True, default; pass False when the weights of D's gankernels convolutions depend on images).
    Returns [N] in the gradient's dtype.
    """
    check_float_tensor(logits, "logits")
    check_float_tensor(images, "images")
    check_same(logits, images, "logits", "images", dtype=False)
    _check_samples(images, "images")
    if not images.requires_grad:
        raise ValueError("images must require grad: call images.detach().requires_grad_(True) before computing logits")
    if logits.dim() == 0 or logits.shape[0] != images.shape[0]:
        raise ValueError(f"logits must have N={images.shape[0]} rows (one per image), got shape {list(logits.shape)}")
    with torch.enable_grad():
        grads = _input_gradient(logits, images, no_weight_grad, "logits", "images")
        return grads.square().reshape(grads.shape[0], -1).sum(1)


def path_length_penalty(fake_images, ws, pl_mean, decay=0.01, noise=None, *, no_weight_grad=True):
    """NVlabs' path-length regulariser (StyleGAN2): per-sample (|J_w^T y| - a)^2 with a the running mean of |J_w^T y|.

    fake_images: [N, C, H, W] = G.synthesis(ws); ws: [N, num_ws, w_dim], requiring grad. pl_mean: the running mean
    (a 0-d tensor, NVlabs' buffer `pl_mean` starting at 0, or a number). decay: the EMA rate, default 0.01.
    noise: N(0, 1) of fake_images' shape, or None (default) to draw randn_like(fake_images); it is scaled by
    1 / sqrt(H W). Computes pl_grads = d (fake_images * noise / sqrt(H W)).sum() / d ws (create_graph=True, under
    no_weight_gradients() when no_weight_grad, default True: as NVlabs, valid when the synthesis convolves with its
    shared weights, fused_modconv=False, which NVlabs uses in training; pass False with fused_modconv=True, where
    the per-sample weights depend on ws), pl_lengths = sqrt(mean_i sum_k pl_grads[n, i, k]^2),
    pl_mean_new = pl_mean.lerp(pl_lengths.mean(), decay) (still differentiable) and penalty = (pl_lengths -
    pl_mean_new)^2. Returns (penalty [N] in ws' dtype, pl_mean_new detached, in pl_mean's shape and dtype);
    store the latter (pl_mean.copy_(new)) and add penalty.mean() * pl_weight to G's loss.
    """
    check_float_tensor(fake_images, "fake_images")
    check_float_tensor(ws, "ws")
    check_same(ws, fake_images, "ws", "fake_images", dtype=False)
    if fake_images.dim() != 4 or fake_images.shape[0] == 0:
        raise ValueError(f"fake_images must be [N, C, H, W] with N >= 1, got shape {list(fake_images.shape)}")
    if ws.dim() != 3 or ws.shape[0] != fake_images.shape[0]:
        raise ValueError(f"ws must be [N, num_ws, w_dim] with N={fake_images.shape[0]}, got shape {list(ws.shape)}")
    if not ws.requires_grad:
        raise ValueError("ws must require grad (the ws that G.synthesis turned into fake_images)")
    if isinstance(pl_mean, torch.Tensor):
        check_on(pl_mean, "pl_mean", ws, "ws")
        if pl_mean.numel() != 1:
            raise ValueError(f"pl_mean must hold one value (a 0-d tensor), got shape {list(pl_mean.shape)}")
        mean = pl_mean.detach()
    else:
        mean = torch.tensor(check_real(pl_mean, "pl_mean"), device=ws.device)
    decay = check_real(decay, "decay")
    if not 0 <= decay <= 1:
        raise ValueError(f"decay must be in [0, 1], got {decay}")
    if noise is None:
        noise = torch.randn_like(fake_images)
    else:
        check_on(noise, "noise", fake_images, "fake_images")
        if noise.shape != fake_images.shape:
            raise ValueError(f"noise must have fake_images' shape {list(fake_images.shape)}, got {list(noise.shape)}")
    with torch.enable_grad():
        pl_noise = noise.to(fake_images.dtype) / (fake_images.shape[2] * fake_images.shape[3]) ** 0.5
        pl_grads = _input_gradient((fake_images * pl_noise).sum(), ws, no_weight_grad, "fake_images", "ws")
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
        pl_mean_new = mean.to(pl_lengths.dtype).lerp(pl_lengths.mean(), decay)
        penalty = (pl_lengths - pl_mean_new).square()
    return penalty, pl_mean_new.detach().to(mean.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Lazy regularisation


@dataclass(frozen=True)
class LazyRegularization:
    """NVlabs' lazy regularisation (StyleGAN2, appendix B): a penalty applied every `interval` minibatches only, in a
    separate step, with its loss multiplied by `interval` (so that its average strength is unchanged), and Adam's
    hyperparameters adjusted for the extra steps by mb_ratio = interval / (interval + 1): lr * mb_ratio and
    beta ** mb_ratio. interval None: regularise every minibatch, in the main step (mb_ratio 1, gain 1).

    NVlabs' StyleGAN2 uses interval 16 for D (R1) and 4 for G (path length):

        reg = LazyRegularization(16)
        opt_d = torch.optim.Adam(D.parameters(), **reg.adam_kwargs(lr=0.0025, betas=(0, 0.99), eps=1e-8))
        if reg.due(step):
            (r1_penalty(D(x, c), x).mean() * (r1_gamma / 2) * reg.gain()).backward(); opt_d.step()
    """

    interval: int | None = None

    def __post_init__(self):
        v = self.interval
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
            raise ValueError(f"interval must be a positive int or None, got {v!r}")

    @property
    def mb_ratio(self) -> float:
        """interval / (interval + 1), or 1.0 when interval is None."""
        return 1.0 if self.interval is None else self.interval / (self.interval + 1)

    def adam_kwargs(self, lr, betas=(0.0, 0.99), **kwargs) -> dict:
        """Adam's keyword arguments adjusted: {"lr": lr * mb_ratio, "betas": (b1 ** mb_ratio, b2 ** mb_ratio),
        **kwargs}. betas default (0, 0.99), NVlabs' StyleGAN2 setting."""
        lr = check_real(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
        betas = tuple(check_real(b, "betas") for b in betas)
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        r = self.mb_ratio
        return {"lr": lr * r, "betas": (betas[0] ** r, betas[1] ** r), **kwargs}

    def gain(self, weight=1.0) -> float:
        """The factor of the penalty's loss in a regularisation step: weight * interval (weight when None)."""
        return check_real(weight, "weight") * (1 if self.interval is None else self.interval)

    def due(self, step) -> bool:
        """Whether minibatch `step` (counted from 0) runs the regularisation step: step % interval == 0."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        return self.interval is None or step % self.interval == 0


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def _check_samples(t: torch.Tensor, name: str) -> None:
    """t: [N, ...] with N >= 1."""
    if t.dim() == 0 or t.shape[0] == 0:
        raise ValueError(f"{name} must be [N, ...] with N >= 1, got shape {list(t.shape)}")


def _check_real_fake_eps(real, fake, eps):
    """Validate real, fake and eps; return eps as [N, 1, ..., 1] in real's dtype (or None)."""
    check_float_tensor(real, "real")
    check_float_tensor(fake, "fake")
    if real.shape != fake.shape:
        raise ValueError(f"real has shape {list(real.shape)} but fake has {list(fake.shape)}; they must match")
    check_same(fake, real, "fake", "real")
    _check_samples(real, "real")
    if eps is None:
        return None
    check_float_tensor(eps, "eps")
    check_same(eps, real, "eps", "real", dtype=False)
    shape = ref.eps_shape(real)
    if list(eps.shape) not in ([real.shape[0]], shape):
        raise ValueError(f"eps must have shape [{real.shape[0]}] or {shape} (one per sample), got {list(eps.shape)}")
    return eps.reshape(shape).to(real.dtype)


def _check_per_sample(out, n: int) -> None:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"critic must return a torch.Tensor, got {type(out).__name__}")
    if list(out.shape) not in ([n], [n, 1]):
        raise ValueError(f"critic must return one value per sample, shape [{n}] or [{n}, 1], got {list(out.shape)}")
    check_float_tensor(out, "critic's output")


def _input_gradient(out, x, no_weight_grad: bool, out_name: str, x_name: str) -> torch.Tensor:
    """d out.sum() / dx with create_graph=True (under no_weight_gradients() when no_weight_grad)."""
    if not out.requires_grad:
        raise ValueError(f"{out_name} does not depend on {x_name} (it does not require grad)")
    with no_weight_gradients(bool(no_weight_grad)):
        (grads,) = torch.autograd.grad(out.sum(), x, create_graph=True, allow_unused=True)
    if grads is None:
        hint = (
            " (or only through the weights of gankernels convolutions, whose gradient no_weight_grad=True skips, as"
            " in a modulated conv with fused_modconv=True: pass no_weight_grad=False)"
            if no_weight_grad
            else ""
        )
        raise ValueError(f"{out_name} does not depend on {x_name}{hint}")
    return grads
