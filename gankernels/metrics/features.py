"""Features of real and generated images, the reals' cached on disk.

Reals: `dataset_features(dataset, extractor, max_items)` takes the first max_items items of the dataset (NVlabs'
order), in batches, and caches them under cache_dir()/metrics/ in a file named by the dataset's identity (its
root folder or generator parameters), resolution, channels and the extractor's identity. The file also records a
fingerprint of the data (each image file's relative path, size and mtime): a folder whose files changed is
re-extracted; otherwise the cached rows are reused, and extended when more are asked for than are cached.
Datasets that `dataset_fingerprint` does not know are extracted every time.

Generated: `generated_features(batches, extractor, count)` runs the extractor on each batch as it comes, on the
extractor's device, and keeps the features there.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable

import torch

from .._io import atomic_write
from .extractor import cache_dir

CACHE_FORMAT = "gankernels-real-features"
CACHE_VERSION = 1

ProgressFn = Callable[[int, int, str], None]  # (done, total, what)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images [N, C, H, W] in [-1, 1] -> uint8 [N, 3, H, W] as NVlabs: (x * 127.5 + 128).clamp(0, 255), then
    truncation; one channel is repeated to three. ValueError for another channel count."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor [N, C, H, W], got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape [N, C, H, W] with C 1 or 3, got {list(images.shape)}")
    if images.dtype == torch.uint8:
        out = images
    elif images.is_floating_point():
        out = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    else:
        raise TypeError(f"images must be float in [-1, 1] or uint8, got {images.dtype}")
    return out.repeat(1, 3, 1, 1) if out.shape[1] == 1 else out


def dataset_fingerprint(dataset) -> tuple[str, str] | None:
    """(identity, fingerprint) of a dataset: identity names what it is (a folder and its decoding parameters, or
    a generated dataset's parameters); fingerprint changes whenever its contents may have. None: unknown kind."""
    files = getattr(dataset, "files", None)
    root = getattr(dataset, "root", None)
    if files is not None and root is not None:
        identity = f"folder:{os.path.abspath(root)}:res{dataset.resolution}:c{dataset.channels}"
        digest = hashlib.sha256()
        for path in files:
            st = os.stat(path)
            digest.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return identity, digest.hexdigest()
    if type(dataset).__name__ == "ShapesDataset":
        identity = f"shapes-v1:{dataset.kind}:seed{dataset.seed}:res{dataset.resolution}:c{dataset.channels}"
        return identity, f"size{len(dataset)}"
    return None


def _cache_path(identity: str, extractor_identity: str, directory: str) -> str:
    key = hashlib.sha256(f"{identity}\n{extractor_identity}".encode()).hexdigest()[:24]
    return os.path.join(directory, "metrics", f"reals-{key}.pt")


def _read_cache(path: str, identity: str, fingerprint: str, extractor_identity: str):
    if not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable cache is recomputed
        return None
    expected = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "identity": identity,
                "fingerprint": fingerprint, "extractor": extractor_identity}  # fmt: skip
    if not isinstance(state, dict) or any(state.get(k) != v for k, v in expected.items()):
        return None
    features = state.get("features")
    return features if isinstance(features, torch.Tensor) and features.dim() == 2 else None


def _extract(dataset, extractor, start: int, stop: int, batch: int, progress: ProgressFn | None, done: int, total):
    rows = []
    for lo in range(start, stop, batch):
        images = torch.stack([torch.as_tensor(dataset[i]) for i in range(lo, min(lo + batch, stop))])
        rows.append(extractor(to_uint8(images)).cpu())
        if progress is not None:
            progress(done + min(lo + batch, stop) - start, total, "real features")
    return torch.cat(rows) if rows else None


def dataset_features(dataset, extractor, max_items: int | None = None, batch: int = 64, cache: str | bool = True,
                     progress: ProgressFn | None = None) -> torch.Tensor:  # fmt: skip
    """Features float32 [n, D] (on the CPU) of the first n = min(len(dataset), max_items) items of `dataset`
    (float [C, H, W] in [-1, 1], C 1 or 3). cache: True (cache_dir()), a directory, or False."""
    n = len(dataset) if max_items is None else min(len(dataset), int(max_items))
    if n < 2:
        raise ValueError(f"the real images: need at least 2, the dataset has {len(dataset)}")
    known = dataset_fingerprint(dataset) if cache else None
    path = cached = None
    if known is not None:
        identity, fingerprint = known
        path = _cache_path(identity, extractor.identity, cache_dir() if cache is True else os.fspath(cache))
        cached = _read_cache(path, identity, fingerprint, extractor.identity)
    if cached is not None and cached.shape[0] >= n:
        if progress is not None:
            progress(n, n, "real features (cached)")
        return cached[:n]
    have = 0 if cached is None else cached.shape[0]
    more = _extract(dataset, extractor, have, n, batch, progress, have, n)
    features = more if cached is None else torch.cat([cached, more])
    if path is not None:
        state = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "identity": identity, "fingerprint": fingerprint,
                 "extractor": extractor.identity, "features": features.contiguous(),
                 "info": json.dumps({"dataset": repr(dataset), "count": int(features.shape[0])})}  # fmt: skip
        atomic_write(path, lambda f: torch.save(state, f))
    return features


def generated_features(batches: Iterable[torch.Tensor], extractor, count: int,
                       progress: ProgressFn | None = None):  # fmt: skip
    """Features float32 [count, D], on the extractor's device, of the first `count` images the iterable yields
    (float [B, C, H, W] in [-1, 1] or uint8, C 1 or 3). ValueError when it yields fewer than 2. extractor: one
    FeatureExtractor, or a list of them (each image batch goes to all; a list of feature tensors comes back)."""
    extractors = list(extractor) if isinstance(extractor, (list, tuple)) else [extractor]
    rows, have = [[] for _ in extractors], 0
    for images in batches:
        if have >= count:
            break
        images = to_uint8(images[: count - have])
        for net, out in zip(extractors, rows, strict=True):
            out.append(net(images))
        have += images.shape[0]
        if progress is not None:
            progress(have, count, "generated features")
    if have < 2:
        raise ValueError(f"the generated images: need at least 2, got {have}")
    features = [torch.cat(out) for out in rows]
    return features if isinstance(extractor, (list, tuple)) else features[0]
