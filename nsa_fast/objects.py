"""Object masks: which pixels of an image belong to the object (classes with a plain background).

A pixel is object when the mean over its channels differs from the background level b by more
than t; a 7x7 median removes the threshold's grain. Every version of the mask lives here: numpy
for the CPU sampler, torch for a batch on any device, and the authors' literal float formula
that the tests hold both against.
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import check_image
from .filters import binary_median

MEDIAN = 7  # the authors' cv2.medianBlur(obj, 7)


def object_mask(images, background: tuple[float, float] | None):
    """Object pixels of uint8 images: numpy (H, W, C) -> (H, W) bool; torch (B, H, W, C) on any
    device -> (B, H, W) bool there. None when the preset has no background (every pixel counts)."""
    if background is None:
        return None
    if isinstance(images, np.ndarray):
        return _object_mask_numpy(check_image(images), background)
    import torch

    b, t = background
    mean = images.to(torch.float64).sum(-1) / images.shape[-1]
    return binary_median((mean - b).abs() > t, MEDIAN)


def _object_mask_numpy(img: np.ndarray, background: tuple[float, float]) -> np.ndarray:
    b, t = background
    c = img.shape[2]
    if float(b).is_integer() and float(t).is_integer():
        # |sum/C - b| > t in integers: exact, since b +- t are integers and sum/C rounds monotonically
        s = img[..., 0].astype(np.int32)
        for k in range(1, c):
            s += img[..., k]
        obj = (s > c * (b + t)) | (s < c * (b - t))
    else:
        obj = np.abs(img.mean(axis=-1) - b) > t
    return binary_median(obj, MEDIAN).astype(bool)


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
