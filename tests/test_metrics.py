"""Tests of nsa_fast.metrics: AU-PRO against a plain per-threshold reference, hand-made cases,
AUROCs against scikit-learn, F1-max against a brute-force search, and the input errors."""
from __future__ import annotations

from bisect import bisect_right
from fractions import Fraction

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score  # a hard dependency: the metrics need it

from nsa_fast.metrics import (
    au_pro,
    f1_max,
    image_auroc,
    pixel_auroc,
    pro_curve,
    trapezoid,
)

# --------------------------------------------------------------------------------------------
# Plain, slow reference following MVTec AD's official compute_pro + trapezoid literally, but
# evaluating every distinct threshold separately (no global cumsum): at threshold t a pixel is
# positive when its score >= t; regions are labelled image by image with a 3x3 structure of ones.
# --------------------------------------------------------------------------------------------


def reference_pro_curve(maps, masks):
    maps = np.asarray(maps)
    masks = np.asarray(masks)
    region_ids = np.zeros(maps.shape, dtype=np.int64)  # 0 = normal, k = k-th region of the set
    n_regions = 0
    for i, gt in enumerate(masks):
        labeled, n = ndimage.label(gt, structure=np.ones((3, 3), dtype=int))
        region_ids[i][labeled > 0] = labeled[labeled > 0] + n_regions
        n_regions += n
    ids = region_ids.ravel()
    scores = maps.ravel()
    normal = ids == 0
    n_normal = int(normal.sum())
    sizes = np.bincount(ids, minlength=n_regions + 1)[1:]
    fprs, pros = [0.0], [0.0]
    for t in np.unique(scores)[::-1]:              # each distinct threshold, decreasing
        positive = scores >= t
        fprs.append(np.count_nonzero(positive & normal) / n_normal)
        hits = np.bincount(ids[positive], minlength=n_regions + 1)[1:]
        pros.append(float(np.mean(hits / sizes)))  # mean over ALL regions of the overlap
    fprs.append(1.0)                               # the official script appends (1, 1)
    pros.append(1.0)
    return np.array(fprs), np.array(pros)


def reference_trapezoid(x, y, x_max):
    """The official trapezoid(x, y, x_max), written out."""
    x = list(x)
    y = list(y)
    correction = 0.0
    if x_max not in x:
        ins = bisect_right(x, x_max)
        assert 0 < ins < len(x)
        y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    keep = [i for i in range(len(x)) if x[i] <= x_max]
    xs = [x[i] for i in keep]
    ys = [y[i] for i in keep]
    area = sum(0.5 * (ys[i] + ys[i - 1]) * (xs[i] - xs[i - 1]) for i in range(1, len(xs)))
    return area + correction


def reference_au_pro(maps, masks, fpr_limit=0.3):
    fpr, pro = reference_pro_curve(maps, masks)
    return reference_trapezoid(fpr, pro, fpr_limit) / fpr_limit


# --------------------------------------------------------------------------------------------
# random test data
# --------------------------------------------------------------------------------------------

def one_region_masks(rng, n, h, w, n_good):
    masks = np.zeros((n, h, w), dtype=bool)
    yy, xx = np.mgrid[:h, :w]
    for i in range(n_good, n):                       # the first n_good images stay anomaly-free
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1.5, h / 3), rng.uniform(1.5, w / 3)
        masks[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        masks[i, int(cy) % h, int(cx) % w] = True
    return rng.permutation(masks)


def speckle_masks(rng, n, h, w, n_good, p=0.1):
    """Many small regions: independent random pixels (with diagonal contacts) plus a few blobs."""
    masks = rng.random((n, h, w)) < p
    masks[:n_good] = False
    for i in range(n_good, n):
        y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
        masks[i, y:y + 3, x:x + 3] = True
        for y, x in zip(rng.integers(0, h - 1, 3), rng.integers(0, w - 1, 3)):
            masks[i, y, x] = masks[i, y + 1, x + 1] = True     # diagonal contacts
    return rng.permutation(masks)


def maps_for(rng, masks, decimals=None, dtype=np.float64):
    """Informative but imperfect maps: anomalous pixels score higher on average."""
    maps = rng.random(masks.shape) * 0.7 + 0.35 * masks * rng.random(masks.shape)
    if decimals is not None:
        maps = np.round(maps, decimals)             # many ties (~100 distinct values)
    return maps.astype(dtype)


# Agreement tolerance: both sides compute in float64. The reference divides exact integer counts
# once per threshold; pro_curve adds up to ~10^4 terms 1/(size*n_regions) by cumsum, whose rounding
# stays around 1e-13. 1e-9 leaves room for that and still catches any wrong point (one pixel moves
# the curve by >= 1/(n_pixels) ~ 1e-4 here). The official script's float32 FPR would need ~1e-7.
ATOL = 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("kind", ["one_region", "speckle"])
@pytest.mark.parametrize("decimals", [None, 2])
def test_au_pro_matches_reference(seed, kind, decimals):
    rng = np.random.default_rng(1000 * seed + (kind == "speckle") * 10 + (decimals or 0))
    n, h, w = 5, 28, 32
    make = one_region_masks if kind == "one_region" else speckle_masks
    masks = make(rng, n, h, w, n_good=2)
    maps = maps_for(rng, masks, decimals, dtype=np.float32 if seed % 2 else np.float64)
    if kind == "speckle":
        structure8 = np.ones((3, 3), dtype=int)
        for gt in masks:
            if gt.any():
                n8 = ndimage.label(gt, structure8)[1]
                n4 = ndimage.label(gt)[1]
                assert n8 >= 30, n8          # many regions per anomalous image ...
                assert n4 > n8               # ... some of which only touch diagonally
    assert (~masks.reshape(n, -1).any(1)).sum() == 2   # anomaly-free images are mixed in
    if decimals is not None:
        assert np.unique(maps).size < maps.size / 20   # heavily tied

    fpr, pro = pro_curve(maps, masks)
    rfpr, rpro = reference_pro_curve(maps, masks)
    # Same points; the reference (like the official script) has one extra final (1, 1).
    np.testing.assert_allclose(fpr, rfpr[:-1], rtol=0, atol=ATOL)
    np.testing.assert_allclose(pro, rpro[:-1], rtol=0, atol=ATOL)
    for limit in (0.3, 0.05, 1.0, float(rfpr[len(rfpr) // 3])):  # the last one is a curve x value
        got = au_pro(maps, masks, fpr_limit=limit)
        want = reference_trapezoid(rfpr, rpro, limit) / limit
        assert abs(got - want) <= ATOL, (limit, got, want)
    assert 0.15 < au_pro(maps, masks) < 1.0          # informative maps: better than constant


def test_au_pro_masks_0_255_and_int_maps():
    rng = np.random.default_rng(7)
    masks = speckle_masks(rng, 4, 20, 20, n_good=1)
    maps = rng.integers(0, 50, size=masks.shape).astype(np.uint8)  # integer scores, many ties
    maps[masks] += 20
    masks255 = masks.astype(np.uint8) * 255
    want = reference_au_pro(maps, masks)
    assert abs(au_pro(maps, masks255) - want) <= ATOL
    assert abs(au_pro(maps, masks) - want) <= ATOL


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
                                   np.int64, np.uint8, np.uint16, np.uint32, bool])
def test_au_pro_score_dtypes(dtype):
    # Small integer-valued scores (many ties), negative ones where the dtype allows: exercises the
    # order-preserving sort key of every dtype (<= 32 bits) and the argsort path (64 bits).
    rng = np.random.default_rng(11)
    masks = speckle_masks(rng, 4, 16, 16, n_good=1)
    values = rng.integers(-40, 40, size=masks.shape) + 25 * masks
    if dtype is bool:
        values = values > 10
    elif not np.issubdtype(dtype, np.signedinteger) and not np.issubdtype(dtype, np.floating):
        values = values + 40
    maps = values.astype(dtype)
    fpr, pro = pro_curve(maps, masks)
    rfpr, rpro = reference_pro_curve(maps.astype(np.float64), masks)
    np.testing.assert_allclose(fpr, rfpr[:-1], rtol=0, atol=ATOL)
    np.testing.assert_allclose(pro, rpro[:-1], rtol=0, atol=ATOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_zero_ties_with_zero(dtype):
    rng = np.random.default_rng(12)
    masks = speckle_masks(rng, 3, 12, 12, n_good=1)
    maps = np.round(rng.normal(size=masks.shape), 0).astype(dtype)   # -1, 0, 1, ...
    maps[maps == 0] = 0.0                                              # all +0.0
    signed = maps.copy()
    signed[(maps == 0) & (rng.random(maps.shape) < 0.5)] = -0.0
    assert np.signbit(signed[signed == 0]).any() and not np.signbit(maps[maps == 0]).any()
    fpr, pro = pro_curve(signed, masks)
    rfpr, rpro = pro_curve(maps, masks)
    np.testing.assert_array_equal(fpr, rfpr)
    np.testing.assert_array_equal(pro, rpro)


# --------------------------------------------------------------------------------------------
# hand-made cases
# --------------------------------------------------------------------------------------------

def test_perfect_map_scores_one():
    rng = np.random.default_rng(3)
    masks = speckle_masks(rng, 5, 16, 16, n_good=2)
    maps = masks.astype(np.float32)
    fpr, pro = pro_curve(maps, masks)
    np.testing.assert_array_equal(fpr, [0, 0, 1])
    np.testing.assert_array_equal(pro, [0, 1, 1])
    assert au_pro(maps, masks) == pytest.approx(1.0, abs=1e-12)
    assert au_pro(maps + 0.5 * rng.random(maps.shape) * ~masks, masks) == pytest.approx(1.0, abs=1e-12)


def test_constant_map_is_half_the_limit():
    # One threshold: every pixel enters at once, the curve is the diagonal (0,0)-(1,1); the area
    # up to L is L^2 / 2, normalised L / 2.
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 2:5, 3:6] = True
    masks[1, 0, 0] = True
    maps = np.full(masks.shape, 0.25)
    fpr, pro = pro_curve(maps, masks)
    np.testing.assert_array_equal(fpr, [0, 1])
    np.testing.assert_array_equal(pro, [0, 1])
    for limit in (0.3, 0.1, 1.0):
        assert au_pro(maps, masks, limit) == pytest.approx(limit / 2, abs=1e-12)


def test_inverted_map_scores_zero():
    masks = np.zeros((1, 6, 6), dtype=bool)
    masks[0, 1:3, 1:4] = True
    assert au_pro(-masks.astype(float), masks) == 0.0


def test_hand_computed_two_regions():
    # One 1x6 image. Regions (8-connected): {0, 1} of size 2 and {5} of size 1; normal: 2, 3, 4.
    masks = np.array([[[1, 1, 0, 0, 0, 1]]], dtype=bool)
    maps = np.array([[[0.9, 0.1, 0.8, 0.5, 0.2, 0.7]]])
    # Decreasing score: 0.9 (region A), 0.8 (normal), 0.7 (region B), 0.5, 0.2 (normal), 0.1 (A).
    fpr, pro = pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1, 1], atol=1e-15)
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.75, 0.75, 0.75, 1], atol=1e-15)
    F = Fraction
    # Up to 0.3: flat at 0.25 -> 0.25. Up to 0.5: 0.25*1/3 + 0.75*(1/2-1/3) = 5/24, / 0.5 = 5/12.
    # Up to 1: 0.25*1/3 + 0.75*2/3 = 7/12.
    assert au_pro(maps, masks, 0.3) == pytest.approx(0.25, abs=1e-12)
    assert au_pro(maps, masks, 0.5) == pytest.approx(float(F(5, 12)), abs=1e-12)
    assert au_pro(maps, masks, 1.0) == pytest.approx(float(F(7, 12)), abs=1e-12)


def test_ties_between_normal_and_anomalous_enter_together():
    # The anomalous pixel ties with one of 3 normal pixels: the curve jumps from (0,0) straight
    # to (1/3, 1), not via (0, 1) (anomalous first) or (1/3, 0) (normal first). The PRO at 0.3 is
    # 0.9 on that line; area 0.5 * 0.9 * 0.3, normalised 0.45.
    masks = np.array([[[1, 0, 0, 0]]], dtype=bool)
    maps = np.array([[[0.5, 0.5, 0.0, 0.0]]])
    fpr, pro = pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, [0, 1 / 3, 1], atol=1e-15)
    np.testing.assert_allclose(pro, [0, 1, 1], atol=1e-15)
    assert au_pro(maps, masks) == pytest.approx(0.45, abs=1e-12)
    # Independent of where the tied pixels sit (i.e. of the order a sort leaves them in).
    assert au_pro(maps[..., ::-1], masks[..., ::-1]) == pytest.approx(0.45, abs=1e-12)


def test_eight_connectivity_merges_diagonal_neighbours():
    # Anomalous pixels (0,0), (0,1) and (1,2): one 8-connected region of 3 pixels (two regions of
    # 2 and 1 under 4-connectivity). Only (1,2) scores high: PRO 1/3 (not (0 + 1) / 2).
    masks = np.zeros((1, 3, 3), dtype=bool)
    masks[0, 0, 0] = masks[0, 0, 1] = masks[0, 1, 2] = True
    maps = np.zeros((1, 3, 3))
    maps[0, 1, 2] = 1.0
    _, pro = pro_curve(maps, masks)
    np.testing.assert_allclose(pro, [0, 1 / 3, 1], atol=1e-15)
    # PRO at 0.3: 1/3 + 2/3 * 0.3 = 8/15; area 0.5 * (1/3 + 8/15) * 0.3, normalised 13/30.
    assert au_pro(maps, masks) == pytest.approx(13 / 30, abs=1e-12)


def test_regions_do_not_span_images():
    # The same pixels anomalous in two stacked images are two regions (sizes 2 and 1), not one.
    masks = np.zeros((2, 3, 3), dtype=bool)
    masks[0, 0, 0:2] = True
    masks[1, 0, 0] = True
    maps = np.zeros((2, 3, 3))
    maps[1, 0, 0] = 1.0
    _, pro = pro_curve(maps, masks)
    np.testing.assert_allclose(pro, [0, 0.5, 1], atol=1e-15)   # (0 + 1) / 2, not 1/3


def test_trapezoid_matches_official_semantics():
    x = [0.0, 0.0, 0.2, 0.2, 0.5, 1.0]
    y = [0.0, 0.4, 0.4, 0.6, 0.8, 1.0]
    for x_max in (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0):
        assert trapezoid(x, y, x_max) == pytest.approx(reference_trapezoid(x, y, x_max), abs=1e-15)
    assert trapezoid(x, y) == pytest.approx(reference_trapezoid(x, y, 1.0), abs=1e-15)


# --------------------------------------------------------------------------------------------
# AUROCs against scikit-learn
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_auroc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(40) < 0.4
    scores = np.round(rng.random(40) + 0.4 * labels, 1)   # with ties
    want = roc_auc_score(labels, scores)
    assert image_auroc(scores, labels) == want
    assert image_auroc(scores, labels.astype(np.int64)) == want
    assert image_auroc(scores.astype(np.float32), labels.astype(np.uint8)) == \
        roc_auc_score(labels, scores.astype(np.float32))
    assert image_auroc(list(scores), list(labels)) == want


def test_image_auroc_known_values():
    assert image_auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert image_auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert image_auroc([0.5, 0.5], [0, 1]) == 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_auroc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    masks = speckle_masks(rng, 5, 24, 24, n_good=2)
    maps = maps_for(rng, masks, decimals=2, dtype=np.float32)
    want = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(maps, masks) == want
    assert pixel_auroc(maps, masks.astype(np.uint8) * 255) == want


# --------------------------------------------------------------------------------------------
# F1-max against a brute-force search
# --------------------------------------------------------------------------------------------

def brute_f1_max(scores, labels):
    """Every score as threshold t (called anomalous: score >= t), F1 = 2 TP / (called + anomalous);
    the lowest t among equal maxima."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    best_f1, best_t = -1.0, None
    for t in sorted(set(scores.tolist())):
        called = scores >= t
        f1 = 2 * np.sum(called & labels) / (called.sum() + labels.sum())
        if f1 > best_f1 + 1e-12:
            best_f1, best_t = f1, t
    return best_f1, best_t


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_f1_max_matches_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(30) < 0.5
    labels[:2] = (False, True)
    scores = np.round(rng.random(30) + 0.3 * labels, 1)   # with ties
    f1, t = f1_max(scores, labels)
    want_f1, want_t = brute_f1_max(scores, labels)
    assert f1 == pytest.approx(want_f1, abs=1e-12) and t == want_t
    assert t in scores
    assert f1_max(scores.astype(np.float32), labels.astype(np.uint8))[0] == pytest.approx(want_f1, abs=1e-12)


def test_f1_max_known_values():
    # perfect separation: every anomalous image called at the lowest anomalous score
    assert f1_max([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == (1.0, 0.8)
    # reversed scores: calling everything anomalous is best, F1 = 2 * 2 / (4 + 2)
    assert f1_max([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == (pytest.approx(2 / 3), 0.1)
    # one score for all: the only threshold
    assert f1_max([0.5, 0.5, 0.5], [0, 1, 1]) == (pytest.approx(0.8), 0.5)
    # equal maxima at t = 1 (4 called, 2 right) and t = 4 (1 called, 1 right): the lowest is reported
    assert f1_max([1.0, 2.0, 3.0, 4.0], [1, 0, 0, 1]) == (pytest.approx(2 / 3), 1.0)


def test_f1_max_input_errors():
    with pytest.raises(ValueError, match=r"^f1_max: expected both good \(0\) and anomalous \(1\) images, got only good "
                                         r"ones \(3 image\(s\)\); F1-max is undefined with a single class\.$"):
        f1_max([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match=r"same shape.*\(3,\).*\(2,\)"):
        f1_max([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        f1_max([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        f1_max([0.1, 0.2, 0.3], [0, 1, 2])


def test_auroc_single_class_errors():
    with pytest.raises(ValueError, match="only good"):
        image_auroc([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match="only anomalous"):
        image_auroc([0.1, 0.2, 0.3], [True, True, True])
    with pytest.raises(ValueError, match="only normal"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), dtype=bool))
    with pytest.raises(ValueError, match="only anomalous"):
        pixel_auroc(np.zeros((2, 4, 4)), np.ones((2, 4, 4), dtype=bool))


# --------------------------------------------------------------------------------------------
# input errors
# --------------------------------------------------------------------------------------------

def test_input_errors():
    maps = np.zeros((2, 4, 4))
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 1, 1] = True
    with pytest.raises(ValueError, match=r"same shape.*\(2, 4, 4\).*\(2, 4, 5\)"):
        au_pro(maps, np.zeros((2, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match=r"\(N, H, W\).*\(4, 4\)"):
        au_pro(maps[0], masks[0])
    with pytest.raises(ValueError, match="at least one anomalous"):
        au_pro(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="at least one normal"):
        pro_curve(maps, np.ones_like(masks))
    with pytest.raises(ValueError, match="NaN"):
        au_pro(np.where(masks, np.nan, 0.0), masks)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fpr_limit"):
            au_pro(maps, masks, fpr_limit=bad)
    with pytest.raises(ValueError, match="same shape"):
        pixel_auroc(maps, masks[:1])
    with pytest.raises(ValueError, match=r"same shape.*\(3,\).*\(2,\)"):
        image_auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        image_auroc([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        image_auroc([0.1, np.nan], [0, 1])


def test_inputs_not_modified():
    rng = np.random.default_rng(5)
    masks = speckle_masks(rng, 3, 12, 12, n_good=1)
    maps = maps_for(rng, masks)
    maps0, masks0 = maps.copy(), masks.copy()
    au_pro(maps, masks)
    pixel_auroc(maps, masks)
    np.testing.assert_array_equal(maps, maps0)
    np.testing.assert_array_equal(masks, masks0)


# --------------------------------------------------------------------------------------------
# error messages name the offending argument and its expected shape; rejected inputs
# --------------------------------------------------------------------------------------------

def _good_maps_masks(shape=(2, 4, 5)):
    maps = np.linspace(0, 1, int(np.prod(shape))).reshape(shape)
    masks = np.zeros(shape, dtype=bool)
    masks[0, 1, 1] = True
    return maps, masks


@pytest.mark.parametrize("call, pattern", [
    (lambda m, k: au_pro(np.array([["a"]]), k), r"^maps: expected a real-valued numeric array of shape \(N, H, W\), got"),
    (lambda m, k: au_pro(m, np.array([["a"]])), r"^masks: expected a real-valued numeric array of shape \(N, H, W\), got"),
    (lambda m, k: au_pro(m.astype(np.complex128), k), r"^maps: expected real values, got complex"),
    (lambda m, k: au_pro(m[0], k), r"^maps: expected shape \(N, H, W\), got shape \(4, 5\)"),
    (lambda m, k: au_pro(m, k[0]), r"^masks: expected shape \(N, H, W\), got shape \(4, 5\)"),
    (lambda m, k: au_pro(m, k[:, :3]), (r"^maps and masks: expected the same shape \(N, H, W\), got maps \(2, 4, 5\) and "
                                        r"masks \(2, 3, 5\)\. Resize .*\(or the masks to the map size\) first\.$")),
    (lambda m, k: au_pro(m[:0], k[:0]), r"^maps: expected a non-empty array of shape \(N, H, W\)"),
    (lambda m, k: au_pro(np.where(k, np.nan, m).astype(np.float32), k), r"^maps: expected no NaN scores, got 1 NaN"),
    (lambda m, k: pixel_auroc(m, np.where(k, np.nan, 0.0).astype(np.float32)), r"^masks: .*got NaN"),
    (lambda m, k: au_pro(m, np.where(k, np.nan, 0.0)), r"^masks: .*got NaN"),
    (lambda m, k: image_auroc(np.array(["a", "b"]), [0, 1]), r"^scores: expected a real-valued numeric array of shape \(N,\)"),
    (lambda m, k: image_auroc([0.1, 0.2], np.array(["a", "b"])), r"^labels: expected a real-valued numeric array of shape \(N,\)"),
    (lambda m, k: image_auroc([[0.1, 0.2]], [0, 1]), r"^scores: expected shape \(N,\), got shape \(1, 2\)"),
    (lambda m, k: image_auroc([0.1, 0.2], [[0, 1]]), r"^labels: expected shape \(N,\), got shape \(1, 2\)"),
    (lambda m, k: image_auroc([0.1, np.nan, np.nan], [0, 1, 1]), (r"^scores: expected no NaN scores, got 2 NaN value\(s\) "
                                                                   r"of 3\. Replace them \(e\.g\. numpy\.nan_to_num\)")),
    (lambda m, k: image_auroc(np.arange(9.0), np.arange(9)), r"values such as \[2, 3, 4, 5, 6\]\.$"),
    (lambda m, k: image_auroc([0.1, 0.2], [0, 0]), r"single class\.$"),
    (lambda m, k: pixel_auroc(m, np.zeros_like(k)), r"\(40 pixels in 2 mask\(s\)\); .*AUROC is undefined.*\.$"),
    (lambda m, k: pro_curve(m, np.zeros_like(k)), r"none in 2 mask\(s\) of 4x5; .*AU-PRO is undefined.*\.$"),
    (lambda m, k: pro_curve(m, np.ones_like(k)), r"got 40 anomalous pixels .*false positive rate is undefined\.$"),
])
def test_error_messages_name_the_argument(call, pattern):
    maps, masks = _good_maps_masks()
    with pytest.raises(ValueError, match=pattern):
        call(maps, masks)


def test_float_masks_are_accepted_like_bool_masks():
    rng = np.random.default_rng(9)
    masks = speckle_masks(rng, 3, 12, 12, n_good=1)
    maps = maps_for(rng, masks)
    want = au_pro(maps, masks)
    for dtype in (np.float32, np.float64):
        assert au_pro(maps, masks.astype(dtype)) == want
        assert pixel_auroc(maps, masks.astype(dtype) * 0.5) == pixel_auroc(maps, masks)


def test_missing_scikit_learn_is_explained(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)   # import fails as if not installed
    for call in (lambda: image_auroc([0.1, 0.2], [0, 1]), lambda: f1_max([0.1, 0.2], [0, 1])):
        with pytest.raises(ImportError, match=r"^image_auroc, pixel_auroc and f1_max need scikit-learn: "
                                              r"pip install scikit-learn$"):
            call()


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32,
                                   np.float16, np.float32])
def test_order_key_sorts_like_the_scores_for_32_bit_dtypes(dtype):
    """The packed-sort key: at most 32 bits, same order and same ties as the scores, for every
    value of the dtype's range (extremes, -0.0, infinities)."""
    from nsa_fast.metrics import _order_key32

    if dtype is bool:
        values = np.array([True, False, True])
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.array([info.min, info.max, 0, 1, info.min + 1, info.max - 1, info.max // 2, 0], dtype)
    else:
        values = np.array([-np.inf, np.inf, -0.0, 0.0, -1.5, 1.5, np.finfo(dtype).max, np.finfo(dtype).min,
                           np.finfo(dtype).tiny, -np.finfo(dtype).tiny], dtype)
    values = values.astype(dtype)
    key = _order_key32(values)
    assert key is not None and key.dtype == np.uint64
    assert int(key.max()) < 2 ** 32
    a, b = np.meshgrid(np.arange(values.size), np.arange(values.size))
    np.testing.assert_array_equal(key[a] < key[b], values[a] < values[b])
    np.testing.assert_array_equal(key[a] == key[b], values[a] == values[b])


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.uint64])
def test_order_key_is_none_for_64_bit_dtypes(dtype):
    from nsa_fast.metrics import _order_key32

    assert _order_key32(np.arange(4).astype(dtype)) is None


def test_pro_curve_with_extreme_int32_scores():
    masks = np.zeros((1, 2, 4), dtype=bool)
    masks[0, 0, :2] = True
    info = np.iinfo(np.int32)
    maps = np.array([[[info.max, 5, -5, info.min], [0, info.min, info.max - 1, 1]]], np.int32)
    fpr, pro = pro_curve(maps, masks)
    rfpr, rpro = reference_pro_curve(maps.astype(np.float64), masks)
    np.testing.assert_allclose(fpr, rfpr[:-1], rtol=0, atol=ATOL)
    np.testing.assert_allclose(pro, rpro[:-1], rtol=0, atol=ATOL)


def test_trapezoid_input_checks():
    with pytest.raises(ValueError, match=r"^trapezoid: expected two non-empty 1-D arrays of the same length, got x \(3,\) and y \(2,\)"):
        trapezoid([0.0, 0.5, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"^trapezoid: expected two non-empty 1-D arrays"):
        trapezoid([[0.0, 1.0]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"^trapezoid: expected two non-empty 1-D arrays"):
        trapezoid([], [])
    with pytest.raises(ValueError, match=r"^trapezoid: expected finite x and y values\.$"):
        trapezoid([0.0, 1.0], [0.0, np.inf])
    with pytest.raises(ValueError, match=r"^trapezoid: expected finite x and y values\.$"):
        trapezoid([0.0, np.nan], [0.0, 1.0])
    for x in ([1.0, 0.0], [0.0, 0.5, 0.2, 1.0]):
        with pytest.raises(ValueError, match=r"^trapezoid: expected x sorted in increasing order\.$"):
            trapezoid(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match=r"^trapezoid: expected x_max within \[0\.0, 1\.0\], got 1\.5\.$"):
        trapezoid([0.0, 0.5, 1.0], [0.0, 0.5, 1.0], 1.5)
    # One point is a curve of zero area.
    assert trapezoid([0.5], [0.3]) == 0.0
    assert trapezoid([0.5], [0.3], 0.5) == 0.0


def test_trapezoid_computes_in_float64_whatever_the_input_dtype():
    x = np.array([0.0, 0.1, 0.35, 0.7, 1.0])
    y = np.array([0.0, 0.3, 0.45, 0.9, 1.0])
    for x_max in (None, 0.3, 1.0):
        want = trapezoid(x, y, x_max)
        x16, y16 = x.astype(np.float16), y.astype(np.float16)
        assert trapezoid(x16, y, x_max) == trapezoid(x16.astype(np.float64), y, x_max)
        assert trapezoid(x, y16, x_max) == trapezoid(x, y16.astype(np.float64), x_max)
        assert trapezoid(list(x), list(y), x_max) == want
    # uint8 ordinates do not wrap around.
    assert trapezoid([0, 1], np.array([200, 200], np.uint8)) == 200.0
