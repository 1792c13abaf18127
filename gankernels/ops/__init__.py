"""The public functional API. Each op validates its arguments, picks a backend and runs a torch custom op."""

from .bias_act import bias_act, fused_leaky_relu
from .conv2d import conv2d, conv2d_resample, conv_transpose2d, no_weight_gradients
from .fused_conv2d import fused_conv2d
from .grid_sample import grid_sample
from .instance_norm import instance_norm_act
from .minibatch_std import minibatch_std
from .modulated_conv2d import modulated_conv2d
from .penalties import (
    LazyRegularization,
    gradient_penalty,
    path_length_penalty,
    r1_penalty,
    wgan_gp_interpolate,
    wgan_gp_penalty,
)
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "bias_act",
    "fused_leaky_relu",
    "setup_filter",
    "upfirdn2d",
    "filter2d",
    "upsample2d",
    "downsample2d",
    "conv2d",
    "conv_transpose2d",
    "conv2d_resample",
    "no_weight_gradients",
    "modulated_conv2d",
    "instance_norm_act",
    "minibatch_std",
    "grid_sample",
    "fused_conv2d",
    "wgan_gp_penalty",
    "wgan_gp_interpolate",
    "gradient_penalty",
    "r1_penalty",
    "path_length_penalty",
    "LazyRegularization",
]
