"""The reference executor: one ``cv2.seamlessClone`` per patch, on the CPU.

This is the specification the batched executors are tested against.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import check_mask, check_pair
from ..labels import make_label
from ..sampler import INTERPOLATE, MIXED, NORMAL, PASTE, Plan, resized_object_mask

_CV_FLAG = {NORMAL: cv2.NORMAL_CLONE, MIXED: cv2.MIXED_CLONE}


@dataclass(frozen=True)
class Synthetic:
    """A synthetic sample: image uint8 (H, W, C), label float32 (H, W), boxes int32 (P, 4)
    ``(y0, y1, x0, x1)`` of the destination patches that were blended."""

    image: np.ndarray
    label: np.ndarray
    boxes: np.ndarray


def resize_patch(patch: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a uint8 (h', w', C) patch to (h, w, C), as the reference does."""
    if patch.shape[:2] == (h, w):
        return patch
    out = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(h, w, patch.shape[2])


def poisson_mask(h: int, w: int, value: int) -> np.ndarray:
    """The reference's Poisson mask: the whole rectangle at ``value``, its 1-pixel frame zeroed."""
    mask = np.zeros((h, w), np.uint8)
    mask[1:-1, 1:-1] = value
    return mask


def clone_center(box) -> tuple[int, int]:
    """The (x, y) centre the reference passes to seamlessClone for a destination box."""
    y0, y1, x0, x1 = (int(v) for v in box)
    return x1 - (x1 - x0) // 2, y0 + (y1 - y0) // 2


def seamless_clone(patch: np.ndarray, dst: np.ndarray, mask: np.ndarray, center, mode: int) -> np.ndarray:
    """cv2.seamlessClone for 1- or 3-channel uint8 images; grayscale is padded with zero channels
    and channel 0 kept, as the reference does. The mask is copied: OpenCV 5 writes into it."""
    if dst.shape[2] == 1:
        pad = lambda a: np.concatenate([a, np.zeros_like(a), np.zeros_like(a)], axis=2)  # noqa: E731
        return cv2.seamlessClone(pad(patch), pad(dst), mask.copy(), center, _CV_FLAG[mode])[..., :1]
    return cv2.seamlessClone(patch, dst, mask.copy(), center, _CV_FLAG[mode])


def execute_plan(dst: np.ndarray, src: np.ndarray, plan: Plan, label_mode: str, *,
                 logistic: tuple[float, float] = (1 / 12, 24.0), label_tol: int = 1,
                 src_obj: np.ndarray | None = None, dst_obj: np.ndarray | None = None) -> Synthetic:
    """Blend a plan's patches one after another into ``dst`` and compute the label.

    dst, src: uint8 (H, W, C) with C in (1, 3), same shape (for CutPaste pass dst twice).
    src_obj, dst_obj: the (H, W) object masks the plan was drawn with, or None.
    """
    dst, src = check_pair(dst, src)
    src_obj = check_mask(src_obj, dst.shape[:2], "source object mask")
    dst_obj = check_mask(dst_obj, dst.shape[:2], "destination object mask")
    out = dst.copy()
    region = np.zeros(dst.shape[:2], bool)
    for sbox, dbox, mode in zip(plan.src_box, plan.dst_box, plan.mode):
        y0, y1, x0, x1 = (int(v) for v in dbox)
        h, w = y1 - y0, x1 - x0
        patch = resize_patch(src[sbox[0]:sbox[1], sbox[2]:sbox[3]], h, w)
        inside = np.ones((h, w), bool)
        if src_obj is not None:
            inside = resized_object_mask(src_obj, sbox, h, w) | dst_obj[y0:y1, x0:x1]
        if mode == PASTE:
            out[y0:y1, x0:x1] = np.where(inside[..., None], patch, out[y0:y1, x0:x1])
        elif mode == INTERPOLATE:
            fm = plan.factor * inside[..., None]
            before = out[y0:y1, x0:x1].astype(np.float64)
            # Same operation order as the reference so that the floor gives identical bytes.
            out[y0:y1, x0:x1] = np.floor(before - fm * before + fm * patch).astype(np.uint8)
        else:
            out = seamless_clone(patch, out, poisson_mask(h, w, plan.mask_value), clone_center(dbox), mode)
        region[y0:y1, x0:x1] = inside  # a later patch overwrites, it does not OR
    label = make_label(out, dst, region, label_mode, boxes=plan.dst_box, factor=plan.factor,
                       logistic=logistic, tol=label_tol)
    return Synthetic(out, label, plan.dst_box.copy())
