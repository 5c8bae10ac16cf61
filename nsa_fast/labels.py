"""Pixel-wise labels of a synthetic sample (REFERENCE section 1, the paper's eqs. (11)-(13)).

All label modes start from the same integer map: the sum over channels of |result - original|.
Working in integers keeps the medians exact and lets them run on vectorised selection; the float
values of the reference are that sum divided by the channel count. Work is confined to windows
around the patches, since the label is 0 further away.
"""
from __future__ import annotations

import numpy as np

from .filters import binary_median
from .median import disk_median
from .presets import LABEL_MODES

DISK_RADIUS = 5      # the intensity map's median footprint: skimage.morphology.disk(5)
BINARY_MEDIAN = 5    # the binary map's square median (cv2.medianBlur)

Box = tuple[int, int, int, int]


def _grow(box: Box, margin: int, H: int, W: int) -> Box:
    y0, y1, x0, x1 = box
    return max(y0 - margin, 0), min(y1 + margin, H), max(x0 - margin, 0), min(x1 + margin, W)


def _area(b: Box) -> int:
    return (b[1] - b[0]) * (b[3] - b[2])


def _merge(boxes: list[Box]) -> list[Box]:
    """Merge windows while one window around two costs no more than the two apart."""
    boxes = list(boxes)
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                u = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                if _area(u) <= _area(a) + _area(b):
                    boxes[i] = u
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _region_boxes(region: np.ndarray) -> list[Box]:
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(region.any(axis=0))
    return [(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)]


def make_label(result: np.ndarray, original: np.ndarray, region: np.ndarray, mode: str, *,
               boxes: np.ndarray | None = None, factor: float = 1.0,
               logistic: tuple[float, float] = (1 / 12, 24.0), tol: int = 1) -> np.ndarray:
    """The label of one synthetic sample.

    result, original: uint8 (H, W, C) synthetic and original destination image.
    region: (H, W) bool, the union of the patches' label regions (later patches overwrite earlier
    ones before this call). boxes: optional (P, 4) ``(y0, y1, x0, x1)`` boxes that hold the region
    (the patches' destination boxes), to confine the work; default: the region's bounding box.
    mode: binary | continuous | intensity | logistic.
    Returns float32 (H, W): 0/1 (binary), 0/f (continuous), 0..255 grey levels (intensity) or 0..1
    (logistic).
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"label mode must be one of {LABEL_MODES}, got {mode!r}")
    H, W, C = result.shape
    label = np.zeros((H, W), np.float32)
    base = _region_boxes(region) if boxes is None else [tuple(int(v) for v in b) for b in boxes]
    if not base:
        return label
    # The binary median switches pixels on at most 2 px outside the region.
    near = _merge([_grow(b, BINARY_MEDIAN // 2, H, W) for b in base])
    dsum = np.zeros((H, W), np.uint16)
    for y0, y1, x0, x1 in near:
        diff = np.abs(result[y0:y1, x0:x1].astype(np.int16) - original[y0:y1, x0:x1])
        dsum[y0:y1, x0:x1] = diff.sum(axis=-1, dtype=np.uint16)
    on = ((dsum > tol * C) & region).astype(np.uint8)
    # Over the whole image, so that the image border is replicated as OpenCV's median does.
    binary = binary_median(on, BINARY_MEDIAN)
    if mode == "binary":
        return binary.astype(np.float32)
    if mode == "continuous":
        return binary.astype(np.float32) * np.float32(factor)
    masked = dsum * binary
    # Output windows reach 5 px past the binary map; input windows 5 px further, so every output
    # pixel reads its true neighbours and the image border is replicated ('nearest').
    for out in _merge([_grow(b, DISK_RADIUS, H, W) for b in near]):
        i0, i1, j0, j1 = _grow(out, DISK_RADIUS, H, W)
        med = disk_median(masked[i0:i1, j0:j1], DISK_RADIUS)
        m0, m1, n0, n1 = out
        intensity = med[m0 - i0:m1 - i0, n0 - j0:n1 - j0] / float(C)  # the reference's channel mean
        if mode == "intensity":
            label[m0:m1, n0:n1] = intensity
        else:
            k, y_0 = logistic
            label[m0:m1, n0:n1] = binary[m0:m1, n0:n1] / (1.0 + np.exp(-k * (intensity - y_0)))
    return label
