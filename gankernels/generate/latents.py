"""Latents for seeds, class labels, W, and the batched forward passes that every generation command shares.

A seed's latent is NVlabs' (gen_images.py, style_mixing.py): z = np.random.RandomState(seed).randn(z_dim), so an
NVlabs network gives the images their scripts give. A class is NVlabs' one-hot c for StyleGAN2 and the class index
for the conditional DCGAN. W exists for StyleGAN2 only: ws [N, num_ws, w_dim] = G.mapping(z, c, psi, cutoff).
"""

from __future__ import annotations

import re

import numpy as np
import torch

from .loader import Network

MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2^32)
NOISE_MODES = ("const", "random", "none")


def check_seeds(seeds, name: str = "seeds", minimum: int = 1) -> list[int]:
    """A list of ints in [0, 2^32 - 1], at least `minimum` of them (ValueError / TypeError naming `name`)."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = [seeds]
    try:
        seeds = list(seeds)
    except TypeError:
        raise TypeError(f"{name} must be a list of ints, got {type(seeds).__name__}") from None
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"{name} must hold ints, got {s!r}")
        if not 0 <= s <= MAX_SEED:
            raise ValueError(f"{name}: seed {s} is out of range; seeds are ints in [0, {MAX_SEED}]")
    if len(seeds) < minimum:
        raise ValueError(f"{name}: need at least {minimum} seed{'s' if minimum > 1 else ''}, got {len(seeds)}")
    return [int(s) for s in seeds]


def z_for_seeds(seeds, z_dim: int) -> torch.Tensor:
    """float32 [N, z_dim]: row i = np.random.RandomState(seeds[i]).randn(z_dim), NVlabs' z for a seed."""
    seeds = check_seeds(seeds, minimum=0)
    rows = [np.random.RandomState(s).randn(z_dim) for s in seeds]
    return torch.from_numpy(np.stack(rows) if rows else np.zeros([0, z_dim])).float()


def check_class(net: Network, class_idx) -> None:
    """ValueError unless class_idx fits the network: None for an unconditional one, 0 .. K-1 for a conditional one."""
    k = net.num_classes
    if class_idx is None:
        if k:
            raise ValueError(f"class: this network is conditional ({k} classes: {_class_list(net)}); give one")
        return
    if isinstance(class_idx, bool) or not isinstance(class_idx, (int, np.integer)):
        raise TypeError(f"class must be an int, got {class_idx!r}")
    if not k:
        raise ValueError(f"class: this network is unconditional; --class {class_idx} does not apply")
    if not 0 <= class_idx < k:
        raise ValueError(f"class: {class_idx} is out of range for a network of {k} classes (0..{k - 1})")


def _class_list(net: Network) -> str:
    names = [f"{k}={n}" if n != str(k) else str(k) for k, n in enumerate(net.class_names)]
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")


def check_options(net: Network, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const") -> None:
    """Truncation needs StyleGAN2's W; cutoff in 1..num_ws; noise_mode const | random | none."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
    if not isinstance(truncation_psi, (int, float)) or isinstance(truncation_psi, bool):
        raise TypeError(f"truncation_psi must be a number, got {truncation_psi!r}")
    if net.kind != "stylegan2" and (truncation_psi != 1 or truncation_cutoff is not None):
        raise ValueError(f"trunc: truncation needs a StyleGAN2 network (its W and w_avg); this is a {net.kind}")
    if truncation_cutoff is not None:
        if isinstance(truncation_cutoff, bool) or not isinstance(truncation_cutoff, int):
            raise TypeError(f"truncation_cutoff must be an int, got {truncation_cutoff!r}")
        if not 1 <= truncation_cutoff <= net.num_ws:
            raise ValueError(f"trunc-cutoff: {truncation_cutoff} is not in 1..{net.num_ws} (the network's ws)")


def need_latents(net: Network, what: str) -> None:
    if net.z_dim is None:
        raise ValueError(f"{what} needs a generator with a latent space; a {net.kind} generator translates images")


def need_w(net: Network, what: str) -> None:
    if net.kind != "stylegan2":
        raise ValueError(f"{what} needs a StyleGAN2 network (W space); this is a {net.kind}")


def check_space(net: Network, space: str, what: str) -> None:
    """space "z" or "w" (W only on a StyleGAN2); `what` names the operation in the error."""
    if space not in ("z", "w"):
        raise ValueError(f"space must be 'z' or 'w', got {space!r}")
    if space == "w":
        need_w(net, f"{what} in W (--space w)")


def conditioning(net: Network, class_idx, n: int):
    """What G takes for the class: one-hot c [n, c_dim] (StyleGAN2; [n, 0] unconditional), int64 labels [n]
    (conditional DCGAN) or None."""
    device = net.device
    if net.kind == "stylegan2":
        c = torch.zeros([n, net.G.c_dim], device=device)
        if class_idx is not None:
            c[:, class_idx] = 1
        return c
    if class_idx is None:
        return None
    return torch.full([n], int(class_idx), dtype=torch.int64, device=device)


@torch.no_grad()
def to_w(net: Network, z: torch.Tensor, class_idx=None, truncation_psi=1.0, truncation_cutoff=None, batch_size=256):
    """StyleGAN2's ws [N, num_ws, w_dim] (on the network's device) for latents z [N, z_dim]."""
    out = []
    for i in range(0, z.shape[0], batch_size):
        chunk = z[i : i + batch_size].to(net.device)
        c = conditioning(net, class_idx, chunk.shape[0])
        out.append(net.G.mapping(chunk, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff))
    return torch.cat(out)


def _forward(net: Network, x, class_idx, noise_mode, space):
    if space == "w":
        return net.G.synthesis(x, noise_mode=noise_mode)
    labels = conditioning(net, class_idx, x.shape[0])
    return net.G(x) if labels is None else net.G(x, labels)


@torch.no_grad()
def synthesize(net: Network, x: torch.Tensor, space: str, class_idx=None, noise_mode="const", noise_seeds=None,
               batch_size: int = 32) -> torch.Tensor:  # fmt: skip
    """Images float32 [N, C, H, W] in [-1, 1] on the CPU, batch_size at a time on the network's device.

    space "w": x = StyleGAN2 ws [N, num_ws, w_dim]; space "z": x = the latents of a network without W (DCGAN,
    WGAN-GP). noise_mode "random" draws each image's noise from torch's RNG seeded with noise_seeds[i] (one image at
    a time, so an image does not depend on its batch); the global RNG state is restored afterwards.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    out = []
    if space == "w" and noise_mode == "random":
        seeds = list(range(x.shape[0])) if noise_seeds is None else list(noise_seeds)
        devices = [net.device] if net.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            for i in range(x.shape[0]):
                torch.manual_seed(seeds[i])
                out.append(_forward(net, x[i : i + 1].to(net.device), class_idx, noise_mode, space).float().cpu())
    else:
        for i in range(0, x.shape[0], batch_size):
            out.append(_forward(net, x[i : i + batch_size].to(net.device), class_idx, noise_mode, space).float().cpu())
    if not out:
        return torch.zeros([0, 0, 0, 0])
    return torch.cat(out).clamp_(-1, 1)


def images_for_z(net: Network, z, class_idx=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const",
                 noise_seeds=None, batch_size: int = 32) -> torch.Tensor:  # fmt: skip
    """G's images for latents z [N, z_dim] (StyleGAN2: through W with the truncation given)."""
    if net.kind == "stylegan2":
        ws = to_w(net, z, class_idx, truncation_psi, truncation_cutoff)
        return synthesize(net, ws, "w", class_idx, noise_mode, noise_seeds, batch_size)
    return synthesize(net, z, "z", class_idx, noise_mode, noise_seeds, batch_size)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """a + t (b - a), t [N] broadcast over the trailing dimensions."""
    t = t.reshape([-1] + [1] * (a.dim() - 1)).to(a)
    return a + t * (b - a)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the last dimension (per vector; per w for ws [N, num_ws, w_dim]):
    (sin((1-t) omega) a + sin(t omega) b) / sin(omega), omega the angle between a and b; lerp where they are
    (anti)parallel to within eps."""
    t = t.reshape([-1] + [1] * (a.dim() - 1)).to(a)
    cos = (a * b).sum(-1, keepdim=True) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True)).clamp_min(eps)
    omega = cos.clamp(-1, 1).acos()
    sin = omega.sin()
    parallel = sin.abs() < eps
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    spherical = (((1 - t) * omega).sin() * a + (t * omega).sin() * b) / safe
    return torch.where(parallel, a + t * (b - a), spherical)


# -- latent arithmetic expressions ---------------------------------------------------------------------------------

_TERM = re.compile(r"\d+(?:[+,]\d+)*")
EXPRESSION_GRAMMAR = (
    'TERM (OP TERM)*, OP "+" or "-" with spaces around it, TERM a seed or several seeds joined by "+" or "," without '
    'spaces (their latents averaged): e.g. "12 - 7 + 3" or "12+40+77 - 7,9 + 3"'
)


def parse_expression(text: str) -> list[tuple[int, list[int]]]:
    """Parse "12+40+77 - 7 + 3" -> [(1, [12, 40, 77]), (-1, [7]), (1, [3])]: (sign, seeds averaged) per term.

    Grammar: EXPRESSION_GRAMMAR. Spaces separate operators from terms, so "12+40" is one averaged term and
    "12 + 40" the sum of two. Anything else (a leading operator, "12 -7", letters, a seed beyond 2^32 - 1) is a
    ValueError naming the first token that does not fit.
    """
    if not isinstance(text, str):
        raise TypeError(f"expr must be a str, got {type(text).__name__}")
    tokens = text.split()
    if not tokens:
        raise ValueError(f"expr: empty expression; expected {EXPRESSION_GRAMMAR}")
    terms, sign = [], 1
    for i, token in enumerate(tokens):
        if i % 2 == 0:
            if not _TERM.fullmatch(token):
                where = "at the start" if i == 0 else f"after {tokens[i - 1]!r}"
                raise ValueError(f"expr: expected a term {where}, got {token!r}; the grammar: {EXPRESSION_GRAMMAR}")
            seeds = [int(s) for s in re.split(r"[+,]", token)]
            terms.append((sign, check_seeds(seeds, "expr")))
        elif token in ("+", "-"):
            sign = 1 if token == "+" else -1
        else:
            raise ValueError(f"expr: expected + or - after {tokens[i - 1]!r}, got {token!r}; "
                             f"the grammar: {EXPRESSION_GRAMMAR}")  # fmt: skip
    if len(tokens) % 2 == 0:
        raise ValueError(f"expr: {text.strip()!r} ends with an operator; the grammar: {EXPRESSION_GRAMMAR}")
    return terms
