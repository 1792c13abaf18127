"""StyleGAN2's mapping network (z, c -> w) on gankernels.nn, with NVlabs' names, arguments and semantics.

As NVlabs' stylegan3 training/networks_stylegan2.py MappingNetwork: the parameters fc0 .. fc{num_layers - 1} (and
embed when c_dim > 0) and the buffer w_avg load from an NVlabs state dict with strict=True.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.layers import FullyConnectedLayer


def check_shape(x, shape, name: str) -> None:
    """Raise TypeError unless x is a tensor, ValueError unless its shape matches `shape` (None: any size)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != len(shape) or any(s is not None and x.shape[i] != s for i, s in enumerate(shape)):
        want = ", ".join("N" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must have shape [{want}], got {list(x.shape)}")


def check_choice(value, choices, name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_count(value, name: str, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_resolution(value, name: str = "img_resolution") -> None:
    """A StyleGAN2 image resolution: a power of two >= 4."""
    check_count(value, name, 4)
    if value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= 4, got {value}")


MIXED_PRECISION = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def block_dtype(use_fp16: bool, force_fp32: bool, device: torch.device, mixed_precision="float16") -> torch.dtype:
    """The dtype a block runs in: float32 unless use_fp16 and not force_fp32; then mixed_precision's dtype, except
    that float16 runs only on CUDA (NVlabs forces float32 elsewhere) while bfloat16 runs on any device."""
    if not use_fp16 or force_fp32:
        return torch.float32
    if mixed_precision == "bfloat16":
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else torch.float32


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """x / sqrt(mean(x^2 over `dim`) + eps): unit second moment per sample. Shape kept."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z [N, z_dim] and c [N, c_dim] -> w [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None).

    x = normalize_2nd_moment(z) concatenated with normalize_2nd_moment(embed(c)) (embed: FullyConnectedLayer(c_dim,
    embed_features), present only when c_dim > 0; embed_features None = w_dim), then num_layers (default 8)
    FullyConnectedLayers fc{i} with `activation` (default "lrelu") and lr_multiplier (default 0.01), layer_features
    (None = w_dim) wide, the last one w_dim wide. z_dim = 0 (no latent) or c_dim = 0 (no label) drop that input.
    w_avg [w_dim] (a buffer, zeros, kept when num_ws and w_avg_beta are not None) tracks the mean of w:
    w_avg = lerp(mean_n(w), w_avg, w_avg_beta) when update_emas=True (default beta 0.998). truncation_psi != 1
    (default 1) moves w towards w_avg: w_avg + psi (w - w_avg), on the first truncation_cutoff ws only when given
    (default None: all). freeze_layers (default 0) stores the first layers' weights as buffers, freeze_embed
    (default False) the embedding's. As NVlabs' MappingNetwork.
    """

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.998, freeze_layers=0,
                 freeze_embed=False):  # fmt: skip
        super().__init__()
        check_count(z_dim, "z_dim")
        check_count(c_dim, "c_dim")
        check_count(w_dim, "w_dim", 1)
        check_count(num_layers, "num_layers", 1)
        if num_ws is not None:
            check_count(num_ws, "num_ws", 1)
        if z_dim == 0 and c_dim == 0:
            raise ValueError("z_dim and c_dim cannot both be 0")
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features, trainable=not freeze_embed)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier, trainable=idx >= freeze_layers)  # fmt: skip
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        x = None
        if self.z_dim > 0:
            check_shape(z, [None, self.z_dim], "z")
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            check_shape(c, [None if x is None else x.shape[0], self.c_dim], "c")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_emas and hasattr(self, "w_avg"):
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if truncation_psi != 1:
            if not hasattr(self, "w_avg"):
                raise ValueError("truncation_psi != 1 needs w_avg (num_ws and w_avg_beta must not be None)")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                head = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)
        return x

    def extra_repr(self):
        return f"z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws}"
