"""WGAN-GP training (Gulrajani et al. 2017): n_critic (5) critic steps per G step, each with the gradient penalty
(lambda 10) through gankernels.ops.wgan_gp_penalty; Adam lr 1e-4 with betas (0, 0.9) (their CIFAR ResNet) or
(0.5, 0.9) (--betas paper, their other experiments). Architectures: the CIFAR-10 ResNet (--arch resnet, 128
channels) or the DCGAN-shaped one without normalisation in the critic (--arch dcgan)."""

from __future__ import annotations

from ..models import wgan_gp
from ..ops import wgan_gp_penalty
from .gan import GANTask, check_common

BETAS = {"resnet": (0.0, 0.9), "paper": (0.5, 0.9)}


class WGANGPTask(GANTask):
    name = "wgan-gp"
    default_resolution = 32
    default_batch = 64
    defaults = {"arch": "resnet", "z_dim": 128, "width": None, "n_critic": 5, "gp_lambda": 10.0, "glr": 1e-4,
                "dlr": 1e-4, "betas": "resnet", "channels": 3}  # fmt: skip

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--arch", choices=["resnet", "dcgan"], help="resnet (default, CIFAR-10 ResNet) or dcgan")
        p.add_argument("--zdim", dest="z_dim", type=int, help="latent size (default 128)")
        p.add_argument("--width", type=int, help="channels (default 128 for resnet, 64 for dcgan)")
        p.add_argument("--n-critic", dest="n_critic", type=int, help="critic steps per G step (default 5)")
        p.add_argument("--lambda", dest="gp_lambda", type=float, help="gradient penalty weight (default 10)")
        p.add_argument("--glr", type=float, help="G learning rate (default 1e-4)")
        p.add_argument("--dlr", type=float, help="critic learning rate (default 1e-4)")
        p.add_argument("--betas", choices=sorted(BETAS), help="Adam betas: resnet (0, 0.9) or paper (0.5, 0.9)")

    @classmethod
    def check_config(cls, config):
        check_common(config, 8 if config["arch"] == "resnet" else 32)
        if config["arch"] not in ("resnet", "dcgan"):
            raise ValueError(f"arch must be 'resnet' or 'dcgan', got {config['arch']!r}")
        if config["n_critic"] < 1:
            raise ValueError(f"n_critic must be >= 1, got {config['n_critic']}")
        if config["gp_lambda"] < 0:
            raise ValueError(f"gp_lambda must be >= 0, got {config['gp_lambda']}")
        if config["betas"] not in BETAS:
            raise ValueError(f"betas must be one of {sorted(BETAS)}, got {config['betas']!r}")

    @property
    def images_per_step(self):
        return self.config["batch"] * self.config["n_critic"]

    def adam_betas(self):
        return BETAS[self.config["betas"]]

    def build_networks(self):
        c = self.config
        self.z_dim = c["z_dim"]
        common = dict(img_channels=c["channels"], resolution=c["resolution"])
        if c["arch"] == "resnet":
            width = c["width"] or 128
            return (wgan_gp.ResNetGenerator(z_dim=c["z_dim"], channels=width, **common),
                    wgan_gp.ResNetCritic(channels=width, **common))  # fmt: skip
        width = c["width"] or 64
        return (wgan_gp.DCGANGenerator(z_dim=c["z_dim"], channels=width, **common),
                wgan_gp.DCGANCritic(channels=width, **common))  # fmt: skip

    def step(self, step):
        self.G.requires_grad_(False)
        for _ in range(self.config["n_critic"]):
            real = self.stream.next()
            fake = self.G(self.latents(real.shape[0]))
            wasserstein = self.D(fake).mean() - self.D(real).mean()
            penalty = wgan_gp_penalty(self.D, real, fake, weight=self.config["gp_lambda"])
            self.optimizer_step(self.opt_D, self.D, wasserstein + penalty)
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        loss_G = -self.D(self.G(self.latents(self.batch_gpu))).mean()
        self.optimizer_step(self.opt_G, self.G, loss_G)
        self.D.requires_grad_(True)
        return {"G": self.mean(loss_G), "D": self.mean(wasserstein), "gp": self.mean(penalty)}
