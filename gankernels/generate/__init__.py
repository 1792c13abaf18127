"""Using a trained network: load any generator file, then sample, mix styles, interpolate, do latent arithmetic.

    from gankernels import generate
    net = generate.load_generator("network-snapshot-000200.pkl")      # or a run dir, .safetensors, netG.pth, ...
    images = generate.sample(net, seeds=range(16), truncation_psi=0.7)  # [16, C, H, W] in [-1, 1], on the CPU
    grid, cols = generate.style_mix(net, [85, 100], [55, 821], styles=range(7))
    frames = generate.interpolate(net, [0, 5, 9], frames=60, space="w")
    grid, cols = generate.latent_arithmetic(net, "12+40+77 - 7 + 3")

Modules: loader (formats, `Network`), latents (seeds -> z, classes, W, the expression grammar), api (the
functions above), output (PNG / GIF / MP4 writers). The command line is `gankernels sample | mix | interpolate |
arithmetic` (gankernels/cli.py).
"""

from .api import (
    default_styles,
    interpolate,
    latent_arithmetic,
    sample,
    sample_grid,
    sample_images,
    style_mix,
    translate,
    translation_grid,
)
from .latents import EXPRESSION_GRAMMAR, parse_expression, z_for_seeds
from .loader import FORMATS, Network, load_generator, parse_arch

__all__ = [
    "load_generator",
    "Network",
    "FORMATS",
    "parse_arch",
    "sample",
    "sample_grid",
    "sample_images",
    "style_mix",
    "interpolate",
    "latent_arithmetic",
    "translate",
    "translation_grid",
    "default_styles",
    "parse_expression",
    "EXPRESSION_GRAMMAR",
    "z_for_seeds",
]
