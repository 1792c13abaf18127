"""gankernels.training.images: tensors -> uint8, grids, and the zlib PNG encoder / decoder (checked against
hand-filtered files and, when installed, Pillow)."""

import os
import struct
import zlib

import numpy as np
import pytest
import torch

from gankernels.training import images
from gankernels.training.images import image_grid, read_png, save_image_grid, to_uint8, write_png

try:
    from PIL import Image
except ImportError:
    Image = None
needs_pillow = pytest.mark.skipif(Image is None, reason="Pillow not installed")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width, height, colour_type, scanlines: bytes, bit_depth=8, interlace=0, extra=()) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + b"".join(extra)
            + _chunk(b"IDAT", zlib.compress(scanlines)) + _chunk(b"IEND", b""))  # fmt: skip


def _filter_scalar(pixels: np.ndarray, types) -> bytes:
    """PNG filtering written out byte by byte from the specification, independent of images._filter_rows."""
    h, w, bpp = pixels.shape
    raw = pixels.reshape(h, w * bpp).astype(int).tolist()
    out = bytearray()
    for r in range(h):
        t = types[r]
        out.append(t)
        for i in range(w * bpp):
            a = raw[r][i - bpp] if i >= bpp else 0
            b = raw[r - 1][i] if r > 0 else 0
            c = raw[r - 1][i - bpp] if r > 0 and i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            paeth = a if pa <= pb and pa <= pc else b if pb <= pc else c
            prediction = [0, a, b, (a + b) // 2, paeth][t]
            out.append((raw[r][i] - prediction) % 256)
    return bytes(out)


def _smooth_and_noisy(h, w, channels, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 7 + yy * 3 + 40 * k) % 256 for k in range(channels)], axis=-1)
    base[h // 3 : 2 * h // 3] = rng.integers(0, 256, (2 * h // 3 - h // 3, w, channels))
    return base.astype(np.uint8)


# -- to_uint8 / image_grid --------------------------------------------------------------------------------------


def test_to_uint8_maps_range_rounds_clamps_and_transposes():
    x = torch.tensor([-1.0, 1.0, 0.0, -2.0, 3.0, 0.5, float("nan")]).reshape(1, 1, 1, 7)
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 7, 1)
    assert out[0, 0, :, 0].tolist() == [0, 255, 128, 0, 255, 191, 128]
    rgb = torch.rand(2, 3, 4, 5, dtype=torch.float64) * 2 - 1
    out = to_uint8(rgb)
    assert out.shape == (2, 4, 5, 3)
    assert out[1, 2, 3, 0] == round((rgb[1, 0, 2, 3].item() + 1) * 127.5)


def test_to_uint8_bad_input():
    with pytest.raises(TypeError, match="images"):
        to_uint8(np.zeros((1, 3, 2, 2)))
    with pytest.raises(TypeError, match="floating"):
        to_uint8(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        to_uint8(torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        to_uint8(torch.zeros(3, 2, 2))


def test_image_grid_layout():
    # 5 images of 2x3, image k filled with the value 10 * (k + 1)
    cells = np.stack([np.full((2, 3, 1), 10 * (k + 1), np.uint8) for k in range(5)])
    grid = image_grid(cells)  # ceil(sqrt(5)) = 3 columns, 2 rows
    assert grid.shape == (4, 9, 1) and grid.dtype == np.uint8
    for k in range(6):
        row, col = divmod(k, 3)
        block = grid[row * 2 : row * 2 + 2, col * 3 : col * 3 + 3]
        assert (block == (10 * (k + 1) if k < 5 else 0)).all()
    grid = image_grid(cells, cols=2)
    assert grid.shape == (6, 6, 1) and (grid[4:, :3] == 50).all() and (grid[4:, 3:] == 0).all()
    assert image_grid(cells, cols=5).shape == (2, 15, 1)


def test_image_grid_from_tensor_and_bad_cols():
    x = torch.linspace(-1, 1, 4 * 3 * 2 * 2).reshape(4, 3, 2, 2)
    grid = image_grid(x)
    assert grid.shape == (4, 4, 3)
    assert np.array_equal(grid[2:, 2:], to_uint8(x)[3])
    for cols in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="cols"):
            image_grid(x, cols=cols)
    with pytest.raises(ValueError, match="images"):
        image_grid(np.zeros((2, 2, 2, 3), np.float32))


# -- PNG ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (9, 13, 1), (6, 11, 2), (17, 10, 3), (8, 5, 4), (40, 33, 3)])
def test_write_read_round_trip(tmp_path, shape):
    channels = shape[2] if len(shape) == 3 else 1
    array = _smooth_and_noisy(shape[0], shape[1], channels, seed=sum(shape)).reshape(shape)
    path = tmp_path / "x.png"
    write_png(path, array)
    back = read_png(path)
    assert back.dtype == np.uint8 and back.shape == (shape[0], shape[1], channels)
    assert np.array_equal(back.reshape(shape), array)
    if Image is not None:  # an independent decoder agrees
        assert np.array_equal(np.asarray(Image.open(path)).reshape(shape), array)


def test_writer_filters_in_blocks_of_rows(tmp_path, monkeypatch):
    array = _smooth_and_noisy(23, 10, 3)
    whole = images._filter_rows(array)
    monkeypatch.setattr(images, "_FILTER_BLOCK_BYTES", 70)  # two rows a block: block edges need the row above
    assert np.array_equal(images._filter_rows(array), whole)
    write_png(tmp_path / "b.png", array)
    assert np.array_equal(read_png(tmp_path / "b.png"), array)


def test_writer_uses_several_filters_and_compresses(tmp_path):
    array = _smooth_and_noisy(60, 80, 3)
    filtered = images._filter_rows(array)
    assert len(set(filtered[:, 0].tolist())) >= 2  # smooth rows and noise rows pick different filters
    write_png(tmp_path / "s.png", np.tile(np.arange(256, dtype=np.uint8), (64, 1)))
    assert os.path.getsize(tmp_path / "s.png") < 1000  # a gradient compresses well once filtered (64 KiB raw)


@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4, "mixed"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_read_each_filter_type(tmp_path, filter_type, channels):
    pixels = _smooth_and_noisy(12, 9, channels, seed=channels)
    types = [r % 5 for r in range(12)] if filter_type == "mixed" else [filter_type] * 12
    path = tmp_path / "f.png"
    path.write_bytes(_png(9, 12, {1: 0, 3: 2, 4: 6}[channels], _filter_scalar(pixels, types)))
    assert np.array_equal(read_png(path), pixels)
    if Image is not None:  # the hand filter itself is right: Pillow decodes the file to the same pixels
        assert np.array_equal(np.asarray(Image.open(path)).reshape(pixels.shape), pixels)


def test_read_palette_png(tmp_path):
    palette = np.array([[0, 0, 0], [255, 0, 0], [10, 200, 30]], np.uint8)
    indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    path = tmp_path / "p.png"
    scanlines = _filter_scalar(indices[:, :, None], [0, 2])
    path.write_bytes(_png(3, 2, 3, scanlines, extra=[_chunk(b"PLTE", palette.tobytes())]))
    assert np.array_equal(read_png(path), palette[indices])


@needs_pillow
@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P"])
def test_read_pillow_written_png(tmp_path, mode):
    array = _smooth_and_noisy(31, 47, 3)
    image = Image.fromarray(array).convert(mode)
    path = tmp_path / f"{mode}.png"
    image.save(path)
    expected = np.asarray(image.convert("RGB") if mode == "P" else image)
    assert np.array_equal(read_png(path).reshape(expected.shape), expected)


def test_write_png_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    write_png(path, np.zeros((4, 4, 3), np.uint8))
    write_png(path, np.full((4, 4, 3), 7, np.uint8))  # replaces
    assert read_png(path).max() == 7 and os.listdir(tmp_path) == ["a.png"]

    def crash(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(images.os, "fsync", crash)
    with pytest.raises(OSError, match="disk on fire"):
        write_png(path, np.full((4, 4, 3), 9, np.uint8))
    monkeypatch.undo()
    assert read_png(path).max() == 7 and os.listdir(tmp_path) == ["a.png"]  # old file intact, no temp left


def test_write_png_bad_input(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        write_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_png(tmp_path / "x.png", np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        write_png(tmp_path / "x.png", np.zeros((0, 2), np.uint8))


def test_read_png_bad_files(tmp_path):
    good = tmp_path / "good.png"
    write_png(good, _smooth_and_noisy(8, 8, 3))
    data = good.read_bytes()
    pixels = _filter_scalar(np.zeros((2, 2, 1), np.uint8), [0, 0])
    cases = {
        "notpng": b"GIF89a" + bytes(40),
        "truncated": data[: len(data) // 2],
        "crc": data[:40] + bytes([data[40] ^ 0xFF]) + data[41:],
        "sixteen": _png(2, 2, 0, pixels, bit_depth=16),
        "interlaced": _png(2, 2, 0, pixels, interlace=1),
        "badfilter": _png(2, 2, 0, b"\x07\x00\x00\x00\x00\x00"),
        "short": _png(2, 2, 0, b"\x00\x00"),
        "nopalette": _png(2, 2, 3, pixels),
        "empty": b"",
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}.png"):
            read_png(path)


def test_save_image_grid(tmp_path):
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    path = tmp_path / "grid.png"
    save_image_grid(x, path, cols=2)
    assert np.array_equal(read_png(path), image_grid(x, cols=2))
    save_image_grid(x[:, :1], path)
    assert read_png(path).shape == (16, 24, 1)  # ceil(sqrt(6)) = 3 columns, 2 rows
