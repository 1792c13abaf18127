"""WGAN-GP's networks (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs"), on gankernels' ops.

Two families, after the paper's code (github.com/igul222/improved_wgan_training):

- ResNetGenerator / ResNetCritic: the CIFAR-10 ResNet of gan_cifar_resnet.py (unconditional; dim 128 at 32x32).
  Generator: Linear(z_dim -> 4*4*channels), up residual blocks to the resolution, BatchNorm, ReLU, conv3x3, tanh.
  Critic: the "optimized" first block, down blocks to 8x8, two blocks without resampling, ReLU, mean over H, W,
  Linear(channels -> 1). No normalisation in the critic: the gradient penalty is per sample, which batch norm breaks.
- DCGANGenerator / DCGANCritic: the DCGAN of gan_cifar.py / gan_64x64.py: Linear + BatchNorm + ReLU to 4x4, 5x5
  stride-2 transposed convs with BatchNorm + ReLU, tanh; the critic 5x5 stride-2 convs with LeakyReLU(0.2) and no
  normalisation, then Linear(4*4*C -> 1).

Critics return scores [N] for gankernels.ops.wgan_gp_penalty. Nearest upsampling is gankernels.ops.upsample2d with the
box filter [1, 1] (with upsample2d's gain of up^2 it copies each pixel to a 2x2 block, equal to F.interpolate(x,
scale_factor=2, mode="nearest")), 2x2 mean pooling gankernels.ops.downsample2d with the same filter (= F.avg_pool2d(x,
2)), activations gankernels.ops.bias_act with gain 1, convolutions gankernels.ops.conv2d / conv_transpose2d (through
gankernels.nn.Conv2d / ConvTranspose2d), so the penalty's double backward runs on our ops. init_weights is
the paper's (see there).
"""

from __future__ import annotations

import math

from torch import nn

from ..nn.conv import Conv2d, ConvTranspose2d
from ..nn.resample import Downsample2d, Upsample2d
from .dcgan import activation, check_power_of_two, feature_channels
from .serialization import exportable
from .stylegan2_mapping import check_count, check_shape

BOX_FILTER = [1, 1]  # 2 taps: with up / down = 2, nearest upsampling and 2x2 mean pooling


def _glorot(module: nn.Module) -> nn.Module:
    """Mark a conv for init_weights' Glorot (he_init=False) variant, as the paper's shortcut and output convs."""
    module.he_init = False
    return module


def init_weights(module: nn.Module) -> None:
    """The paper's init (its tflib ops), for Module.apply. Weights are uniform with standard deviation s (bounds
    +-s sqrt(3)); biases 0.

    - Linear: Glorot, s = sqrt(2 / (fan_in + fan_out)) (torch's xavier_uniform_).
    - Conv2d / ConvTranspose2d: s = sqrt(4 / (fan_in + fan_out)) ("he_init", the default), or sqrt(2 / (fan_in +
      fan_out)) for convs whose attribute he_init is False (the ResNet shortcuts and the generator's output conv).
      fan_in = in_channels k^2, fan_out = out_channels k^2, the strided side divided by stride^2 (fan_out of a
      strided conv, fan_in of a strided transposed conv).
    - BatchNorm: weight 1, bias 0.
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        taps = module.kernel_size[0] * module.kernel_size[1]
        stride2 = module.stride[0] * module.stride[1]
        fan_in, fan_out = module.in_channels * taps, module.out_channels * taps
        if isinstance(module, nn.ConvTranspose2d):
            fan_in /= stride2
        else:
            fan_out /= stride2
        std = math.sqrt((4.0 if getattr(module, "he_init", True) else 2.0) / (fan_in + fan_out))
        nn.init.uniform_(module.weight, -std * math.sqrt(3), std * math.sqrt(3))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------------------------------------------
# ResNet blocks


class UpBlock(nn.Module):
    """The generator's residual block with resample="up": [N, in_channels, H, W] -> [N, out_channels, 2H, 2W].

    main: BatchNorm, ReLU, nearest x2, conv3x3, BatchNorm, ReLU, conv3x3. shortcut: nearest x2 + conv1x1, computed as
    conv1x1 then upsample (they commute exactly, a per-pixel map and a pixel copy; 4x fewer conv flops).
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = _glorot(Conv2d(in_channels, out_channels, 1))
        self.act = activation("relu")
        self.upsample = Upsample2d(2, BOX_FILTER)

    def forward(self, x):
        h = self.conv1(self.upsample(self.act(self.norm1(x))))
        h = self.conv2(self.act(self.norm2(h)))
        return self.upsample(self.shortcut(x)) + h


class OptimizedBlock(nn.Module):
    """The critic's first block (the paper's OptimizedResBlockDisc1): [N, in_channels, H, W] -> [N, out_channels,
    H/2, W/2]. main: conv3x3, ReLU, conv3x3, 2x2 mean-pool. shortcut: 2x2 mean-pool, conv1x1. No pre-activation:
    the input is the image."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = _glorot(Conv2d(in_channels, out_channels, 1))
        self.act = activation("relu")
        self.pool = Downsample2d(2, BOX_FILTER)

    def forward(self, x):
        h = self.pool(self.conv2(self.act(self.conv1(x))))
        return self.shortcut(self.pool(x)) + h


class CriticBlock(nn.Module):
    """The critic's residual block, resample "down" (down=True) or none: [N, in_channels, H, W] -> [N, out_channels,
    H/2, W/2] or [.., H, W]. main: ReLU, conv3x3 (in -> in), ReLU, conv3x3 (in -> out), 2x2 mean-pool when down.
    shortcut: identity when in == out and not down, else conv1x1 (+ mean-pool). The paper pools after the 1x1 conv;
    pooling first is the same function (both linear, the bias averages to itself) for 4x fewer flops."""

    def __init__(self, in_channels, out_channels, down):
        super().__init__()
        self.down = bool(down)
        self.conv1 = Conv2d(in_channels, in_channels if down else out_channels, 3, padding=1)
        self.conv2 = Conv2d(self.conv1.out_channels, out_channels, 3, padding=1)
        identity = in_channels == out_channels and not down
        self.shortcut = None if identity else _glorot(Conv2d(in_channels, out_channels, 1))
        self.act = activation("relu")
        self.pool = Downsample2d(2, BOX_FILTER) if down else None

    def forward(self, x):
        h = self.conv2(self.act(self.conv1(self.act(x))))
        skip = x
        if self.pool is not None:
            h, skip = self.pool(h), self.pool(skip)
        if self.shortcut is not None:
            skip = self.shortcut(skip)
        return skip + h


# ----------------------------------------------------------------------------------------------------------------
# ResNet networks


@exportable
class ResNetGenerator(nn.Module):
    """WGAN-GP's CIFAR-10 ResNet generator: z [N, z_dim] -> images [N, img_channels, resolution, resolution] in (-1, 1).

    fc: Linear(z_dim, 4*4*channels), reshaped to [N, channels, 4, 4]; blocks: log2(resolution) - 2 UpBlocks
    (channels wide; 3 at 32x32); norm (BatchNorm2d), ReLU, conv_out: conv3x3 -> img_channels, tanh. Defaults z_dim=128,
    channels=128, img_channels=3, resolution=32 (the paper's); resolution a power of two >= 8. Initialised by
    init_weights.
    """

    def __init__(self, z_dim=128, channels=128, img_channels=3, resolution=32):
        super().__init__()
        check_count(z_dim, "z_dim", 1)
        check_count(channels, "channels", 1)
        check_count(img_channels, "img_channels", 1)
        check_power_of_two(resolution, "resolution", 8)
        self.z_dim, self.channels, self.img_channels, self.resolution = z_dim, channels, img_channels, resolution

        self.fc = nn.Linear(z_dim, 4 * 4 * channels)
        self.blocks = nn.ModuleList(UpBlock(channels, channels) for _ in range(resolution.bit_length() - 3))
        self.norm = nn.BatchNorm2d(channels)
        self.act = activation("relu")
        self.conv_out = _glorot(Conv2d(channels, img_channels, 3, padding=1))
        self.tanh = activation("tanh")
        self.apply(init_weights)

    def forward(self, z):
        check_shape(z, [None, self.z_dim], "z")
        x = self.fc(z).reshape(z.shape[0], self.channels, 4, 4)
        for block in self.blocks:
            x = block(x)
        return self.tanh(self.conv_out(self.act(self.norm(x))))

    def extra_repr(self):
        return (
            f"z_dim={self.z_dim}, channels={self.channels}, img_channels={self.img_channels}, "
            f"resolution={self.resolution}"
        )


@exportable
class ResNetCritic(nn.Module):
    """WGAN-GP's CIFAR-10 ResNet critic: images x [N, img_channels, resolution, resolution] -> scores [N].

    blocks: OptimizedBlock (resolution -> resolution / 2), CriticBlocks with down=True while the features are larger
    than 8x8 (one at 32x32), two CriticBlocks without resampling (so 4 blocks at 32x32, the paper's; at resolution 8
    the plain blocks run at 4x4); then ReLU, the mean over H and W, fc: Linear(channels, 1). All blocks channels wide,
    no normalisation. Defaults channels=128, img_channels=3, resolution=32; resolution a power of two >= 8.
    Initialised by init_weights.
    """

    def __init__(self, channels=128, img_channels=3, resolution=32):
        super().__init__()
        check_count(channels, "channels", 1)
        check_count(img_channels, "img_channels", 1)
        check_power_of_two(resolution, "resolution", 8)
        self.channels, self.img_channels, self.resolution = channels, img_channels, resolution

        blocks = [OptimizedBlock(img_channels, channels)]
        r = resolution // 2
        while r > 8:
            blocks.append(CriticBlock(channels, channels, down=True))
            r //= 2
        blocks += [CriticBlock(channels, channels, down=False) for _ in range(2)]
        self.blocks = nn.Sequential(*blocks)
        self.act = activation("relu")
        self.fc = nn.Linear(channels, 1)
        self.apply(init_weights)

    def forward(self, x):
        check_shape(x, [None, self.img_channels, self.resolution, self.resolution], "x")
        h = self.act(self.blocks(x)).mean(dim=(2, 3))
        return self.fc(h).reshape(x.shape[0])

    def extra_repr(self):
        return f"channels={self.channels}, img_channels={self.img_channels}, resolution={self.resolution}"


# ----------------------------------------------------------------------------------------------------------------
# DCGAN networks


def _up_conv(in_channels, out_channels, bias):
    """5x5 transposed conv, stride 2, exactly doubling H and W (TF's "SAME" output size)."""
    return ConvTranspose2d(in_channels, out_channels, 5, stride=2, padding=2, output_padding=1, bias=bias)


@exportable
class DCGANGenerator(nn.Module):
    """WGAN-GP's DCGAN generator (gan_cifar.py, gan_64x64.py): z [N, z_dim] -> images [N, img_channels, resolution,
    resolution] in (-1, 1).

    fc: Linear(z_dim, 4*4*C_4), fc_norm: BatchNorm1d over those features (the paper's), ReLU, reshaped to
    [N, C_4, 4, 4]; main: per doubling up to resolution / 2, a 5x5 stride-2 ConvTranspose2d(C_r, C_2r) (no bias: the
    BatchNorm after it cancels one), BatchNorm2d, ReLU; then ConvTranspose2d(channels, img_channels, 5, 2) with bias,
    tanh. C_r = dcgan.feature_channels(channels, resolution, r) (at 32: 4, 2, 1 times channels, gan_cifar.py; at 64: 8,
    4, 2, 1 times, gan_64x64.py). Defaults z_dim=128, channels=64, img_channels=3, resolution=32; resolution a power
    of two >= 8. Initialised by init_weights.
    """

    def __init__(self, z_dim=128, channels=64, img_channels=3, resolution=32):
        super().__init__()
        check_count(z_dim, "z_dim", 1)
        check_count(channels, "channels", 1)
        check_count(img_channels, "img_channels", 1)
        check_power_of_two(resolution, "resolution", 8)
        self.z_dim, self.channels, self.img_channels, self.resolution = z_dim, channels, img_channels, resolution

        width = feature_channels(channels, resolution, 4)
        self.fc = nn.Linear(z_dim, 4 * 4 * width)
        self.fc_norm = nn.BatchNorm1d(4 * 4 * width)
        self.act = activation("relu")
        layers, r = [], 4
        while 2 * r < resolution:
            out = feature_channels(channels, resolution, 2 * r)
            layers += [_up_conv(width, out, bias=False), nn.BatchNorm2d(out), activation("relu")]
            width, r = out, 2 * r
        layers += [_up_conv(width, img_channels, bias=True), activation("tanh")]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z):
        check_shape(z, [None, self.z_dim], "z")
        x = self.act(self.fc_norm(self.fc(z)))
        return self.main(x.reshape(z.shape[0], -1, 4, 4))

    def extra_repr(self):
        return (
            f"z_dim={self.z_dim}, channels={self.channels}, img_channels={self.img_channels}, "
            f"resolution={self.resolution}"
        )


@exportable
class DCGANCritic(nn.Module):
    """WGAN-GP's DCGAN critic (gan_cifar.py): images x [N, img_channels, resolution, resolution] -> scores [N].

    main: per halving down to 4x4, a 5x5 stride-2 Conv2d (padding 2, with bias) and LeakyReLU(0.2), no normalisation;
    widths C_r = dcgan.feature_channels(channels, resolution, r) (channels at resolution / 2, doubling per halving, at
    most 8 times); fc: Linear(4*4*C_4, 1) on the flattened features. Defaults channels=64, img_channels=3,
    resolution=32; resolution a power of two >= 8. Initialised by init_weights.
    """

    def __init__(self, channels=64, img_channels=3, resolution=32):
        super().__init__()
        check_count(channels, "channels", 1)
        check_count(img_channels, "img_channels", 1)
        check_power_of_two(resolution, "resolution", 8)
        self.channels, self.img_channels, self.resolution = channels, img_channels, resolution

        layers, width, r = [], img_channels, resolution
        while r > 4:
            out = feature_channels(channels, resolution, r // 2)
            layers += [Conv2d(width, out, 5, stride=2, padding=2), activation("lrelu")]
            width, r = out, r // 2
        self.main = nn.Sequential(*layers)
        self.fc = nn.Linear(4 * 4 * width, 1)
        self.apply(init_weights)

    def forward(self, x):
        check_shape(x, [None, self.img_channels, self.resolution, self.resolution], "x")
        return self.fc(self.main(x).flatten(1)).reshape(x.shape[0])

    def extra_repr(self):
        return f"channels={self.channels}, img_channels={self.img_channels}, resolution={self.resolution}"
