"""Atomic, self-describing checkpoints: a temporary file, fsync, then an atomic rename.

A kill at any moment leaves either the previous checkpoint or the new one, never half of one.
Checkpoints hold only tensors and plain Python values, so they load with ``weights_only=True``.
"""
from __future__ import annotations

import dataclasses
import errno
import io
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


def _reason(err: Exception) -> str:
    """torch's own words, when they help: its advice for pickles (weights_only=False) does not."""
    text = " ".join(str(err).split())
    if "Weights only load failed" in text or "weights_only" in text:
        return "it holds Python objects besides tensors"
    return f"{type(err).__name__}: {text.split('. ')[0][:160]}"


KEYS = ("model", "optimizer", "scheduler", "epoch", "step", "config", "preset", "model_args", "rng")
_CHUNK = 1 << 24  # bytes a write call


def save_atomic(state: dict, path: str | Path) -> None:
    """Write ``state`` to ``path`` so that readers never see a partial file.

    The checkpoint is serialised in memory first, so that a full disk shows as the operating
    system's own error (not torch's), then written to ``path.tmp``, synced and renamed over
    ``path``. If writing fails, the partial ``.tmp`` is removed and ``path`` keeps the previous
    checkpoint; a full disk is reported as NsaError saying so.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getbuffer()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for i in range(0, len(data), _CHUNK):
                view = data[i:i + _CHUNK]
                while len(view):
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = f"{str(path)!r} still holds the previous epoch" if path.exists() else "no checkpoint was kept"
            raise NsaError(f"the disk is full: writing the checkpoint {str(tmp)!r} failed ({len(data) / 2**20:.0f} MiB "
                           f"needed); {kept}. Free some space, then continue with --resume.") from err
        raise
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load(path: str | Path, map_location="cpu") -> dict:
    """Load an nsa_fast checkpoint with ``weights_only=True``; a clear error when it is missing,
    damaged or some other torch file."""
    path = Path(path)
    if path.is_dir() and (path / "last.pt").is_file():
        path = path / "last.pt"  # a run folder stands for its checkpoint
    if not path.is_file():
        raise NsaError(f"no checkpoint at {str(path)!r}; pass a run's last.pt (python -m nsa_fast.train ... "
                       "--out DIR writes DIR/last.pt).")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch's zip archive, or its older pickle
        raise NsaError(f"{str(path)!r} is not a checkpoint: a checkpoint is a torch file (a zip archive), this one is "
                       "not. Pass a run's last.pt (python -m nsa_fast.train ... --out DIR writes DIR/last.pt).")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise NsaError(f"cannot read the checkpoint {str(path)!r}: it is not an nsa_fast checkpoint, or it is "
                       f"damaged (a truncated copy?) ({_reason(err)}). Use another file, or train again.") from err
    missing = [k for k in KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise NsaError(f"{str(path)!r} is a torch file but not an nsa_fast checkpoint (it lacks "
                       f"{', '.join(missing)}); pass the last.pt that python -m nsa_fast.train wrote.")
    return state


def make_state(model, opt, sched, epoch: int, step: int, cfg, preset, head: str) -> dict:
    """Everything a run needs to continue: weights, optimizer, schedule, RNG states, settings,
    and the network's arguments (``head``: the label type's output activation)."""
    net = model.module if hasattr(model, "module") else model
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "epoch": epoch, "step": step, "config": dataclasses.asdict(cfg), "preset": preset.to_dict(),
            "versions": library_versions(), "rng": rng,
            "model_args": {"in_channels": preset.channels,
                           "head": head}}


def resume_from(state: dict | Path, model, opt, sched) -> tuple[int, int]:
    """Load a checkpoint (OUT/last.pt, or its loaded state) into the model, optimizer and schedule
    and restore the RNG states; returns (first epoch to run, steps done).

    The checkpoint is read on the CPU whatever the training device: the RNG states must stay CPU
    byte tensors (``torch.set_rng_state`` and ``torch.cuda.set_rng_state`` take nothing else), and
    ``load_state_dict`` copies weights and optimizer state to the model's own device.
    """
    if not isinstance(state, dict):
        state = load(state, map_location="cpu")
    net = model.module if hasattr(model, "module") else model
    try:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise NsaError(f"the checkpoint's weights do not fit this network ({' '.join(str(err).split())[:300]}); "
                       "it was written by another version or for other settings. Train into another --out.") from err
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    saved = state["rng"].get("cuda", [])
    if saved and torch.cuda.is_available():
        # A run resumed on fewer GPUs restores the devices it has; extra saved states are unused.
        for i in range(min(len(saved), torch.cuda.device_count())):
            torch.cuda.set_rng_state(saved[i], i)
    return state["epoch"] + 1, state["step"]
