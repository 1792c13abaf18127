"""NVlabs' named augmentation pipelines (stylegan2-ada-pytorch train.py --augpipe): which augmentations are on.

Each preset maps AugmentPipe probability multipliers to 1; everything else keeps AugmentPipe's defaults. The
letters compose: b(lit) g(eom) c(olor) f(ilter) n(oise) c(utout). "bgc" is NVlabs' default and ours.
"""

from __future__ import annotations

BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
FILTER = ("imgfilter",)
NOISE = ("noise",)
CUTOUT = ("cutout",)


def _on(*groups) -> dict:
    return {name: 1.0 for group in groups for name in group}


PRESETS: dict[str, dict] = {
    "blit": _on(BLIT),
    "geom": _on(GEOM),
    "color": _on(COLOR),
    "filter": _on(FILTER),
    "noise": _on(NOISE),
    "cutout": _on(CUTOUT),
    "bg": _on(BLIT, GEOM),
    "bgc": _on(BLIT, GEOM, COLOR),
    "bgcf": _on(BLIT, GEOM, COLOR, FILTER),
    "bgcfn": _on(BLIT, GEOM, COLOR, FILTER, NOISE),
    "bgcfnc": _on(BLIT, GEOM, COLOR, FILTER, NOISE, CUTOUT),
}
DEFAULT_PRESET = "bgc"


def preset(name: str) -> dict:
    """The AugmentPipe keyword arguments of preset `name`; ValueError naming the known presets otherwise."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"augpipe: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
