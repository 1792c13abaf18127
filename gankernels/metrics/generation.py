"""Images to evaluate, from any of our generators, in batches on the generator's device.

`latent_batches` samples z ~ N(0, I) from a seeded generator and runs an unconditional (or zero-label) generator:
StyleGAN2 (G(z, c, truncation_psi=...)), DCGAN (G(z), z_dim `nz`), WGAN-GP (G(z)). `translation_batches` runs an
image-to-image generator (CycleGAN's G_A) over a dataset's images, in order. Both yield float [B, C, H, W] in
[-1, 1], `count` images in all (translation: at most one per dataset item), and run the network in eval mode
without gradients, restoring its mode afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _check_count(count, batch) -> None:
    for name, value in (("count", count), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


@contextlib.contextmanager
def _eval_mode(net: torch.nn.Module):
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


def latent_dim(G: torch.nn.Module) -> int:
    """The z size of one of our generators (z_dim, or DCGAN's nz)."""
    for attr in ("z_dim", "nz"):
        value = getattr(G, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise TypeError(f"{type(G).__name__} is not a latent-to-image generator (no z_dim / nz attribute)")


def latent_batches(G: torch.nn.Module, count: int, batch: int = 64, seed: int = 0,
                   truncation_psi: float = 1.0) -> Iterator[torch.Tensor]:  # fmt: skip
    """`count` images of G from z ~ N(0, I) drawn from a torch.Generator seeded with `seed` (on the CPU, so the
    latents are the same on every device). StyleGAN2 generators (those with c_dim) get zero labels and
    truncation_psi; others must take truncation_psi 1."""
    _check_count(count, batch)
    z_dim = latent_dim(G)
    c_dim = getattr(G, "c_dim", None)
    if c_dim is None and truncation_psi != 1.0:
        raise ValueError(f"truncation_psi applies to StyleGAN2 generators only, got {truncation_psi} for "
                         f"{type(G).__name__}")  # fmt: skip
    return _latent_batches(G, count, batch, seed, truncation_psi, z_dim, c_dim)


def _latent_batches(G, count, batch, seed, truncation_psi, z_dim, c_dim):  # checked above, before the first batch
    device = next(G.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    with _eval_mode(G), torch.no_grad():
        for start in range(0, count, batch):
            n = min(batch, count - start)
            z = torch.randn([n, z_dim], generator=generator).to(device)
            if c_dim is None:
                images = G(z)
            else:
                images = G(z, torch.zeros([n, c_dim], device=device), truncation_psi=truncation_psi)
            yield images.float()


def translation_batches(G: torch.nn.Module, dataset, count: int, batch: int = 16) -> Iterator[torch.Tensor]:
    """G(x) for the first min(count, len(dataset)) items x of `dataset` (float [C, H, W] in [-1, 1])."""
    _check_count(count, batch)
    return _translation_batches(G, dataset, min(count, len(dataset)), batch)


def _translation_batches(G, dataset, count, batch):
    device = next(G.parameters()).device
    with _eval_mode(G), torch.no_grad():
        for start in range(0, count, batch):
            x = torch.stack([torch.as_tensor(dataset[i]) for i in range(start, min(start + batch, count))])
            yield G(x.to(device)).float()
