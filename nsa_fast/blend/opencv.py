"""The OpenCV executor: one plan on one image pair on the CPU, one ``cv2.seamlessClone`` per
Poisson patch. The batched executor is tested against it (and it against ``nsa_fast.reference``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import check_mask, check_pair
from ..labels import Label, make_label
from ..objects import resized_object_mask
from ..sampler import Plan
from . import ops


@dataclass(frozen=True)
class Synthetic:
    """A synthetic sample: image uint8 (H, W, C), label float32 (H, W), boxes int32 (P, 4)
    ``(y0, y1, x0, x1)`` of the destination patches that were blended."""

    image: np.ndarray
    label: np.ndarray
    boxes: np.ndarray


def resize_patch(patch: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a uint8 (h', w', C) patch to (h, w, C), as the authors do."""
    if patch.shape[:2] == (h, w):
        return patch
    out = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(h, w, patch.shape[2])


def execute_plan(dst: np.ndarray, src: np.ndarray, plan: Plan, label: str | Label, *,
                 logistic: tuple[float, float] | None = None, label_tol: int | None = None,
                 src_obj: np.ndarray | None = None, dst_obj: np.ndarray | None = None) -> Synthetic:
    """Blend a plan's patches one after another into ``dst`` and compute the label.

    dst, src: uint8 (H, W, C) with C in (1, 3), same shape (for CutPaste pass dst twice).
    label: a label name or a ``labels.Label``; logistic and label_tol override its parameters.
    src_obj, dst_obj: the (H, W) object masks the plan was drawn with, or None.
    """
    label = Label.of(label, logistic, label_tol)
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
        if mode in ops.POINT_OPS:
            out[y0:y1, x0:x1] = ops.POINT_OPS[mode](out[y0:y1, x0:x1], patch, inside, plan.factor)
        else:
            mask = ops.poisson_mask(np.array([[h, w]]), np.array([plan.mask_value]), h, w)[0]
            center = tuple(int(v) for v in ops.clone_center(np.asarray(dbox)))
            out = ops.seamless_clone(patch, out, mask, center, mode)
        region[y0:y1, x0:x1] = inside  # a later patch overwrites, it does not OR
    return Synthetic(out, make_label(out, dst, region, label, boxes=plan.dst_box, factor=plan.factor),
                     plan.dst_box.copy())
