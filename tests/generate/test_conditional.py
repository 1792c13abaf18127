"""Class-conditional training (--cond) on each label source: the labels reach G and D, sample grids have a row per
class, resume continues exactly, and --cond without labels says where labels come from."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gankernels.training import loop, registry
from gankernels.training.images import write_png
from gankernels.training.labels import LABEL_SOURCES, ShapeKindsDataset, open_labeled_dataset
from tests.generate.conftest import TINY_RUNS


def _folder(root, layout):
    """layout: relative path -> colour; writes 8x8 PNGs."""
    for name, colour in layout.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, np.full((8, 8, 3), colour, dtype=np.uint8))
    return root


def _task(model, tmp_path, **overrides):
    cls = registry.get(model)
    config = {**cls.defaults, "seed": 0, "data": None, **TINY_RUNS[model], "cond": True, **overrides}
    cls.check_config(config)
    torch.manual_seed(0)
    return cls(config, torch.device("cpu"), loop.distributed.DistInfo()), config


class _Spy(torch.nn.Module):
    """Wraps a network, recording the conditioning argument of every call."""

    def __init__(self, net, calls):
        super().__init__()
        self.net, self.calls = net, calls

    def forward(self, x, c=None, **kwargs):
        self.calls.append(c)
        return self.net(x, c, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.net, name)


def _step_with_spies(task, stylegan2):
    g_calls, d_calls = [], []
    if stylegan2:
        mapping = task.G.mapping
        task.G.mapping = _Spy(mapping, g_calls)
    else:
        task.G = _Spy(task.G, g_calls)
    real_labels = []
    next_batch = task.stream.next

    def record():
        batch = next_batch()
        real_labels.append(batch[1])
        return batch

    task.stream.next = record
    task.D = _Spy(task.D, d_calls)
    stats = task.step(0)
    assert all(np.isfinite(float(v)) for v in stats.values()), stats
    assert g_calls and d_calls and real_labels
    return g_calls, d_calls, real_labels


def test_stylegan2_builtin_kinds(tmp_path):
    task, config = _task("stylegan2", tmp_path)
    assert config["class_names"] == list(ShapeKindsDataset(8).class_names) == ["shapes", "circles", "squares", "warm",
                                                                              "cool"]  # fmt: skip
    assert task.G.c_dim == 5 and task.D.c_dim == 5
    g_calls, d_calls, real = _step_with_spies(task, stylegan2=True)
    for c in g_calls + d_calls:
        assert c.shape[1] == 5 and torch.equal(c.sum(1), torch.ones(c.shape[0]))  # one-hot rows reach G and D
    assert any(torch.equal(c, torch.nn.functional.one_hot(real[0], 5).float()) for c in d_calls)  # the reals' labels
    images, cols = task.sample_grid(seeds=[0, 1, 2])
    assert images.shape[0] == 15 and cols == 3  # one row per class


def test_dcgan_image_subfolders(tmp_path):
    data = _folder(tmp_path / "data", {"cat/a.png": 10, "cat/b.png": 20, "dog/c.png": 200, "dog/sub/d.png": 250})
    task, config = _task("dcgan", tmp_path, data=str(data))
    assert config["class_names"] == ["cat", "dog"] and task.G.num_classes == 2 and task.D.num_classes == 2
    dataset = open_labeled_dataset(str(data), 32)
    assert [dataset[i][1] for i in range(4)] == [0, 0, 1, 1]
    g_calls, d_calls, real = _step_with_spies(task, stylegan2=False)
    assert all(c is not None and c.dtype == torch.int64 for c in g_calls + d_calls)
    assert any(torch.equal(c, real[0]) for c in d_calls)
    images, cols = task.sample_grid(seeds=[0, 1])
    assert images.shape == (4, 3, 32, 32) and cols == 2


def test_nvlabs_dataset_json(tmp_path):
    data = _folder(tmp_path / "data", {"00000/img0.png": 0, "00000/img1.png": 90, "img2.png": 180})
    labels = [["00000/img0.png", 2], ["00000/img1.png", 0], ["img2.png", 1]]
    (data / "dataset.json").write_text(json.dumps({"labels": labels}))
    dataset = open_labeled_dataset(str(data), 8)
    assert dataset.class_names == ["0", "1", "2"]
    assert sorted(dataset[i][1] for i in range(3)) == [0, 1, 2]
    files = [f.relative_to(data).as_posix() for f in dataset.images.files]
    assert [dataset[i][1] for i in range(3)] == [dict(labels)[f] for f in files]
    task, _ = _task("stylegan2", tmp_path, data=str(data))
    g_calls, d_calls, _ = _step_with_spies(task, stylegan2=True)
    assert all(c.shape[1] == 3 for c in g_calls + d_calls)
    (data / "dataset.json").write_text(json.dumps({"labels": labels[:2]}))
    with pytest.raises(ValueError, match="no label for img2.png"):
        open_labeled_dataset(str(data), 8)
    (data / "dataset.json").write_text(json.dumps({"labels": [[f, "cat"] for f, _ in labels]}))
    with pytest.raises(ValueError, match="must be a class index"):
        open_labeled_dataset(str(data), 8)
    (data / "dataset.json").write_text(json.dumps({"labels": None}))
    with pytest.raises(ValueError, match="has no labels"):
        open_labeled_dataset(str(data), 8)


def test_cond_without_labels(tmp_path):
    data = _folder(tmp_path / "flat", {"a.png": 0, "b.png": 255})
    with pytest.raises(ValueError, match="--cond needs class labels") as info:
        _task("dcgan", tmp_path, data=str(data))
    assert "dataset.json" in str(info.value) and "subfolder" in str(info.value) and LABEL_SOURCES in str(info.value)
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "gankernels", "train", "stylegan2", "--cond", "--data", str(data),
                        "--out", str(out), "--steps", "1", "--resolution", "8"], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)  # fmt: skip
    assert r.returncode == 2 and "--cond needs class labels" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("model", ["stylegan2", "dcgan"])
def test_conditional_resume_is_exact(model, tmp_path):
    cls = registry.get(model)
    config = {**cls.defaults, "seed": 0, "data": None, **TINY_RUNS[model], "cond": True}
    loop.train(cls, dict(config), str(tmp_path / "straight"), steps=2, snap=1, device="cpu", quiet=True)
    loop.train(cls, dict(config), str(tmp_path / "split"), steps=1, snap=1, device="cpu", quiet=True)
    loop.train(cls, None, str(tmp_path / "split"), steps=2, snap=1, resume=True, device="cpu", quiet=True)
    a, b = loop.read_run(tmp_path / "straight"), loop.read_run(tmp_path / "split")
    assert a["config"]["class_names"] == b["config"]["class_names"] == ["shapes", "circles", "squares", "warm", "cool"]
    assert a["task"]["stream"] == b["task"]["stream"]
    for net in ("G", "D"):
        for name, value in a["task"][net].items():
            assert torch.equal(value, b["task"][net][name]), f"{net}.{name}"
    restored = loop.restore_task(b, torch.device("cpu"))  # no data opened: the classes come from the config
    assert restored.class_names == a["config"]["class_names"]
