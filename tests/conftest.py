"""Shared fixtures: real data when present, texture images from scikit-image, device skips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TIRE = SHARED_DATA / "mvtec_3d_ad" / "tire"


@pytest.fixture
def tire_root() -> Path:
    if not (TIRE / "train" / "good").is_dir():
        pytest.skip(f"real data not present at {TIRE} (../shared/data is only on the project machines)")
    return TIRE.parent


@pytest.fixture(scope="session")
def textures() -> list[np.ndarray]:
    """Freely licensed photos bundled with scikit-image, as uint8 RGB 256x256."""
    import cv2
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel"):
        img = getattr(data, name)()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append(cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA))
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261128)


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


QUICKSTART_EPOCHS = 2  # of the README's number: the same steps, files and printed table, in seconds


@pytest.fixture(scope="session")
def reader(tmp_path_factory):
    """A new reader's sandbox after the README's quick start, run with QUICKSTART_EPOCHS epochs:
    (Sandbox, the training command's CompletedProcess). The docs' blocks run here."""
    import shlex
    import subprocess

    from docs_blocks import Sandbox
    from test_quickstart import quick_start

    box = Sandbox(tmp_path_factory.mktemp("reader"))
    install_and_train, _ = quick_start()
    job = shlex.split(install_and_train.split("&&")[-1])
    run = subprocess.run([*job, "--epochs", str(QUICKSTART_EPOCHS)], cwd=box.work, env=box.env(),
                         capture_output=True, text=True, timeout=1800)
    return box, run
