"""Object masks: which pixels of an image belong to the object (classes with a plain background).

A pixel is object when the mean over its channels differs from the background level b by more
than t; a 7x7 median removes the threshold's grain. Every version of the mask lives here: numpy
for the CPU sampler, torch for a batch on any device, and the authors' literal float formula
that the tests hold both against.

Both fast versions work on the integer channel sum s: the authors' test |s / C - b| > t, in
float64, holds for s outside one interval of integers, which ``background_interval`` finds on the
host. So the masks need no floating point at all (a GPU computes float64 at 1/32 or 1/64 of its
float32 rate) and equal the float formula bit for bit, for any b and t.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from .errors import check_image
from .filters import binary_median

MEDIAN = 7  # the authors' cv2.medianBlur(obj, 7)


@functools.lru_cache(maxsize=64)
def background_interval(background: tuple[float, float], channels: int) -> tuple[int, int]:
    """(lo, hi): the channel sums s of background pixels, those with not |s / C - b| > t in
    float64 as the authors compute the mean, are exactly lo <= s <= hi (lo > hi: none)."""
    b, t = (float(v) for v in background)
    sums = np.arange(255 * channels + 1)
    background_px = np.flatnonzero(~(np.abs(sums / float(channels) - b) > t))
    if background_px.size == 0:
        return 1, 0
    lo, hi = int(background_px[0]), int(background_px[-1])
    # |x - b| is monotone on each side of b, so the background sums are one interval
    assert background_px.size == hi - lo + 1, (background, channels)
    return lo, hi


def object_mask(images, background: tuple[float, float] | None):
    """Object pixels of uint8 images: numpy (H, W, C) -> (H, W) bool; torch (B, H, W, C) on any
    device -> (B, H, W) bool there. None when the preset has no background (every pixel counts)."""
    if background is None:
        return None
    if isinstance(images, np.ndarray):
        return _object_mask_numpy(check_image(images), background)
    import torch

    lo, hi = background_interval(tuple(background), images.shape[-1])
    s = images.sum(-1, dtype=torch.int32)  # integers only: no float64 on a GPU
    return binary_median((s < lo) | (s > hi), MEDIAN)


def _object_mask_numpy(img: np.ndarray, background: tuple[float, float]) -> np.ndarray:
    lo, hi = background_interval(tuple(background), img.shape[2])
    s = img[..., 0].astype(np.int32)
    for k in range(1, img.shape[2]):
        s += img[..., k]
    return binary_median((s < lo) | (s > hi), MEDIAN).astype(bool)


def resized_object_mask(src_obj: np.ndarray, sbox, h: int, w: int) -> np.ndarray:
    """The source object mask under a patch, resized bilinearly to h x w as the patch is; bool."""
    y0, y1, x0, x1 = sbox
    crop = src_obj[y0:y1, x0:x1].astype(np.uint8)
    if crop.shape != (h, w):
        crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
    return crop.astype(bool)


def reference_object_mask(img: np.ndarray, background):
    """The authors' object mask, literally: float mean over channels, threshold, cv2.medianBlur."""
    if background is None:
        return None
    b, t = background
    obj = (np.abs(img.mean(axis=-1) - b) > t).astype(np.uint8)
    return cv2.medianBlur(obj, 7).astype(bool)
