"""AugmentPipe: the adaptive discriminator augmentation pipeline of StyleGAN2-ADA (Karras et al. 2020), on
gankernels ops, twice differentiable with respect to the images (R1 through D(augment(x)) runs on our kernels).

Same constructor arguments, defaults, buffers (p, Hz_geom, Hz_fbank) and order of random draws as NVlabs'
stylegan2-ada-pytorch training/augment.py, so a state dict or a seeded run carries over.
"""

from __future__ import annotations

import math
import numbers

import torch

from ..ops import setup_filter
from .color import apply_color, color_matrix
from .corrupt import apply_cutout, apply_imgfilter, apply_noise, imgfilter_gains
from .draws import Draws
from .filters import NUM_BANDS, filter_bank, geometric_filter
from .geometric import apply_geometric, geometric_matrix
from .presets import preset

# Probability multipliers, in the order the pipeline applies them (all off by default).
AUGMENTATIONS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast",
                 "lumaflip", "hue", "saturation", "imgfilter", "noise", "cutout")  # fmt: skip
# Their parameters and NVlabs' defaults.
PARAMETERS = {
    "xint_max": 0.125,  # range of integer translation, relative to the image size
    "scale_std": 0.2,  # log2 standard deviation of isotropic scaling
    "rotate_max": 1.0,  # range of arbitrary rotation, 1 = full circle
    "aniso_std": 0.2,  # log2 standard deviation of anisotropic scaling
    "xfrac_std": 0.125,  # standard deviation of fractional translation, relative to the image size
    "brightness_std": 0.2,  # standard deviation of brightness
    "contrast_std": 0.5,  # log2 standard deviation of contrast
    "hue_max": 1.0,  # range of hue rotation, 1 = full circle
    "saturation_std": 1.0,  # log2 standard deviation of saturation
    "imgfilter_std": 1.0,  # log2 standard deviation of the band amplifications
    "noise_std": 0.1,  # standard deviation of additive RGB noise
    "cutout_size": 0.5,  # size of the cutout square, relative to the image size
}


def _non_negative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


class AugmentPipe(torch.nn.Module):
    """Random augmentations of images [N, C, H, W] (C = 1 or 3 for colour; values about [-1, 1]).

    Each augmentation `name` is applied to an image with probability `name * p` (`p`, a buffer, is the overall
    strength the ADA controller adjusts; rotate is split into a pre- and a post-rotation so that either happens with
    probability rotate * p). All multipliers default to 0 (off): build with `AugmentPipe.from_preset("bgc")` or
    with keywords, e.g. AugmentPipe(xflip=1, rotate90=1, xint=1). Parameters and their defaults:

    - pixel blitting: xflip, rotate90, xint (xint_max 0.125);
    - general geometry: scale, rotate, aniso, xfrac (scale_std 0.2, rotate_max 1, aniso_std 0.2, xfrac_std 0.125);
    - colour: brightness, contrast, lumaflip, hue, saturation (brightness_std 0.2, contrast_std 0.5, hue_max 1,
      saturation_std 1);
    - filtering: imgfilter (imgfilter_bands [1, 1, 1, 1], imgfilter_std 1);
    - corruptions: noise, cutout (noise_std 0.1, cutout_size 0.5).

    p: the initial strength (NVlabs: 1; the training loop sets it). The output has the input's shape, dtype and
    memory format; float16 / bfloat16 images are augmented in float32. An image that draws no augmentation comes
    back bit-exact, so p = 0 is the identity. Random draws come from torch's global RNG on the images' device.
    """

    def __init__(self, xflip=0, rotate90=0, xint=0, xint_max=0.125, scale=0, rotate=0, aniso=0, xfrac=0,
                 scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125, brightness=0, contrast=0, lumaflip=0,
                 hue=0, saturation=0, brightness_std=0.2, contrast_std=0.5, hue_max=1, saturation_std=1, imgfilter=0,
                 imgfilter_bands=(1, 1, 1, 1), imgfilter_std=1, noise=0, cutout=0, noise_std=0.1, cutout_size=0.5,
                 p=1.0):  # fmt: skip
        super().__init__()
        values = dict(locals())
        for name in AUGMENTATIONS + tuple(PARAMETERS):
            setattr(self, name, _non_negative(values[name], name))
        if self.cutout_size > 1:
            raise ValueError(f"cutout_size must be in [0, 1], got {self.cutout_size}")
        bands = list(imgfilter_bands) if isinstance(imgfilter_bands, (list, tuple)) else None
        if bands is None or len(bands) != NUM_BANDS:
            raise ValueError(f"imgfilter_bands must be a list of {NUM_BANDS} multipliers, got {imgfilter_bands!r}")
        self.imgfilter_bands = [_non_negative(b, "imgfilter_bands") for b in bands]
        self.register_buffer("p", torch.tensor(check_p(p, "p"), dtype=torch.float32))
        self.register_buffer("Hz_geom", setup_filter(geometric_filter()))
        self.register_buffer("Hz_fbank", torch.as_tensor(filter_bank(), dtype=torch.float32))

    @classmethod
    def from_preset(cls, name: str = "bgc", **overrides) -> AugmentPipe:
        """The pipe of NVlabs' --augpipe preset `name` (see gankernels.augment.PRESETS), with keyword overrides."""
        return cls(**{**preset(name), **overrides})

    def set_p(self, value) -> None:
        """Set the strength p (a number in [0, 1])."""
        self.p.fill_(check_p(value, "p"))

    def extra_repr(self) -> str:
        on = [f"{name}={getattr(self, name):g}" for name in AUGMENTATIONS if getattr(self, name) > 0]
        return ", ".join(on) or "all off"

    def forward(self, images: torch.Tensor, debug_percentile: float | None = None) -> torch.Tensor:
        """Augment images [N, C, H, W]. debug_percentile (in [0, 1]): apply every enabled augmentation with that
        percentile of each random parameter instead of a random draw (NVlabs' debugging view)."""
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise TypeError(f"images must be a floating-point tensor, got {type(images).__name__}"
                            + (f" of {images.dtype}" if isinstance(images, torch.Tensor) else ""))  # fmt: skip
        if images.dim() != 4:
            raise ValueError(f"images must be 4-D [N, C, H, W], got shape {list(images.shape)}")
        if debug_percentile is not None:
            debug_percentile = check_p(debug_percentile, "debug_percentile")
        dtype, channels_last = images.dtype, _is_channels_last(images)
        x = images if dtype in (torch.float32, torch.float64) else images.float()
        n, c, h, w = x.shape
        draws = Draws(n, x.device, self.p, debug_percentile)

        G_inv = geometric_matrix(self, draws, h, w)
        if G_inv is not None:
            x = apply_geometric(x, G_inv, self.Hz_geom.to(x.device))
        C = color_matrix(self, draws, c)
        if C is not None:
            x = apply_color(x, C)
        gains = imgfilter_gains(self, draws)
        if gains is not None:
            x = apply_imgfilter(x, *gains, self.Hz_fbank.to(x.device))
        if self.noise > 0:
            x = apply_noise(self, draws, x)
        if self.cutout > 0:
            x = apply_cutout(self, draws, x)

        if x is images:
            return images
        x = x.to(dtype)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def check_p(value, name: str) -> float:
    """value as a float in [0, 1]; TypeError / ValueError naming `name` otherwise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0 <= value <= 1:  # also refuses NaN
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
