"""upfirdn2d benchmark cases: upsample2d (up=2), downsample2d (down=2) and filter2d with the 4-tap [1,3,3,1]
filter (a 4x4 2-D filter, as StyleGAN2 uses it), forward."""

from __future__ import annotations

import torch

from ..ops import downsample2d, filter2d, setup_filter, upsample2d
from ..reference import upfirdn2d as ref
from . import DTYPE_NAMES, Case, sizes

GPU_SHAPES = [(32, 128, 128, 128), (32, 512, 16, 16)]
CPU_SHAPES = [(8, 64, 64, 64)]
QUICK_SHAPES = [(2, 4, 8, 8)]
KINDS = {  # name: (ours, eager, output elements per input element)
    "upsample2d": (upsample2d, ref.upsample2d, 4.0),
    "downsample2d": (downsample2d, ref.downsample2d, 0.25),
    "filter2d": (filter2d, ref.filter2d, 1.0),
}


def cases(device: torch.device, quick: bool = False) -> list[Case]:
    shapes, dtypes = sizes(device, quick, GPU_SHAPES, CPU_SHAPES, QUICK_SHAPES)
    f = setup_filter([1, 3, 3, 1], device=device)
    out = []
    for kind, (ours, eager, ratio) in KINDS.items():
        for shape in shapes:
            for dtype in dtypes:
                for channels_last in (False, True):
                    layout = "NHWC" if channels_last else "NCHW"
                    fmt = torch.channels_last if channels_last else torch.contiguous_format
                    numel, size = torch.Size(shape).numel(), torch.finfo(dtype).bits // 8

                    def make(shape=shape, dtype=dtype, fmt=fmt):
                        return torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=fmt), f

                    label = f"{kind} [{','.join(map(str, shape))}] {DTYPE_NAMES[dtype]} {layout}"
                    out.append(Case("upfirdn2d", label, make, ours, eager, bytes=int(numel * size * (1 + ratio))))
    return out
