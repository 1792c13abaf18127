"""The ADA augmentation pipeline (gankernels.augment.AugmentPipe, preset bgc, p = 0.6 so nearly every image is
transformed geometrically) on images [N, 3, H, W] fp32, as one timed call:

- "fwd": the pipe's forward (its random draws seeded the same every call, so every call does the same work);
- "fwd+R1": R1 through the pipe with a linear stand-in for D (logits = sum(w * augment(x)) with w [1, 3, H, W]
  requiring grad): the input gradient taken with create_graph=True, its squared norm backpropagated to w. That is
  the forward, the backward and the double backward of every op in the pipe, and nothing of a real D.

Implementations: "ours" (the automatic backend choice), "eager" (the `ref` backend: plain PyTorch for every op) and,
for fwd, "compile" (torch.compile of the pipe under `ref`; it breaks the graph at the one host sync, the padding
size). fwd+R1 has no compile: AOTAutograd has no double backward. bytes: the images read once and written once (fwd).
"""

from __future__ import annotations

import torch

from ..augment import AugmentPipe
from . import AUTO, Case
from .models import compile_backend

SHAPES = {"gpu": (32, 3, 256, 256), "cpu": (4, 3, 64, 64), "quick": (2, 3, 16, 16)}
PRESET, P, SEED = "bgc", 0.6, 0


class PipeInputs:
    """A pipe, images and the stand-in D's weights, on the device; `compiled` is the pipe's torch.compile, made on
    first use."""

    def __init__(self, shape, device: torch.device, backend: str | None):
        g = torch.Generator().manual_seed(0)
        self.pipe = AugmentPipe.from_preset(PRESET, p=P).to(device)
        self.x = torch.randn(shape, generator=g).to(device)
        self.w = torch.randn([1, *shape[1:]], generator=g).to(device).requires_grad_(True)
        self.backend, self._compiled = backend, None

    def compiled(self):
        if self._compiled is None:
            self._compiled = torch.compile(self.pipe, backend=self.backend, dynamic=False)
        return self._compiled


def _fwd(inputs: PipeInputs):
    torch.manual_seed(SEED)
    return inputs.pipe(inputs.x)


def _fwd_compiled(inputs: PipeInputs):
    torch.manual_seed(SEED)
    return inputs.compiled()(inputs.x)


def _fwd_r1(inputs: PipeInputs):
    x = inputs.x.detach().requires_grad_(True)
    torch.manual_seed(SEED)
    logits = (inputs.pipe(x) * inputs.w).sum()
    (grad,) = torch.autograd.grad(logits, x, create_graph=True)
    inputs.w.grad = None
    grad.square().sum().backward()
    return inputs.w.grad


def cases(device: torch.device, quick: bool = False) -> list[Case]:
    which = "quick" if quick else "gpu" if device.type == "cuda" else "cpu"
    shape = SHAPES[which]
    backend, note = compile_backend(device, quick)
    warmup, reps = (0, 1) if quick else (3, 10) if device.type == "cuda" else (2, 5)
    numel = torch.Size(shape).numel()
    label = f"AugmentPipe {PRESET} p={P} [{','.join(map(str, shape))}] fp32"
    common = dict(backends=(AUTO,), stateful=True, warmup=warmup, reps=reps)
    parts = "the pipe (graph break at the padding sync)" + (f" ({note})" if note else "")
    fwd = Case("augment", f"{label} fwd", lambda: (PipeInputs(shape, device, backend),), _fwd, None,
               bytes=numel * 8, compiled=_fwd_compiled if backend else None, compiled_parts=parts,
               compile_na=None if backend else note, **common)  # fmt: skip
    r1 = Case("augment", f"{label} fwd+R1", lambda: (PipeInputs(shape, device, None),), _fwd_r1, None, bytes=0,
              compile_na="AOTAutograd has no double backward", **common)  # fmt: skip
    return [fwd, r1]
