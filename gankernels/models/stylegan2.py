"""StyleGAN2 (Karras et al. 2020) on gankernels.nn / gankernels.ops, as NVlabs' stylegan3 networks_stylegan2.py.

Generator = MappingNetwork (z, c -> ws) + SynthesisNetwork (ws -> image, blocks b4 .. b{img_resolution}, architecture
"orig" | "skip" | "resnet"); Discriminator = DiscriminatorBlocks b{img_resolution} .. b8 + DiscriminatorEpilogue b4
(minibatch std, conv, fc, out, projection onto the mapped label). Constructor arguments, forward signatures and
parameter / buffer names are NVlabs', so their state dicts load with strict=True and give the same outputs.
float16 blocks (num_fp16_res) run in float16 only on CUDA, as NVlabs; elsewhere every block runs in float32.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn.layers import Conv2dLayer, SynthesisLayer, ToRGBLayer
from ..ops.upfirdn2d import setup_filter, upsample2d
from .nvlabs_pickle import load_nvlabs_pickle
from .serialization import exportable
from .stylegan2_discriminator import Discriminator, DiscriminatorBlock, DiscriminatorEpilogue, MinibatchStdLayer
from .stylegan2_mapping import (
    MIXED_PRECISION,
    MappingNetwork,
    block_dtype,
    check_choice,
    check_count,
    check_resolution,
    check_shape,
    normalize_2nd_moment,
)

__all__ = [
    "normalize_2nd_moment",
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

ARCHITECTURES = ("orig", "skip", "resnet")


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: x [N, in_channels, res/2, res/2] (None for the first block, which
    starts from the learned `const` [out_channels, res, res]) -> x [N, out_channels, res, res], and the image.

    conv0 (SynthesisLayer, up=2; absent in the first block), conv1 (SynthesisLayer); torgb (ToRGBLayer) in the last
    block and in every block of the "skip" architecture (default); skip (Conv2dLayer 1x1, up=2, no bias) for
    "resnet", whose output is (skip(x) + conv1(conv0(x))) / sqrt(2). The incoming image [N, img_channels, res/2,
    res/2] is upsampled with resample_filter (default [1, 3, 3, 1]) and torgb's output is added (float32).
    conv_clamp default 256; use_fp16 / fp16_channels_last as NVlabs (CUDA only); mixed_precision "float16"
    (default, NVlabs) or "bfloat16" (the use_fp16 blocks run in bfloat16, on any device); channels_last=True keeps
    every activation and weight of the block channels_last whatever its dtype; fused_modconv_default True,
    False or "inference_only" (True in eval mode). ws: [N, num_conv + num_torgb, w_dim]. layer_kwargs go to
    the SynthesisLayers (constructor) or to their forward (e.g. noise_mode). forward returns (x, img).
    """

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture="skip",
                 resample_filter=(1, 3, 3, 1), conv_clamp=256, use_fp16=False, fp16_channels_last=False,
                 fused_modconv_default=True, mixed_precision="float16", channels_last=False,
                 **layer_kwargs):  # fmt: skip
        super().__init__()
        check_choice(architecture, ARCHITECTURES, "architecture")
        check_choice(mixed_precision, MIXED_PRECISION, "mixed_precision")
        check_count(in_channels, "in_channels")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.mixed_precision = mixed_precision
        self.channels_last_always = bool(channels_last)
        self.channels_last = (use_fp16 and fp16_channels_last) or self.channels_last_always
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        common = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, channels_last=self.channels_last)

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, resample_filter=resample_filter, **common,
                                        **layer_kwargs)  # fmt: skip
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **common, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)  # fmt: skip
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)  # fmt: skip

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, update_emas=False, **layer_kwargs):
        del update_emas  # unused, as NVlabs
        check_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim], "ws")
        w_iter = iter(ws.unbind(dim=1))
        dtype = block_dtype(self.use_fp16, force_fp32, ws.device, self.mixed_precision)
        reduced = dtype != torch.float32
        channels_last = self.channels_last_always or (self.channels_last and reduced)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=memory_format)
        else:
            half = self.resolution // 2
            check_shape(x, [ws.shape[0], self.in_channels, half, half], "x")
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=math.sqrt(0.5), **layer_kwargs)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        if img is not None:
            half = self.resolution // 2
            check_shape(img, [ws.shape[0], self.img_channels, half, half], "img")
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img

    def extra_repr(self):
        return f"resolution={self.resolution:d}, architecture={self.architecture:s}"


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, img_resolution, img_resolution] (float32).

    Blocks b4, b8, .., b{img_resolution} (a power of two >= 4) of min(channel_base // res, channel_max) channels
    (defaults 32768 and 512); the num_fp16_res (default 4) highest resolutions (down to 8) use float16 on CUDA.
    num_ws = the number of convs + 1 (the last torgb); block b{res} reads ws[:, i : i + num_conv + num_torgb], its
    torgb sharing a w with the next block's conv0. block_kwargs go to every SynthesisBlock (architecture,
    conv_clamp, resample_filter, ...). forward(ws, **block_kwargs) passes noise_mode ("random" default, "const",
    "none"), fused_modconv, force_fp32 and update_emas to the blocks.
    """

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_fp16_res=4,
                 **block_kwargs):  # fmt: skip
        super().__init__()
        check_resolution(img_resolution)
        check_count(img_channels, "img_channels", 1)
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == self.img_resolution
            block = SynthesisBlock(in_channels, channels[res], w_dim=w_dim, resolution=res, img_channels=img_channels,
                                   is_last=is_last, use_fp16=res >= fp16_resolution, **block_kwargs)  # fmt: skip
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws, **block_kwargs):
        check_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        ws = ws.to(torch.float32)
        block_ws = []
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv

        x = img = None
        for res, cur_ws in zip(self.block_resolutions, block_ws, strict=True):
            x, img = getattr(self, f"b{res}")(x, img, cur_ws, **block_kwargs)
        return img

    def extra_repr(self):
        return (
            f"w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, img_resolution={self.img_resolution:d}, "
            f"img_channels={self.img_channels:d}, num_fp16_res={self.num_fp16_res:d}"
        )


@exportable
class Generator(nn.Module):
    """StyleGAN2's generator: z [N, z_dim], c [N, c_dim] -> image [N, img_channels, img_resolution, img_resolution].

    synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs) (channel_base,
    channel_max, num_fp16_res, architecture, conv_clamp, ...); mapping = MappingNetwork(z_dim, c_dim, w_dim,
    num_ws=synthesis.num_ws, **mapping_kwargs). forward(z, c, truncation_psi=1, truncation_cutoff=None,
    update_emas=False, **synthesis_kwargs) = synthesis(mapping(z, c, ...), update_emas=..., **synthesis_kwargs),
    e.g. noise_mode="const". As NVlabs' Generator.
    """

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=None, **synthesis_kwargs):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)  # fmt: skip
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))  # fmt: skip

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)  # fmt: skip
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
