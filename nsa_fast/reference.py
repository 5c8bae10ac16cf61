"""The authors' formulas applied literally, on full images, in float64: the slow specification.

Tests check the fast executor against this, and the benchmarks time it beside the fast path. It
shares no code with the fast path: the blending is written out here from the paper and the
authors' code (docs/reference.md sections 1-2), down to the literal OpenCV calls, so that a slip
in the fast path's clone centre, Poisson mask, resize or object mask shows as a difference; the
literal label and object-mask formulas sit beside their fast versions (``labels.reference_label``,
``objects.reference_object_mask``) and share no code with them either.
"""
from __future__ import annotations

import cv2
import numpy as np

from .blend.opencv import Synthetic
from .labels import reference_label
from .objects import reference_object_mask
from .sampler import INTERPOLATE, MIXED, PASTE, Plan

__all__ = ["reference_execute", "reference_label", "reference_object_mask"]


def _clone(patch, image, mask, center, mode):
    """The authors' seamlessClone call; grey images are padded to 3 channels with zeros and
    channel 0 is kept. OpenCV 5 writes into the mask, so it gets a copy."""
    flag = cv2.MIXED_CLONE if mode == MIXED else cv2.NORMAL_CLONE
    if image.shape[2] == 1:
        pad = lambda a: np.concatenate([a, np.zeros_like(a), np.zeros_like(a)], axis=2)  # noqa: E731
        return cv2.seamlessClone(pad(patch), pad(image), mask.copy(), center, flag)[..., :1]
    return cv2.seamlessClone(patch, image, mask.copy(), center, flag)


def reference_execute(dst, src, plan: Plan, label_mode, *, logistic=None, label_tol=None,
                      src_obj=None, dst_obj=None) -> Synthetic:
    """Blend as the authors' code does, on full images, then ``reference_label``."""
    out = dst.copy()
    region = np.zeros(dst.shape[:2], np.uint8)
    for sbox, dbox, mode in zip(plan.src_box, plan.dst_box, plan.mode):
        y0, y1, x0, x1 = (int(v) for v in dbox)
        a0, a1, b0, b1 = (int(v) for v in sbox)
        h, w = y1 - y0, x1 - x0
        patch = src[a0:a1, b0:b1]
        if patch.shape[:2] != (h, w):
            patch = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, dst.shape[2])
        pm = np.ones((h, w, 1), np.uint8)
        if src_obj is not None:
            s_obj = src_obj[a0:a1, b0:b1].astype(np.uint8)
            if s_obj.shape != (h, w):
                s_obj = cv2.resize(s_obj, (w, h), interpolation=cv2.INTER_LINEAR)
            pm &= s_obj.astype(bool).astype(np.uint8)[..., None] | dst_obj[y0:y1, x0:x1].astype(np.uint8)[..., None]
        if mode == PASTE:
            res = out.copy()
            before = res[y0:y1, x0:x1]
            res[y0:y1, x0:x1] -= pm * before
            res[y0:y1, x0:x1] += pm * patch
            out = res
        elif mode == INTERPOLATE:
            res = 1.0 * out
            before = res[y0:y1, x0:x1]
            res[y0:y1, x0:x1] -= plan.factor * pm * before
            res[y0:y1, x0:x1] += plan.factor * pm * patch
            out = np.uint8(np.floor(res))
        else:
            # the whole rectangle at the mask value, its 1-pixel frame zeroed; the authors' centre
            # x = x1 - (x1 - x0) // 2, y = y0 + (y1 - y0) // 2
            mask = np.zeros((h, w), np.uint8)
            mask[1:-1, 1:-1] = plan.mask_value
            out = _clone(patch, out, mask, (x1 - (x1 - x0) // 2, y0 + (y1 - y0) // 2), mode)
        region[y0:y1, x0:x1] = pm[..., 0]
    label = reference_label(out, dst, region, label_mode, factor=plan.factor, logistic=logistic,
                            tol=label_tol)
    return Synthetic(out, label, plan.dst_box.copy())
