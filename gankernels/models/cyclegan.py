"""CycleGAN (Zhu et al. 2017) networks on gankernels.nn, as junyanz/pytorch-CycleGAN-and-pix2pix's defaults.

ResnetGenerator (reflection padding, instance norm, 2 down-sampling convs, n_blocks residual blocks, 2 transposed
convs, 7x7 conv + tanh) and NLayerDiscriminator (the 70x70 PatchGAN) keep their module indices and parameter names
(`model.1.weight`, `model.10.conv_block.5.bias`, ...), so a state dict saved from their netG / netD (norm='instance',
no dropout) loads with strict=True and gives the same outputs.

The instance norms run through gankernels.nn.InstanceNormAct, one kernel for what their code does in two or three:
InstanceNorm2d + ReLU (or LeakyReLU(0.2)) becomes InstanceNormAct(act="relu" / "lrelu") at the norm's index, and the
activation's own index holds an nn.Identity (`FusedActivation`, no parameters: the names are unchanged); a residual
block's last InstanceNorm2d takes the block's input as its `residual`, fusing `x + conv_block(x)`. Likewise each
ReflectionPad2d + Conv2d pair becomes a `FusedPadding` placeholder and a gankernels.nn.Conv2d(padding_mode="reflect"),
whose fused path (gankernels.ops.fused_conv2d on the triton backend) reads the reflection in the conv's loads
instead of writing a padded copy of the activations.
Also: `init_weights` (their 'normal' init), `ImagePool` (their pool of generated images, deterministic given a
torch.Generator and checkpointable) and `default_n_blocks`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.conv import Conv2d
from ..nn.instance_norm import InstanceNormAct
from .serialization import exportable

__all__ = ["ResnetBlock", "ResnetGenerator", "NLayerDiscriminator", "ImagePool", "init_weights", "default_n_blocks"]


def _check_count(v, name: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
    return v


def default_n_blocks(resolution: int) -> int:
    """Residual blocks of the CycleGAN generator for square images of `resolution`: 9 at 256 and above, 6 below
    (the paper's resnet_9blocks / resnet_6blocks)."""
    return 9 if _check_count(resolution, "resolution", 1) >= 256 else 6


class FusedActivation(nn.Identity):
    """Stands at the index of an activation that the preceding InstanceNormAct applies (keeps the module indices)."""


class FusedPadding(nn.Identity):
    """Stands at the index of a ReflectionPad2d(padding) that the following conv applies (keeps the module indices)."""

    def __init__(self, padding: int):
        super().__init__()
        self.padding = padding

    def extra_repr(self) -> str:
        return f"padding={self.padding} (reflection, in the next conv)"


class ReflectConv2d(Conv2d):
    """Their ReflectionPad2d + Conv2d, as one gankernels.nn.Conv2d(padding_mode="reflect"): on the fused path
    (ops.fused_conv2d's triton backend) the padding is read in the conv's loads; otherwise torch's own reflect conv
    (pad, then conv; CycleGAN needs no double backward, and torch's conv costs less host time than ops.conv2d:
    gankernels.nn.Conv2d's unfused path made the 64x64 generator's step 10% slower on CPU)."""

    def _pad_then_conv(self, x):
        return nn.Conv2d.forward(self, x)


def _reflect_conv(in_channels, out_channels, kernel_size, padding, bias=True):
    """Their [ReflectionPad2d(padding), Conv2d(kernel_size, padding=0)] pair: a placeholder and a ReflectConv2d."""
    conv = ReflectConv2d(in_channels, out_channels, kernel_size, padding=padding, padding_mode="reflect", bias=bias)
    return [FusedPadding(padding), conv]


class ResnetBlock(nn.Module):
    """x + conv_block(x), conv_block = [ReflectionPad2d(1), Conv2d(dim, dim, 3), InstanceNorm + ReLU, (fused),
    ReflectionPad2d(1), Conv2d(dim, dim, 3), InstanceNorm + residual]: their indices 0..6, no dropout."""

    def __init__(self, dim, use_bias=True):
        super().__init__()
        self.conv_block = nn.Sequential(
            *_reflect_conv(dim, dim, 3, 1, bias=use_bias),
            InstanceNormAct(dim, act="relu"),
            FusedActivation(),
            *_reflect_conv(dim, dim, 3, 1, bias=use_bias),
            InstanceNormAct(dim),
        )

    def forward(self, x):
        *layers, norm = self.conv_block
        h = x
        for layer in layers:
            h = layer(h)
        return norm(h, residual=x)  # their x + conv_block(x), in the norm's kernel


@exportable
class ResnetGenerator(nn.Module):
    """junyanz's ResnetGenerator with norm='instance' (affine=False, no running statistics; convs with bias), no
    dropout, padding_type='reflect'.

    input_nc, output_nc: image channels (default 3); ngf: filters of the first conv (default 64); n_blocks: residual
    blocks at 1/4 resolution (default 9; `default_n_blocks(resolution)` gives the paper's choice). forward(x):
    [N, input_nc, H, W] -> [N, output_nc, H, W] in [-1, 1], H and W multiples of 4 (greater than 3).
    Indices of `model`: 0 pad, 1 conv 7x7, 2 norm+relu, 4 / 7 down convs (norms 5 / 8), 10 .. 10 + n_blocks - 1
    residual blocks, then two transposed convs at b = 10 + n_blocks and b + 3 (norms b + 1, b + 4), b + 6 pad,
    b + 7 conv 7x7, b + 8 tanh.
    """

    def __init__(self, input_nc=3, output_nc=3, ngf=64, n_blocks=9):
        super().__init__()
        for name, v, low in (("input_nc", input_nc, 1), ("output_nc", output_nc, 1), ("ngf", ngf, 1)):
            _check_count(v, name, low)
        _check_count(n_blocks, "n_blocks", 0)
        self.input_nc, self.output_nc, self.ngf, self.n_blocks = input_nc, output_nc, ngf, n_blocks
        model = [
            *_reflect_conv(input_nc, ngf, 7, 3),
            InstanceNormAct(ngf, act="relu"),
            FusedActivation(),
        ]
        for i in range(2):  # down-sampling
            c = ngf * 2**i
            model += [
                nn.Conv2d(c, c * 2, kernel_size=3, stride=2, padding=1, bias=True),
                InstanceNormAct(c * 2, act="relu"),
                FusedActivation(),
            ]
        model += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):  # up-sampling
            c = ngf * 2 ** (2 - i)
            model += [
                nn.ConvTranspose2d(c, c // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True),
                InstanceNormAct(c // 2, act="relu"),
                FusedActivation(),
            ]
        model += [*_reflect_conv(ngf, output_nc, 7, 3), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


@exportable
class NLayerDiscriminator(nn.Module):
    """junyanz's NLayerDiscriminator (PatchGAN) with norm='instance': n_layers=3 is the 70x70 PatchGAN.

    model: 0 Conv2d(input_nc, ndf, 4, stride 2, padding 1), 1 LeakyReLU(0.2); for n in 1 .. n_layers - 1:
    Conv2d(4, stride 2) + InstanceNorm + LeakyReLU(0.2) (indices 3n - 1, 3n, 3n + 1); then one such block with
    stride 1; then Conv2d(ndf * min(2^n_layers, 8), 1, 4, stride 1, padding 1). Channels ndf * min(2^n, 8).
    forward(x): [N, input_nc, H, W] -> logits [N, 1, h, w] with h = H / 2^n_layers - 2 for H a multiple of
    2^n_layers ([N, 1, 30, 30] at 256 for n_layers=3); generally each stride-2 conv maps s to floor(s / 2) and each
    stride-1 conv s to s - 1.
    """

    def __init__(self, input_nc=3, ndf=64, n_layers=3):
        super().__init__()
        _check_count(input_nc, "input_nc", 1)
        _check_count(ndf, "ndf", 1)
        _check_count(n_layers, "n_layers", 1)
        self.input_nc, self.ndf, self.n_layers = input_nc, ndf, n_layers
        kw, padw = 4, 1
        sequence = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            sequence += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=2 if n < n_layers else 1, padding=padw),
                InstanceNormAct(ndf * mult, act="lrelu", alpha=0.2),
                FusedActivation(),
            ]
        sequence += [nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*sequence)

    def forward(self, x):
        return self.model(x)


@torch.no_grad()
def init_weights(net: nn.Module, gain=0.02, generator: torch.Generator | None = None) -> nn.Module:
    """junyanz's init_type='normal': weights of every Conv* / Linear module ~ N(0, gain) (default 0.02), their biases
    0; BatchNorm2d weights ~ N(1, gain), biases 0. InstanceNormAct's affine parameters keep 1 and 0, as theirs.
    generator: draws from this torch.Generator (default: the global one). Returns net."""
    for m in net.modules():
        kind = type(m).__name__
        if getattr(m, "weight", None) is not None and ("Conv" in kind or "Linear" in kind):
            nn.init.normal_(m.weight, 0.0, gain, generator=generator)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in kind and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain, generator=generator)
            nn.init.zeros_(m.bias)
    return net


class ImagePool:
    """junyanz's ImagePool: a buffer of up to pool_size (default 50) previously generated images, so that the
    discriminator also sees older generator outputs (Shrivastava et al. 2017).

    query(images) takes a batch [N, ...] (detached) and returns a batch of its shape: while the pool is not full,
    each image is stored and returned as is; once full, each image is, with probability 0.5, returned as is, or else
    stored in place of a uniformly chosen stored image, which is returned instead. pool_size 0 returns the batch as
    is. The draws come from `generator` (a torch.Generator; default: a private CPU one seeded from the global RNG), so
    the pool is deterministic given its seed; state_dict() / load_state_dict() save and restore the stored images and
    the generator's state, so a resumed run continues exactly.
    """

    def __init__(self, pool_size=50, generator: torch.Generator | None = None):
        self.pool_size = _check_count(pool_size, "pool_size", 0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
        self.generator = generator
        self.images: list[torch.Tensor] = []

    def __len__(self):
        return len(self.images)

    def _uniform(self) -> float:
        return torch.rand((), generator=self.generator, device=self.generator.device).item()

    def _index(self) -> int:
        return int(torch.randint(self.pool_size, (), generator=self.generator, device=self.generator.device).item())

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of images' shape, each the query's image or a stored one (see the class). images: [N, ...]."""
        if not isinstance(images, torch.Tensor) or images.dim() == 0:
            raise TypeError("images must be a torch.Tensor [N, ...]")
        if self.pool_size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())  # a copy: a view would keep the whole batch alive
                out.append(image)
            elif self._uniform() > 0.5:
                i = self._index()
                out.append(self.images[i].to(device=images.device, dtype=images.dtype))
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        """{"pool_size", "images" (a list of [1, ...] tensors), "generator_state"}: what load_state_dict needs to
        continue exactly. Loads with torch.load(weights_only=True)."""
        return {
            "pool_size": self.pool_size,
            "images": [t.clone() for t in self.images],
            "generator_state": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores the stored images and the generator's state saved by state_dict()."""
        if state.get("pool_size") != self.pool_size:
            raise ValueError(f"state has pool_size {state.get('pool_size')!r} but this pool has {self.pool_size}")
        images = list(state["images"])
        if len(images) > self.pool_size or not all(isinstance(t, torch.Tensor) for t in images):
            raise ValueError(f"state['images'] must be a list of at most {self.pool_size} tensors")
        self.generator.set_state(state["generator_state"])
        self.images = [t.clone() for t in images]
