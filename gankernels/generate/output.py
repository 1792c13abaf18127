"""Writing what the generation commands make: PNG grids and per-seed PNGs (our own encoder, training/images.py),
GIF animations through Pillow and MP4 videos through imageio[ffmpeg] (both optional: `pip install
gankernels[video]`); each output path is checked before any image is computed. Pixels are quantised as NVlabs'
gen_images.py does (`to_uint8`), so their network's PNG from us and from their script hold the same bytes."""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from .._io import atomic_write
from ..training.images import image_grid, write_png

VIDEO_EXTENSIONS = (".gif", ".mp4")


def _extension(path) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def check_png_path(path, flag: str = "out") -> None:
    """ValueError unless `path` ends in .png (the only image format written)."""
    if _extension(path) != ".png":
        raise ValueError(f"{flag}: cannot write {os.fspath(path)!r}: images are written as PNG (.png)")


def check_video_path(path, flag: str = "out") -> None:
    """ValueError unless `path` ends in .gif or .mp4; ImportError (saying what to install) when the writer for it
    is missing: Pillow for GIF, imageio with imageio-ffmpeg for MP4."""
    ext = _extension(path)
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f"{flag}: cannot write {os.fspath(path)!r}: a walk is written as .gif or .mp4")
    if ext == ".gif":
        _pillow()
    else:
        _imageio()


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("writing a .gif needs Pillow: pip install pillow (or 'gankernels[video]')") from None
    return Image


def _imageio():
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio writes MP4 with)
    except ImportError:
        raise ImportError(
            "writing an .mp4 needs imageio with ffmpeg: pip install 'imageio[ffmpeg]' (or 'gankernels[video]'); "
            "or write a .gif"
        ) from None
    return imageio


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float [N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] as gen_images.py: (x * 127.5 + 128).clamp(0, 255), then
    truncated (NaN -> 128)."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.dim() != 4:
        raise TypeError(f"images must be a float tensor [N, C, H, W], got {type(images).__name__}")
    x = torch.nan_to_num(images.detach().to("cpu", torch.float32), nan=0.0)
    return (x.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).contiguous().numpy()


def write_grid(images, path, cols: int) -> None:
    """images [N, C, H, W] in [-1, 1] -> one PNG grid (row-major, `cols` columns)."""
    check_png_path(path)
    write_png(path, image_grid(to_uint8(images), cols))


def write_images(images, names, outdir) -> list[str]:
    """One PNG per image in directory `outdir` (created), named by `names` -> the paths written."""
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for pixels, name in zip(to_uint8(images), names, strict=True):
        path = os.path.join(outdir, name)
        write_png(path, pixels)
        paths.append(path)
    return paths


def write_video(frames, path, fps: float = 30.0) -> None:
    """frames [F, C, H, W] in [-1, 1] -> an animated GIF (looping forever) or an MP4 (H.264), atomically."""
    check_video_path(path)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    pixels = to_uint8(frames)
    if pixels.shape[3] == 1:
        pixels = pixels[..., 0]
    if _extension(path) == ".gif":
        Image = _pillow()
        images = [Image.fromarray(np.ascontiguousarray(p)) for p in pixels]
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=max(1, round(1000 / fps)), optimize=False)  # fmt: skip
        atomic_write(path, [buffer.getvalue()])
        return
    imageio = _imageio()
    tmp = f"{os.fspath(path)}.partial.mp4"
    try:
        imageio.mimwrite(tmp, list(pixels), fps=fps, codec="libx264", macro_block_size=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
