"""Benchmark inputs: object-on-background and texture images built from scikit-image's photos."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest


def pytest_configure(config):
    # Per-core figures: one thread in OpenCV and torch.
    cv2.setNumThreads(1)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


def _objects(size: int) -> list[np.ndarray]:
    """RGB objects (a textured disc) on a bright background, as the bottle class has."""
    rng = np.random.default_rng(0)
    out = []
    for i, photo in enumerate(_photos() * 2):
        img = np.clip(rng.normal(225, 4, (size, size, 3)), 0, 255).astype(np.uint8)
        tex = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
        tex = (tex * 0.5).astype(np.uint8)  # darker than the background: object where mean < 140
        yy, xx = np.mgrid[:size, :size]
        cy, cx = size // 2 + rng.integers(-8, 9, size=2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (size * 0.38 + i) ** 2
        img[disc] = tex[disc]
        out.append(img)
    return out


@pytest.fixture(scope="session")
def bottle_like() -> list[np.ndarray]:
    """224x224: the size a bottle sample has after its crops."""
    return _objects(224)


@pytest.fixture(scope="session")
def bottle_like_256() -> list[np.ndarray]:
    """256x256: the size bottle images are cached at, before augmentation."""
    return _objects(256)


@pytest.fixture(scope="session")
def carpet_like() -> list[np.ndarray]:
    """256x256 RGB textures."""
    from skimage import data

    out = []
    for name in ("brick", "grass", "gravel"):
        g = getattr(data, name)()
        for k in range(2):
            crop = g[k * 200:k * 200 + 300, k * 100:k * 100 + 300]
            out.append(np.repeat(cv2.resize(crop, (256, 256), interpolation=cv2.INTER_AREA)[..., None], 3, 2))
    return out


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip with a reason where no CUDA device is visible
    (``bash bench/gpu_check.sh`` runs just those on a GPU machine: ``-m cuda``)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
