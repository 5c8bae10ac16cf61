"""The per-class training transforms of a preset.

Parameters are drawn once per image (``draw_augment``, from the sample's generator) and applied
either to a numpy image with OpenCV (CPU path) or to a batch of images on a device with torch
(``augment_on_device``, the GPU path), so both paths share one source of randomness.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

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


def pack_augment(pack: HostPack, prefix: str, index, augs: list[Augment], preset: Preset,
                 shape: tuple[int, int]) -> bool:
    """Put the transform of images[index] (one Augment each, images of ``shape`` (H, W)) into a
    pack for the device; returns whether any image rotates (a host decision)."""
    oy, ox = zip(*(_offsets(shape, preset, a) for a in augs)) if augs else ((), ())
    pack.add(prefix + "index", np.asarray(index, np.int64))
    pack.add(prefix + "oy", np.asarray(oy, np.float32))
    pack.add(prefix + "ox", np.asarray(ox, np.float32))
    pack.add(prefix + "flip", np.asarray([a.flip for a in augs], bool))
    pack.add(prefix + "theta", np.asarray([np.deg2rad(a.angle) for a in augs], np.float32))
    return any(a.angle for a in augs)


def augment_on_device(images: torch.Tensor, packed: DevicePack, prefix: str, preset: Preset,
                      rotate: bool) -> torch.Tensor:
    """The training transform of ``pack_augment`` applied to uint8 images (N, H, W, C) on their
    device; returns uint8 (B, crop, crop, C) there.

    Rotation samples bilinearly with a replicated border, as the OpenCV path does (values may
    differ by a grey level where OpenCV's fixed-point interpolation rounds differently).
    """
    dev = images.device
    N, H, W, C = images.shape
    index = packed.get(prefix + "index", torch.int64)
    oy, ox = packed.get(prefix + "oy", torch.float32), packed.get(prefix + "ox", torch.float32)
    flip = packed.get(prefix + "flip", torch.bool)
    B, s = len(index), preset.crop
    rows = torch.arange(s, device=dev, dtype=torch.float32)[None, :].expand(B, s)
    rows = torch.where(flip[:, None], (s - 1) - rows, rows) + oy[:, None]
    cols = torch.arange(s, device=dev, dtype=torch.float32)[None, :] + ox[:, None]
    if not rotate:
        yy, xx = rows.long(), cols.long()
        return images[index[:, None, None], yy[:, :, None], xx[:, None, :]]
    # The source point of each output pixel: the inverse rotation about the image centre.
    theta = packed.get(prefix + "theta", torch.float32)
    cy, cx = (H - 1) / 2, (W - 1) / 2
    dy, dx = rows[:, :, None] - cy, cols[:, None, :] - cx
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    src_x = cos * dx - sin * dy + cx
    src_y = sin * dx + cos * dy + cy
    grid = torch.stack([src_x / (W - 1) * 2 - 1, src_y / (H - 1) * 2 - 1], dim=-1)
    x = images[index].permute(0, 3, 1, 2).float()
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def apply_augment_batch(images: torch.Tensor, index, augs: list[Augment], preset: Preset) -> torch.Tensor:
    """The training transform for images[index] (uint8 (N, H, W, C) on any device; index: host
    ints), one Augment each; returns uint8 (B, crop, crop, C) on the same device. The
    parameters reach the device in one copy."""
    pack = HostPack()
    rotate = pack_augment(pack, "", index, augs, preset, tuple(images.shape[1:3]))
    return augment_on_device(images, pack.send(images.device), "", preset, rotate)
