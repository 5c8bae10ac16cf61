"""disk median: scipy's median_filter(footprint=disk(5)) beside nsa_fast.median.disk_median.

Run: OMP_NUM_THREADS=1 pytest bench/test_bench_median.py --benchmark-only
Each group holds the two implementations side by side on the same input.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import disk

from nsa_fast.median import disk_median

FOOTPRINT = disk(5)


def scipy_median(values: np.ndarray) -> np.ndarray:
    return ndi.median_filter(values, footprint=FOOTPRINT, mode="nearest")


def _smooth_patch(shape, rng) -> np.ndarray:
    """Smooth-ish channel-difference sums (0..765) with a little noise."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    smooth = 330 + 220 * np.sin(yy / 9.0) * np.cos(xx / 7.0) + rng.normal(0, 25, (h, w))
    return np.clip(np.rint(smooth), 0, 765).astype(np.uint16)


def crop_90() -> np.ndarray:
    """90x90 uint16 crop: zero border, a smooth inner rectangle, as the label crops are."""
    rng = np.random.default_rng(0)
    out = np.zeros((90, 90), np.uint16)
    out[16:74, 14:77] = _smooth_patch((58, 63), rng)
    return out


def map_256() -> np.ndarray:
    """256x256 uint16 map: mostly zero, two pasted patch regions with values."""
    rng = np.random.default_rng(1)
    out = np.zeros((256, 256), np.uint16)
    out[30:130, 40:160] = _smooth_patch((100, 120), rng)
    out[150:230, 120:240] = _smooth_patch((80, 120), rng)
    return out


def map_256_dense() -> np.ndarray:
    """256x256 uint16 map with no zeros: the worst case (no pixel can be skipped)."""
    rng = np.random.default_rng(2)
    return rng.integers(1, 766, (256, 256)).astype(np.uint16)


CASES = {"crop90": crop_90, "map256": map_256, "map256_dense": map_256_dense}
IMPLS = {"scipy": scipy_median, "disk_median": disk_median}


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_bench_disk_median(benchmark, case, impl):
    values = CASES[case]()
    benchmark.group = f"disk-median r5 {case}"
    got = benchmark(IMPLS[impl], values)
    np.testing.assert_array_equal(got, scipy_median(values))
