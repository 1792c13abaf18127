"""Whole networks on gankernels.nn / gankernels.ops, keeping their reference implementations' parameter names:
StyleGAN2 (NVlabs), DCGAN (pytorch/examples), WGAN-GP (the paper's code), CycleGAN (junyanz). Submodules: dcgan,
wgan_gp, cyclegan, stylegan2; serialization (safetensors export / import)."""

from . import cyclegan, dcgan, wgan_gp
from .serialization import load_model, save_model
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
    "dcgan",
    "wgan_gp",
    "cyclegan",
    "save_model",
    "load_model",
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
