"""Benchmark inputs (object-on-background and texture images built from scikit-image's photos)
and the ``gpu`` fixture of the CUDA benchmarks.

``gpu`` is a CUDA GPU when one is visible. With ``--standin-gpu`` (and ``--benchmark-disable``)
it is the stand-in GPU of tests/standin_gpu.py instead, at small sizes: the CUDA benchmarks'
bodies then run on the CPU, their CuPy launches through the stand-in CuPy and their tensors on
the stand-in device, so that a benchmark that only a GPU times cannot rot unseen
(tests/test_gpu_check.py runs them so, through ``bash bench/gpu_check.sh --dry-run``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from images import objects

TESTS = Path(__file__).resolve().parents[1] / "tests"


def pytest_addoption(parser):
    parser.addoption("--standin-gpu", action="store_true",
                     help="run the CUDA benchmarks' bodies on the CPU through the stand-in GPU (tests/standin_gpu.py) "
                          "at small sizes; use with --benchmark-disable")


def pytest_configure(config):
    # Per-core figures: one thread in OpenCV and torch.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def bottle_like() -> list[np.ndarray]:
    """224x224: the size a bottle sample has after its crops."""
    return objects(224)


@pytest.fixture(scope="session")
def bottle_like_256() -> list[np.ndarray]:
    """256x256: the size bottle images are cached at, before augmentation."""
    return objects(256)


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


@dataclass
class Gpu:
    """Where the CUDA benchmarks run, and at what size: batch 64 of 224-pixel crops of 256-pixel
    images on a GPU; 2 of 64-pixel crops of 80-pixel images on the stand-in (the CPU emulates
    every CUDA thread of a kernel with an OS thread)."""

    device: torch.device
    standin: bool
    batch: int = 64
    crop: int = 224
    image: int = 256
    counters: list = field(default_factory=list)

    @property
    def preset(self):
        """The bottle preset at this size (object masks, NORMAL clone, logistic labels)."""
        from nsa_fast.presets import get_preset

        bottle = get_preset("bottle")
        if self.crop == bottle.crop:
            return bottle
        return bottle.replace(image_size=self.image, center_crop=self.crop + 8, crop=self.crop)

    def sync(self) -> None:
        """Wait for the device (inside the timed region: time the work, not the launches)."""
        if not self.standin:
            torch.cuda.synchronize()

    def amp_dtype(self):
        """bf16 where the GPU computes it fast (sm_80 and newer), as the trainer chooses."""
        if self.standin:
            return None
        return torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else None

    def host(self, t: torch.Tensor) -> torch.Tensor:
        """A device tensor's data on the host, for the checks after a benchmark."""
        if self.standin:
            from fake_device import host_data

            return host_data(t)
        return t.cpu()

    def executor(self, solver: str):
        """The batched executor as CUDA runs it for ``--solver solver``."""
        from nsa_fast.blend.batched import BatchedExecutor
        from nsa_fast.blend.cuda import disk_median_cuda
        from nsa_fast.blend.pick import pick_solver

        return BatchedExecutor(pick_solver(solver, torch.device("cuda")), disk_median_cuda, buckets=1)


@pytest.fixture
def gpu(request):
    if request.config.getoption("--standin-gpu"):
        if str(TESTS) not in sys.path:
            sys.path.insert(0, str(TESTS))
        from standin_gpu import DEVICE, standin_gpu

        with standin_gpu() as (dev, cp):
            yield Gpu(DEVICE, True, batch=2, crop=64, image=80, counters=[dev, cp])
    elif torch.cuda.is_available():
        yield Gpu(torch.device("cuda", torch.cuda.current_device()), False)
    else:
        pytest.skip("needs a CUDA device (or --standin-gpu, which runs the bodies on the CPU)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip with a reason where no CUDA device is visible, unless
    ``--standin-gpu`` runs them on the stand-in (``bash bench/gpu_check.sh`` runs just those:
    ``-m cuda``)."""
    if torch.cuda.is_available() or config.getoption("--standin-gpu"):
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
