"""Gradient-penalty critic steps: forward on reals and fakes, the penalty (its input gradient taken with
create_graph=True, then differentiated again), backward and an Adam step, as one timed call.

- WGAN-GP: the CIFAR ResNet critic (gankernels.models.wgan_gp.ResNetCritic), loss D(fake).mean() - D(real).mean()
  + ops.wgan_gp_penalty(D, real, fake, weight=10); Adam lr 1e-4, betas (0, 0.9).
- StyleGAN2 D + R1: gankernels.models.stylegan2.Discriminator (c_dim 0, channel_base 16384 as the training task at
  256x256, fp16 in the 4 highest resolutions on CUDA), NVlabs' non-lazy "Dboth" loss: softplus(D(fake)) +
  softplus(-D(real)) + ops.r1_penalty(D(real), real) * gamma / 2 with gamma 1, one D forward on the reals serving
  both; Adam lr 0.0025, betas (0, 0.99), eps 1e-8.

Implementations, each with its own networks and optimizer: "ours" (the automatic backend), "eager" (the same step
under the `ref` backend) and "compile" (the `ref` step with D's forward compiled on the calls whose input gradient
is not differentiated again; the penalty's forward stays eager: AOTAutograd has no double backward). Reals and fakes
are fixed random tensors. These steps are compute-bound: no bytes (bytes=0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import stylegan2, wgan_gp
from ..ops import r1_penalty, wgan_gp_penalty
from . import AUTO, Case
from .models import compile_backend, compile_forward, input_gradient_differentiated

# (channels, batch, resolution)
WGAN_GP = {"gpu": (128, 64, 32), "cpu": (32, 8, 32), "quick": (8, 2, 8)}
# (resolution, batch, channel_base, channel_max)
STYLEGAN2 = {"gpu": (256, 32, 16384, 512), "cpu": (32, 4, 2048, 64), "quick": (8, 2, 128, 16)}
R1_GAMMA = 1.0
COMPILED_PARTS = {
    "wgan-gp": "D on the reals and fakes; the penalty's D(x_hat) eager",
    "r1": "D on the fakes; D on the reals eager (R1 differentiates its input gradient)",
}


class CriticStep:
    """One critic: calling it runs one full step (forwards, penalty, backward, optimizer step)."""

    def __init__(self, kind: str, size: tuple, device: torch.device, backend: str = "inductor"):
        self.kind, self.backend, self.compiled = kind, backend, False
        torch.manual_seed(0)
        if kind == "wgan-gp":
            channels, batch, res = size
            self.D = wgan_gp.ResNetCritic(channels=channels, img_channels=3, resolution=res).to(device)
            self.opt = torch.optim.Adam(self.D.parameters(), lr=1e-4, betas=(0.0, 0.9))
        else:
            res, batch, cbase, cmax = size
            self.D = stylegan2.Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=cbase,
                                             channel_max=cmax, epilogue_kwargs={"mbstd_group_size": min(4, batch)}
                                             ).to(device)  # fmt: skip
            self.opt = torch.optim.Adam(self.D.parameters(), lr=0.0025, betas=(0.0, 0.99), eps=1e-8)
            self.c = torch.zeros([batch, 0], device=device)
        self.real = torch.randn([batch, 3, res, res], device=device)
        self.fake = torch.randn([batch, 3, res, res], device=device)

    def __call__(self):
        if self.kind == "wgan-gp":
            D = self.D
            loss = D(self.fake).mean() - D(self.real).mean() + wgan_gp_penalty(D, self.real, self.fake, weight=10.0)
        else:
            real = self.real.detach().requires_grad_(True)
            logits_real = self.D(real, self.c).squeeze(1)
            logits_fake = self.D(self.fake, self.c).squeeze(1)
            r1 = r1_penalty(logits_real, real)
            loss = (F.softplus(logits_fake) + F.softplus(-logits_real) + r1 * (R1_GAMMA / 2)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def compile(self) -> None:
        if not self.compiled:
            compile_forward(self.D, self.backend, input_gradient_differentiated)
            self.compiled = True


def _run(step: CriticStep):
    step()


def _compiled(step: CriticStep):
    step.compile()
    step()


def cases(device: torch.device, quick: bool = False) -> list[Case]:
    which = "quick" if quick else "gpu" if device.type == "cuda" else "cpu"
    backend, note = compile_backend(device, quick)
    warmup, reps = (0, 1) if quick else (3, 10) if device.type == "cuda" else (2, 5)
    channels, batch, res = WGAN_GP[which]
    wgan = (f"wgan-gp ResNet critic w{channels} {res}x{res} b{batch}", "wgan-gp", WGAN_GP[which])
    res, batch, cbase, cmax = STYLEGAN2[which]
    r1 = (f"stylegan2 D+R1 {res}x{res} b{batch} c{cbase}/{cmax}", "r1", STYLEGAN2[which])
    out = []
    for label, kind, size in (wgan, r1):
        parts = COMPILED_PARTS[kind] + (f" ({note})" if note else "")
        out.append(Case("penalties", label, lambda kind=kind, size=size: (CriticStep(kind, size, device,
                        backend or "inductor"),), _run, None, bytes=0, backends=(AUTO,), stateful=True,
                        warmup=warmup, reps=reps, compiled=_compiled if backend else None, compiled_parts=parts,
                        compile_na=None if backend else note))  # fmt: skip
    return out
