"""A small feature network in NVlabs' TorchScript format (net(uint8 [N, 3, H, W], return_features=True) -> [N, D]),
built and saved by the tests: the real loading path, without the Inception weights."""

import warnings

import pytest
import torch
import torch.nn.functional as F


class TinyDetector(torch.nn.Module):
    """Pools the image to 4 x 4 and projects it to `dim` features with fixed random weights."""

    def __init__(self, dim: int = 2048, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn([dim, 48], generator=generator) / 48**0.5)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 127.5 - 1
        x = F.adaptive_avg_pool2d(x, 4).flatten(1)
        return torch.tanh(x @ self.weight.T) + 1


def save_detector(path, dim: int = 2048, seed: int = 0) -> str:
    with warnings.catch_warnings():  # torch.jit is deprecated, and still the format of NVlabs' networks
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(TinyDetector(dim, seed)).save(str(path))
    return str(path)


@pytest.fixture
def tiny_inception(tmp_path):
    """Path of a 2048-wide TorchScript feature network."""
    return save_detector(tmp_path / "tiny-inception.pt")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache directory and no Inception from the environment."""
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANKERNELS_INCEPTION", raising=False)
