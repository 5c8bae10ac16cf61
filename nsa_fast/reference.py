"""The authors' formulas applied literally, on full images, in float64: the slow specification.

Tests check the fast executor against this, and the benchmarks time it beside the fast path.
It executes the same plans as ``nsa_fast.blend.opencv``; only the label computation differs.
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import median
from skimage.morphology import disk

from .blend.opencv import Synthetic, clone_center, poisson_mask, resize_patch, seamless_clone
from .sampler import INTERPOLATE, PASTE, Plan, resized_object_mask


def reference_object_mask(img, background):
    """The authors' object mask: float mean over channels, threshold, 7x7 cv2.medianBlur."""
    if background is None:
        return None
    b, t = background
    obj = (np.abs(img.mean(axis=-1) - b) > t).astype(np.uint8)
    return cv2.medianBlur(obj, 7).astype(bool)


def reference_label(result, original, region, mode, *, factor=1.0, logistic=(1 / 12, 24.0), tol=1):
    """REFERENCE section 1 literally: float64 maps over the whole image, skimage's disk median."""
    m = region.astype(np.uint8)[..., None]
    on = (np.mean(np.abs(1.0 * m * original - 1.0 * m * result), axis=-1) > tol).astype(np.uint8)
    on = cv2.medianBlur(on, 5)
    if mode == "binary":
        return on.astype(np.float32)
    if mode == "continuous":
        return (on * factor).astype(np.float32)
    lm = on[..., None]
    d = np.mean(np.abs(lm * original * 1.0 - lm * result * 1.0), axis=-1)
    d = median(d, disk(5))  # float input: scipy.ndimage.median_filter, mode 'nearest'
    if mode == "intensity":
        return d.astype(np.float32)
    k, y0 = logistic
    return (on / (1 + np.exp(-k * (d - y0)))).astype(np.float32)


def reference_execute(dst, src, plan: Plan, label_mode, *, logistic=(1 / 12, 24.0), label_tol=1,
                      src_obj=None, dst_obj=None) -> Synthetic:
    """Blend as the authors' code does, on full images, then ``reference_label``."""
    out = dst.copy()
    region = np.zeros(dst.shape[:2], np.uint8)
    for sbox, dbox, mode in zip(plan.src_box, plan.dst_box, plan.mode):
        y0, y1, x0, x1 = (int(v) for v in dbox)
        h, w = y1 - y0, x1 - x0
        patch = resize_patch(src[sbox[0]:sbox[1], sbox[2]:sbox[3]], h, w)
        pm = np.ones((h, w, 1), np.uint8)
        if src_obj is not None:
            s_obj = resized_object_mask(src_obj, sbox, h, w).astype(np.uint8)[..., None]
            pm &= s_obj | dst_obj[y0:y1, x0:x1].astype(np.uint8)[..., None]
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
            out = seamless_clone(patch, out, poisson_mask(h, w, plan.mask_value), clone_center(dbox), mode)
        region[y0:y1, x0:x1] = pm[..., 0]
    label = reference_label(out, dst, region, label_mode, factor=plan.factor, logistic=logistic,
                            tol=label_tol)
    return Synthetic(out, label, plan.dst_box.copy())
