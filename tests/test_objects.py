"""Object masks (docs/reference.md section 1, eq. (8)): |mean_c(x) - b| > t, strictly, then a 7x7
median; the integer fast path, the float path and the authors' literal formula agree
(added by mutation testing, docs/mutation-batch2.md)."""
import cv2
import numpy as np
import pytest
import torch

from nsa_fast.objects import object_mask, reference_object_mask


def authors(img, background):
    """Eq. (8) as the authors compute it: float mean over channels, strict threshold, medianBlur 7."""
    b, t = background
    return cv2.medianBlur((np.abs(img.mean(axis=-1) - b) > t).astype(np.uint8), 7).astype(bool)


def _image(rng, channels, background):
    """Grey levels around b (half within t, half beyond), blocks of object and a block whose mean
    lies exactly at b - t where b - t is a whole grey level."""
    b, t = background
    img = np.clip(np.round(b + rng.uniform(-2 * t, 2 * t, (64, 72, channels))), 0, 255).astype(np.uint8)
    img[35:55, 40:60] = 255 if b < 128 else 0
    if float(b - t).is_integer():
        img[10:30, 10:30] = np.uint8(b - t)
    return img


@pytest.mark.parametrize("background", [(200, 60), (20, 20), (100.5, 20.5), (127.5, 10.25)])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_mask_and_the_authors_literal_mask_agree_with_eq_8(background, channels):
    rng = np.random.default_rng(7)
    img = _image(rng, channels, background)
    want = authors(img, background)
    assert 0 < want.mean() < 1
    ref = reference_object_mask(img, background)
    assert ref.dtype == bool and np.array_equal(ref, want)
    got = object_mask(img, background)
    assert got.dtype == bool and np.array_equal(got, want)
    assert np.array_equal(object_mask(torch.from_numpy(img[None]), background)[0].numpy(), want)
    if float(background[0] - background[1]).is_integer():
        assert not want[15:25, 15:25].any()  # exactly at the threshold: background


def test_a_block_exactly_at_the_threshold_is_background():
    """b + t = 121 with b = 100.5 (the float path): a pixel of mean 121 is not object, nor 80."""
    img = np.full((40, 40, 3), 100, np.uint8)
    img[5:25, 5:25] = 121
    img[15:35, 15:35, 0] = 80
    for background in ((100.5, 20.5), (100, 21)):
        assert not object_mask(img, background).any()
        assert not reference_object_mask(img, background).any()
    img[5:25, 5:25] = 122
    assert object_mask(img, (100.5, 20.5))[10, 10] and reference_object_mask(img, (100.5, 20.5))[10, 10]


def test_an_integer_background_with_a_fractional_tolerance_follows_the_float_formula():
    """Only an integer b AND an integer t take the integer path: with t = 2/3 the authors' float
    arithmetic decides pixels whose channel sum is 58 (mean 19.33, |19.33 - 20| > 2/3 in float64)."""
    img = np.full((40, 40, 3), 20, np.uint8)
    img[8:30, 8:30] = (19, 19, 20)
    for background in ((20, 2 / 3), (20.0 + 1e-12, 2 / 3)):
        np.testing.assert_array_equal(object_mask(img, background), authors(img, background))
    assert object_mask(img, (20, 2 / 3))[15, 15]


def test_no_background_no_mask():
    img = np.zeros((16, 16, 3), np.uint8)
    assert object_mask(img, None) is None and reference_object_mask(img, None) is None
