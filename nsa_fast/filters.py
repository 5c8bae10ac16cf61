"""Median of a 0/1 map as a window count: equal to cv2.medianBlur, much faster for 7x7.

OpenCV's medianBlur switches to a histogram algorithm above 5x5 (about 1.2 ms for a 224x224
map on one core); a box-filter count is about 0.03 ms. On 0/1 data the median is 1 exactly when
more than half of the k*k window is 1, and both replicate the image border.
"""
from __future__ import annotations

import cv2
import numpy as np


def binary_median(mask: np.ndarray, ksize: int) -> np.ndarray:
    """Square ksize x ksize median of an (H, W) 0/1 map; returns uint8 0/1 (H, W)."""
    if ksize % 2 == 0 or ksize < 1:
        raise ValueError(f"ksize must be a positive odd number, got {ksize}")
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    counts = cv2.boxFilter(m, cv2.CV_16U if ksize > 15 else -1, (ksize, ksize), normalize=False,
                           borderType=cv2.BORDER_REPLICATE)
    return (counts > ksize * ksize // 2).astype(np.uint8)
