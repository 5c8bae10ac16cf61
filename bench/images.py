"""Benchmark images built from scikit-image's photos (freely licensed, bundled with the package)."""
from __future__ import annotations

import cv2
import numpy as np


def _photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


def objects(size: int, n: int = 8) -> list[np.ndarray]:
    """n RGB objects (a textured disc of one of 4 photos, of 8 radii) on a bright background, as
    the bottle class has; the first 8 are the benchmarks' images."""
    rng = np.random.default_rng(0)
    out = []
    photos = _photos()
    for i in range(n):
        img = np.clip(rng.normal(225, 4, (size, size, 3)), 0, 255).astype(np.uint8)
        tex = cv2.resize(photos[i % 4], (size, size), interpolation=cv2.INTER_AREA)
        tex = (tex * 0.5).astype(np.uint8)  # darker than the background: object where mean < 140
        yy, xx = np.mgrid[:size, :size]
        cy, cx = size // 2 + rng.integers(-8, 9, size=2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (size * 0.38 + i % 8) ** 2
        img[disc] = tex[disc]
        out.append(img)
    return out
