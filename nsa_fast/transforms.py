"""The per-class training transforms of a preset, on uint8 numpy images (CPU path)."""
from __future__ import annotations

import cv2
import numpy as np

from .errors import InputError
from .presets import Preset


def check_size(img: np.ndarray, preset: Preset, name: str = "image") -> None:
    """Images must be at least as large as the preset's crop."""
    need = preset.center_crop or preset.crop
    if img.shape[0] < need or img.shape[1] < need:
        raise InputError(
            f"{name} is {img.shape[0]}x{img.shape[1]} pixels, smaller than the {need}-pixel crop of "
            f"preset {preset.name!r}. Resize images to image_size={preset.image_size} first "
            "(nsa_fast.io.read_image does), or lower --set crop=... and center_crop=...")


def _crop(img: np.ndarray, size: int, y: int, x: int) -> np.ndarray:
    return img[y:y + size, x:x + size]


def train_transform(img: np.ndarray, preset: Preset, rng: np.random.Generator) -> np.ndarray:
    """Rotation (+-preset.rotation degrees), centre crop, random crop and vertical flip.

    img: uint8 (H, W, C). Returns a uint8 (crop, crop, C) copy. Rotation replicates the border:
    a black fill would be taken for object pixels on the bright-background classes.
    """
    check_size(img, preset)
    c = img.shape[2]
    if preset.rotation:
        angle = float(rng.uniform(-preset.rotation, preset.rotation))
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE).reshape(h, w, c)
    if preset.center_crop:
        s = preset.center_crop
        img = _crop(img, s, (img.shape[0] - s) // 2, (img.shape[1] - s) // 2)
    s = preset.crop
    y = int(rng.integers(img.shape[0] - s + 1))
    x = int(rng.integers(img.shape[1] - s + 1))
    img = _crop(img, s, y, x)
    if preset.vflip and rng.integers(2):
        img = img[::-1]
    return np.ascontiguousarray(img)
