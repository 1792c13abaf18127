"""DCGAN (Radford et al. 2016) as in pytorch/examples' dcgan/main.py, on gankernels' ops.

Generator and Discriminator keep the layout of pytorch/examples' netG and netD: one `nn.Sequential` named `main` whose
indices hold the same layers, so a state dict of their 64x64 networks loads with strict=True (main.0.weight,
main.1.weight, main.1.running_mean, ...). Differences from there:

- the activations (ReLU, LeakyReLU(0.2), Tanh) are parameter-free gankernels.nn.BiasAct modules at the same indices,
  running gankernels.ops.bias_act with gain 1 (bias_act's default gain for relu / lrelu is sqrt(2));
- the convolutions are gankernels.nn.Conv2d / ConvTranspose2d: torch's modules (same parameters, names and init) whose
  forward runs gankernels.ops.conv2d / conv_transpose2d, differentiable to any order and honouring
  gankernels.ops.no_weight_gradients() (R1 / gradient penalties on the discriminator);
- the Discriminator has no final Sigmoid: it returns logits [N], to be trained with BCE-with-logits;
- resolutions other than 64 (any power of two >= 32) add or remove the intermediate blocks (see `feature_channels`);
- num_classes > 0 makes them class-conditional, as the well-known conditional DCGAN examples: G concatenates a learned
  embedding of the class (`embed`, nn.Embedding(num_classes, num_classes)) to z, D reads it as one extra input
  channel (`embed`, nn.Embedding(num_classes, resolution^2), reshaped to a map). num_classes=0 (default) is
  pytorch/examples' network exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.bias_act import BiasAct
from ..nn.conv import Conv2d, ConvTranspose2d
from .serialization import exportable
from .stylegan2_mapping import check_count, check_shape

# ----------------------------------------------------------------------------------------------------------------
# Building blocks shared with gankernels.models.wgan_gp


def activation(act: str) -> BiasAct:
    """A parameter-free module computing torch's ReLU ("relu"), LeakyReLU(0.2) ("lrelu") or Tanh ("tanh") through
    gankernels.ops.bias_act with gain 1."""
    return BiasAct(None, act=act, alpha=0.2 if act == "lrelu" else None, gain=1)


def check_power_of_two(value, name: str, minimum: int) -> None:
    """ValueError naming `name` unless value is an int power of two >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= {minimum}, got {value!r}")


def feature_channels(base: int, resolution: int, r: int, cap: int = 8) -> int:
    """Channels of the features at resolution r (4 <= r <= resolution / 2) in a DCGAN-shaped network producing or
    reading `resolution` x `resolution` images: base * min(cap, resolution / (2 r)).

    The widest features (base * 8 at 64x64, as pytorch/examples) sit at 4x4 and halve with each doubling of r, down
    to `base` at resolution / 2. Beyond 64x64 the width is capped at base * cap (128: 8, 8, 4, 2, 1 times base from
    4x4 up); at 32x32 the network starts narrower (4, 2, 1 times base), dropping the widest block.
    """
    return base * min(cap, resolution // (2 * r))


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def weights_init(module: nn.Module) -> None:
    """pytorch/examples' DCGAN init, for Module.apply: conv and transposed-conv weights ~ N(0, 0.02) (biases kept),
    BatchNorm weights ~ N(1, 0.02) and biases 0. Other modules are left alone."""
    if isinstance(module, _CONVS):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, _BATCH_NORMS) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def check_labels(labels, n: int, num_classes: int) -> torch.Tensor:
    """labels: int tensor [n] with values in [0, num_classes) (ValueError / TypeError naming `labels` otherwise)."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be an int64 tensor [N] for a conditional network, got {type(labels).__name__}")
    if labels.dtype not in (torch.int64, torch.int32) or list(labels.shape) != [n]:
        raise ValueError(f"labels must be an integer tensor of shape [{n}], got {labels.dtype} {list(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got values {int(labels.min())}..{int(labels.max())}")
    return labels.long()


# ----------------------------------------------------------------------------------------------------------------
# Networks


@exportable
class Generator(nn.Module):
    """pytorch/examples' DCGAN netG: z [N, nz] or [N, nz, 1, 1] -> images [N, nc, resolution, resolution] in (-1, 1).

    main: ConvTranspose2d(nz, C_4, 4, 1, 0) (1x1 -> 4x4), BatchNorm2d, ReLU; then per doubling up to resolution / 2
    ConvTranspose2d(C_r, C_2r, 4, 2, 1), BatchNorm2d, ReLU; then ConvTranspose2d(ngf, nc, 4, 2, 1), Tanh. All convs
    without bias. C_r = feature_channels(ngf, resolution, r): at 64 (default) 8, 4, 2, 1 times ngf, exactly
    pytorch/examples' netG. Defaults nz=100, ngf=64, nc=3; resolution a power of two >= 32. Initialised by
    weights_init. num_classes > 0: forward(z, labels) with labels int64 [N] in [0, num_classes); the first conv reads
    nz + num_classes channels, z concatenated with embed(labels).
    """

    def __init__(self, nz=100, ngf=64, nc=3, resolution=64, num_classes=0):
        super().__init__()
        check_count(nz, "nz", 1)
        check_count(ngf, "ngf", 1)
        check_count(nc, "nc", 1)
        check_count(num_classes, "num_classes", 0)
        check_power_of_two(resolution, "resolution", 32)
        self.nz, self.ngf, self.nc, self.resolution, self.num_classes = nz, ngf, nc, resolution, num_classes

        width = feature_channels(ngf, resolution, 4)
        layers = [ConvTranspose2d(nz + num_classes, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width),
                  activation("relu")]  # fmt: skip
        r = 4
        while 2 * r < resolution:
            out = feature_channels(ngf, resolution, 2 * r)
            layers += [ConvTranspose2d(width, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), activation("relu")]
            width, r = out, 2 * r
        layers += [ConvTranspose2d(width, nc, 4, 2, 1, bias=False), activation("tanh")]
        self.main = nn.Sequential(*layers)
        if num_classes:
            self.embed = nn.Embedding(num_classes, num_classes)
        self.apply(weights_init)

    def forward(self, z, labels=None):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if list(z.shape[1:]) not in ([self.nz], [self.nz, 1, 1]):
            raise ValueError(f"z must have shape [N, {self.nz}] or [N, {self.nz}, 1, 1], got {list(z.shape)}")
        z = z.reshape(z.shape[0], self.nz, 1, 1)
        if self.num_classes:
            labels = check_labels(labels, z.shape[0], self.num_classes)
            z = torch.cat([z, self.embed(labels).to(z.dtype)[:, :, None, None]], dim=1)
        elif labels is not None:
            raise ValueError("labels given to an unconditional Generator (num_classes=0)")
        return self.main(z)

    def extra_repr(self):
        return f"nz={self.nz}, ngf={self.ngf}, nc={self.nc}, resolution={self.resolution}, classes={self.num_classes}"


@exportable
class Discriminator(nn.Module):
    """pytorch/examples' DCGAN netD without its final Sigmoid: images x [N, nc, resolution, resolution] -> logits [N].

    main: Conv2d(nc, ndf, 4, 2, 1), LeakyReLU(0.2) (no BatchNorm on the first layer); then per halving down to 4x4
    Conv2d(C_r, C_r/2, 4, 2, 1), BatchNorm2d, LeakyReLU(0.2); then Conv2d(C_4, 1, 4, 1, 0) (4x4 -> 1x1). All convs
    without bias; C_r = feature_channels(ndf, resolution, r) (at 64, default: 1, 2, 4, 8 times ndf, exactly
    pytorch/examples' netD, whose state dict loads once its Sigmoid, main.12, which holds no parameters, is gone).
    Defaults ndf=64, nc=3; resolution a power of two >= 32. Initialised by weights_init. num_classes > 0:
    forward(x, labels) with labels int64 [N]; the first conv reads nc + 1 channels, the last one embed(labels) as a
    resolution x resolution map.
    """

    def __init__(self, ndf=64, nc=3, resolution=64, num_classes=0):
        super().__init__()
        check_count(ndf, "ndf", 1)
        check_count(nc, "nc", 1)
        check_count(num_classes, "num_classes", 0)
        check_power_of_two(resolution, "resolution", 32)
        self.ndf, self.nc, self.resolution, self.num_classes = ndf, nc, resolution, num_classes

        width = feature_channels(ndf, resolution, resolution // 2)
        layers = [Conv2d(nc + (1 if num_classes else 0), width, 4, 2, 1, bias=False), activation("lrelu")]
        r = resolution // 2
        while r > 4:
            out = feature_channels(ndf, resolution, r // 2)
            layers += [Conv2d(width, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), activation("lrelu")]
            width, r = out, r // 2
        layers += [Conv2d(width, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        if num_classes:
            self.embed = nn.Embedding(num_classes, resolution * resolution)
        self.apply(weights_init)

    def forward(self, x, labels=None):
        check_shape(x, [None, self.nc, self.resolution, self.resolution], "x")
        if self.num_classes:
            labels = check_labels(labels, x.shape[0], self.num_classes)
            label_map = self.embed(labels).to(x.dtype).reshape(x.shape[0], 1, self.resolution, self.resolution)
            x = torch.cat([x, label_map], dim=1)
        elif labels is not None:
            raise ValueError("labels given to an unconditional Discriminator (num_classes=0)")
        return self.main(x).reshape(x.shape[0])

    def extra_repr(self):
        return f"ndf={self.ndf}, nc={self.nc}, resolution={self.resolution}, num_classes={self.num_classes}"
