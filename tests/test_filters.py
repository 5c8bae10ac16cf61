import cv2
import numpy as np
import pytest

from nsa_fast.filters import binary_median
from nsa_fast.objects import object_mask


@pytest.mark.parametrize("ksize", [3, 5, 7])
def test_binary_median_equals_opencv(ksize):
    rng = np.random.default_rng(ksize)
    for _ in range(60):
        h, w = rng.integers(1, 160, size=2)
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        np.testing.assert_array_equal(binary_median(m, ksize), cv2.medianBlur(m, ksize))


def test_binary_median_rejects_even_size():
    with pytest.raises(ValueError, match="odd"):
        binary_median(np.zeros((4, 4), np.uint8), 4)


@pytest.mark.parametrize("background", [(200, 60), (20, 20), (0, 20), (127.5, 10.25)])
@pytest.mark.parametrize("channels", [1, 3])
def test_object_mask_equals_float_mean_formula(background, channels):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (96, 80, channels)).astype(np.uint8)
    img[::7] = np.clip(background[0] + background[1], 0, 255)  # values right at the threshold
    b, t = background
    expected = cv2.medianBlur((np.abs(img.mean(axis=-1) - b) > t).astype(np.uint8), 7).astype(bool)
    np.testing.assert_array_equal(object_mask(img, background), expected)


# -- added by mutation testing (docs/mutation-batch2.md) ------------------------------------

@pytest.mark.parametrize("ksize", [17, 23, 25])
def test_binary_median_equals_opencv_for_windows_of_more_than_255_pixels(ksize):
    """From 17 x 17 on, a window counts past 255: the count must not saturate at uint8."""
    rng = np.random.default_rng(ksize)
    m = (rng.random((80, 90)) < 0.5).astype(np.uint8)
    m[20:60, 20:70] = 1
    want = cv2.medianBlur(m, ksize)
    assert want.any() and not want.all()
    np.testing.assert_array_equal(binary_median(m, ksize), want)
    import torch

    np.testing.assert_array_equal(binary_median(torch.from_numpy(m[None]), ksize)[0].numpy(), want.astype(bool))


def test_a_one_pixel_median_is_the_identity():
    import torch

    mask = (np.random.default_rng(0).random((2, 9, 11)) > 0.5).astype(np.uint8)
    assert np.array_equal(binary_median(mask[0], 1), mask[0])
    assert torch.equal(binary_median(torch.from_numpy(mask).bool(), 1), torch.from_numpy(mask).bool())
    with pytest.raises(ValueError, match="positive odd number, got -1"):
        binary_median(mask[0], -1)
