"""Tests of nsa_fast.transforms: the drawn parameters, the crop / flip / nearest-neighbour rotation
against the exact inverse rotation, and the batched device path against the per-image one."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from nsa_fast.errors import InputError
from nsa_fast.presets import Preset
from nsa_fast.transforms import (AB_BITS, Augment, apply_augment, apply_augment_batch, check_size,
                                 draw_augment, pack_augment, rotation_steps)
from nsa_fast.transfer import HostPack

CENTRED = Preset(name="t", image_size=64, center_crop=48, crop=40, rotation=10.0, vflip=True)
PLAIN = Preset(name="u", image_size=64, center_crop=None, crop=40)
WHOLE = Preset(name="w", image_size=64, center_crop=None, crop=48, rotation=45.0)  # corners rotate in from outside


def coordinate_image(h: int, w: int) -> np.ndarray:
    """uint8 (h, w, 3): channel 0 holds the row, channel 1 the column of each pixel."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([yy, xx, (yy * 7 + xx) % 251], -1).astype(np.uint8)


def exact_source(angle: float, h: int, w: int):
    """(h, w) float source rows and columns of every output pixel of the rotation by ``angle``
    degrees about the image centre (the inverse of OpenCV's rotation matrix), clamped to the image."""
    m = np.vstack([cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0), [0, 0, 1]])
    inv = np.linalg.inv(m)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    sx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    sy = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    return np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)


def expected_crop(h, w, preset, aug):
    y0 = (h - preset.center_crop) // 2 + aug.y if preset.center_crop else aug.y
    x0 = (w - preset.center_crop) // 2 + aug.x if preset.center_crop else aug.x
    rows = np.arange(y0, y0 + preset.crop)
    if aug.flip:
        rows = rows[::-1]
    return rows, np.arange(x0, x0 + preset.crop)


# --------------------------------------------------------------------------------------------
# check_size
# --------------------------------------------------------------------------------------------

def test_check_size_needs_the_centre_crop_or_the_crop():
    check_size(np.zeros((48, 48, 3), np.uint8), CENTRED)
    check_size(np.zeros((40, 40, 3), np.uint8), PLAIN)
    for shape in ((47, 64, 3), (64, 47, 3)):
        with pytest.raises(InputError, match=rf"^picture is {shape[0]}x{shape[1]} pixels, smaller than the "
                                             r"48-pixel crop of preset 't'\. Resize images to image_size=64 "):
            check_size(np.zeros(shape, np.uint8), CENTRED, name="picture")
    with pytest.raises(InputError, match=r"or lower --set crop=\.\.\. and center_crop=\.\.\.$"):
        check_size(np.zeros((47, 64, 3), np.uint8), CENTRED)
    with pytest.raises(InputError, match=r"^image is 39x40 pixels, smaller than the 40-pixel crop"):
        check_size(np.zeros((39, 40, 3), np.uint8), PLAIN)


# --------------------------------------------------------------------------------------------
# draw_augment
# --------------------------------------------------------------------------------------------

def test_draws_cover_their_whole_range_and_nothing_more():
    rng = np.random.default_rng(1)
    augs = [draw_augment(CENTRED, (64, 64), rng) for _ in range(400)]
    angles = np.array([a.angle for a in augs])
    ys, xs = np.array([a.y for a in augs]), np.array([a.x for a in augs])
    assert angles.min() >= -10.0 and angles.max() <= 10.0
    assert angles.min() < -9.0 and angles.max() > 9.0          # both directions, nearly the limit
    assert set(ys) == set(range(0, 48 - 40 + 1)) == set(xs)    # offsets inside the centre crop, all of them
    assert {a.flip for a in augs} == {True, False}
    assert all(type(a.angle) is float and type(a.y) is int and type(a.x) is int and type(a.flip) is bool
               for a in augs)


def test_draws_without_rotation_flip_or_centre_crop():
    rng = np.random.default_rng(2)
    augs = [draw_augment(PLAIN, (50, 45), rng) for _ in range(300)]
    assert {a.angle for a in augs} == {0.0} and {a.flip for a in augs} == {False}
    assert set(a.y for a in augs) == set(range(50 - 40 + 1))   # the image's own size when no centre crop
    assert set(a.x for a in augs) == set(range(45 - 40 + 1))


def test_flips_are_fair_coins():
    rng = np.random.default_rng(4)
    flips = [draw_augment(CENTRED, (64, 64), rng).flip for _ in range(4000)]
    assert abs(np.mean(flips) - 0.5) < 0.03


def test_a_preset_without_rotation_or_flip_draws_only_the_offsets():
    """The seeding contract: the stream position after a draw (what the next draw of the sample
    gets) does not change when a preset has no rotation or flip to draw."""
    a, b = np.random.default_rng(6), np.random.default_rng(6)
    aug = draw_augment(PLAIN, (50, 45), a)
    assert (aug.y, aug.x) == (int(b.integers(11)), int(b.integers(6)))
    assert a.integers(1 << 30) == b.integers(1 << 30)


def test_draws_repeat_with_the_generator():
    a = [draw_augment(CENTRED, (64, 64), np.random.default_rng(5)) for _ in range(2)]
    assert a[0] == a[1]


# --------------------------------------------------------------------------------------------
# apply_augment
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", [CENTRED, PLAIN])
@pytest.mark.parametrize("flip", [False, True])
def test_crop_and_flip_without_rotation(preset, flip):
    img = coordinate_image(60, 64)
    aug = Augment(0.0, 3, 5, flip)
    got = apply_augment(img, preset, aug)
    rows, cols = expected_crop(60, 64, preset, aug)
    assert got.shape == (40, 40, 3) and got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, img[rows[:, None], cols[None, :]])


@pytest.mark.parametrize("angle, preset", [(7.5, CENTRED), (-4.25, CENTRED), (90.0, CENTRED), (-33.0, CENTRED),
                                           (30.0, WHOLE), (-45.0, WHOLE)])
@pytest.mark.parametrize("flip", [False, True])
def test_rotation_picks_the_nearest_source_pixel(angle, preset, flip):
    h, w = (60, 64) if preset is CENTRED else (48, 64)
    img = coordinate_image(h, w)
    aug = Augment(angle, 2, 6, flip) if preset is CENTRED else Augment(angle, 0, 9, flip)
    got = apply_augment(img, preset, aug).astype(np.float64)
    sy, sx = exact_source(angle, h, w)
    rows, cols = expected_crop(h, w, preset, aug)
    want_y, want_x = sy[rows[:, None], cols[None, :]], sx[rows[:, None], cols[None, :]]
    # nearest neighbour in fixed point: within half a pixel, up to the 1/2^AB_BITS rounding
    tol = 0.5 + 2.0 / (1 << AB_BITS)
    assert np.abs(got[..., 0] - want_y).max() <= tol
    assert np.abs(got[..., 1] - want_x).max() <= tol
    # and exactly the nearest pixel away from rounding ties
    clear = (np.abs(want_y - np.round(want_y)) < 0.49) & (np.abs(want_x - np.round(want_x)) < 0.49)
    assert clear.mean() > 0.85
    np.testing.assert_array_equal(got[..., 0][clear], np.round(want_y)[clear])
    np.testing.assert_array_equal(got[..., 1][clear], np.round(want_x)[clear])


def test_rotation_steps_of_zero_angle_are_the_identity():
    h, w = 5, 7
    row_x, row_y, col_x, col_y = rotation_steps(0.0, (h, w))
    for a in (row_x, row_y, col_x, col_y):
        assert a.dtype == np.int64
    assert row_x.shape == row_y.shape == (h,) and col_x.shape == col_y.shape == (w,)
    sx = (row_x[:, None] + col_x[None, :]) >> AB_BITS
    sy = (row_y[:, None] + col_y[None, :]) >> AB_BITS
    np.testing.assert_array_equal(sx, np.broadcast_to(np.arange(w), (h, w)))
    np.testing.assert_array_equal(sy, np.broadcast_to(np.arange(h)[:, None], (h, w)))


# --------------------------------------------------------------------------------------------
# the batched (device) path equals the per-image path
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("angles, preset", [((0.0, 0.0, 0.0), CENTRED), ((3.5, 0.0, -8.0), CENTRED),
                                            ((6.0, 1.0, 2.0), CENTRED), ((30.0, -45.0, 0.0), WHOLE)])
def test_batch_equals_the_per_image_transform(angles, preset):
    rng = np.random.default_rng(3)
    shape = (60, 64) if preset is CENTRED else (48, 64)
    images = rng.integers(0, 256, size=(3, *shape, 3), dtype=np.uint8)
    index = [2, 0, 2]
    augs = [Augment(a, y, x, f) for a, y, x, f in zip(angles, (0, 8, 4) if preset is CENTRED else (0, 0, 0),
                                                              (8, 0, 3), (False, True, True))]
    got = apply_augment_batch(torch.from_numpy(images), index, augs, preset)
    assert got.dtype == torch.uint8 and tuple(got.shape) == (3, preset.crop, preset.crop, 3)
    want = np.stack([apply_augment(images[i], preset, a) for i, a in zip(index, augs)])
    np.testing.assert_array_equal(got.numpy(), want)


def test_pack_says_whether_any_image_rotates():
    augs = [Augment(0.0, 0, 0, False), Augment(0.0, 1, 1, True)]
    assert pack_augment(HostPack(), "a.", [0, 1], augs, CENTRED, (64, 64)) is False
    assert pack_augment(HostPack(), "a.", [0, 1], augs + [Augment(1.0, 0, 0, False)], CENTRED, (64, 64)) is True


def test_empty_batch():
    images = torch.zeros((2, 64, 64, 3), dtype=torch.uint8)
    got = apply_augment_batch(images, [], [], CENTRED)
    assert tuple(got.shape) == (0, 40, 40, 3)
