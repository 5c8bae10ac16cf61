"""disk_median must equal scipy's median_filter(footprint=disk(r), mode='nearest') exactly."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import disk

from nsa_fast.median import disk_median

SEED = 20261128


def scipy_median(values: np.ndarray, radius: int) -> np.ndarray:
    return ndi.median_filter(values, footprint=disk(radius), mode="nearest")


def brute_median(values: np.ndarray, radius: int) -> np.ndarray:
    """An independent reference: sort each edge-padded disk window explicitly."""
    fp = disk(radius).astype(bool)
    p = np.pad(values, radius, mode="edge")
    h, w = values.shape
    out = np.empty_like(values)
    for y in range(h):
        for x in range(w):
            window = p[y:y + 2 * radius + 1, x:x + 2 * radius + 1][fp]
            out[y, x] = np.sort(window)[window.size // 2]
    return out


def channel_diff_sum(shape, rng, dtype) -> np.ndarray:
    """Random values as the real maps hold them: sum of 3 channel |differences|.

    That gives 0..765, which only fits uint16. For uint8, one channel (0..255) is used.
    """
    a = rng.integers(0, 256, (3, *shape))
    b = rng.integers(0, 256, (3, *shape))
    d = np.abs(a - b)
    return (d.sum(0) if dtype == np.uint16 else d[0]).astype(dtype)


def sparse_rect(shape, rng, dtype) -> np.ndarray:
    """Mostly zero, with a random rectangle of smooth-ish values plus noise, as in the crops."""
    h, w = shape
    top = np.iinfo(dtype).max if dtype == np.uint8 else 765
    out = np.zeros(shape, dtype)
    y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
    y1, x1 = int(rng.integers(y0 + 1, h + 1)), int(rng.integers(x0 + 1, w + 1))
    yy, xx = np.mgrid[y0:y1, x0:x1]
    smooth = top / 2 + top / 3 * np.sin(yy / 7.0) * np.cos(xx / 5.0)
    noisy = smooth + rng.normal(0, top / 20, smooth.shape)
    out[y0:y1, x0:x1] = np.clip(np.rint(noisy), 0, top).astype(dtype)
    return out


MAKERS = {"random": channel_diff_sum, "sparse_rect": sparse_rect}
SHAPES = [(1, 1), (1, 50), (50, 1), (13, 7), (7, 13), (30, 30), (90, 90), (256, 256)]


@pytest.mark.parametrize("radius", [5, 2, 3])
@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["uint8", "uint16"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{h}x{w}" for h, w in SHAPES])
def test_equals_scipy(shape, dtype, kind, radius):
    rng = np.random.default_rng([SEED, *shape, np.dtype(dtype).itemsize, len(kind), radius])
    values = MAKERS[kind](shape, rng, dtype)
    before = values.copy()

    got = disk_median(values, radius)
    want = scipy_median(values, radius)

    assert got.shape == values.shape
    assert got.dtype == values.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(values, before)  # the input is left alone
    assert not np.shares_memory(got, values)


@pytest.mark.parametrize("shape", [(90, 90), (110, 70)])
def test_typical_crop_has_nonzero_medians(shape):
    """On a realistic crop the filter must find the inner values, not just return zeros."""
    rng = np.random.default_rng(SEED)
    values = np.zeros(shape, np.uint16)
    values[15:70, 12:60] = channel_diff_sum((55, 48), rng, np.uint16) // 4 + 200
    got = disk_median(values)
    np.testing.assert_array_equal(got, scipy_median(values, 5))
    assert got[40, 35] > 0
    assert got[0, 0] == 0
    assert (got > 0).sum() > 1500


def test_matches_brute_force_small():
    """scipy is the reference; this also checks the reference against explicit sorting."""
    rng = np.random.default_rng(SEED)
    values = channel_diff_sum((17, 23), rng, np.uint16)
    for radius in (1, 2, 5, 7):
        want = brute_median(values, radius)
        np.testing.assert_array_equal(disk_median(values, radius), want)
        np.testing.assert_array_equal(scipy_median(values, radius), want)


def test_footprint_is_a_disk_not_a_square():
    """A square window gives a different answer here, so the test data can tell them apart."""
    rng = np.random.default_rng(SEED)
    values = channel_diff_sum((40, 40), rng, np.uint16)
    got = disk_median(values, 5)
    square = ndi.median_filter(values, size=11, mode="nearest")
    assert np.count_nonzero(got != square) > 100
    np.testing.assert_array_equal(got, scipy_median(values, 5))


@pytest.mark.parametrize("shape", [(1, 1), (1, 50), (50, 1), (90, 90)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_all_zero_and_constant(shape, dtype):
    zeros = np.zeros(shape, dtype)
    got = disk_median(zeros)
    assert got.dtype == dtype and got.shape == shape and not got.any()

    const = np.full(shape, 123, dtype)
    np.testing.assert_array_equal(disk_median(const), const)


def test_isolated_nonzero_pixels_are_removed_and_a_big_block_is_kept():
    values = np.zeros((60, 60), np.uint16)
    values[5, 5] = values[30, 50] = 700  # speckle: far fewer than 41 non-zeros around
    values[20:45, 10:35] = 300
    got = disk_median(values)
    np.testing.assert_array_equal(got, scipy_median(values, 5))
    assert got[5, 5] == 0 and got[30, 50] == 0
    assert got[32, 22] == 300


def test_full_uint16_range():
    rng = np.random.default_rng(SEED)
    values = rng.integers(0, 65536, (37, 41)).astype(np.uint16)
    np.testing.assert_array_equal(disk_median(values), scipy_median(values, 5))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32])
def test_other_integer_dtypes(dtype):
    rng = np.random.default_rng(SEED)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -70000), min(info.max, 70000)
    values = rng.integers(lo, hi, (29, 31), endpoint=True).astype(dtype)
    values[:10] = 0
    got = disk_median(values, 4)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, scipy_median(values, 4))


def test_non_contiguous_input():
    rng = np.random.default_rng(SEED)
    base = channel_diff_sum((80, 90), rng, np.uint16)
    for view in (base[::-1, ::2], base.T, np.asfortranarray(base), base[3:70, 5:60]):
        np.testing.assert_array_equal(disk_median(view), scipy_median(view, 5))


def test_radius_zero_is_identity_and_default_is_five():
    rng = np.random.default_rng(SEED)
    values = channel_diff_sum((21, 19), rng, np.uint16)
    np.testing.assert_array_equal(disk_median(values, 0), values)
    np.testing.assert_array_equal(disk_median(values), disk_median(values, 5))
    assert not np.array_equal(disk_median(values, 5), disk_median(values, 2))


def test_nested_list_is_accepted():
    values = [[0, 5, 9], [3, 3, 3], [700, 1, 2]]
    np.testing.assert_array_equal(disk_median(values, 1), scipy_median(np.array(values), 1))


@pytest.mark.parametrize(
    "bad, pattern",
    [
        (np.zeros(5, np.uint16), r"2-D.*got 1-D"),
        (np.zeros((3, 4, 3), np.uint16), r"2-D.*got 3-D.*\(3, 4, 3\)"),
        (np.uint16(7), r"2-D.*got 0-D"),
        (np.zeros((5, 5), np.float32), r"integer.*float32"),
        (np.zeros((5, 5), np.float64), r"integer.*float64"),
        (np.zeros((5, 5), bool), r"integer.*bool"),
        (np.zeros((5, 5), np.complex64), r"integer.*complex64"),
    ],
    ids=["1d", "3d", "scalar", "float32", "float64", "bool", "complex"],
)
def test_bad_values_raise(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        disk_median(bad)


@pytest.mark.parametrize("radius", [-1, 2.5, 5.0, True, "5", None])
def test_bad_radius_raises(radius):
    with pytest.raises(ValueError, match="radius must be a non-negative integer"):
        disk_median(np.zeros((5, 5), np.uint16), radius)


@pytest.mark.parametrize("fast16", [True, False], ids=["16bit-work", "32bit-work"])
def test_both_work_dtypes_agree(monkeypatch, fast16):
    """The 32-bit path is what CPUs without AVX512-ICL take; run it here too."""
    from nsa_fast import median

    monkeypatch.setattr(median, "_sixteen_bit_partition_is_fast", lambda: fast16)
    rng = np.random.default_rng(SEED)
    for make in (channel_diff_sum, sparse_rect):
        v = make((47, 61), rng, np.uint16)  # 0..765
        for values in (v, (v // 3).astype(np.uint8), v.astype(np.int16) - 300):
            got = disk_median(values)
            assert got.dtype == values.dtype
            np.testing.assert_array_equal(got, scipy_median(values, 5))
    assert median._work_dtype(np.zeros((2, 2), np.uint16)) == (np.uint16 if fast16 else np.uint32)


def test_separate_patches_far_apart():
    """Row blocks between and beside the patches are skipped; the patches must survive."""
    rng = np.random.default_rng(SEED)
    values = np.zeros((256, 256), np.uint16)
    values[10:60, 0:60] = channel_diff_sum((50, 60), rng, np.uint16)
    values[150:200, 180:256] = 500 + channel_diff_sum((50, 76), rng, np.uint16) // 8
    for radius in (5, 9):
        got = disk_median(values, radius)
        np.testing.assert_array_equal(got, scipy_median(values, radius))
        assert got[35, 30] > 0 and got[175, 220] >= 500
        assert not got[100].any()


def test_numpy_integer_radius_is_accepted():
    rng = np.random.default_rng(SEED)
    values = channel_diff_sum((12, 12), rng, np.uint16)
    np.testing.assert_array_equal(disk_median(values, np.int64(3)), scipy_median(values, 3))


# The work dtype is a speed choice: it must hold every value exactly, and be 16-bit where the
# values fit 16 bits and 16-bit partition is fast, else 32-bit where they fit 32 bits.
BOUNDARY_RANGES = [
    (np.int32, 0, 65535), (np.int32, 0, 65536), (np.int32, -1, 40000), (np.int32, -32768, 32767),
    (np.int32, -32769, 0), (np.int32, -5, 32768), (np.int64, 0, 2 ** 32 - 1), (np.int64, 0, 2 ** 32),
    (np.int64, -1, 3_000_000_000), (np.int64, -2 ** 31, 2 ** 31 - 1), (np.int64, -2 ** 31 - 1, 0),
    (np.int64, -7, 2 ** 31), (np.int64, 0, 3_000_000_000), (np.int64, 3, 700), (np.int64, -2 ** 62, 2 ** 62),
    (np.uint32, 0, 2 ** 32 - 1), (np.int8, -128, 127), (np.int16, -32768, 32767), (np.uint8, 0, 255),
    (np.uint16, 0, 65535),
]


def boundary_map(dtype, lo, hi, shape=(15, 17), seed=SEED):
    """Values spread over [lo, hi], both ends present, clustered so that medians take extreme values."""
    rng = np.random.default_rng(seed)
    frac = np.clip(rng.normal(0.5, 0.35, shape), 0, 1)
    values = (lo + np.round(frac * (hi - lo)).astype(object)).astype(dtype)
    values[:4, :5] = lo
    values[-5:, -6:] = hi
    values[7, 8] = lo
    return values


@pytest.mark.parametrize("fast16", [True, False], ids=["16bit-work", "32bit-work"])
@pytest.mark.parametrize("dtype, lo, hi", BOUNDARY_RANGES, ids=[f"{d.__name__}[{a},{b}]" for d, a, b in BOUNDARY_RANGES])
def test_work_dtype_holds_every_value_in_the_fewest_bits(monkeypatch, fast16, dtype, lo, hi):
    from nsa_fast import median

    monkeypatch.setattr(median, "_sixteen_bit_partition_is_fast", lambda: fast16)
    values = boundary_map(dtype, lo, hi)
    work = median._work_dtype(values)
    assert isinstance(work, np.dtype) and np.issubdtype(work, np.integer)
    # the dtype's whole range for 8 and 16-bit inputs, the values' range otherwise
    span = np.iinfo(dtype) if np.dtype(dtype).itemsize <= 2 else None
    a, b = (span.min, span.max) if span else (lo, hi)
    assert np.iinfo(work).min <= a and b <= np.iinfo(work).max
    fits16 = (0 <= a and b <= 0xFFFF) or (-0x8000 <= a and b <= 0x7FFF)
    fits32 = (0 <= a and b <= 0xFFFFFFFF) or (-0x80000000 <= a and b <= 0x7FFFFFFF)
    want = 2 if fits16 and fast16 else 4 if fits32 else np.dtype(dtype).itemsize
    assert work.itemsize == want
    # and the filter is exact whatever the work dtype
    got = disk_median(values, 2)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, scipy_median(values, 2))


def test_work_dtype_of_an_empty_map_and_of_one_pixel():
    from nsa_fast import median

    assert median._work_dtype(np.zeros((0, 3), np.int64)) == np.int64
    assert median._work_dtype(np.full((1, 1), 700, np.int64)).itemsize <= 4


def test_values_beyond_float64_precision():
    """int64 values that float64 cannot hold exactly (beyond 2^53) come back exactly (scipy's
    median_filter itself rounds them, so the reference is the explicit sort)."""
    rng = np.random.default_rng(SEED)
    values = (2 ** 60 + rng.integers(0, 1000, (20, 23))).astype(np.int64)
    values[:5] = -(2 ** 60) - 3
    np.testing.assert_array_equal(disk_median(values, 3), brute_median(values, 3))


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_small_binary_patterns(radius):
    """Sparse 0/1 and 0/v maps: medians decided by exactly half the footprint plus one pixel (the
    skip test's boundary), and maps holding the value 1."""
    rng = np.random.default_rng(radius)
    for _ in range(60):
        density = rng.uniform(0.2, 0.7)
        values = (rng.random((9, 11)) < density).astype(np.uint16) * rng.choice([1, 3, 700])
        np.testing.assert_array_equal(disk_median(values, radius), scipy_median(values, radius))
    # mostly ones with a single zero: the skip test counts non-zero pixels, not pixels other than 1
    values = np.ones((9, 11), np.uint16)
    values[4, 5] = 0
    np.testing.assert_array_equal(disk_median(values, radius), np.ones_like(values))
    # disk(1) has 5 pixels: 3 non-zero of them make a non-zero median, alone in their 3x3 square
    values = np.zeros((5, 5), np.uint16)
    values[2, 1:4] = 5
    assert disk_median(values, 1)[2, 2] == 5
    np.testing.assert_array_equal(disk_median(values, 1), scipy_median(values, 1))


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
def test_empty_maps(shape):
    values = np.zeros(shape, np.uint16)
    got = disk_median(values, 5)
    assert got.shape == shape and got.dtype == np.uint16


def test_bad_radius_message_names_its_type():
    with pytest.raises(ValueError, match=r"got 2\.5 of type float$"):
        disk_median(np.zeros((5, 5), np.uint16), 2.5)
    with pytest.raises(ValueError, match=r"got True of type bool$"):
        disk_median(np.zeros((5, 5), np.uint16), True)


@pytest.mark.parametrize("shape", [(0, 7), (7, 0), (0, 0)])
def test_empty_maps_come_back_empty_and_new(shape):
    x = np.zeros(shape, np.uint8)
    got = disk_median(x, 5)
    assert got.shape == shape and got.dtype == np.uint8 and got is not x
