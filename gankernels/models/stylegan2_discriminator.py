"""StyleGAN2's discriminator on gankernels.nn, as NVlabs' stylegan3 training/networks_stylegan2.py:
DiscriminatorBlock, MinibatchStdLayer, DiscriminatorEpilogue and Discriminator, with NVlabs' names and semantics."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn.layers import Conv2dLayer, FullyConnectedLayer
from ..ops.minibatch_std import minibatch_std
from ..ops.upfirdn2d import downsample2d, setup_filter
from .serialization import exportable
from .stylegan2_mapping import (
    MIXED_PRECISION,
    MappingNetwork,
    block_dtype,
    check_choice,
    check_count,
    check_resolution,
    check_shape,
)

ARCHITECTURES = ("orig", "skip", "resnet")


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: x [N, in_channels, res, res] (None in the first block) and the image
    [N, img_channels, res, res] -> x [N, out_channels, res/2, res/2] and the image downsampled (skip) or None.

    fromrgb (Conv2dLayer 1x1, tmp_channels) in the first block (in_channels == 0) and in every block of "skip",
    added to x; conv0 (3x3, tmp_channels), conv1 (3x3, down=2, out_channels); "resnet" (default) adds skip (1x1,
    down=2, no bias): (skip(x) + conv1(conv0(x))) / sqrt(2). activation default "lrelu"; resample_filter default
    [1, 3, 3, 1]; conv_clamp default None. in_channels must be 0 or tmp_channels. use_fp16 / fp16_channels_last as
    NVlabs (CUDA only); mixed_precision and channels_last as SynthesisBlock's; freeze_layers stores the weights of
    layers first_layer_idx + i < freeze_layers as buffers.
    forward(x, img, force_fp32=False) -> (x, img).
    """

    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels, first_layer_idx,
                 architecture="resnet", activation="lrelu", resample_filter=(1, 3, 3, 1), conv_clamp=None,
                 use_fp16=False, fp16_channels_last=False, freeze_layers=0, mixed_precision="float16",
                 channels_last=False):  # fmt: skip
        super().__init__()
        if in_channels not in (0, tmp_channels):
            raise ValueError(f"in_channels must be 0 or tmp_channels={tmp_channels}, got {in_channels!r}")
        check_choice(architecture, ARCHITECTURES, "architecture")
        check_choice(mixed_precision, MIXED_PRECISION, "mixed_precision")
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.mixed_precision = mixed_precision
        self.channels_last_always = bool(channels_last)
        self.channels_last = (use_fp16 and fp16_channels_last) or self.channels_last_always
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_layers = 0

        def trainable():
            idx = self.first_layer_idx + self.num_layers
            self.num_layers += 1
            return idx >= freeze_layers

        common = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, trainable=trainable(), **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=trainable(), **common)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2, trainable=trainable(),
                                 resample_filter=resample_filter, **common)  # fmt: skip
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    trainable=trainable(), resample_filter=resample_filter,
                                    channels_last=self.channels_last)  # fmt: skip

    def forward(self, x, img, force_fp32=False):
        device = (x if x is not None else img).device
        dtype = block_dtype(self.use_fp16, force_fp32, device, self.mixed_precision)
        channels_last = self.channels_last_always or (self.channels_last and dtype != torch.float32)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format

        if x is not None:
            check_shape(x, [None, self.in_channels, self.resolution, self.resolution], "x")
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == "skip":
            check_shape(img, [None, self.img_channels, self.resolution, self.resolution], "img")
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None

        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img

    def extra_repr(self):
        return f"resolution={self.resolution:d}, architecture={self.architecture:s}"


class MinibatchStdLayer(nn.Module):
    """Append num_channels (default 1) feature maps of the minibatch standard deviation: x [N, C, H, W] ->
    [N, C + num_channels, H, W].

    The batch is split into groups of G = min(group_size, N) samples (group_size None: the whole batch; N must be a
    multiple of G; sample n is in group n % (N / G)) and the channels into num_channels parts; each appended map is
    the mean over its part's channels and pixels of sqrt(var over the group + 1e-8). As NVlabs' MinibatchStdLayer.
    """

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        if group_size is not None:
            check_count(group_size, "group_size", 1)
        check_count(num_channels, "num_channels", 1)
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        check_shape(x, [None, None, None, None], "x")
        return minibatch_std(x, self.group_size, self.num_channels)  # fused, twice differentiable (R1)

    def extra_repr(self):
        return f"group_size={self.group_size}, num_channels={self.num_channels:d}"


class DiscriminatorEpilogue(nn.Module):
    """The discriminator's last block: x [N, in_channels, res, res] -> logits [N, 1] (float32).

    fromrgb (1x1, "skip" only, added to x), mbstd (MinibatchStdLayer(mbstd_group_size default 4,
    mbstd_num_channels default 1); 0 channels disables it), conv (3x3, in_channels + mbstd_num_channels ->
    in_channels), fc (FullyConnectedLayer(in_channels res^2, in_channels)), out (FullyConnectedLayer(in_channels,
    1 or cmap_dim)). With cmap_dim > 0 the logits are sum(out * cmap, dim=1) / sqrt(cmap_dim), cmap [N, cmap_dim].
    activation default "lrelu", conv_clamp default None. forward(x, img, cmap, force_fp32=False).
    """

    def __init__(self, in_channels, cmap_dim, resolution, img_channels, architecture="resnet", mbstd_group_size=4,
                 mbstd_num_channels=1, activation="lrelu", conv_clamp=None):  # fmt: skip
        super().__init__()
        check_choice(architecture, ARCHITECTURES, "architecture")
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)  # fmt: skip
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        del force_fp32  # unused: the epilogue runs in float32, as NVlabs
        check_shape(x, [None, self.in_channels, self.resolution, self.resolution], "x")
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            check_shape(img, [x.shape[0], self.img_channels, self.resolution, self.resolution], "img")
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            check_shape(cmap, [x.shape[0], self.cmap_dim], "cmap")
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x

    def extra_repr(self):
        return f"resolution={self.resolution:d}, architecture={self.architecture:s}"


@exportable
class Discriminator(nn.Module):
    """StyleGAN2's discriminator: img [N, img_channels, img_resolution, img_resolution], c [N, c_dim] -> [N, 1].

    Blocks b{img_resolution} .. b8 (DiscriminatorBlock, min(channel_base // res, channel_max) channels, defaults
    32768 and 512; the num_fp16_res (default 4) highest resolutions use float16 on CUDA), then b4
    (DiscriminatorEpilogue). architecture default "resnet", conv_clamp default 256. With c_dim > 0, mapping =
    MappingNetwork(z_dim=0, c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs) maps c to cmap
    (cmap_dim None: the channels at 4x4). block_kwargs / epilogue_kwargs go to the blocks / the epilogue.
    forward(img, c, update_emas=False, **block_kwargs) (e.g. force_fp32). As NVlabs' Discriminator.
    """

    def __init__(self, c_dim, img_resolution, img_channels, architecture="resnet", channel_base=32768, channel_max=512,
                 num_fp16_res=4, conv_clamp=256, cmap_dim=None, block_kwargs=None, mapping_kwargs=None,
                 epilogue_kwargs=None):  # fmt: skip
        super().__init__()
        check_count(c_dim, "c_dim")
        check_resolution(img_resolution)
        check_count(img_channels, "img_channels", 1)
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0

        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels[res], channels[res // 2], resolution=res,
                                       first_layer_idx=layer_idx, use_fp16=res >= fp16_resolution,
                                       **(block_kwargs or {}), **common)  # fmt: skip
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))  # fmt: skip
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}),
                                        **common)  # fmt: skip

    def forward(self, img, c, update_emas=False, **block_kwargs):
        del update_emas  # unused, as NVlabs
        res = self.img_resolution
        check_shape(img, [None, self.img_channels, res, res], "img")
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, **block_kwargs)
        cmap = None
        if self.c_dim > 0:
            check_shape(c, [x.shape[0], self.c_dim], "c")
            cmap = self.mapping(None, c)
        return self.b4(x, img, cmap)

    def extra_repr(self):
        return f"c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}"
