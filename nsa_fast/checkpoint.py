"""Atomic, self-describing checkpoints: a temporary file, fsync, then an atomic rename.

A kill at any moment leaves either the previous checkpoint or the new one, never half of one.
Checkpoints hold only tensors and plain Python values, so they load with ``weights_only=True``.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from .errors import NsaError


def library_versions() -> dict[str, str]:
    import cv2
    import numpy

    out = {"torch": str(torch.__version__), "numpy": str(numpy.__version__), "opencv": str(cv2.__version__),
           "python": platform.python_version()}
    try:
        from . import __version__

        out["nsa_fast"] = __version__
    except ImportError:
        pass
    return out


def save_atomic(state: dict, path: str | Path) -> None:
    """Write ``state`` to ``path`` so that readers never see a partial file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; a clear error when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise NsaError(f"no checkpoint at {str(path)!r}; train first (python -m nsa_fast.train ... "
                       "--out DIR writes DIR/last.pt).")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise NsaError(f"cannot read the checkpoint {str(path)!r} ({type(err).__name__}: {err}). "
                       "It is not an nsa_fast checkpoint or it is damaged.") from err
