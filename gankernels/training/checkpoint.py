"""Training checkpoints: written atomically, loaded without executing code.

A checkpoint is a dict of tensors, state dicts and plain Python values (numbers, strings, lists, dicts), saved with
torch.save. `save_checkpoint` writes it to a temporary file in the destination's directory, flushes and fsyncs it,
then renames it over the destination (os.replace is atomic on POSIX and Windows): a crash or a full disk leaves the
previous checkpoint intact, never a half-written one. `load_checkpoint` uses torch.load(weights_only=True), which
refuses anything but tensors and plain containers, so a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import os
import pickle

import torch

from .._io import atomic_write


def save_checkpoint(state: dict, path) -> None:
    """Write `state` (tensors, state dicts, plain values) to `path` atomically."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint written by save_checkpoint, without executing code from the file (weights_only=True).

    Raises FileNotFoundError when it does not exist and ValueError when it is not a readable checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path} is not a readable gankernels checkpoint: {e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a gankernels checkpoint (holds a {type(state).__name__}, not a dict)")
    return state
