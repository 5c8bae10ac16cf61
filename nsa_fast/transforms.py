"""The per-class training transforms of a preset.

Parameters are drawn once per image (``draw_augment``, from the sample's generator) and applied
either to a numpy image (CPU path) or to a batch of images on a device with torch
(``augment_on_device``, the GPU path), so both paths share one source of randomness; both take
the same source pixels, so they make identical images.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .errors import InputError
from .presets import Preset
from .transfer import DevicePack, HostPack


@dataclass(frozen=True)
class Augment:
    """One draw of the training transform: rotation in degrees (counter-clockwise, about the
    image centre), the random crop's top-left corner inside the centre crop, a vertical flip."""

    angle: float
    y: int
    x: int
    flip: bool


def check_size(img: np.ndarray, preset: Preset, name: str = "image") -> None:
    """Images must be at least as large as the preset's crop."""
    need = preset.center_crop or preset.crop
    if img.shape[0] < need or img.shape[1] < need:
        raise InputError(
            f"{name} is {img.shape[0]}x{img.shape[1]} pixels, smaller than the {need}-pixel crop of "
            f"preset {preset.name!r}. Resize images to image_size={preset.image_size} first "
            "(nsa_fast.io.read_image does), or lower --set crop=... and center_crop=...")


def draw_augment(preset: Preset, shape: tuple[int, int], rng: np.random.Generator) -> Augment:
    """Draw rotation, crop offset and flip for an image of ``shape`` (H, W)."""
    angle = float(rng.uniform(-preset.rotation, preset.rotation)) if preset.rotation else 0.0
    h = preset.center_crop or shape[0]
    w = preset.center_crop or shape[1]
    y = int(rng.integers(h - preset.crop + 1))
    x = int(rng.integers(w - preset.crop + 1))
    flip = bool(rng.integers(2)) if preset.vflip else False
    return Augment(angle, y, x, flip)


def _offsets(shape, preset: Preset, aug: Augment) -> tuple[int, int]:
    """Top-left corner of the final crop in the (rotated) full image."""
    if preset.center_crop:
        return (shape[0] - preset.center_crop) // 2 + aug.y, (shape[1] - preset.center_crop) // 2 + aug.x
    return aug.y, aug.x


AB_BITS = 10  # fixed-point bits of the source coordinates (as OpenCV's nearest-neighbour warp)


def rotation_steps(angle: float, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Fixed-point terms of a nearest-neighbour rotation by ``angle`` degrees (counter-clockwise,
    about the image centre) of an (H, W) image: the source pixel of output (y, x) is
    ``((row_x[y] + col_x[x]) >> AB_BITS, (row_y[y] + col_y[x]) >> AB_BITS)``, clamped to the image
    (the border repeats). Integers computed on the host once, so that every device that adds and
    shifts them picks the same source pixels: the CPU and GPU pipelines rotate identically.
    Returns int64 row_x, row_y (H,) and col_x, col_y (W,)."""
    h, w = shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0).astype(np.float64).ravel()
    det = m[0] * m[4] - m[1] * m[3]
    inv = np.array([m[4], -m[1], 0.0, -m[3], m[0], 0.0]) / det  # the output-to-source map
    inv[2] = -inv[0] * m[2] - inv[1] * m[5]
    inv[5] = -inv[3] * m[2] - inv[4] * m[5]
    scale, half = 1 << AB_BITS, 1 << (AB_BITS - 1)
    y, x = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    row_x = np.rint((inv[1] * y + inv[2]) * scale).astype(np.int64) + half
    row_y = np.rint((inv[4] * y + inv[5]) * scale).astype(np.int64) + half
    return row_x, row_y, np.rint(inv[0] * x * scale).astype(np.int64), np.rint(inv[3] * x * scale).astype(np.int64)


def _window(preset: Preset, aug: Augment, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows (flipped when the transform flips) and columns of the final crop in the full image."""
    y0, x0 = _offsets(shape, preset, aug)
    rows = np.arange(y0, y0 + preset.crop)
    return (rows[::-1] if aug.flip else rows), np.arange(x0, x0 + preset.crop)


def apply_augment(img: np.ndarray, preset: Preset, aug: Augment) -> np.ndarray:
    """Rotate (nearest neighbour, as the authors' torchvision RandomRotation; the border repeats,
    since a black fill would be taken for object pixels on the bright-background classes), crop,
    flip; uint8 (H, W, C) -> uint8 (crop, crop, C) copy."""
    h, w = img.shape[:2]
    rows, cols = _window(preset, aug, (h, w))
    if not aug.angle:
        return np.ascontiguousarray(img[rows[:, None], cols[None, :]])
    row_x, row_y, col_x, col_y = rotation_steps(aug.angle, (h, w))
    sx = np.clip((row_x[rows, None] + col_x[None, cols]) >> AB_BITS, 0, w - 1)
    sy = np.clip((row_y[rows, None] + col_y[None, cols]) >> AB_BITS, 0, h - 1)
    return np.ascontiguousarray(img[sy, sx])


def pack_augment(pack: HostPack, prefix: str, index, augs: list[Augment], preset: Preset,
                 shape: tuple[int, int]) -> bool:
    """Put the transform of images[index] (one Augment each, images of ``shape`` (H, W)) into a
    pack for the device: the crop's rows and columns and, for rotated images, the rotation's
    fixed-point terms along them. Returns whether any image rotates (a host decision)."""
    windows = [_window(preset, a, shape) for a in augs]
    pack.add(prefix + "index", np.asarray(index, np.int64))
    pack.add(prefix + "rows", np.stack([r for r, _ in windows]) if augs else np.zeros((0, preset.crop), np.int64))
    pack.add(prefix + "cols", np.stack([c for _, c in windows]) if augs else np.zeros((0, preset.crop), np.int64))
    rotate = any(a.angle for a in augs)
    if rotate:
        steps = [rotation_steps(a.angle, shape) for a in augs]
        pack.add(prefix + "row_x", np.stack([st[0][r] for st, (r, _) in zip(steps, windows)]))
        pack.add(prefix + "row_y", np.stack([st[1][r] for st, (r, _) in zip(steps, windows)]))
        pack.add(prefix + "col_x", np.stack([st[2][c] for st, (_, c) in zip(steps, windows)]))
        pack.add(prefix + "col_y", np.stack([st[3][c] for st, (_, c) in zip(steps, windows)]))
    return rotate


def augment_on_device(images: torch.Tensor, packed: DevicePack, prefix: str, rotate: bool) -> torch.Tensor:
    """The training transform of ``pack_augment`` applied to uint8 images (N, H, W, C) on their
    device: integer adds, shifts and one gather, the same source pixels as ``apply_augment``.
    Returns uint8 (B, crop, crop, C) there."""
    N, H, W, C = images.shape
    index = packed.get(prefix + "index", torch.int64)
    rows, cols = packed.get(prefix + "rows", torch.int64), packed.get(prefix + "cols", torch.int64)
    if not rotate:
        return images[index[:, None, None], rows[:, :, None], cols[:, None, :]]
    sx = (packed.get(prefix + "row_x", torch.int64)[:, :, None] + packed.get(prefix + "col_x", torch.int64)[:, None, :])
    sy = (packed.get(prefix + "row_y", torch.int64)[:, :, None] + packed.get(prefix + "col_y", torch.int64)[:, None, :])
    sx, sy = (sx >> AB_BITS).clamp(0, W - 1), (sy >> AB_BITS).clamp(0, H - 1)
    return images[index[:, None, None], sy, sx]


def apply_augment_batch(images: torch.Tensor, index, augs: list[Augment], preset: Preset) -> torch.Tensor:
    """The training transform for images[index] (uint8 (N, H, W, C) on any device; index: host
    ints), one Augment each; returns uint8 (B, crop, crop, C) on the same device. The
    parameters reach the device in one copy."""
    pack = HostPack()
    rotate = pack_augment(pack, "", index, augs, preset, tuple(images.shape[1:3]))
    return augment_on_device(images, pack.send(images.device), "", rotate)
