"""Drop-in nn.Modules on gankernels.ops, keeping torch's and NVlabs' parameter names."""

from .bias_act import BiasAct, FusedLeakyReLU
from .conv import Conv2d, ConvTranspose2d
from .instance_norm import InstanceNormAct
from .layers import Conv2dLayer, FullyConnectedLayer, SynthesisLayer, ToRGBLayer
from .resample import Blur, Downsample2d, FIRFilter2d, Upsample2d

__all__ = [
    "BiasAct",
    "FusedLeakyReLU",
    "Upsample2d",
    "Downsample2d",
    "FIRFilter2d",
    "Blur",
    "FullyConnectedLayer",
    "Conv2dLayer",
    "SynthesisLayer",
    "ToRGBLayer",
    "Conv2d",
    "ConvTranspose2d",
    "InstanceNormAct",
]
