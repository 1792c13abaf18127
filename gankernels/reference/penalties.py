"""Pure-PyTorch gradient penalties: the oracle of gankernels.ops.penalties and the eager baseline.

The plain formulas, written as the papers' and NVlabs' training code write them: torch.autograd.grad with
create_graph=True, no no_weight_gradients(), no argument checks (gankernels.ops validates). `interpolate` and
`gradient_penalty` (with `gradient_penalty_backward`) are the two pieces of WGAN-GP that gankernels.ops runs as
separate ops; `gradient_norm_penalty` and `gradient_norm_penalty_grad` are the formulas of the fused kernels'
ops, which also return the norm (what their backward reuses).
"""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16 / bfloat16 (reductions run in float32), else `dtype`."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def eps_shape(x: torch.Tensor) -> list[int]:
    """[N, 1, ..., 1]: one interpolation weight per sample of x, broadcast over the other dimensions."""
    return [x.shape[0]] + [1] * (x.dim() - 1)


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_hat = eps * real + (1 - eps) * fake, computed as fake + eps * (real - fake). eps: [N, 1, ..., 1]."""
    return torch.lerp(fake, real, eps.to(real.dtype))


def gradient_penalty(grads: torch.Tensor, center: float = 1.0, one_sided: bool = False) -> torch.Tensor:
    """Per-sample (||g_n|| - center)^2, or max(0, ||g_n|| - center)^2 when one_sided; ||.|| the L2 norm over every
    dimension but the first. grads: [N, ...] -> [N], in float32 for float16 / bfloat16 grads."""
    norm = grads.to(compute_dtype(grads.dtype)).reshape(grads.shape[0], -1).norm(dim=1)
    d = norm - center
    if one_sided:
        d = d.clamp(min=0)
    return d.square()


def gradient_penalty_backward(dp: torch.Tensor, grads: torch.Tensor, center: float, one_sided: bool) -> torch.Tensor:
    """d<dp, gradient_penalty(grads)>/d(grads) = dp_n * 2 (||g_n|| - center) / ||g_n|| * g_n (the clamped difference
    when one_sided; 0 where ||g_n|| = 0, as torch's norm). dp: [N]; returns grads' shape and dtype. Differentiable."""
    g = grads.to(compute_dtype(grads.dtype)).reshape(grads.shape[0], -1)
    norm = g.norm(dim=1, keepdim=True)
    d = norm - center
    if one_sided:
        d = d.clamp(min=0)
    nonzero = norm > 0
    scale = torch.where(nonzero, 2 * d / torch.where(nonzero, norm, torch.ones_like(norm)), torch.zeros_like(norm))
    return (scale * dp.reshape(-1, 1).to(g.dtype) * g).reshape(grads.shape).to(grads.dtype)


def penalty_of_norm(norm: torch.Tensor, center: float, one_sided: bool) -> torch.Tensor:
    """(norm - center)^2, or max(0, norm - center)^2 when one_sided."""
    d = norm - center
    return (d.clamp(min=0) if one_sided else d).square()


def gradient_norm_penalty(grads: torch.Tensor, center: float, one_sided: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(penalty [N], norm [N]): gradient_penalty(grads, center, one_sided) and the per-sample L2 norm it is made of,
    both in float32 for float16 / bfloat16 grads."""
    norm = grads.to(compute_dtype(grads.dtype)).reshape(grads.shape[0], -1).norm(dim=1)
    return penalty_of_norm(norm, center, one_sided), norm


def gradient_norm_penalty_grad(
    dp: torch.Tensor | None,
    dnorm: torch.Tensor | None,
    grads: torch.Tensor,
    norm: torch.Tensor,
    center: float,
    one_sided: bool,
) -> torch.Tensor:
    """The gradient of <dp, penalty> + <dnorm, norm> (gradient_norm_penalty's outputs) with respect to grads, with
    `norm` the saved per-sample norm taken as an independent input: g_n * (2 dp_n d_n + dnorm_n) / norm_n, d_n =
    norm_n - center (clamped at 0 when one_sided), and 0 where norm_n = 0. dp, dnorm: [N] or None (zero).
    Returns grads' shape and dtype; differentiable (in torch ops) with respect to dp, dnorm, grads and norm."""
    cd = compute_dtype(grads.dtype)
    norm = norm.to(cd)
    coef = torch.zeros_like(norm)
    if dp is not None:
        d = norm - center
        coef = coef + 2 * dp.to(cd) * (d.clamp(min=0) if one_sided else d)
    if dnorm is not None:
        coef = coef + dnorm.to(cd)
    nonzero = norm > 0
    scale = torch.where(nonzero, coef / torch.where(nonzero, norm, torch.ones_like(norm)), torch.zeros_like(norm))
    return (grads.to(cd) * scale.reshape(eps_shape(grads))).to(grads.dtype)


def wgan_gp_penalty(critic, real, fake, weight=10.0, center=1.0, eps=None, one_sided=False):
    """weight * mean_n (||d critic(x_hat) / d x_hat_n|| - center)^2, x_hat = eps real + (1 - eps) fake (Gulrajani et
    al. 2017). real, fake: [N, ...]; eps: [N] or [N, 1, ..., 1] (None: U[0, 1) drawn per sample). Returns a scalar."""
    if eps is None:
        eps = torch.rand(eps_shape(real), dtype=real.dtype, device=real.device)
    x_hat = interpolate(real.detach(), fake.detach(), eps.reshape(eps_shape(real))).requires_grad_(True)
    (grads,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return weight * gradient_penalty(grads, center, one_sided).mean()


def r1_penalty(logits, images):
    """Per-sample ||d logits.sum() / d images_n||^2 (Mescheder et al. 2018). images: [N, ...]; returns [N]."""
    (grads,) = torch.autograd.grad(logits.sum(), images, create_graph=True)
    return grads.square().reshape(grads.shape[0], -1).sum(1)


def path_length_penalty(fake_images, ws, pl_mean, decay=0.01, noise=None):
    """NVlabs' path-length regulariser (StyleGAN2). fake_images: [N, C, H, W]; ws: [N, num_ws, w_dim]; pl_mean: the
    running mean (a 0-d tensor); noise: N(0, 1) of fake_images' shape (None: drawn). Returns (penalty [N], new mean)."""
    if noise is None:
        noise = torch.randn_like(fake_images)
    pl_noise = noise / (fake_images.shape[2] * fake_images.shape[3]) ** 0.5
    (pl_grads,) = torch.autograd.grad((fake_images * pl_noise).sum(), ws, create_graph=True)
    pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
    pl_mean = pl_mean.to(pl_lengths.dtype).lerp(pl_lengths.mean(), decay)
    return (pl_lengths - pl_mean).square(), pl_mean.detach()
