"""The Python API under `gankernels sample | mix | interpolate | arithmetic`.

Every function takes a `Network` (from load_generator), a path, or a generator module, and returns float32 images
[N, C, H, W] in [-1, 1] on the CPU, computed batch_size at a time on the network's device. Images are deterministic
per seed: z = RandomState(seed).randn(z_dim) (NVlabs' z), noise_mode "const" by default ("random": seeded per image).
"""

from __future__ import annotations

import math

import torch

from .latents import (
    check_class,
    check_options,
    check_seeds,
    check_space,
    conditioning,
    images_for_z,
    lerp,
    need_latents,
    need_w,
    parse_expression,
    slerp,
    synthesize,
    to_w,
    z_for_seeds,
)
from .loader import as_network


def sample(net, seeds, class_idx=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const",
           batch_size: int = 32) -> torch.Tensor:  # fmt: skip
    """One image per seed, as NVlabs' gen_images.py: G(z for the seed, one-hot class, truncation_psi,
    truncation_cutoff (the first ws only), noise_mode). A conditional network needs class_idx; an unconditional one
    takes none. CycleGAN: the translations of input items `seeds` (see `translation_grid`)."""
    net = as_network(net)
    seeds = check_seeds(seeds)
    if net.kind == "cyclegan":
        return translate(net, _inputs(net)[0], seeds, batch_size)
    check_class(net, class_idx)
    check_options(net, truncation_psi, truncation_cutoff, noise_mode)
    z = z_for_seeds(seeds, net.z_dim)
    return images_for_z(net, z, class_idx, truncation_psi, truncation_cutoff, noise_mode, seeds, batch_size)


def grid_columns(n: int) -> int:
    """The default columns of a grid of n images: round(sqrt(n))."""
    return max(1, int(math.sqrt(n) + 0.5))


def _default_seeds(net, seeds):
    return check_seeds(range(8 if net.kind == "cyclegan" else 16) if seeds is None else seeds)


def sample_grid(net, seeds=None, class_idx=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const",
                batch_size: int = 32, input_dir=None) -> tuple[torch.Tensor, int]:  # fmt: skip
    """-> (images, columns) of a sample grid for `seeds` (default 0-15). A conditional network without class_idx:
    one row per class, the seeds across; otherwise round(sqrt(N)) columns. CycleGAN: `translation_grid`'s rows
    (default seeds 0-7; input_dir: the images to translate)."""
    net = as_network(net)
    seeds = _default_seeds(net, seeds)
    if net.kind == "cyclegan":
        return translation_grid(net, seeds, input_dir=input_dir, batch_size=batch_size)
    if input_dir is not None:
        raise ValueError("input applies to CycleGAN generators (the images to translate)")
    if net.num_classes and class_idx is None:
        rows = [sample(net, seeds, k, truncation_psi, truncation_cutoff, noise_mode, batch_size)
                for k in range(net.num_classes)]  # fmt: skip
        return torch.cat(rows), len(seeds)
    images = sample(net, seeds, class_idx, truncation_psi, truncation_cutoff, noise_mode, batch_size)
    return images, grid_columns(len(seeds))


def sample_images(net, seeds=None, class_idx=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const",
                  batch_size: int = 32, input_dir=None) -> tuple[torch.Tensor, list[str]]:  # fmt: skip
    """-> (images, a file name per image) for one file per seed: seedNNNN.png, or seedNNNN-classK.png for every
    class of a conditional network without class_idx. CycleGAN: the translations of the inputs."""
    net = as_network(net)
    seeds = _default_seeds(net, seeds)
    if net.kind == "cyclegan":
        if input_dir is not None:
            return translate(net, _inputs(net, input_dir)[0], seeds, batch_size), [f"seed{s:04d}.png" for s in seeds]
        return sample(net, seeds, batch_size=batch_size), [f"seed{s:04d}.png" for s in seeds]
    images, _ = sample_grid(net, seeds, class_idx, truncation_psi, truncation_cutoff, noise_mode, batch_size, input_dir)
    if net.num_classes and class_idx is None:
        return images, [f"seed{s:04d}-class{k}.png" for k in range(net.num_classes) for s in seeds]
    return images, [f"seed{s:04d}.png" for s in seeds]


def default_styles(num_ws: int) -> list[int]:
    """NVlabs' default --styles 0-6 (the coarse layers), kept below the last layer on small networks."""
    return list(range(min(7, max(1, num_ws - 1))))


def check_styles(styles, num_ws: int) -> list[int]:
    """Style layer indices, each in [0, num_ws)."""
    styles = list(styles)
    if not styles:
        raise ValueError("styles: give at least one style layer")
    for s in styles:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"styles must hold ints, got {s!r}")
        if not 0 <= s < num_ws:
            raise ValueError(f"styles: layer {s} is beyond the network's {num_ws} style layers (0-{num_ws - 1})")
    return sorted(set(styles))


def style_mix(net, row_seeds, col_seeds, styles=None, class_idx=None, truncation_psi=1.0, noise_mode="const",
              batch_size: int = 32) -> tuple[torch.Tensor, int]:  # fmt: skip
    """NVlabs' style-mixing grid (style_mixing.py) -> (images [(R + 1) (C + 1), C, H, W] row-major, C + 1 columns).

    The top-left cell is blank (black), the column seeds' images run across the top, the row seeds' images down the
    left; cell (r, c) is row r's ws with the layers `styles` (default 0-6, NVlabs': the coarse ones) taken from
    column c's. Truncation applies to every w (psi towards w_avg), as theirs.
    """
    net = as_network(net)
    need_w(net, "style mixing")
    rows, cols = check_seeds(row_seeds, "rows"), check_seeds(col_seeds, "cols")
    styles = check_styles(default_styles(net.num_ws) if styles is None else styles, net.num_ws)
    check_class(net, class_idx)
    check_options(net, truncation_psi, None, noise_mode)
    unique = sorted(set(rows + cols))
    ws = to_w(net, z_for_seeds(unique, net.z_dim), class_idx, truncation_psi)
    w_of = dict(zip(unique, ws, strict=True))
    cells, seeds = [], []
    for r in [None] + rows:
        for c in [None] + cols:
            if r is None and c is None:
                continue
            w = w_of[c if r is None else r].clone()
            if r is not None and c is not None:
                w[styles] = w_of[c][styles]
            cells.append(w)
            seeds.append(r if c is None else c)
    images = synthesize(net, torch.stack(cells), "w", class_idx, noise_mode, seeds, batch_size)
    blank = torch.full_like(images[:1], -1)
    return torch.cat([blank, images]), len(cols) + 1


def interpolate(net, seeds, frames: int, space: str = "z", spherical: bool = False, loop: bool = True,
                class_idx=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const",
                batch_size: int = 32) -> torch.Tensor:  # fmt: skip
    """A latent walk through the seeds' latents -> frames images [frames, C, H, W].

    space "z" interpolates the z of the seeds (then maps them, with the truncation given), "w" their ws (StyleGAN2
    only). spherical: slerp instead of lerp. loop (default): seeds[0] -> seeds[1] -> ... -> seeds[0], frames spread
    evenly over the K segments, the last frame just before the first (a seamless loop); loop=False: K - 1 segments,
    the first and last frames the first and last seeds.
    """
    net = as_network(net)
    need_latents(net, "interpolation")
    seeds = check_seeds(seeds, minimum=2)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ValueError(f"frames must be an int >= 2, got {frames!r}")
    check_space(net, space, "interpolation")
    check_class(net, class_idx)
    check_options(net, truncation_psi, truncation_cutoff, noise_mode)
    keys = z_for_seeds(seeds, net.z_dim)
    if space == "w":
        keys = to_w(net, keys, class_idx, truncation_psi, truncation_cutoff).cpu()
    k = len(seeds)
    segments = k if loop else k - 1
    t = torch.arange(frames, dtype=torch.float64) * segments / (frames if loop else frames - 1)
    index = t.floor().long().clamp_(max=segments - 1)
    frac = (t - index).float()
    a, b = keys[index], keys[(index + 1) % k]
    walk = (slerp if spherical else lerp)(a, b, frac)
    if space == "w":
        return synthesize(net, walk, "w", class_idx, noise_mode, range(frames), batch_size)
    return images_for_z(net, walk, class_idx, truncation_psi, truncation_cutoff, noise_mode, range(frames), batch_size)


def latent_arithmetic(net, expr, space: str = "z", class_idx=None, truncation_psi=1.0, truncation_cutoff=None,
                      noise_mode="const", batch_size: int = 32) -> tuple[torch.Tensor, int]:  # fmt: skip
    """Vector arithmetic on the seeds' latents, as the DCGAN paper's figure -> (grid images, columns).

    expr: a string in `latents.EXPRESSION_GRAMMAR` ("12+40+77 - 7 + 3") or its parse, [(sign, [seeds]), ...].
    Each term's latent is the mean of its seeds' (z, or w for space "w", StyleGAN2 only); the result is the signed
    sum. Grid: one column per term and a last one for the result. When some term averages several seeds, the rows
    above show the term's seeds one by one (blank where a term has fewer) and the last row the terms' mean images;
    otherwise a single row. The result is always the last image (grid[-1]).
    """
    net = as_network(net)
    need_latents(net, "latent arithmetic")
    terms = parse_expression(expr) if isinstance(expr, str) else [(int(s), check_seeds(x, "expr")) for s, x in expr]
    if not terms or any(s not in (1, -1) for s, _ in terms):
        raise ValueError("expr: terms must be (sign +1 or -1, [seeds]) pairs, at least one")
    check_space(net, space, "arithmetic")
    check_class(net, class_idx)
    check_options(net, truncation_psi, truncation_cutoff, noise_mode)

    def latents(seeds):
        z = z_for_seeds(seeds, net.z_dim)
        return to_w(net, z, class_idx, truncation_psi, truncation_cutoff).cpu() if space == "w" else z

    term_latents = [latents(seeds) for _, seeds in terms]
    means = torch.stack([x.mean(0) for x in term_latents])
    result = sum(sign * m for (sign, _), m in zip(terms, means, strict=True))
    depth = max(len(seeds) for _, seeds in terms)
    rows = depth + 1 if depth > 1 else 1
    cells = [None] * (rows * (len(terms) + 1))
    cols = len(terms) + 1
    batch = []
    for j, ((_, seeds), x) in enumerate(zip(terms, term_latents, strict=True)):
        if depth > 1:
            for i in range(len(seeds)):
                cells[i * cols + j] = len(batch)
                batch.append(x[i])
        cells[(rows - 1) * cols + j] = len(batch)
        batch.append(means[j])
    cells[-1] = len(batch)
    batch.append(result)
    batch = torch.stack(batch)
    if space == "w":
        images = synthesize(net, batch, "w", class_idx, noise_mode, None, batch_size)
    else:
        images = images_for_z(net, batch, class_idx, truncation_psi, truncation_cutoff, noise_mode, None, batch_size)
    blank = torch.full_like(images[0], -1)
    return torch.stack([images[i] if i is not None else blank for i in cells]), cols


# -- CycleGAN: translation ----------------------------------------------------------------------------------------


def _inputs(net, input_dir=None):
    """(inputs, reverse inputs or None) of a CycleGAN network: `input_dir` (an image folder), the run's data, or
    the built-in circles (and squares)."""
    from ..training.data import ImageFolderDataset, ShapesDataset

    channels = net.G.input_nc
    if input_dir is not None:
        return ImageFolderDataset(input_dir, net.resolution, channels=channels), None
    if net.inputs is not None:
        return net.inputs
    circles = ShapesDataset(net.resolution, channels=channels, kind="circles")
    squares = ShapesDataset(net.resolution, channels=channels, kind="squares")
    return circles, squares if net.reverse is not None else None


@torch.no_grad()
def translate(net, dataset, seeds, batch_size: int = 32, G=None) -> torch.Tensor:
    """CycleGAN: G (default net.G) applied to dataset[seed % len(dataset)] for each seed."""
    net = as_network(net)
    G = net.G if G is None else G
    real = torch.stack([dataset[s % len(dataset)] for s in seeds])
    out = [G(real[i : i + batch_size].to(net.device)).float().cpu() for i in range(0, len(seeds), batch_size)]
    return torch.cat(out).clamp_(-1, 1)


def translation_grid(net, seeds, input_dir=None, batch_size: int = 32) -> tuple[torch.Tensor, int]:
    """CycleGAN rows, one column per seed (an index into the inputs): inputs, G(inputs) and, when the network
    came with its reverse generator (a run), G_rev(G(inputs)), then the other domain's inputs, G_rev(them),
    G(G_rev(them)) (a run's training grid). Inputs: `input_dir`, the run's data, or the built-in circles/squares."""
    net = as_network(net)
    seeds = check_seeds(seeds)
    forward_data, backward_data = _inputs(net, input_dir)
    rows = []
    for data, first, second in ((forward_data, net.G, net.reverse), (backward_data, net.reverse, net.G)):
        if data is None or first is None:
            continue
        real = torch.stack([data[s % len(data)] for s in seeds]).clamp(-1, 1)
        there = translate(net, data, seeds, batch_size, G=first)
        rows += [real, there]
        if second is not None:
            rows.append(translate(net, list(there), range(len(seeds)), batch_size, G=second))
    return torch.cat(rows), len(seeds)


__all__ = ["sample", "sample_grid", "sample_images", "style_mix", "interpolate", "latent_arithmetic", "translate",
           "translation_grid", "conditioning", "default_styles", "grid_columns"]  # fmt: skip
