"""Built-in demo data, made from the texture photos that scikit-image ships (free licences).

``--data demo`` resolves to a folder in the MVTec layout, written on first use:
``<cache>/demo/train/good/*.png``. The cache is ``$NSA_FAST_CACHE`` or ``~/.cache/nsa_fast``.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

DEMO = "demo"
N_TRAIN = 40
SIZE = 256


def cache_dir() -> Path:
    return Path(os.environ.get("NSA_FAST_CACHE", Path.home() / ".cache" / "nsa_fast"))


def _texture() -> np.ndarray:
    from skimage import data

    g = data.gravel().astype(np.float32)  # 512x512 grayscale photo of gravel
    tint = np.array([1.0, 0.9, 0.75], np.float32)  # a warm colour, so the demo is RGB
    return np.clip(g[..., None] * tint, 0, 255).astype(np.uint8)


def normal_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """n normal demo images, uint8 (256, 256, 3): random crops, flips and 90-degree turns."""
    rng = np.random.default_rng(seed)
    tex = _texture()
    out = []
    for _ in range(n):
        side = int(rng.integers(300, 400))
        y, x = rng.integers(0, tex.shape[0] - side, size=2)
        crop = np.rot90(tex[y:y + side, x:x + side], int(rng.integers(4)))
        if rng.integers(2):
            crop = crop[:, ::-1]
        out.append(cv2.resize(np.ascontiguousarray(crop), (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return out


def ensure_demo(root: Path | None = None) -> Path:
    """Write the demo dataset if it is not there yet; returns its root (holding ``demo/``)."""
    from .io import write_image

    root = Path(root) if root else cache_dir() / "data"
    good = root / DEMO / "train" / "good"
    if len(list(good.glob("*.png"))) >= N_TRAIN:
        return root
    good.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(normal_images(N_TRAIN)):
        tmp = good / f".{i:03d}.tmp.png"
        write_image(tmp, img)
        os.replace(tmp, good / f"{i:03d}.png")  # a half-written demo never looks complete
    return root


def resolve_root(data: str) -> Path:
    """``demo`` names the built-in data; anything else is a folder."""
    return ensure_demo() if data == DEMO else Path(data)
