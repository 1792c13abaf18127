"""StyleGAN2 training as NVlabs' stylegan2-ada-pytorch / stylegan3 (config "stylegan2"), with their adaptive
discriminator augmentation (ADA) by default.

Per iteration, four phases with their own optimizer steps (lazy regularisation, StyleGAN2 appendix B):
  Gmain  non-saturating logistic loss softplus(-D(G(z))), with style mixing;
  Greg   every pl_interval (4) iterations: path length, pl_weight (2) * interval, on batch // pl_batch_shrink;
  Dmain  softplus(D(G(z))) + softplus(-D(x));
  Dreg   every r1_interval (16) iterations: R1, gamma / 2 * interval;
then the EMA of G (G_ema). With augmentation (--aug ada | fixed) every image D sees goes through the same
AugmentPipe first: Gmain's and Dmain's fakes, Dmain's reals and R1's reals (R1 differentiates D(augment(x)) with
respect to x); G's outputs elsewhere (sample grids, exports) never are. With --aug ada an AdaController adjusts the
pipe's p every ada_interval iterations from sign(D(real)) over Dmain's and R1's reals, as NVlabs.
Adam (betas (0, 0.99), eps 1e-8, lr 0.0025) adjusted by mb_ratio for the lazy steps.
The defaults follow NVlabs' "auto" configuration: gamma = 0.0002 * resolution^2 / batch, ema_kimg = batch * 10 / 32,
a 2-layer mapping, channel_base 16384 (32768 from 512x512 up), minibatch-std groups of min(4, batch per process).
--cond: class-conditional (c_dim = the number of classes, see training/labels.py): the reals' labels reach D, the
fakes' labels (uniform over the classes) reach G and D, as one-hot c.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..augment import AdaController, AugmentPipe
from ..augment.presets import PRESETS
from ..models.stylegan2 import Discriminator, Generator
from ..ops import LazyRegularization, path_length_penalty, r1_penalty
from . import distributed
from .data import BatchStream, open_dataset
from .ema import EMA
from .labels import COND_HELP, conditional_setup
from .loop import Task, batch_per_rank

GRID_SEEDS = 32
AUG_MODES = ("ada", "fixed", "noaug")


class StyleGAN2Task(Task):
    name = "stylegan2"
    defaults = {
        "cbase": None,  # channel_base; None: 16384 below 512x512, else 32768
        "cmax": 512,
        "map": 2,
        "z_dim": 512,
        "w_dim": 512,
        "gamma": None,  # R1 weight; None: 0.0002 * resolution^2 / batch
        "glr": 0.0025,
        "dlr": 0.0025,
        "mbstd": 4,
        "ema_kimg": None,  # None: batch * 10 / 32
        "ema_rampup": 0.05,
        "r1_interval": 16,
        "pl_interval": 4,
        "pl_weight": 2.0,
        "pl_batch_shrink": 2,
        "style_mixing": 0.9,
        "fp16_res": 4,
        "conv_clamp": 256,
        "mixed_precision": "float16",  # the dtype of the fp16_res blocks: float16 (CUDA only, NVlabs) or bfloat16
        "channels_last": False,
        "channels": 3,
        "cond": False,
        "aug": "ada",  # ada (p adapted), fixed (p given by --p) or noaug
        "augpipe": "bgc",  # an AugmentPipe preset
        "target": 0.6,  # ADA's target for r_t = E[sign(D(real))]
        "p": None,  # the fixed p of --aug fixed (required there, refused elsewhere)
        "ada_kimg": 500,  # thousands of images for p to move by 1
        "ada_interval": 4,  # iterations between p adjustments
    }

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--cbase", type=int, help="channel_base (default 16384, 32768 at >= 512x512)")
        p.add_argument("--cmax", type=int, help="channel_max (default 512)")
        p.add_argument("--map", type=int, help="mapping network depth (default 2)")
        p.add_argument("--zdim", dest="z_dim", type=int, help="z dimension (default 512)")
        p.add_argument("--wdim", dest="w_dim", type=int, help="w dimension (default 512)")
        p.add_argument("--gamma", type=float, help="R1 weight (default 0.0002 * resolution^2 / batch)")
        p.add_argument("--glr", type=float, help="G learning rate (default 0.0025)")
        p.add_argument("--dlr", type=float, help="D learning rate (default 0.0025)")
        p.add_argument("--mbstd", type=int, help="minibatch-std group size (default 4)")
        p.add_argument("--ema-kimg", dest="ema_kimg", type=float, help="G_ema half-life in kimg (batch * 10 / 32)")
        p.add_argument("--r1-interval", dest="r1_interval", type=int, help="lazy R1 interval (default 16)")
        p.add_argument("--pl-interval", dest="pl_interval", type=int, help="lazy path-length interval (default 4)")
        p.add_argument("--pl-weight", dest="pl_weight", type=float, help="path-length weight (default 2, 0: off)")
        p.add_argument("--style-mixing", dest="style_mixing", type=float, help="style-mixing probability (0.9)")
        p.add_argument("--fp16-res", dest="fp16_res", type=int, help="mixed-precision resolutions (default 4)")
        p.add_argument(
            "--precision",
            dest="mixed_precision",
            choices=["float16", "bfloat16"],
            help="dtype of those resolutions: float16 (default; CUDA only) or bfloat16 (any device)",
        )
        p.add_argument(
            "--channels-last",
            dest="channels_last",
            action="store_true",
            default=None,
            help="every block in channels_last memory format",
        )
        p.add_argument("--cond", action="store_true", default=None, help=COND_HELP)
        p.add_argument("--aug", choices=AUG_MODES, help="augmentation: ada (default: p adapted), fixed (--p), noaug")
        p.add_argument("--augpipe", choices=list(PRESETS), help="augmentation pipeline preset (default bgc)")
        p.add_argument("--target", type=float, help="ADA target for r_t = E[sign(D(real))] (default 0.6)")
        p.add_argument("--p", type=float, help="augmentation probability for --aug fixed, in [0, 1]")
        p.add_argument("--ada-kimg", dest="ada_kimg", type=float, help="kimg for ADA's p to move by 1 (default 500)")

    @classmethod
    def check_config(cls, config):
        res, batch = config["resolution"], config["batch"]
        if res < 4 or res & (res - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {res}")
        for key in ("cmax", "map", "z_dim", "w_dim", "mbstd", "r1_interval", "pl_interval", "pl_batch_shrink"):
            if int(config[key]) < 1:
                raise ValueError(f"{key} must be >= 1, got {config[key]}")
        if config["cbase"] is not None and config["cbase"] < 1:
            raise ValueError(f"cbase must be >= 1, got {config['cbase']}")
        for key in ("glr", "dlr"):
            if not config[key] > 0:
                raise ValueError(f"{key} must be positive, got {config[key]}")
        if not 0 <= config["style_mixing"] <= 1:
            raise ValueError(f"style_mixing must be in [0, 1], got {config['style_mixing']}")
        if config["pl_weight"] < 0 or (config["gamma"] is not None and config["gamma"] < 0):
            raise ValueError("pl_weight and gamma must be >= 0")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        check_augment_config(config)

    def __init__(self, config, device, dist, training=True):
        super().__init__(config, device, dist, training)
        c = config
        res = c["resolution"]
        self.batch_gpu = batch_per_rank(c["batch"], dist)
        self.gamma = c["gamma"] if c["gamma"] is not None else 0.0002 * res**2 / c["batch"]
        cbase = c["cbase"] or (32768 if res >= 512 else 16384)
        self.class_names, labeled = conditional_setup(c, training)
        common = dict(c_dim=len(self.class_names), img_resolution=res, img_channels=c["channels"])
        precision = dict(mixed_precision=c["mixed_precision"], channels_last=c["channels_last"])
        self.G = Generator(z_dim=c["z_dim"], w_dim=c["w_dim"], mapping_kwargs={"num_layers": c["map"]},
                           channel_base=cbase, channel_max=c["cmax"], num_fp16_res=c["fp16_res"],
                           conv_clamp=c["conv_clamp"], fused_modconv_default="inference_only", **precision,
                           **common).to(device)  # fmt: skip
        mbstd = min(c["mbstd"], self.batch_gpu)
        while self.batch_gpu % mbstd:  # the group size must divide the batch
            mbstd -= 1
        self.D = Discriminator(channel_base=cbase, channel_max=c["cmax"], num_fp16_res=c["fp16_res"],
                               conv_clamp=c["conv_clamp"], epilogue_kwargs={"mbstd_group_size": mbstd},
                               block_kwargs=precision, **common).to(device)  # fmt: skip
        distributed.broadcast_module(self.G, dist)
        distributed.broadcast_module(self.D, dist)
        ema_kimg = c["ema_kimg"] if c["ema_kimg"] is not None else c["batch"] * 10 / 32
        self.G_ema = EMA(self.G, ema_kimg=ema_kimg, rampup=c["ema_rampup"])
        if not training:  # sampling / export: the networks only
            return
        self.g_reg = LazyRegularization(c["pl_interval"] if c["pl_weight"] > 0 else None)
        self.d_reg = LazyRegularization(c["r1_interval"] if self.gamma > 0 else None)
        self.opt_G = torch.optim.Adam(self.G.parameters(), **self.g_reg.adam_kwargs(c["glr"], eps=1e-8))
        self.opt_D = torch.optim.Adam(self.D.parameters(), **self.d_reg.adam_kwargs(c["dlr"], eps=1e-8))
        self.pl_mean = torch.zeros([], device=device)
        self.nimg = 0
        dataset = labeled if labeled is not None else open_dataset(c.get("data"), res, channels=c["channels"])
        self.stream = BatchStream(dataset, self.batch_gpu, seed=c["seed"], rank=dist.rank,
                                  world_size=dist.world_size, device=device)  # fmt: skip
        self._setup_augment(c)

    # -- labels -------------------------------------------------------------------------------------------------
    def _one_hot(self, labels):
        return F.one_hot(labels, len(self.class_names)).float()

    def _gen_c(self, n):
        """Labels for n fakes: one-hot of uniform classes ([n, 0] when unconditional: no random numbers drawn)."""
        if not self.class_names:
            return torch.zeros([n, 0], device=self.device)
        return self._one_hot(torch.randint(len(self.class_names), [n], device=self.device))

    def _real_batch(self):
        """(reals, their c)."""
        batch = self.stream.next()
        if not self.class_names:
            return batch, torch.zeros([batch.shape[0], 0], device=self.device)
        return batch[0], self._one_hot(batch[1])

    def _setup_augment(self, c):
        aug = c.get("aug", "noaug")  # a checkpoint from before ADA trained without augmentation
        self.augment_pipe = None
        if aug != "noaug":
            self.augment_pipe = AugmentPipe.from_preset(c["augpipe"], p=c["p"] if aug == "fixed" else 0.0)
            self.augment_pipe.requires_grad_(False).to(self.device)
        p = self.augment_pipe.p if self.augment_pipe is not None else torch.zeros([], device=self.device)
        # In every mode the controller measures r_t (the overfitting heuristic); it moves p only with --aug ada.
        self.ada = AdaController(p, self.config["batch"], target=c.get("target", 0.6),
                                 interval=c.get("ada_interval", 4), kimg=c.get("ada_kimg", 500), adapt=aug == "ada",
                                 dist=self.dist)  # fmt: skip

    # -- the four phases ----------------------------------------------------------------------------------------
    def _mapping(self, z, c):
        ws = self.G.mapping(z, c)
        if self.config["style_mixing"] > 0:  # NVlabs: a random cutoff, with probability style_mixing
            num_ws = ws.shape[1]
            cutoff = torch.randint(1, num_ws, [], device=ws.device) if num_ws > 1 else torch.tensor(num_ws)
            cutoff = torch.where(torch.rand([], device=ws.device) < self.config["style_mixing"], cutoff, num_ws)
            mixed = self.G.mapping(torch.randn_like(z), c, update_emas=False)
            keep = torch.arange(num_ws, device=ws.device) < cutoff
            ws = torch.where(keep[None, :, None], ws, mixed)
        return ws

    def _run_G(self, n):
        """-> (images, ws, c) for n fakes."""
        z = torch.randn([n, self.G.z_dim], device=self.device)
        c = self._gen_c(n)
        ws = self._mapping(z, c)
        return self.G.synthesis(ws), ws, c

    def _run_D(self, img, c):
        if self.augment_pipe is not None:  # every image D sees, real or fake, never G's outputs a user sees
            img = self.augment_pipe(img)
        return self.D(img, c).squeeze(1)

    def step(self, step):
        stats = {}
        n = self.batch_gpu
        # Gmain
        self.D.requires_grad_(False)
        img, _, c = self._run_G(n)
        loss_G = F.softplus(-self._run_D(img, c)).mean()
        self.optimizer_step(self.opt_G, self.G, loss_G)
        stats["G"] = distributed.all_mean(loss_G.detach(), self.dist)
        # Greg: path length
        if self.config["pl_weight"] > 0 and self.g_reg.due(step):
            n_pl = max(n // self.config["pl_batch_shrink"], 1)
            img, ws, _ = self._run_G(n_pl)
            penalty, self.pl_mean = path_length_penalty(img, ws, self.pl_mean)
            loss_pl = penalty.mean() * self.g_reg.gain(self.config["pl_weight"])
            self.optimizer_step(self.opt_G, self.G, loss_pl)
            stats["pl"] = distributed.all_mean(penalty.mean().detach(), self.dist)
        self.D.requires_grad_(True)
        # Dmain
        self.G.requires_grad_(False)
        with torch.no_grad():
            z = torch.randn([n, self.G.z_dim], device=self.device)
            fake_c = self._gen_c(n)
            fake = self.G.synthesis(self.G.mapping(z, fake_c, update_emas=True), update_emas=True)
        real, real_c = self._real_batch()
        loss_fake = F.softplus(self._run_D(fake, fake_c))
        logits_real = self._run_D(real, real_c)
        self.ada.accumulate(logits_real)
        loss_real = F.softplus(-logits_real)
        loss_D = (loss_fake + loss_real).mean()
        self.optimizer_step(self.opt_D, self.D, loss_D)
        stats["D"] = distributed.all_mean(loss_D.detach(), self.dist)
        # Dreg: R1 on the reals
        if self.gamma > 0 and self.d_reg.due(step):
            real = real.detach().requires_grad_(True)
            logits_real = self._run_D(real, real_c)
            self.ada.accumulate(logits_real)
            r1 = r1_penalty(logits_real, real)
            self.optimizer_step(self.opt_D, self.D, r1.mean() * self.d_reg.gain(self.gamma / 2))
            stats["r1"] = distributed.all_mean(r1.mean().detach(), self.dist)
        self.G.requires_grad_(True)
        self.nimg += self.config["batch"]
        self.G_ema.update(self.G, self.nimg, self.config["batch"])
        self.ada.step(step)
        stats["p"] = self.ada.p.detach().clone()  # a tensor: read when printed (no host sync per step)
        if self.ada.r_t is not None:
            stats["r_t"] = self.ada.r_t
        return stats

    # -- state -----------------------------------------------------------------------------------------------
    def state_dict(self):
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.module.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "pl_mean": self.pl_mean,
                "nimg": self.nimg, "stream": self.stream.state_dict(), "ada": self.ada.state_dict()}  # fmt: skip

    def load_state_dict(self, state):
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.module.load_state_dict(state["G_ema"])
        if not self.training:
            return
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.pl_mean = state["pl_mean"].to(self.device)
        self.nimg = int(state["nimg"])
        self.stream.load_state_dict(state["stream"])
        if "ada" in state:  # p and the controller's accumulators (the augmentations' draws are re-seeded per step)
            self.ada.load_state_dict(state["ada"])

    def networks(self):
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema.module}

    @torch.no_grad()
    def sample_grid(self, seeds=None, truncation_psi=1.0, noise_mode="const"):
        """G_ema's images for `seeds` (default 0 .. 31, fewer at high resolution): one z per seed, as NVlabs'
        generate.py (z = RandomState(seed).randn(z_dim)). Conditional: one row per class, the seeds (default 0 .. 7)
        across."""
        G = self.G_ema.module
        k = len(self.class_names)
        if seeds is None:
            seeds = range(8 if k else GRID_SEEDS if self.config["resolution"] <= 128 else 16)
        seeds = list(seeds)
        labels = [c for c in range(k) for _ in seeds] if k else [None] * len(seeds)
        seeds = seeds * max(k, 1)
        images = []
        for chunk in range(0, len(seeds), 16):
            z = torch.stack([z_for_seed(s, G.z_dim) for s in seeds[chunk : chunk + 16]]).to(self.device)
            c = torch.zeros([z.shape[0], k], device=self.device)
            if k:
                c[torch.arange(z.shape[0]), torch.tensor(labels[chunk : chunk + 16])] = 1
            images.append(G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode).float().cpu())
        images = torch.cat(images)
        cols = len(seeds) // k if k else 8 if len(seeds) >= 32 else max(1, int(len(seeds) ** 0.5 + 0.5))
        return images.clamp(-1, 1), cols

    def eval_images(self, count, batch=64, seed=0, truncation_psi=1.0):
        """G_ema's images for metrics (zero labels, random noise as NVlabs' metrics), with truncation_psi."""
        from ..metrics.generation import latent_batches

        return latent_batches(self.G_ema.module, count, batch, seed, truncation_psi=truncation_psi)


def check_augment_config(config: dict) -> None:
    """ValueError naming the option for a bad --aug / --augpipe / --p / --target / --ada-kimg combination."""
    aug = config.get("aug", "noaug")
    if aug not in AUG_MODES:
        raise ValueError(f"--aug must be one of {', '.join(AUG_MODES)}, got {aug!r}")
    if config.get("augpipe", "bgc") not in PRESETS:
        raise ValueError(f"--augpipe: unknown preset {config['augpipe']!r}; choose one of {', '.join(PRESETS)}")
    if aug != "noaug" and "imgfilter" in PRESETS[config.get("augpipe", "bgc")] and config["resolution"] < 32:
        raise ValueError(f"--augpipe {config['augpipe']} filters the images (imgfilter: 43 taps, reflect-padded), "
                         f"which needs --resolution >= 32, got {config['resolution']}")  # fmt: skip
    p = config.get("p")
    if aug == "fixed" and p is None:
        raise ValueError("--aug fixed needs --p (the augmentation probability, in [0, 1])")
    if p is not None:
        if aug != "fixed":
            raise ValueError(f"--p is for --aug fixed only (--aug {aug} {'adapts p' if aug == 'ada' else 'has none'})")
        if not 0 <= p <= 1:
            raise ValueError(f"--p must be in [0, 1], got {p}")
    target = config.get("target", 0.6)
    if not 0 <= target <= 1:
        raise ValueError(f"--target must be in [0, 1] (r_t = E[sign(D(real))] is at most 1), got {target}")
    if not config.get("ada_kimg", 500) > 0:
        raise ValueError(f"--ada-kimg must be > 0, got {config['ada_kimg']}")
    if int(config.get("ada_interval", 4)) < 1:
        raise ValueError(f"ada_interval must be >= 1, got {config['ada_interval']}")


def z_for_seed(seed: int, z_dim: int) -> torch.Tensor:
    """NVlabs' latent for a seed: np.random.RandomState(seed).randn(z_dim), as float32."""
    import numpy as np

    return torch.from_numpy(np.random.RandomState(seed).randn(z_dim)).float()


__all__ = ["StyleGAN2Task", "check_augment_config", "z_for_seed"]
