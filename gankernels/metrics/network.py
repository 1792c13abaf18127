"""What `gankernels metrics RUN_OR_NETWORK` evaluates: an image source from a run directory, a training
checkpoint, a safetensors export or an NVlabs pickle.

`load_image_source` reads runs through training.loop and every network file through
gankernels.generate.load_generator (one loader for the metrics and the generation commands).
"""

from __future__ import annotations

import os

import torch

from .generation import latent_batches, translation_batches


class NetworkSource:
    """An image source (eval_reals / eval_images, as a training Task's) around a bare generator network.

    G: a latent-to-image generator (StyleGAN2, DCGAN, WGAN-GP) or CycleGAN's ResnetGenerator (translating the
    images of DATA/testA, else DATA/trainA). It has no training data: `data` (the CLI's --data) names the reals
    (for a translator, DATA/testB, else DATA/trainB)."""

    def __init__(self, G: torch.nn.Module, name: str, data=None):
        self.G, self.name, self.data = G, name, data
        self.translator = type(G).__name__ == "ResnetGenerator"
        self.resolution = next((getattr(G, a) for a in ("img_resolution", "resolution") if hasattr(G, a)), None)
        self.channels = next((getattr(G, a) for a in ("img_channels", "nc") if hasattr(G, a)), 3)
        if self.translator:
            self.channels = G.init_kwargs.get("output_nc", 3) if hasattr(G, "init_kwargs") else 3

    def _folder(self, data, domain):
        from ..training.data import ImageFolderDataset

        data = self.data if data is None else data
        if data is None:
            raise ValueError(f"--data is needed to evaluate {self.name}: a network file records no training data")
        if self.translator:
            test = os.path.join(data, f"test{domain}")
            data = test if os.path.isdir(test) else os.path.join(data, f"train{domain}")
        if self.resolution is None:
            raise ValueError(f"{self.name}: translation networks need the resolution of a run; evaluate the run dir")
        return ImageFolderDataset(data, self.resolution, channels=self.channels)

    def eval_reals(self, data=None):
        return self._folder(data, "B")

    def eval_images(self, count, batch=64, seed=0, truncation_psi=1.0):
        if self.translator:
            if truncation_psi != 1.0:
                raise ValueError(f"truncation_psi applies to StyleGAN2 only, got {truncation_psi} for {self.name}")
            return translation_batches(self.G, self._folder(None, "A"), count, min(batch, 16))
        return latent_batches(self.G, count, batch, seed, truncation_psi=truncation_psi)


def load_image_source(path, device="cpu", data=None):
    """An image source for `path`: a run directory or checkpoint (-> its training Task: G_ema / G / G_A and the
    run's own data), or any generator file gankernels.generate.load_generator reads (a safetensors export, an NVlabs
    pickle, a DCGAN / CycleGAN state dict; -> NetworkSource). ValueError / FileNotFoundError for anything that holds
    no generator."""
    from ..generate import load_generator
    from ..training import loop

    path = os.fspath(path)
    device = torch.device(device)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no run directory or network file at {path}")
    if os.path.isdir(path) or path.endswith((".pt", ".ckpt")):
        try:
            return loop.restore_task(loop.read_run(path), device)
        except ValueError:
            if os.path.isdir(path):
                raise
    return NetworkSource(load_generator(path, device=device).G, path, data)
