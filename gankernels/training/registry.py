"""The models `gankernels train` knows, by name, imported on demand."""

from __future__ import annotations

import importlib

_TASKS = {
    "stylegan2": ("gankernels.training.stylegan2", "StyleGAN2Task"),
    "dcgan": ("gankernels.training.dcgan", "DCGANTask"),
    "wgan-gp": ("gankernels.training.wgan_gp", "WGANGPTask"),
    "cyclegan": ("gankernels.training.cyclegan", "CycleGANTask"),
}


def names() -> list[str]:
    return list(_TASKS)


def get(name: str):
    if name not in _TASKS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(_TASKS)}")
    module, cls = _TASKS[name]
    return getattr(importlib.import_module(module), cls)
