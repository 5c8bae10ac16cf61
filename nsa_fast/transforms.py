"""The per-class training transforms of a preset.

Parameters are drawn once per image (``draw_augment``, from the sample's generator) and applied
either to a numpy image with OpenCV (CPU path) or to a batch of images on a device with torch
(``apply_augment_batch``, the GPU path), so both paths share one source of randomness.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .presets import Preset


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


def apply_augment(img: np.ndarray, preset: Preset, aug: Augment) -> np.ndarray:
    """Rotate (replicating the border: a black fill would be taken for object pixels on the
    bright-background classes), crop, flip; uint8 (H, W, C) -> uint8 (crop, crop, C) copy."""
    c = img.shape[2]
    if aug.angle:
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), aug.angle, 1.0)
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE).reshape(h, w, c)
    y, x = _offsets(img.shape, preset, aug)
    img = img[y:y + preset.crop, x:x + preset.crop]
    if aug.flip:
        img = img[::-1]
    return np.ascontiguousarray(img)


def apply_augment_batch(images: torch.Tensor, index: torch.Tensor, augs: list[Augment],
                        preset: Preset) -> torch.Tensor:
    """The training transform for images[index] (uint8 (N, H, W, C) on any device), one Augment
    each; returns uint8 (B, crop, crop, C) on the same device.

    Rotation samples bilinearly with a replicated border, as the OpenCV path does (values may
    differ by a grey level where OpenCV's fixed-point interpolation rounds differently).
    """
    dev = images.device
    B = len(augs)
    N, H, W, C = images.shape
    s = preset.crop
    oy, ox = zip(*(_offsets((H, W), preset, a) for a in augs)) if B else ((), ())
    oy = torch.as_tensor(oy, device=dev, dtype=torch.float32)
    ox = torch.as_tensor(ox, device=dev, dtype=torch.float32)
    flip = torch.as_tensor([a.flip for a in augs], device=dev)
    rows = torch.arange(s, device=dev, dtype=torch.float32)[None, :].expand(B, s)
    rows = torch.where(flip[:, None], (s - 1) - rows, rows) + oy[:, None]
    cols = torch.arange(s, device=dev, dtype=torch.float32)[None, :] + ox[:, None]
    if not any(a.angle for a in augs):
        yy, xx = rows.long(), cols.long()
        return images[index[:, None, None], yy[:, :, None], xx[:, None, :]]
    # The source point of each output pixel: the inverse rotation about the image centre.
    theta = torch.as_tensor([np.deg2rad(a.angle) for a in augs], device=dev, dtype=torch.float32)
    cy, cx = (H - 1) / 2, (W - 1) / 2
    dy, dx = rows[:, :, None] - cy, cols[:, None, :] - cx
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    src_x = cos * dx - sin * dy + cx
    src_y = sin * dx + cos * dy + cy
    grid = torch.stack([src_x / (W - 1) * 2 - 1, src_y / (H - 1) * 2 - 1], dim=-1)
    x = images[index].permute(0, 3, 1, 2).float()
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
