"""CycleGAN training as junyanz/pytorch-CycleGAN-and-pix2pix (Zhu et al. 2017): two ResnetGenerators (G_A: A -> B,
G_B: B -> A) and two 70x70 PatchGANs (D_A judges B images, D_B judges A images), LSGAN loss, cycle weight 10,
identity weight 0.5 (times the cycle weight), image pools of 50, Adam 2e-4 with betas (0.5, 0.999), the learning
rate constant for the first half of the run and then decaying linearly to 0 (their n_epochs / n_epochs_decay).

Data: two unpaired domains, DIR/trainA and DIR/trainB, or without --data the built-in circles (A) and squares (B).
"""

from __future__ import annotations

import itertools
import os

import torch
import torch.nn.functional as F

from ..models import cyclegan
from . import distributed
from .data import BatchStream, ImageFolderDataset, open_unpaired
from .gan import check_common
from .loop import Task, batch_per_rank


class CycleGANTask(Task):
    name = "cyclegan"
    default_resolution = 128
    default_batch = 1
    defaults = {"ngf": 64, "ndf": 64, "n_blocks": None, "lr": 2e-4, "lambda_cycle": 10.0, "lambda_identity": 0.5,
                "pool": 50, "decay_start": 0.5, "channels": 3}  # fmt: skip

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--ngf", type=int, help="generator width (default 64)")
        p.add_argument("--ndf", type=int, help="discriminator width (default 64)")
        p.add_argument("--n-blocks", dest="n_blocks", type=int, help="residual blocks (default 9 at >= 256, else 6)")
        p.add_argument("--lr", type=float, help="learning rate (default 2e-4)")
        p.add_argument("--lambda-cycle", dest="lambda_cycle", type=float, help="cycle-consistency weight (10)")
        p.add_argument("--lambda-identity", dest="lambda_identity", type=float, help="identity weight (0.5)")
        p.add_argument("--pool", type=int, help="image pool size (default 50)")
        p.add_argument("--decay-start", dest="decay_start", type=float,
                       help="fraction of the run after which the learning rate decays linearly to 0 (0.5)")  # fmt: skip

    @classmethod
    def check_config(cls, config):
        check_common({**config, "glr": config["lr"], "dlr": config["lr"]}, 32)
        for key in ("ngf", "ndf"):
            if config[key] < 1:
                raise ValueError(f"{key} must be >= 1, got {config[key]}")
        if config["n_blocks"] is not None and config["n_blocks"] < 0:
            raise ValueError(f"n_blocks must be >= 0, got {config['n_blocks']}")
        if config["pool"] < 0:
            raise ValueError(f"pool must be >= 0, got {config['pool']}")
        if not 0 <= config["decay_start"] <= 1:
            raise ValueError(f"decay_start must be in [0, 1], got {config['decay_start']}")
        if config["lambda_cycle"] < 0 or config["lambda_identity"] < 0:
            raise ValueError("lambda_cycle and lambda_identity must be >= 0")

    def __init__(self, config, device, dist, training=True):
        super().__init__(config, device, dist, training)
        c = config
        self.batch_gpu = batch_per_rank(c["batch"], dist)
        n_blocks = c["n_blocks"] if c["n_blocks"] is not None else cyclegan.default_n_blocks(c["resolution"])
        nets = {}
        for name in ("G_A", "G_B"):
            nets[name] = cyclegan.ResnetGenerator(c["channels"], c["channels"], ngf=c["ngf"], n_blocks=n_blocks)
        for name in ("D_A", "D_B"):
            nets[name] = cyclegan.NLayerDiscriminator(c["channels"], ndf=c["ndf"])
        for net in nets.values():
            cyclegan.init_weights(net)
            net.to(device)
            distributed.broadcast_module(net, dist)
        self.nets = nets
        self.data_A, self.data_B = open_unpaired(c.get("data"), c["resolution"], channels=c["channels"])
        if not training:
            return
        self.opt_G = torch.optim.Adam(itertools.chain(nets["G_A"].parameters(), nets["G_B"].parameters()),
                                      lr=c["lr"], betas=(0.5, 0.999))  # fmt: skip
        self.opt_D = torch.optim.Adam(itertools.chain(nets["D_A"].parameters(), nets["D_B"].parameters()),
                                      lr=c["lr"], betas=(0.5, 0.999))  # fmt: skip
        seed = c["seed"] * 1000 + dist.rank
        self.pool_A = cyclegan.ImagePool(c["pool"], torch.Generator().manual_seed(seed))  # fakes of domain A
        self.pool_B = cyclegan.ImagePool(c["pool"], torch.Generator().manual_seed(seed + 1))
        common = dict(seed=c["seed"], rank=dist.rank, world_size=dist.world_size, device=device)
        self.stream_A = BatchStream(self.data_A, self.batch_gpu, **common)
        self.stream_B = BatchStream(self.data_B, self.batch_gpu, **{**common, "seed": c["seed"] + 1})

    def learning_rate(self, step: int) -> float:
        """junyanz's linear decay: constant until decay_start of the run, then linearly to 0 at its end."""
        total = self.total_steps or 1
        start = int(total * self.config["decay_start"])
        if step < start:
            return self.config["lr"]
        return self.config["lr"] * max(0.0, 1.0 - (step - start) / max(total - start, 1))

    def step(self, step):
        c, n = self.config, self.nets
        lr = self.learning_rate(step)
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] = lr
        real_A, real_B = self.stream_A.next(), self.stream_B.next()
        # generators: LSGAN "real" targets, cycle and identity L1
        n["D_A"].requires_grad_(False)
        n["D_B"].requires_grad_(False)
        fake_B, fake_A = n["G_A"](real_A), n["G_B"](real_B)
        rec_A, rec_B = n["G_B"](fake_B), n["G_A"](fake_A)
        lam, lam_idt = c["lambda_cycle"], c["lambda_cycle"] * c["lambda_identity"]
        loss_idt = 0.0
        if lam_idt > 0:
            loss_idt = F.l1_loss(n["G_A"](real_B), real_B) * lam_idt + F.l1_loss(n["G_B"](real_A), real_A) * lam_idt
        pred_B, pred_A = n["D_A"](fake_B), n["D_B"](fake_A)
        loss_gan = F.mse_loss(pred_B, torch.ones_like(pred_B)) + F.mse_loss(pred_A, torch.ones_like(pred_A))
        loss_cycle = F.l1_loss(rec_A, real_A) * lam + F.l1_loss(rec_B, real_B) * lam
        loss_G = loss_gan + loss_cycle + loss_idt
        self.optimizer_step(self.opt_G, [n["G_A"], n["G_B"]], loss_G)
        n["D_A"].requires_grad_(True)
        n["D_B"].requires_grad_(True)
        # discriminators: reals -> 1, pooled fakes -> 0, halved as theirs
        loss_D = 0.0
        pairs = ((n["D_A"], real_B, self.pool_B.query(fake_B)), (n["D_B"], real_A, self.pool_A.query(fake_A)))
        for D, real, fake in pairs:
            pred_real, pred_fake = D(real), D(fake.detach())
            loss_D = loss_D + 0.5 * (F.mse_loss(pred_real, torch.ones_like(pred_real))
                                     + F.mse_loss(pred_fake, torch.zeros_like(pred_fake)))  # fmt: skip
        self.optimizer_step(self.opt_D, [n["D_A"], n["D_B"]], loss_D)
        mean = lambda v: distributed.all_mean(v.detach(), self.dist)
        return {"G": mean(loss_gan), "cycle": mean(loss_cycle), "D": mean(loss_D), "lr": lr}

    def state_dict(self):
        return {**{k: v.state_dict() for k, v in self.nets.items()}, "opt_G": self.opt_G.state_dict(),
                "opt_D": self.opt_D.state_dict(), "pool_A": self.pool_A.state_dict(),
                "pool_B": self.pool_B.state_dict(), "stream_A": self.stream_A.state_dict(),
                "stream_B": self.stream_B.state_dict()}  # fmt: skip

    def load_state_dict(self, state):
        for k, v in self.nets.items():
            v.load_state_dict(state[k])
        if not self.training:
            return
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.pool_A.load_state_dict(state["pool_A"])
        self.pool_B.load_state_dict(state["pool_B"])
        self.stream_A.load_state_dict(state["stream_A"])
        self.stream_B.load_state_dict(state["stream_B"])

    def networks(self):
        return dict(self.nets)

    @torch.no_grad()
    def sample_grid(self, seeds=None):
        """Six rows: A images, G_A(A), G_B(G_A(A)), then B images, G_B(B), G_A(G_B(B)); one column per seed (an
        index into each domain's dataset, default 0..7)."""
        seeds = list(range(8)) if seeds is None else list(seeds)
        rows = []
        for data, forward, backward in ((self.data_A, self.nets["G_A"], self.nets["G_B"]),
                                        (self.data_B, self.nets["G_B"], self.nets["G_A"])):  # fmt: skip
            real = torch.stack([data[s % len(data)] for s in seeds]).to(self.device)
            translated = forward(real)
            rows += [real, translated, backward(translated)]
        images = torch.cat([r.float().cpu() for r in rows])
        return images.clamp(-1, 1), len(seeds)

    def _eval_domain(self, domain: str, data=None):
        """DATA/test<domain> when the folder has one, else the training images of that domain."""
        data = self.config.get("data") if data is None else data
        if data is not None and os.path.isdir(os.path.join(data, f"test{domain}")):
            return ImageFolderDataset(os.path.join(data, f"test{domain}"), self.config["resolution"],
                                      self.config["channels"])  # fmt: skip
        return open_unpaired(data, self.config["resolution"], channels=self.config["channels"])["AB".index(domain)]

    def eval_reals(self, data=None):
        """The target domain B (DATA/testB, else trainB): metrics compare G_A's translations with it."""
        return self._eval_domain("B", data)

    def eval_images(self, count, batch=16, seed=0, truncation_psi=1.0):
        """G_A's translations of the A images (DATA/testA, else trainA) in order: at most one per A image."""
        from ..metrics.generation import translation_batches

        if truncation_psi != 1.0:
            raise ValueError(f"truncation_psi applies to StyleGAN2 only, got {truncation_psi} for CycleGAN")
        return translation_batches(self.nets["G_A"], self._eval_domain("A"), count, batch)
