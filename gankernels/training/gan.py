"""What the G/D tasks without StyleGAN2's machinery share (DCGAN, WGAN-GP): two networks, two Adams, one real-image
stream (of (images, labels) when config["cond"]: see labels.py), a fixed-latent sample grid (z for a seed as NVlabs,
`stylegan2.z_for_seed`; one row per class when conditional), and their (de)serialisation."""

from __future__ import annotations

import torch

from . import distributed
from .data import BatchStream, open_dataset
from .labels import conditional_setup
from .loop import Task, batch_per_rank

GRID = 64  # images in a sample grid (8 x 8)


class GANTask(Task):
    """Subclasses build self.G, self.D (build_networks; self.class_names is set before), self.z_dim, and implement
    step()."""

    betas = (0.5, 0.999)

    def build_networks(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        raise NotImplementedError

    def __init__(self, config, device, dist, training=True):
        super().__init__(config, device, dist, training)
        self.batch_gpu = batch_per_rank(config["batch"], dist)
        self.class_names, labeled = conditional_setup(config, training)
        self.G, self.D = (net.to(device) for net in self.build_networks())
        distributed.broadcast_module(self.G, dist)
        distributed.broadcast_module(self.D, dist)
        if not training:
            return
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=config["glr"], betas=self.adam_betas())
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=config["dlr"], betas=self.adam_betas())
        dataset = labeled
        if dataset is None:
            dataset = open_dataset(config.get("data"), config["resolution"], channels=config["channels"])
        self.stream = BatchStream(dataset, self.batch_gpu, seed=config["seed"], rank=dist.rank,
                                  world_size=dist.world_size, device=device)  # fmt: skip

    def adam_betas(self):
        return self.betas

    def latents(self, n: int) -> torch.Tensor:
        return torch.randn([n, self.z_dim], device=self.device)

    def fake_labels(self, n: int):
        """Uniform class indices [n] for fakes, or None when unconditional (no random numbers drawn)."""
        return torch.randint(len(self.class_names), [n], device=self.device) if self.class_names else None

    def real_batch(self):
        """(reals, their labels or None)."""
        batch = self.stream.next()
        return batch if self.class_names else (batch, None)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean across ranks, detached: a tensor (no host sync; the loop converts it when it prints)."""
        return distributed.all_mean(value.detach(), self.dist)

    def state_dict(self):
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_G": self.opt_G.state_dict(),
                "opt_D": self.opt_D.state_dict(), "stream": self.stream.state_dict()}  # fmt: skip

    def load_state_dict(self, state):
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if not self.training:
            return
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.stream.load_state_dict(state["stream"])

    def networks(self):
        return {"G": self.G, "D": self.D}

    @torch.no_grad()
    def sample_grid(self, seeds=None):
        """G's images (eval mode: BatchNorm uses its running statistics) for one latent per seed (default 0..63),
        z = RandomState(seed).randn(z_dim) as NVlabs. Conditional: one row per class, the seeds (default 0..7)
        across."""
        from .stylegan2 import z_for_seed

        k = len(self.class_names)
        seeds = list(range(8 if k else GRID)) if seeds is None else list(seeds)
        labels = torch.arange(k).repeat_interleave(len(seeds)) if k else None
        seeds = seeds * max(k, 1)
        z = torch.stack([z_for_seed(s, self.z_dim) for s in seeds])
        was_training = self.G.training
        self.G.eval()
        try:
            images = []
            for i in range(0, len(seeds), 64):
                args = [] if labels is None else [labels[i : i + 64].to(self.device)]
                images.append(self.G(z[i : i + 64].to(self.device), *args).float().cpu())
            images = torch.cat(images)
        finally:
            self.G.train(was_training)
        cols = len(seeds) // k if k else 8 if len(seeds) >= 64 else max(1, int(len(seeds) ** 0.5 + 0.5))
        return images.clamp(-1, 1), cols

    def eval_images(self, count, batch=64, seed=0, truncation_psi=1.0):
        """G's images for metrics, in eval mode as the sample grid (truncation_psi: 1 only)."""
        from ..metrics.generation import latent_batches

        return latent_batches(self.G, count, batch, seed, truncation_psi=truncation_psi)


def check_common(config, min_resolution: int) -> None:
    res = config["resolution"]
    if res < min_resolution or res & (res - 1):
        raise ValueError(f"resolution must be a power of two >= {min_resolution}, got {res}")
    if config["batch"] < 1:
        raise ValueError(f"batch must be >= 1, got {config['batch']}")
    for key in ("glr", "dlr"):
        if not config[key] > 0:
            raise ValueError(f"{key} must be positive, got {config[key]}")
