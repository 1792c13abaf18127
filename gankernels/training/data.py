"""Datasets and a resumable batch stream for training.

- `ShapesDataset`: the built-in offline dataset, generated on the fly (no download, no files): smooth gradient
  backgrounds with 1-3 anti-aliased shapes. Families: "shapes" (mixed), "circles" / "squares" (two domains for
  unpaired translation), "warm" / "cool" (the same geometry in warm vs cool palettes).
- `ImageFolderDataset`: every image under a folder, centre-cropped and resized (Pillow when installed; without it,
  PNG only through `read_png` and a numpy resize).
- `open_dataset`, `open_unpaired`: what the CLI's --data means (None: built-in data).
- `BatchStream`: an infinite stream of batches over shuffled epochs, split across DDP ranks, that resumes exactly.

Every item is a float32 tensor [C, R, R] in [-1, 1].
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import read_png

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# ITU-R 601-2 luma, as Pillow's convert("L")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _check_int(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_channels(channels) -> None:
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")


# --------------------------------------------------------------------------------------------------------------
# Built-in shapes
# --------------------------------------------------------------------------------------------------------------

_SHAPE_TYPES = ("circle", "square", "rotated_square", "triangle")
# kind -> (geometry stream, shape types drawn, palette). Kinds that share a geometry stream draw the same shapes at
# the same places for the same (seed, index): warm[i] and cool[i] differ only in colour.
_KINDS = {
    "shapes": (0, _SHAPE_TYPES, "any"),
    "circles": (1, ("circle",), "any"),
    "squares": (2, ("square", "rotated_square"), "any"),
    "warm": (0, _SHAPE_TYPES, "warm"),
    "cool": (0, _SHAPE_TYPES, "cool"),
}
# palette -> the hue range (fractions of the colour wheel; may wrap below 0)
_HUES = {"any": (0.0, 1.0), "warm": (-0.08, 0.15), "cool": (0.45, 0.72)}


def _hsv_to_rgb(h, s, v) -> np.ndarray:
    """Vectorised HSV (each in [0, 1], h wraps) -> RGB [..., 3] in [0, 1]."""
    h, s, v = np.broadcast_arrays(np.asarray(h) % 1.0, s, v)
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class ShapesDataset(Dataset):
    """Synthetic images: a smooth two-colour gradient with 1-3 filled shapes drawn over it.

    resolution: R, a power of two >= 4. size: number of items (default 50 000). channels: 3 (RGB) or 1 (luma).
    seed: item i is a deterministic function of (seed, i, kind). kind: "shapes" (circles, squares, rotated squares
    and triangles), "circles", "squares" (axis-aligned and rotated), "warm", "cool" (as "shapes", and with the
    same geometry as "shapes" item for item, in warm or cool hues). Items: float32 [channels, R, R] in [-1, 1].
    Edges are anti-aliased by coverage from a signed distance (a one-pixel ramp).
    """

    KINDS = tuple(_KINDS)

    def __init__(self, resolution: int, size: int = 50_000, channels: int = 3, seed: int = 0, kind: str = "shapes"):
        _check_int(resolution, "resolution", 4)
        if resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        _check_int(size, "size", 1)
        _check_channels(channels)
        _check_int(seed, "seed", 0)
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {list(_KINDS)}, got {kind!r}")
        self.resolution = int(resolution)
        self.size = int(size)
        self.channels = int(channels)
        self.seed = int(seed)
        self.kind = kind
        self._geometry, self._shape_types, palette = _KINDS[kind]
        self._hues = _HUES[palette]
        self._centres = np.arange(self.resolution, dtype=np.float32) + 0.5  # pixel centres

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (
            f"ShapesDataset(resolution={self.resolution}, size={self.size}, channels={self.channels}, "
            f"seed={self.seed}, kind={self.kind!r})"
        )

    def __getitem__(self, index) -> torch.Tensor:
        index = int(index)
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of size {self.size}")
        image = self.render(index)
        if self.channels == 1:
            image = image @ _LUMA
            image = image[:, :, None]
        image = np.clip(image * 2.0 - 1.0, -1.0, 1.0)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def _colours(self, rng: np.random.Generator, n: int, saturation, value) -> np.ndarray:
        lo, hi = self._hues
        return _hsv_to_rgb(lo + (hi - lo) * rng.random(n), rng.uniform(*saturation, n), rng.uniform(*value, n))

    def render(self, index: int) -> np.ndarray:
        """Item `index` as float32 RGB [R, R, 3] in [0, 1]."""
        size = float(self.resolution)
        # separate streams: geometry shared by kinds with the same geometry id, colour shared by every palette
        geometry = np.random.default_rng([self.seed, index, self._geometry, 0])
        colour = np.random.default_rng([self.seed, index, self._geometry, 1])
        background = self._colours(colour, 2, (0.15, 0.6), (0.15, 0.55)).astype(np.float32)
        shape_colours = self._colours(colour, 3, (0.55, 1.0), (0.65, 1.0)).astype(np.float32)

        # background: c0 -> c1 along a random direction
        angle = geometry.uniform(0.0, 2.0 * np.pi)
        x = self._centres[None, :] - size / 2
        y = self._centres[:, None] - size / 2
        # Python-float scalars keep the arithmetic in float32
        t = np.clip((x * math.cos(angle) + y * math.sin(angle)) * (1 / (0.71 * size)) + 0.5, 0.0, 1.0)
        image = background[0] + t[:, :, None] * (background[1] - background[0])

        count = int(geometry.integers(1, 4))
        for k in range(3):
            # draw every parameter for every slot so the stream does not depend on which shapes were drawn
            kind = self._shape_types[int(geometry.integers(len(self._shape_types)))]
            cx, cy = geometry.uniform(0.15, 0.85, 2) * size
            radius = geometry.uniform(0.1, 0.26) * size
            theta = geometry.uniform(0.0, 2.0 * np.pi)
            jitter = geometry.uniform(-0.35, 0.35, 3)
            if k < count:
                self._draw(image, kind, cx, cy, radius, theta, jitter, shape_colours[k])
        return image

    def _draw(self, image, kind, cx, cy, radius, theta, jitter, colour) -> None:
        """Composite one shape over `image` in place, evaluated only inside its bounding box."""
        extent = radius * (1.45 if kind in ("triangle", "rotated_square") else 1.05) + 1.0
        x0, x1 = (int(np.clip(v, 0, self.resolution)) for v in (np.floor(cx - extent), np.ceil(cx + extent)))
        y0, y1 = (int(np.clip(v, 0, self.resolution)) for v in (np.floor(cy - extent), np.ceil(cy + extent)))
        if x0 >= x1 or y0 >= y1:
            return
        dx = self._centres[None, x0:x1] - np.float32(cx)
        dy = self._centres[y0:y1, None] - np.float32(cy)
        if kind == "circle":
            distance = np.sqrt(dx * dx + dy * dy) - radius
        elif kind in ("square", "rotated_square"):
            angle = theta % (np.pi / 2) if kind == "rotated_square" else 0.0
            half = np.float32(0.886 * radius)  # same area as the circle of this radius
            c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
            qx = np.abs(c * dx + s * dy) - half
            qy = np.abs(c * dy - s * dx) - half
            # exact box distance: outside part + inside part
            distance = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
        else:
            # triangle: max of the three edges' signed distances (exact inside and along edges; near-exact
            # within the one-pixel anti-aliasing ramp outside the corners)
            angles = theta + np.array([0.0, 2.0, 4.0]) * np.pi / 3 + jitter
            vx = 1.25 * radius * np.cos(angles)
            vy = 1.25 * radius * np.sin(angles)
            distance = None
            for i in range(3):
                ex, ey = vx[(i + 1) % 3] - vx[i], vy[(i + 1) % 3] - vy[i]
                length = np.hypot(ex, ey)
                nx, ny = ey / length, -ex / length  # a unit normal of the edge
                if nx * (vx[(i + 2) % 3] - vx[i]) + ny * (vy[(i + 2) % 3] - vy[i]) > 0:
                    nx, ny = -nx, -ny  # point it away from the opposite vertex: outwards
                edge = np.float32(nx) * (dx - np.float32(vx[i])) + np.float32(ny) * (dy - np.float32(vy[i]))
                distance = edge if distance is None else np.maximum(distance, edge)
        coverage = np.clip(0.5 - distance, 0.0, 1.0)[:, :, None]
        window = image[y0:y1, x0:x1]
        window += coverage * (colour - window)


# --------------------------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------------------------


def _pillow():
    """PIL.Image, or None when Pillow is not installed (imported lazily: only this loader may use it)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def _resize_axis(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Resize float64 `a` along `axis` to `size`: area averaging when shrinking (exact box integrals through a
    cumulative sum), bilinear with half-pixel centres when enlarging."""
    n = a.shape[axis]
    if size == n:
        return a
    shape = [1] * a.ndim
    shape[axis] = size
    if size < n:
        cumulative = np.concatenate([np.zeros_like(np.take(a, [0], axis)), np.cumsum(a, axis=axis)], axis=axis)

        def integral(x):  # integral of the piecewise-constant signal from 0 to x
            i = np.minimum(np.floor(x).astype(np.int64), n - 1)
            return np.take(cumulative, i, axis) + (x - i).reshape(shape) * np.take(a, i, axis)

        edges = np.arange(size + 1) * (n / size)
        return (integral(edges[1:]) - integral(edges[:-1])) * (size / n)
    x = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (x - i0).reshape(shape)
    return np.take(a, i0, axis) * (1 - w) + np.take(a, i1, axis) * w


def _load_with_pillow(image_module, path: Path, resolution: int, channels: int) -> np.ndarray:
    from PIL import ImageOps

    with image_module.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I"):  # 16-bit gray (mode I;16 or I): Pillow's convert would clip it at 255
            scaled = np.clip(np.asarray(image, dtype=np.float64) / 257.0 + 0.5, 0, 255).astype(np.uint8)
            image = image_module.fromarray(scaled)
        elif image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # avoids Pillow's warning; the alpha is then dropped
        image = image.convert("RGB" if channels == 3 else "L")
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.resize((resolution, resolution), image_module.Resampling.LANCZOS,
                             box=(left, top, left + side, top + side))  # fmt: skip
        return np.asarray(image, dtype=np.float32).reshape(resolution, resolution, channels)


def _load_with_numpy(path: Path, resolution: int, channels: int) -> np.ndarray:
    pixels = read_png(path)
    pixels = pixels[:, :, :3] if pixels.shape[2] >= 3 else pixels[:, :, :1]  # drop alpha
    h, w = pixels.shape[:2]
    side = min(w, h)
    top, left = (h - side) // 2, (w - side) // 2
    image = pixels[top : top + side, left : left + side].astype(np.float64)
    if channels == 1 and image.shape[2] == 3:
        image = image @ _LUMA.astype(np.float64)[:, None]
    elif channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = _resize_axis(_resize_axis(image, resolution, 0), resolution, 1)
    return np.clip(image, 0, 255).astype(np.float32)


class ImageFolderDataset(Dataset):
    """Every .png / .jpg / .jpeg / .bmp / .webp file under `root` (recursive; names starting with "." skipped;
    sorted by relative path), centre-cropped to a square and resized to `resolution` x `resolution`.

    With Pillow: any of those formats, LANCZOS resampling, EXIF orientation applied. Without Pillow: PNG only (8-bit,
    via `read_png`), area averaging when shrinking and bilinear when enlarging; a folder holding other formats
    raises ImportError naming `pip install pillow`. Alpha is dropped. Items: float32 [channels, R, R] in [-1, 1].
    """

    def __init__(self, root, resolution: int, channels: int = 3):
        _check_int(resolution, "resolution", 1)
        _check_channels(channels)
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"root: no such directory: {self.root}")
        files = []
        for directory, subdirs, names in os.walk(self.root):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            names = [n for n in names if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)]
            files += [Path(directory, n) for n in names]
        if not files:
            raise ValueError(f"root: no images ({', '.join(IMAGE_EXTENSIONS)}) under {self.root}")
        self.files = sorted(files, key=lambda p: p.relative_to(self.root).as_posix())
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.use_pillow = _pillow() is not None  # a flag, not the module: the dataset must pickle (DataLoader workers)
        if not self.use_pillow:
            other = next((p for p in self.files if p.suffix.lower() != ".png"), None)
            if other is not None:
                raise ImportError(
                    f"reading {other} needs Pillow (pip install pillow); without it ImageFolderDataset reads PNG only"
                )

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"ImageFolderDataset({str(self.root)!r}, resolution={self.resolution}, channels={self.channels})"

    def __getitem__(self, index) -> torch.Tensor:
        path = self.files[int(index)]
        try:
            if self.use_pillow:
                image = _load_with_pillow(_pillow(), path, self.resolution, self.channels)
            else:
                image = _load_with_numpy(path, self.resolution, self.channels)
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file
            raise ValueError(f"cannot read image {path}: {e}") from e
        image = image * np.float32(1 / 127.5) - 1
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def open_dataset(data, resolution: int, channels: int = 3, kind: str = "shapes") -> Dataset:
    """data None: the built-in ShapesDataset of `kind`; otherwise an ImageFolderDataset of the folder `data`."""
    if data is None:
        return ShapesDataset(resolution, channels=channels, kind=kind)
    return ImageFolderDataset(data, resolution, channels=channels)


def open_unpaired(data, resolution: int, channels: int = 3) -> tuple[Dataset, Dataset]:
    """Two domains for unpaired translation -> (dataset_A, dataset_B).

    data None: the built-in circles (A) vs squares (B). Otherwise the folders DATA/trainA and DATA/trainB, laid out
    as in the CycleGAN repository's datasets.
    """
    if data is None:
        return (ShapesDataset(resolution, channels=channels, kind="circles"),
                ShapesDataset(resolution, channels=channels, kind="squares"))  # fmt: skip
    root = Path(data)
    if not root.is_dir():
        raise ValueError(f"data: no such directory: {root}")
    for domain in ("trainA", "trainB"):
        if not (root / domain).is_dir():
            raise ValueError(f"data: {root} has no {domain}/ folder (expected DATA/trainA and DATA/trainB)")
    return (ImageFolderDataset(root / "trainA", resolution, channels),
            ImageFolderDataset(root / "trainB", resolution, channels))  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------------------


def _collate(items):
    """Images -> a tensor [B, ...]; (image, label) pairs (labelled datasets) -> (images, int64 labels [B])."""
    if items and isinstance(items[0], tuple):
        images, labels = zip(*items, strict=True)
        return _collate(list(images)), torch.as_tensor(labels, dtype=torch.int64)
    for item in items:
        if not isinstance(item, (torch.Tensor, np.ndarray)):
            raise TypeError(f"BatchStream needs dataset items that are tensors, got {type(item).__name__}")
    return torch.stack([torch.as_tensor(item) for item in items])


class _Cursor:
    """A position in the infinite index sequence: this rank's share of epoch 0's permutation, then epoch 1's..."""

    def __init__(self, size: int, seed: int, rank: int, world_size: int, epoch: int = 0, position: int = 0):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.per_epoch = size // world_size  # equal shares keep DDP ranks in step; the remainder rotates per epoch
        self.epoch, self.position = epoch, position
        self._cached = (None, None)

    def order(self, epoch: int) -> list[int]:
        if self._cached[0] != epoch:
            # one well-mixed 64-bit seed per (seed, epoch)
            words = np.random.SeedSequence([self.seed, epoch]).generate_state(2, dtype=np.uint32)
            generator = torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))
            permutation = torch.randperm(self.size, generator=generator)
            self._cached = (epoch, permutation[self.rank :: self.world_size][: self.per_epoch].tolist())
        return self._cached[1]

    def take(self, count: int) -> list[int]:
        indices = []
        while len(indices) < count:
            order = self.order(self.epoch)
            step = min(count - len(indices), self.per_epoch - self.position)
            indices += order[self.position : self.position + step]
            self.position += step
            if self.position == self.per_epoch:
                self.epoch, self.position = self.epoch + 1, 0
        return indices

    def copy(self) -> _Cursor:
        return _Cursor(self.size, self.seed, self.rank, self.world_size, self.epoch, self.position)


class _BatchSampler:
    """Endless lists of indices from a cursor, for DataLoader(batch_sampler=...)."""

    def __init__(self, cursor: _Cursor, batch_size: int):
        self.cursor, self.batch_size = cursor, batch_size

    def __iter__(self):
        while True:
            yield self.cursor.take(self.batch_size)


class BatchStream:
    """An infinite, resumable stream of batches [B, C, R, R] on `device`.

    Epoch e visits the permutation of the dataset drawn from a torch.Generator seeded from (seed, e); rank r of
    world_size takes every world_size-th index of it, starting at r (disjoint across ranks; every rank takes
    len(dataset) // world_size per epoch, so ranks stay in step). Batches run across epoch boundaries.
    `state_dict()` / `load_state_dict()` continue exactly where the stream stopped; every rank of a DDP run is at
    the same point, so rank 0's state resumes all of them. num_workers > 0 loads through a DataLoader with that
    many worker processes (same batches, same resume).
    """

    def __init__(self, dataset, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 device="cpu", num_workers: int = 0):  # fmt: skip
        _check_int(batch_size, "batch_size", 1)
        _check_int(seed, "seed", 0)
        _check_int(world_size, "world_size", 1)
        _check_int(num_workers, "num_workers", 0)
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an int in [0, world_size={world_size}), got {rank!r}")
        size = len(dataset)
        if size < world_size:
            raise ValueError(f"dataset has {size} items, fewer than world_size={world_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.num_workers = int(num_workers)
        self._cursor = _Cursor(size, int(seed), int(rank), int(world_size))
        self._loader = None  # the DataLoader iterator when num_workers > 0, built on first use

    @property
    def epoch(self) -> int:
        """The epoch the next batch starts in."""
        return self._cursor.epoch

    @property
    def samples_per_epoch(self) -> int:
        """How many items this rank takes per epoch: len(dataset) // world_size."""
        return self._cursor.per_epoch

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        return self.next()

    def next(self):
        """The next batch, float [B, C, R, R] on `device`; for a labelled dataset (items (image, label)) the pair
        (images, labels int64 [B]), both on `device`. Labels follow the images' order, so resuming keeps them."""
        if self.num_workers == 0:
            batch = _collate([self.dataset[i] for i in self._cursor.take(self.batch_size)])
        else:
            if self._loader is None:
                sampler = _BatchSampler(self._cursor.copy(), self.batch_size)  # runs ahead while workers prefetch
                self._loader = iter(torch.utils.data.DataLoader(
                    self.dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=_collate,
                    pin_memory=self.device.type == "cuda"))  # fmt: skip
            batch = next(self._loader)
            self._cursor.take(self.batch_size)  # the consumed position, which is what state_dict saves
        pin = self.device.type == "cuda"  # so the copy below does not wait for the device (no host sync per step)
        if isinstance(batch, tuple):
            return tuple((b.pin_memory() if pin and not b.is_pinned() else b).to(self.device, non_blocking=pin)
                         for b in batch)  # fmt: skip
        if pin and not batch.is_pinned():
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=batch.is_pinned())

    def close(self) -> None:
        """Stop the worker processes, if any (the next batch starts them again)."""
        self._loader = None

    def state_dict(self) -> dict:
        """Plain ints: where the stream is ("epoch", "position" within this rank's share) and what it is over."""
        c = self._cursor
        return {"epoch": c.epoch, "position": c.position, "seed": c.seed, "rank": c.rank,
                "world_size": c.world_size, "dataset_size": c.size, "batch_size": self.batch_size}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state` (from `state_dict`): the same batches follow as followed when it was taken.

        The seed comes from the state. A state taken with another world_size resumes at the same point of the
        epoch (exact only for the same world_size); another batch_size continues from the same sample.
        """
        for key in ("epoch", "position", "seed"):
            _check_int(state.get(key) if isinstance(state, dict) else None, f"state[{key!r}]", 0)
        c = self._cursor
        if state.get("dataset_size", c.size) != c.size:
            raise ValueError(f"state['dataset_size'] is {state['dataset_size']}, but the dataset has {c.size} items")
        world_size = state.get("world_size", c.world_size)
        _check_int(world_size, "state['world_size']", 1)
        epoch, position = int(state["epoch"]), int(state["position"]) * int(world_size) // c.world_size
        if position > c.per_epoch:
            raise ValueError(f"state['position'] {state['position']} is beyond the epoch's {c.per_epoch} samples")
        if position == c.per_epoch:
            epoch, position = epoch + 1, 0
        self._cursor = _Cursor(c.size, int(state["seed"]), c.rank, c.world_size, epoch, position)
        self._loader = None
