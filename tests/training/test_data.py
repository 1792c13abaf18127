"""gankernels.training.data: the built-in shapes, image folders (with and without Pillow), and BatchStream's
epochs, rank split and exact resume."""

import pickle
import sys

import numpy as np
import pytest
import torch

from gankernels.training import data
from gankernels.training.data import (
    BatchStream,
    ImageFolderDataset,
    ShapesDataset,
    open_dataset,
    open_unpaired,
)
from gankernels.training.images import write_png

try:
    from PIL import Image
except ImportError:
    Image = None
needs_pillow = pytest.mark.skipif(Image is None, reason="Pillow not installed")


@pytest.fixture
def no_pillow(monkeypatch):
    """Make `from PIL import Image` fail, as on a machine without Pillow."""
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)


# -- ShapesDataset ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution, channels", [(4, 3), (32, 1), (64, 3), (256, 3)])
def test_shapes_shape_range_and_determinism(resolution, channels):
    ds = ShapesDataset(resolution, size=10, channels=channels, seed=3)
    assert len(ds) == 10
    items = [ds[i] for i in range(4)]
    for x in items:
        assert x.shape == (channels, resolution, resolution) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1 and torch.isfinite(x).all()
    again = ShapesDataset(resolution, size=10, channels=channels, seed=3)
    assert all(torch.equal(a, again[i]) for i, a in enumerate(items))  # a function of (seed, index) only
    assert torch.equal(ds[2], items[2])
    assert not torch.equal(items[0], items[1])
    assert not torch.equal(items[0], ShapesDataset(resolution, channels=channels, seed=4)[0])


def test_shapes_have_content():
    ds = ShapesDataset(64)
    for i in range(8):
        x = ds[i]
        assert x.std() > 0.05 and (x.amax((1, 2)) - x.amin((1, 2))).max() > 0.4  # shapes over a background
        edges = (x[:, :, 1:] - x[:, :, :-1]).abs().amax(0)
        assert ((edges > 0.05) & (edges < edges.max() * 0.9)).any()  # anti-aliased: intermediate edge values


def test_shapes_index_errors():
    ds = ShapesDataset(8, size=3)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(IndexError):
        ds[-1]
    assert len(list(ds)) == 3 and torch.equal(ds[np.int64(1)], ds[1])


def _axis_alignment(ds, count=48):
    """Mean over images of |gx gy| / (gx^2 + gy^2) on edge pixels: ~0 for axis-aligned edges, 1/pi uniform."""
    values = []
    for i in range(count):
        x = ds[i].mean(0).numpy()
        gx, gy = np.diff(x, axis=1)[:-1], np.diff(x, axis=0)[:, :-1]
        energy = gx**2 + gy**2
        mask = energy > 0.01
        values.append((np.abs(gx * gy)[mask] / energy[mask]).mean())
    return float(np.mean(values))


def test_domains_differ():
    circles, squares = ShapesDataset(64, kind="circles"), ShapesDataset(64, kind="squares")
    assert _axis_alignment(circles) > _axis_alignment(squares) + 0.05  # squares bring axis-aligned edges
    warm, cool = ShapesDataset(32, kind="warm"), ShapesDataset(32, kind="cool")
    w = torch.stack([warm[i] for i in range(32)])
    c = torch.stack([cool[i] for i in range(32)])
    assert (w[:, 0] - w[:, 2]).mean() > 0.2 and (c[:, 2] - c[:, 0]).mean() > 0.2  # red vs blue


def test_warm_and_cool_share_geometry():
    warm, cool = ShapesDataset(64, kind="warm"), ShapesDataset(64, kind="cool")

    def edges(x):
        g = (x[:, :, 1:] - x[:, :, :-1]).abs().sum(0)
        return (g > 0.1).flatten().float()

    same = [torch.corrcoef(torch.stack([edges(warm[i]), edges(cool[i])]))[0, 1] for i in range(8)]
    other = [torch.corrcoef(torch.stack([edges(warm[i]), edges(cool[i + 1])]))[0, 1] for i in range(8)]
    assert min(same) > 0.5 and max(other) < min(same)


def test_shapes_bad_arguments():
    for resolution in (3, 6, 0, 2, True, 8.0, "64"):
        with pytest.raises(ValueError, match="resolution"):
            ShapesDataset(resolution)
    for size in (0, -1, 1.5):
        with pytest.raises(ValueError, match="size"):
            ShapesDataset(8, size=size)
    for channels in (0, 2, 4, True):
        with pytest.raises(ValueError, match="channels"):
            ShapesDataset(8, channels=channels)
    with pytest.raises(ValueError, match="seed"):
        ShapesDataset(8, seed=-1)
    with pytest.raises(ValueError, match="kind"):
        ShapesDataset(8, kind="zebras")


# -- ImageFolderDataset -------------------------------------------------------------------------------------------


def _gradient(h, w, channels=3):
    yy, xx = np.mgrid[0:h, 0:w]
    planes = [xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256][:channels]
    return np.stack(planes, -1).astype(np.uint8)


def _folder(tmp_path, with_jpeg=False):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    write_png(root / "b.png", _gradient(37, 23))  # portrait, odd sizes
    write_png(root / "sub" / "a.png", _gradient(19, 41, 1)[:, :, 0])  # landscape, gray
    write_png(root / "flat.PNG", np.full((9, 9, 3), (200, 30, 100), np.uint8))
    write_png(root / ".hidden.png", np.zeros((4, 4), np.uint8))  # skipped
    (root / "notes.txt").write_text("not an image")
    if with_jpeg:
        Image.fromarray(_gradient(50, 31)).save(root / "c.jpg", quality=95)
    return root


@pytest.mark.parametrize("pillow", [True, False])
def test_image_folder(tmp_path, request, pillow):
    if pillow and Image is None:
        pytest.skip("Pillow not installed")
    if not pillow:
        request.getfixturevalue("no_pillow")
    root = _folder(tmp_path, with_jpeg=pillow)
    ds = ImageFolderDataset(root, 16)
    assert ds.use_pillow == pillow
    assert pickle.loads(pickle.dumps(ds)).files == ds.files  # DataLoader workers may need to pickle it
    names = [p.relative_to(root).as_posix() for p in ds.files]
    assert names == (["b.png", "c.jpg", "flat.PNG", "sub/a.png"] if pillow else ["b.png", "flat.PNG", "sub/a.png"])
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    flat = ds[names.index("flat.PNG")]
    expected = torch.tensor([200, 30, 100]) / 127.5 - 1
    assert torch.allclose(flat, expected[:, None, None].expand(3, 16, 16), atol=1 / 127.5)
    gray = ImageFolderDataset(root, 8, channels=1)[names.index("sub/a.png")]
    assert gray.shape == (1, 8, 8)
    row = gray[0, 4]
    assert (row[1:] >= row[:-1] - 1e-6).all()  # the horizontal ramp survives crop + resize


@needs_pillow
def test_image_folder_sixteen_bit_gray(tmp_path):
    root = tmp_path / "deep"
    root.mkdir()
    Image.fromarray(np.full((6, 6), 257 * 100, np.uint16)).save(root / "g.png")  # 16-bit gray
    x = ImageFolderDataset(root, 4)[0]
    assert torch.allclose(x, torch.full((3, 4, 4), 100 / 127.5 - 1), atol=1e-6)


def test_image_folder_numpy_resize_matches_pillow(tmp_path, monkeypatch):
    if Image is None:
        pytest.skip("Pillow not installed")
    root = tmp_path / "one"
    root.mkdir()
    write_png(root / "x.png", _gradient(70, 90))
    with_pillow = ImageFolderDataset(root, 32)[0]
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    without = ImageFolderDataset(root, 32)[0]
    assert (with_pillow - without).abs().mean() < 0.03  # LANCZOS vs area averaging: close on a smooth image


def test_resize_axis():
    a = np.arange(12, dtype=np.float64).reshape(1, 12, 1)
    down = data._resize_axis(a, 4, 1)
    assert np.allclose(down[0, :, 0], a[0, :, 0].reshape(4, 3).mean(1))  # integer factor: block means
    assert np.allclose(data._resize_axis(a, 5, 1).mean(), a.mean())  # area averaging keeps the mean
    up = data._resize_axis(np.full((3, 2, 1), 7.0), 9, 0)
    assert up.shape == (9, 2, 1) and np.allclose(up, 7)


def test_image_folder_without_pillow_refuses_jpeg(tmp_path, no_pillow):
    root = tmp_path / "mixed"
    root.mkdir()
    write_png(root / "a.png", np.zeros((4, 4, 3), np.uint8))
    (root / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not decoded")
    with pytest.raises(ImportError, match="pip install pillow"):
        ImageFolderDataset(root, 8)


@pytest.mark.parametrize("pillow", [True, False])
def test_image_folder_errors(tmp_path, request, pillow):
    if pillow and Image is None:
        pytest.skip("Pillow not installed")
    if not pillow:
        request.getfixturevalue("no_pillow")
    with pytest.raises(ValueError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere", 8)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="empty"):
        ImageFolderDataset(empty, 8)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    ds = ImageFolderDataset(broken, 8)
    with pytest.raises(ValueError, match="garbage.png"):
        ds[0]
    with pytest.raises(ValueError, match="channels"):
        ImageFolderDataset(broken, 8, channels=2)
    with pytest.raises(ValueError, match="resolution"):
        ImageFolderDataset(broken, 0)


def test_open_dataset_and_unpaired(tmp_path):
    ds = open_dataset(None, 16, channels=1, kind="circles")
    assert isinstance(ds, ShapesDataset) and ds.kind == "circles" and ds[0].shape == (1, 16, 16)
    root = _folder(tmp_path)
    assert isinstance(open_dataset(str(root), 16), ImageFolderDataset)

    a, b = open_unpaired(None, 16)
    assert (a.kind, b.kind) == ("circles", "squares")
    pairs = tmp_path / "horse2zebra"
    (pairs / "trainA").mkdir(parents=True)
    write_png(pairs / "trainA" / "h.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="trainB"):
        open_unpaired(pairs, 16)
    (pairs / "trainB").mkdir()
    write_png(pairs / "trainB" / "z.png", np.full((8, 8, 3), 255, np.uint8))
    a, b = open_unpaired(pairs, 16)
    assert a[0].max() == -1 and b[0].min() == 1
    with pytest.raises(ValueError, match="missing"):
        open_unpaired(tmp_path / "missing", 16)


# -- BatchStream --------------------------------------------------------------------------------------------------


class Indices(torch.utils.data.Dataset):
    """Item i is the tensor [[i]] (a 1-channel 1x1 image), so batches show which indices were taken."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((1, 1, 1), float(i))


def _ids(batch):
    return batch.flatten().long().tolist()


def test_stream_shapes_and_epochs():
    stream = BatchStream(ShapesDataset(8, size=20), batch_size=6, seed=1)
    batch = stream.next()
    assert batch.shape == (6, 3, 8, 8) and batch.dtype == torch.float32 and batch.device.type == "cpu"

    stream = BatchStream(Indices(10), batch_size=5, seed=0)
    epoch0 = _ids(stream.next()) + _ids(next(stream))
    epoch1 = _ids(stream.next()) + _ids(stream.next())
    assert sorted(epoch0) == list(range(10)) and sorted(epoch1) == list(range(10))  # each epoch a permutation
    assert epoch0 != epoch1 and stream.epoch == 2
    assert _ids(BatchStream(Indices(10), 10, seed=0).next()) == epoch0  # the same for the same seed
    assert _ids(BatchStream(Indices(10), 10, seed=1).next()) != epoch0


@pytest.mark.parametrize("world_size, num_workers", [(1, 0), (2, 0), (1, 1)])
def test_stream_exact_resume(world_size, num_workers):
    def make():
        return BatchStream(Indices(23), batch_size=4, seed=5, rank=world_size - 1, world_size=world_size,
                           num_workers=num_workers)  # fmt: skip

    stream = make()
    for _ in range(7):  # runs across epoch boundaries (23 // world_size items per epoch)
        stream.next()
    state = stream.state_dict()
    assert all(type(v) is int for v in state.values()) and {"epoch", "position", "seed"} <= set(state)
    expected = [_ids(stream.next()) for _ in range(5)]
    fresh = make()
    fresh.load_state_dict(state)
    assert [_ids(fresh.next()) for _ in range(5)] == expected
    stream.close()
    fresh.close()


def test_stream_with_workers_matches_single_process():
    single = BatchStream(Indices(11), batch_size=3, seed=2)
    workers = BatchStream(Indices(11), batch_size=3, seed=2, num_workers=1)
    assert [_ids(single.next()) for _ in range(9)] == [_ids(workers.next()) for _ in range(9)]
    assert single.state_dict() == workers.state_dict()
    workers.close()


def test_stream_ranks_are_disjoint():
    n, world_size = 21, 3
    streams = [BatchStream(Indices(n), batch_size=7, seed=9, rank=r, world_size=world_size) for r in range(world_size)]
    taken = [_ids(s.next()) for s in streams]  # one epoch each: 21 // 3 = 7 items
    assert all(len(set(t)) == 7 for t in taken)
    assert set().union(*map(set, taken)) == set(range(n))  # disjoint and together the whole dataset
    assert all(s.epoch == 1 and s.samples_per_epoch == 7 for s in streams)


def test_stream_resume_with_other_world_size_and_batch_size():
    stream = BatchStream(Indices(40), batch_size=4, seed=0, world_size=2)
    stream.next()
    state = stream.state_dict()  # 4 of 20 per rank: 8 of 40 samples into epoch 0
    single = BatchStream(Indices(40), batch_size=8, seed=0)
    single.load_state_dict(state)
    assert single.state_dict()["position"] == 8 and single.epoch == 0


def test_stream_bad_arguments():
    ds = Indices(4)
    for batch_size in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            BatchStream(ds, batch_size)
    with pytest.raises(ValueError, match="rank"):
        BatchStream(ds, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        BatchStream(ds, 2, rank=-1)
    with pytest.raises(ValueError, match="world_size"):
        BatchStream(ds, 2, world_size=0)
    with pytest.raises(ValueError, match="world_size"):
        BatchStream(ds, 2, rank=0, world_size=5)  # fewer items than ranks
    with pytest.raises(ValueError, match="seed"):
        BatchStream(ds, 2, seed=-3)
    stream = BatchStream(ds, 2)
    with pytest.raises(ValueError, match="dataset_size"):
        stream.load_state_dict({**stream.state_dict(), "dataset_size": 5})
    with pytest.raises(ValueError, match="position"):
        stream.load_state_dict({"epoch": 0, "seed": 0})
    with pytest.raises(TypeError, match="tensors"):
        BatchStream([1, 2, 3], 2).next()
