"""Typed errors and the input checks shared by every entry point.

Each message says what was expected, what arrived and what to do about it.
"""
from __future__ import annotations

import numpy as np


class NsaError(Exception):
    """Base class of the errors nsa_fast raises on purpose."""


class InputError(NsaError, ValueError):
    """An image, mask or array does not have the dtype, rank or size required."""


class PresetError(NsaError, KeyError):
    """An unknown preset name, an unknown field or a value of the wrong kind."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


_WARNED: set[str] = set()


def wxh(shape) -> str:
    """An image size as users read it, width first: ``wxh((192, 256, 3))`` is ``'256x192'`` for
    a numpy shape (height, width[, channels]). Messages say "(width x height)" beside it."""
    return f"{shape[1]}x{shape[0]}"


def warn(message: str) -> None:
    """One ``warning:`` line on stderr, once a process: the run goes on, but the user should know."""
    import sys

    if message not in _WARNED:
        _WARNED.add(message)
        print(f"warning: {message}", file=sys.stderr)


def check_image(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Check that ``img`` is a uint8 array of shape (H, W, C) with C in (1, 3).

    A 2-D (H, W) array is accepted as grayscale and returned as (H, W, 1).
    """
    if not isinstance(img, np.ndarray):
        raise InputError(
            f"{name}: expected a numpy uint8 array of shape (H, W, 3) or (H, W, 1), "
            f"got {type(img).__name__}. Convert it with numpy.asarray(..., dtype=numpy.uint8).")
    if img.dtype != np.uint8:
        raise InputError(
            f"{name}: expected dtype uint8 (0..255), got {img.dtype}. "
            "Scale and convert the image first, e.g. (x * 255).round().astype(numpy.uint8) for floats in 0..1.")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise InputError(
            f"{name}: expected shape (H, W), (H, W, 1) or (H, W, 3), got {img.shape}. "
            "Drop an alpha channel with img[..., :3]; stack frames one image at a time.")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise InputError(f"{name}: expected a non-empty image, got shape {img.shape}.")
    return img


def check_mask(mask: np.ndarray | None, shape: tuple[int, int], name: str = "mask") -> np.ndarray | None:
    """Check an optional (H, W) object mask against an image size; returns it as bool."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.shape != tuple(shape):
        raise InputError(
            f"{name}: expected shape {tuple(shape)} (the image's height and width), got {mask.shape}. "
            "Compute object masks from the same image that is passed beside them.")
    return mask.astype(bool, copy=False)


def check_pair(dst: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check a destination and source image: both valid and of the same shape."""
    dst = check_image(dst, "destination image")
    src = check_image(src, "source image")
    if dst.shape != src.shape:
        raise InputError(
            f"source and destination must have the same shape, got destination {dst.shape} "
            f"and source {src.shape} (numpy shapes: height, width, channels; the destination is "
            f"{wxh(dst.shape)} and the source {wxh(src.shape)}, width x height). Resize the training "
            "images to one size first (the presets use 256, or 264 for textures).")
    return dst, src
