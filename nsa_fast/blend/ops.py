"""The blend operations of a patch, each written once for numpy images and torch batches.

paste: the patch replaces the destination where the patch's region is set. interpolate: FPI's
convex mix with factor f, floored as the authors' float64 code does. Poisson: OpenCV's
seamlessClone with the authors' mask (the whole rectangle, its 1-pixel frame zeroed) and their
clone centre. The OpenCV executor calls these on one image, the batched executor on a batch;
the Poisson solve of a batch is ``blend.poisson.clone_on_device``.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..sampler import INTERPOLATE, MIXED, NORMAL, PASTE

CV_FLAGS = {NORMAL: cv2.NORMAL_CLONE, MIXED: cv2.MIXED_CLONE}  # mode code -> seamlessClone flag


def _where(cond, a, b):
    return np.where(cond, a, b) if isinstance(cond, np.ndarray) else torch.where(cond, a, b)


def paste(before, patch, inside):
    """The patch where ``inside`` (broadcast over channels) is set, ``before`` elsewhere."""
    return _where(inside[..., None], patch, before)


def interpolate(before, patch, fm):
    """floor(before - fm * before + fm * patch) in float64, as uint8: the authors' operation
    order, so that the floor gives their bytes. fm: the factor times the region, (..., 1)."""
    if isinstance(before, np.ndarray):
        b = before.astype(np.float64)
        return np.floor(b - fm * b + fm * patch).astype(np.uint8)
    b = before.to(torch.float64)
    return torch.floor(b - fm * b + fm * patch.to(torch.float64)).to(torch.uint8)


# The operations that act pixel by pixel inside a patch's region, by the sampler's mode code: each
# maps (before, patch, region, factor) to the new pixels, for numpy (one patch, factor a float) and
# torch (a round of patches, factor (P, 1, 1)) alike, and both executors look them up here. Another
# such operation is an entry here and its mode code in the sampler; the Poisson clone is the one
# operation that is not pointwise (``seamless_clone`` here, ``blend.poisson`` for a batch).
POINT_OPS = {
    PASTE: lambda before, patch, region, factor: paste(before, patch, region),
    INTERPOLATE: lambda before, patch, region, factor: interpolate(before, patch, (factor * region)[..., None]),
}


# The operations that read the sample's factor f on the device, in float64: interpolation floors
# float64 products as the authors' code does, and in float32 some pixels floor one grey level
# lower (tests/test_blend_ops.py::test_interpolation_in_float32_would_change_pixels). Only the
# FPI tasks interpolate, so an NSA batch carries no float64 to the device (a GTX 1080 computes
# float64 at 1/32 of its float32 rate).
FACTOR_OPS = frozenset({INTERPOLATE})


def clone_center(dst_box):
    """The (x, y) centre the authors pass to seamlessClone for destination boxes (..., 4)
    ``(y0, y1, x0, x1)``: odd widths land one pixel right of the box's centre."""
    y0, y1, x0, x1 = (dst_box[..., k] for k in range(4))
    return x1 - (x1 - x0) // 2, y0 + (y1 - y0) // 2


def poisson_mask(hw, value, rows: int, cols: int):
    """The Poisson masks of rectangles on a rows x cols canvas: ``value`` inside each h x w
    rectangle (top-left corner), its 1-pixel frame and everything beyond it 0. hw (P, 2) and
    value (P,): numpy -> uint8 (P, rows, cols); torch -> uint8 on their device."""
    if isinstance(hw, np.ndarray):
        r, c = np.arange(rows)[None, :, None], np.arange(cols)[None, None, :]
    else:
        r = torch.arange(rows, device=hw.device)[None, :, None]
        c = torch.arange(cols, device=hw.device)[None, None, :]
    h, w = hw[:, 0, None, None], hw[:, 1, None, None]
    inner = (r >= 1) & (r < h - 1) & (c >= 1) & (c < w - 1)
    if isinstance(hw, np.ndarray):
        return np.where(inner, np.asarray(value)[:, None, None], 0).astype(np.uint8)
    return torch.where(inner, value[:, None, None].to(torch.uint8), torch.zeros((), dtype=torch.uint8, device=hw.device))


def seamless_clone(patch: np.ndarray, dst: np.ndarray, mask: np.ndarray, center, mode: int) -> np.ndarray:
    """cv2.seamlessClone for 1- or 3-channel uint8 images; grayscale is padded with zero channels
    and channel 0 kept, as the authors do. The mask is copied: OpenCV 5 writes into it."""
    if dst.shape[2] == 1:
        pad = lambda a: np.concatenate([a, np.zeros_like(a), np.zeros_like(a)], axis=2)  # noqa: E731
        return cv2.seamlessClone(pad(patch), pad(dst), mask.copy(), center, CV_FLAGS[mode])[..., :1]
    return cv2.seamlessClone(patch, dst, mask.copy(), center, CV_FLAGS[mode])
