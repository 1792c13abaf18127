"""Images in and out without dependencies: tensors -> uint8, sample grids, and a PNG encoder / decoder on zlib.

`write_png` writes 8-bit gray, gray+alpha, RGB or RGBA PNGs atomically (a crash never leaves a half-written file).
`read_png` decodes what `write_png` writes and ordinary non-interlaced 8-bit PNGs (gray, gray+alpha, RGB, RGBA,
palette) with any of the five row filters; the image-folder loader falls back to it when Pillow is absent.
"""

from __future__ import annotations

import math
import os
import struct
import zlib

import numpy as np
import torch

from .._io import atomic_write

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# channels -> PNG colour type, and back (3, the palette type, is decoded to RGB)
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_FILTER_BLOCK_BYTES = 1 << 20  # the encoder filters this many input bytes of rows at a time


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """images: float [N, C, H, W] in [-1, 1], C in {1, 3} -> uint8 numpy [N, H, W, C] (rounded, clamped)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got {images.dtype}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape [N, C, H, W] with C in {{1, 3}}, got {list(images.shape)}")
    x = torch.nan_to_num(images.detach().to("cpu", torch.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    x = ((x + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def image_grid(images, cols: int | None = None) -> np.ndarray:
    """Tile N images into a uint8 [rows * H, cols * W, C] grid, row-major, unused cells black.

    images: a float tensor [N, C, H, W] in [-1, 1] (see `to_uint8`) or a uint8 array [N, H, W, C].
    cols: images per row, default ceil(sqrt(N)); rows = ceil(N / cols).
    """
    if isinstance(images, torch.Tensor):
        images = to_uint8(images)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] < 1 or images.shape[3] not in (1, 3):
        raise ValueError(
            "images must be a float tensor [N, C, H, W] or a uint8 array [N, H, W, C] with N >= 1 and C in {1, 3}, "
            f"got {images.dtype} {list(images.shape)}"
        )
    n, h, w, c = images.shape
    if cols is None:
        cols = math.ceil(math.sqrt(n))
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise ValueError(f"cols must be an int >= 1, got {cols!r}")
    rows = math.ceil(n / cols)
    cells = np.zeros((rows * cols, h, w, c), dtype=np.uint8)
    cells[:n] = images
    return cells.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _paeth(a, b, c):
    """The Paeth predictor of PNG, elementwise on int16 arrays: whichever of a (left), b (up), c (up-left) is
    closest to a + b - c, ties in the order a, b, c."""
    pa = np.abs(b - c)
    pb = np.abs(a - c)
    pc = np.abs(a + b - 2 * c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _filter_rows(pixels: np.ndarray) -> np.ndarray:
    """pixels uint8 [H, W, bpp] -> the filtered scanlines [H, 1 + W * bpp]: each row takes whichever of the five
    filters gives the smallest sum of |byte as signed| (libpng's heuristic), which usually compresses best.
    Done in blocks of rows to bound the temporaries (about 30 bytes per input byte of a block)."""
    h, w, bpp = pixels.shape
    out = np.empty((h, 1 + w * bpp), dtype=np.uint8)
    block = max(1, _FILTER_BLOCK_BYTES // (w * bpp))
    for start in range(0, h, block):
        stop = min(h, start + block)
        above = (
            pixels[start - 1 : stop - 1]
            if start > 0
            else np.concatenate([np.zeros_like(pixels[:1]), pixels[: stop - 1]])
        )
        x = pixels[start:stop].astype(np.int16)
        b = above.astype(np.int16)  # up
        a = np.zeros_like(x)  # left
        a[:, 1:] = x[:, :-1]
        c = np.zeros_like(b)  # up-left
        c[:, 1:] = b[:, :-1]
        candidates = np.stack([x, x - a, x - b, x - ((a + b) >> 1), x - _paeth(a, b, c)])
        candidates = candidates.astype(np.uint8).reshape(5, stop - start, w * bpp)  # mod 256
        score = np.abs(candidates.view(np.int8), dtype=np.int16).sum(axis=2, dtype=np.int64)  # [5, rows]
        choice = score.argmin(axis=0)
        out[start:stop, 0] = choice
        out[start:stop, 1:] = candidates[choice, np.arange(stop - start)]
    return out


def write_png(path, array, compress_level: int = 6) -> None:
    """Write a uint8 image, [H, W] or [H, W, C] with C in {1 gray, 2 gray+alpha, 3 RGB, 4 RGBA}, as an 8-bit PNG.

    Written atomically: a temporary file in the same directory, fsynced, then renamed over `path`.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"array must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in _COLOUR_TYPE or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"array must have shape [H, W] or [H, W, C] with H, W >= 1 and C in 1..4, got {array.shape}")
    h, w, channels = array.shape
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    data = zlib.compress(_filter_rows(array).tobytes(), compress_level)
    atomic_write(path, [PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", data), _chunk(b"IEND", b"")])


def save_image_grid(images, path, cols: int | None = None) -> None:
    """`image_grid(images, cols)` written to `path` as a PNG (atomically)."""
    write_png(path, image_grid(images, cols))


def _unfilter_rowwise(types: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """Undo the None / Sub / Up filters a row at a time (each vectorised over the row)."""
    out = np.empty_like(filtered)
    previous = np.zeros_like(filtered[0])
    for r, kind in enumerate(types):
        if kind == 0:
            out[r] = filtered[r]
        elif kind == 1:
            out[r] = np.cumsum(filtered[r], axis=0, dtype=np.uint8)  # running sum over pixels, mod 256
        else:
            out[r] = filtered[r] + previous
        previous = out[r]
    return out


def _unfilter_wavefront(types: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """Undo any mix of the five filters. Pixel (r, c) needs (r, c-1), (r-1, c) and (r-1, c-1), all on earlier
    anti-diagonals r + c, so the image is sheared to make each anti-diagonal a column and the columns are decoded
    in order, vectorised over rows. Shear: y[r + 1, r + c + 2] = pixel (r, c); row 0 and columns 0-1 stay zero."""
    h, w, bpp = filtered.shape
    rows = np.arange(h)[:, None]
    cols = rows + np.arange(w)[None, :]
    sheared = np.zeros((h, h + w - 1, bpp), dtype=np.int16)
    sheared[rows, cols] = filtered
    y = np.zeros((h + 1, h + w + 1, bpp), dtype=np.int16)
    kind = types.astype(np.int16)[:, None]
    for d in range(h + w - 1):
        r0, r1 = max(0, d - w + 1), min(h - 1, d) + 1  # the rows that have a pixel on this diagonal
        f = sheared[r0:r1, d]
        a = y[r0 + 1 : r1 + 1, d + 1]  # left (r, c - 1)
        b = y[r0:r1, d + 1]  # up (r - 1, c)
        c = y[r0:r1, d]  # up-left (r - 1, c - 1)
        t = kind[r0:r1]
        prediction = np.where(
            t == 1, a, np.where(t == 2, b, np.where(t == 3, (a + b) >> 1, np.where(t == 4, _paeth(a, b, c), 0)))
        )
        y[r0 + 1 : r1 + 1, d + 2] = (f + prediction) & 0xFF
    return y[rows + 1, cols + 2].astype(np.uint8)


def read_png(path) -> np.ndarray:
    """Decode a non-interlaced 8-bit PNG -> uint8 [H, W, C], C the file's channels (1 gray, 2 gray+alpha, 3 RGB,
    4 RGBA; palette images come back RGB). A file that is not such a PNG raises ValueError naming `path`."""
    name = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()

    def bad(why: str) -> ValueError:
        return ValueError(f"{name}: {why}")

    if not data.startswith(PNG_SIGNATURE):
        raise bad("not a PNG file (bad signature)")
    pos = len(PNG_SIGNATURE)
    header = palette = None
    idat = []
    while True:
        if pos + 8 > len(data):
            raise bad("truncated (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            raise bad(f"truncated {kind!r} chunk")
        body = data[pos + 8 : end]
        if zlib.crc32(kind + body) != struct.unpack_from(">I", data, end)[0]:
            raise bad(f"CRC mismatch in the {kind!r} chunk")
        pos = end + 4
        if header is None and kind != b"IHDR":
            raise bad("the first chunk is not IHDR")
        if kind == b"IHDR":
            if len(body) != 13:
                raise bad("bad IHDR chunk")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            if len(body) % 3 or not body:
                raise bad("bad PLTE chunk")
            palette = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        elif not kind[0] & 0x20:  # bit 5 of the first letter clear: a critical chunk we cannot skip
            raise bad(f"unsupported critical chunk {kind!r}")

    width, height, bit_depth, colour_type, compression, filter_method, interlace = header
    if width < 1 or height < 1 or compression != 0 or filter_method != 0:
        raise bad("bad IHDR chunk")
    if colour_type not in _CHANNELS:
        raise bad(f"bad colour type {colour_type}")
    if bit_depth != 8:
        raise bad(f"bit depth {bit_depth} is not supported (8 only)")
    if interlace != 0:
        raise bad("interlaced PNGs are not supported")
    if colour_type == 3 and palette is None:
        raise bad("palette image without a PLTE chunk")
    bpp = _CHANNELS[colour_type]
    expected = height * (1 + width * bpp)
    try:
        # max_length bounds the output: a small file cannot inflate into a huge allocation
        raw = zlib.decompressobj().decompress(b"".join(idat), expected)
    except zlib.error as e:
        raise bad(f"corrupt image data ({e})") from None
    if len(raw) < expected:
        raise bad(f"image data too short ({len(raw)} of {expected} bytes)")
    scanlines = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * bpp)
    types = scanlines[:, 0]
    if types.max() > 4:
        raise bad(f"unknown filter type {int(types.max())}")
    filtered = scanlines[:, 1:].reshape(height, width, bpp)
    if types.max() <= 2:
        pixels = _unfilter_rowwise(types, filtered)
    else:
        pixels = _unfilter_wavefront(types, filtered)
    if colour_type == 3:
        if pixels.max() >= len(palette):
            raise bad("palette index out of range")
        pixels = palette[pixels[:, :, 0]]
    return pixels
