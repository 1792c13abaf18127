"""DCGAN training as pytorch/examples' dcgan/main.py: BCE-with-logits loss, Adam 2e-4 with betas (0.5, 0.999),
one D step (reals -> 1, fakes -> 0) then one G step (fakes -> 1) per iteration. --cond: the conditional DCGAN of
models.dcgan (num_classes = the data's classes, see labels.py); reals with their labels, fakes with uniform ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import dcgan
from .gan import GANTask, check_common
from .labels import COND_HELP


class DCGANTask(GANTask):
    name = "dcgan"
    default_resolution = 64
    default_batch = 128
    defaults = {"nz": 100, "ngf": 64, "ndf": 64, "glr": 2e-4, "dlr": 2e-4, "channels": 3, "cond": False}

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--nz", type=int, help="latent size (default 100)")
        p.add_argument("--ngf", type=int, help="G width (default 64)")
        p.add_argument("--ndf", type=int, help="D width (default 64)")
        p.add_argument("--glr", type=float, help="G learning rate (default 2e-4)")
        p.add_argument("--dlr", type=float, help="D learning rate (default 2e-4)")
        p.add_argument("--cond", action="store_true", default=None, help=COND_HELP)

    @classmethod
    def check_config(cls, config):
        check_common(config, 32)

    def build_networks(self):
        c = self.config
        self.z_dim = c["nz"]
        k = len(self.class_names)
        G = dcgan.Generator(nz=c["nz"], ngf=c["ngf"], nc=c["channels"], resolution=c["resolution"], num_classes=k)
        D = dcgan.Discriminator(ndf=c["ndf"], nc=c["channels"], resolution=c["resolution"], num_classes=k)
        return G, D

    def step(self, step):
        real, real_labels = self.real_batch()  # labels None when unconditional
        labels = self.fake_labels(real.shape[0])
        fake = self.G(self.latents(real.shape[0]), labels)
        # D: reals -> 1, fakes -> 0
        logits_real, logits_fake = self.D(real, real_labels), self.D(fake.detach(), labels)
        loss_D = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real)) + \
            F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))  # fmt: skip
        self.optimizer_step(self.opt_D, self.D, loss_D)
        # G: fakes -> 1 (D updated, as pytorch/examples)
        logits = self.D(fake, labels)
        loss_G = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        self.optimizer_step(self.opt_G, self.G, loss_G)
        return {"G": self.mean(loss_G), "D": self.mean(loss_D)}
