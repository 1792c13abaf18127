"""Drop-in nn.Modules on gankernels.ops, keeping torch's and NVlabs' parameter names."""

from .bias_act import BiasAct, FusedLeakyReLU

__all__ = ["BiasAct", "FusedLeakyReLU"]
