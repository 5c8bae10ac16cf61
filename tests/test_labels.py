import numpy as np
import pytest
from scipy.ndimage import median_filter

from nsa_fast.labels import make_label
from nsa_fast.reference import reference_label


def blank(h=64, w=64, c=3, value=100):
    return np.full((h, w, c), value, np.uint8)


def test_binary_threshold_is_strictly_above_one_grey_level_mean():
    orig = blank()
    res = orig.copy()
    res[10:30, 10:20] += np.array([1, 1, 1], np.uint8)   # mean change 1: not a change
    res[10:30, 30:40] += np.array([1, 1, 2], np.uint8)   # mean 4/3 > 1: a change
    region = np.zeros((64, 64), bool)
    region[5:40, 5:45] = True
    lab = make_label(res, orig, region, "binary")
    assert lab[20, 15] == 0 and lab[20, 35] == 1
    expected = median_filter((np.abs(res.astype(int) - orig).mean(-1) > 1).astype(np.uint8), 5, mode="nearest")
    np.testing.assert_array_equal(lab, expected)


def test_changes_outside_the_region_are_ignored():
    orig = blank()
    res = orig.copy()
    res[:, :] = 200
    region = np.zeros((64, 64), bool)
    region[20:40, 20:40] = True
    lab = make_label(res, orig, region, "binary")
    assert lab[30, 30] == 1 and lab[5, 5] == 0 and lab.sum() == 20 * 20 - 4 * 3  # 5x5 median rounds corners


def test_continuous_is_binary_times_factor():
    orig = blank()
    res = orig.copy()
    res[10:40, 10:40] = 180
    region = np.ones((64, 64), bool)
    b = make_label(res, orig, region, "binary")
    c = make_label(res, orig, region, "continuous", factor=0.37)
    np.testing.assert_array_equal(c, b * np.float32(0.37))


def test_intensity_and_logistic_values():
    orig = blank()
    res = orig.copy()
    res[10:50, 10:50] = orig[10:50, 10:50] + np.array([30, 0, 0], np.uint8)  # mean change 10
    region = np.ones((64, 64), bool)
    inten = make_label(res, orig, region, "intensity")
    assert inten[30, 30] == pytest.approx(10.0) and inten[2, 2] == 0
    k, y0 = 0.5, 10.0
    logi = make_label(res, orig, region, "logistic", logistic=(k, y0))
    assert logi[30, 30] == pytest.approx(0.5)  # at y0 the logistic is one half
    logi = make_label(res, orig, region, "logistic", logistic=(1.0, 4.0))
    assert logi[30, 30] == pytest.approx(1 / (1 + np.exp(-6.0)))


def test_grayscale_labels():
    orig = blank(c=1)
    res = orig.copy()
    res[10:40, 10:40] = 107
    lab = make_label(res, orig, np.ones((64, 64), bool), "intensity")
    assert lab.shape == (64, 64) and lab[25, 25] == 7.0


@pytest.mark.parametrize("mode", ["binary", "continuous", "intensity", "logistic"])
@pytest.mark.parametrize("channels", [1, 3])
def test_equals_reference_formula_on_random_blends(mode, channels):
    rng = np.random.default_rng(3)
    for trial in range(12):
        h, w = rng.integers(40, 120, size=2)
        orig = rng.integers(0, 256, (h, w, channels)).astype(np.uint8)
        res = orig.copy()
        region = np.zeros((h, w), bool)
        boxes = []
        for _ in range(rng.integers(1, 4)):  # overlapping patches, some touching the border
            y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
            y1, x1 = min(y0 + rng.integers(8, 50), h), min(x0 + rng.integers(8, 50), w)
            noise = rng.integers(-40, 41, (y1 - y0, x1 - x0, channels))
            smooth = np.clip(res[y0:y1, x0:x1].astype(int) + noise * (rng.random() < 0.7), 0, 255)
            res[y0:y1, x0:x1] = smooth
            region[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.9
            boxes.append((y0, y1, x0, x1))
        # blends also change pixels just outside the label region (Poisson ROI)
        res[np.roll(region, 2, axis=0) & ~region] ^= 8
        kw = dict(factor=0.6, logistic=(1 / 3, 7.0))
        ref = reference_label(res, orig, region, mode, **kw)
        np.testing.assert_array_equal(make_label(res, orig, region, mode, **kw), ref)
        # confined to per-patch windows, as the executor does
        np.testing.assert_array_equal(make_label(res, orig, region, mode, boxes=np.array(boxes), **kw), ref)


def test_empty_region_gives_zero_label():
    lab = make_label(blank(), blank(value=0), np.zeros((64, 64), bool), "logistic")
    assert lab.dtype == np.float32 and not lab.any()


def test_unknown_mode():
    with pytest.raises(ValueError, match="label mode must be one of"):
        make_label(blank(), blank(), np.ones((64, 64), bool), "soft")
