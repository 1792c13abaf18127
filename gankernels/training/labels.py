"""Class labels for conditional training (`gankernels train stylegan2 --cond`, `gankernels train dcgan --cond`).

Where the labels come from:
- the built-in data (no --data): `ShapeKindsDataset`, whose classes are ShapesDataset's kinds (shapes, circles,
  squares, warm, cool): item i is item i // K of kind i % K;
- an image folder (--data DIR) holding NVlabs' `dataset.json` ({"labels": [["relative/path.png", class], ...]}, as
  written by their dataset_tool): those integer labels, classes named "0" .. "max";
- otherwise an image folder whose images sit in first-level subfolders (torchvision ImageFolder's convention:
  DIR/CLASS/...), classes the subfolder names in sorted order.

Items of a labelled dataset are (image, label) pairs; BatchStream then yields (images, labels). The class names go
into the run's config (`class_names`), so a checkpoint rebuilds the conditional networks without the data.
"""

from __future__ import annotations

import json
import math

from torch.utils.data import Dataset

from .data import ImageFolderDataset, ShapesDataset

LABEL_SOURCES = (
    "--cond needs class labels, from: the built-in dataset (no --data: its kinds "
    f"{', '.join(ShapesDataset.KINDS)} are the classes), an image folder with one subfolder per class "
    '(DATA/CLASS/image.png), or NVlabs\' dataset.json ({"labels": [["path/in/DATA.png", class], ...]}) in the --data '
    "folder"
)

COND_HELP = "class-conditional: labels from the built-in data's kinds, DATA's subfolders or DATA/dataset.json"


class ShapeKindsDataset(Dataset):
    """The built-in shapes with labels: item i is (ShapesDataset(kind=KINDS[i % K])[i // K], i % K).

    resolution, channels, seed as ShapesDataset; size: items in all (default 50 000). class_names: the kinds.
    """

    def __init__(self, resolution: int, size: int = 50_000, channels: int = 3, seed: int = 0):
        self.class_names = list(ShapesDataset.KINDS)
        k = len(self.class_names)
        if isinstance(size, bool) or not isinstance(size, int) or size < k:
            raise ValueError(f"size must be an int >= {k} (one item per class), got {size!r}")
        self.size = size
        per_kind = math.ceil(size / k)
        self.kinds = [ShapesDataset(resolution, per_kind, channels, seed, kind) for kind in self.class_names]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index):
        index = int(index)
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of size {self.size}")
        k = len(self.kinds)
        return self.kinds[index % k][index // k], index % k


class LabeledImageFolder(Dataset):
    """An ImageFolderDataset with one integer label per file: items (image, label)."""

    def __init__(self, images: ImageFolderDataset, labels: list[int], class_names: list[str]):
        if len(labels) != len(images):
            raise ValueError(f"labels: {len(labels)} labels for {len(images)} images")
        self.images, self.labels, self.class_names = images, list(labels), list(class_names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.labels[int(index)]


def _dataset_json_labels(images: ImageFolderDataset, path) -> tuple[list[int], list[str]]:
    try:
        labels = json.loads(path.read_text()).get("labels")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"data: cannot read {path} as NVlabs' dataset.json: {e}") from e
    if labels is None:
        raise ValueError(f'data: {path} has no labels ("labels": null). {LABEL_SOURCES}')
    try:
        table = {str(name).replace("\\", "/"): value for name, value in labels}
    except (TypeError, ValueError):
        raise ValueError(f'data: {path}: "labels" must be a list of [path, class] pairs') from None
    result = []
    for file in images.files:
        name = file.relative_to(images.root).as_posix()
        if name not in table:
            raise ValueError(f"data: {path} has no label for {name}")
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"data: {path}: the label of {name} must be a class index (an int >= 0), got {value!r}")
        result.append(value)
    return result, [str(k) for k in range(max(result) + 1)]


def _subfolder_labels(images: ImageFolderDataset) -> tuple[list[int], list[str]]:
    parts = [file.relative_to(images.root).parts for file in images.files]
    loose = [p[0] for p in parts if len(p) == 1]
    if loose:
        where = f"{len(loose)} images (e.g. {loose[0]}) lie directly in {images.root}, outside any class subfolder"
        raise ValueError(f"data: {where} and there is no dataset.json. {LABEL_SOURCES}")
    class_names = sorted({p[0] for p in parts})
    index = {name: k for k, name in enumerate(class_names)}
    return [index[p[0]] for p in parts], class_names


def open_labeled_dataset(data, resolution: int, channels: int = 3):
    """The labelled dataset for --data (None: the built-in ShapeKindsDataset); it has `class_names`.
    ValueError (saying where labels come from) for a folder without labels."""
    if data is None:
        return ShapeKindsDataset(resolution, channels=channels)
    images = ImageFolderDataset(data, resolution, channels=channels)
    meta = images.root / "dataset.json"
    labels, names = _dataset_json_labels(images, meta) if meta.is_file() else _subfolder_labels(images)
    return LabeledImageFolder(images, labels, names)


def conditional_setup(config: dict, training: bool):
    """-> (class_names, labelled dataset or None) for a task's config. Unconditional: ([], None). Training: opens the
    labelled data, records its class names in config["class_names"] (a resumed run must see the same classes);
    otherwise (sampling, export) the names come from the config and no data is opened."""
    if not config.get("cond"):
        return [], None
    if not training:
        names = config.get("class_names")
        if not names:
            raise ValueError("a conditional run's config has no class_names")
        return list(names), None
    dataset = open_labeled_dataset(config.get("data"), config["resolution"], channels=config["channels"])
    names = list(dataset.class_names)
    if len(names) < 1:
        raise ValueError(f"data: no classes found. {LABEL_SOURCES}")
    recorded = config.get("class_names")
    if recorded is not None and list(recorded) != names:
        raise ValueError(f"data: the classes {names} differ from the run's {list(recorded)}")
    config["class_names"] = names
    return names, dataset
