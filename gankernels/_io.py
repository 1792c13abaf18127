"""Atomic file writes, shared by checkpoints, safetensors files and PNG grids."""

from __future__ import annotations

import contextlib
import os
import secrets


def atomic_write(path, content) -> None:
    """Write `content` to `path` so that readers see the old file or the whole new one, never a part.

    content: an iterable of bytes-like chunks, or a callable taking the open binary file (e.g. lambda f:
    torch.save(obj, f)). It goes to a temporary file in the same directory, which is flushed, fsynced and renamed
    over `path` (os.replace is atomic); on any error the temporary file is removed and `path` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with mode 0o666 lets the umask decide the permissions, as open() would (mkstemp forces 0o600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                for chunk in content:
                    f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # make the rename itself durable; not possible on every platform (Windows), hence best effort
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
