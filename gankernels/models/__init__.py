"""Whole networks on gankernels.nn / gankernels.ops with NVlabs-compatible names: StyleGAN2's G and D."""

from .stylegan2 import (
    Discriminator,
    DiscriminatorBlock,
    DiscriminatorEpilogue,
    Generator,
    MappingNetwork,
    MinibatchStdLayer,
    SynthesisBlock,
    SynthesisNetwork,
    load_nvlabs_pickle,
)

__all__ = [
    "MappingNetwork",
    "SynthesisBlock",
    "SynthesisNetwork",
    "Generator",
    "DiscriminatorBlock",
    "MinibatchStdLayer",
    "DiscriminatorEpilogue",
    "Discriminator",
    "load_nvlabs_pickle",
]
