"""Evaluation metrics of the NSA paper on MVTec AD: image AUROC, pixel AUROC and AU-PRO; F1-max.

All functions are pure functions of numpy arrays (nothing is modified in place):

* ``image_auroc(scores, labels)``: detection, one score per image (scikit-learn's ROC AUC).
* ``f1_max(scores, labels)``: the best F1 over all image-score thresholds and that threshold
  (scikit-learn's precision-recall curve), the figure other tools (anomalib) report.
* ``pixel_auroc(maps, masks)``: segmentation, every pixel of every image pooled (scikit-learn).
* ``pro_curve(maps, masks)`` and ``au_pro(maps, masks, fpr_limit=0.3)``: the per-region overlap
  curve and its normalised area up to a false positive rate, computed as MVTec AD's official
  evaluation script does (``compute_pro`` in ``pro_curve_util.py`` and ``trapezoid`` in
  ``generic_util.py``).

Shapes and conventions
----------------------
``maps``: (N, H, W) real-valued anomaly scores (any float or integer dtype; larger = more
anomalous). ``masks``: (N, H, W) ground truth, bool or numeric; any non-zero value is an
anomalous pixel (so MVTec's 0/255 PNG masks can be passed as they are, as in the official
script). Images without any anomalous pixel may be mixed in. ``scores``: (N,) real-valued image
scores; ``labels``: (N,) bool or integers in {0, 1}, 1/True = anomalous image.

The AU-PRO curve
----------------
Ground-truth regions are the 8-connected components of each image's mask (``scipy.ndimage.label``
with a 3x3 structure of ones); a region never spans two images. A pixel is predicted anomalous at
threshold ``t`` when its score is ``>= t``. For every distinct score ``t`` (in decreasing order)
the curve has one point:

* FPR(t) = #{normal pixels with score >= t} / #{normal pixels}, normal meaning mask == 0, over
  all images;
* PRO(t) = mean over ALL regions of all images of #{region pixels with score >= t} / region size.

The curve starts at (0, 0) (a threshold above every score) and ends at (1, 1). It is computed
with a single global sort of all N*H*W scores and cumulative sums: in decreasing-score order each
normal pixel adds 1 / #normal to the FPR and each anomalous pixel adds
1 / (region size * #regions) to the PRO. Ties are handled as the official script does: within
a run of equal scores only the last cumulative point is kept, i.e. all pixels sharing a score
enter the positive set together and the trapezoid rule joins the points before and after the tie
by a straight line. The result does not depend on the order in which a sort puts tied pixels.

``au_pro`` integrates that curve with the trapezoid rule from FPR 0 up to ``fpr_limit``; when
``fpr_limit`` is not one of the curve's FPR values, the PRO at exactly ``fpr_limit`` is linearly
interpolated between the last point at or below the limit and the next one (the official
``trapezoid(x, y, x_max)``). The area is divided by ``fpr_limit``, so a perfect map scores 1.0,
a constant map scores ``fpr_limit / 2`` and a map that ranks every anomalous pixel below every
normal one scores 0.0.

Differences from the official code, none of which changes the value beyond float rounding: the
FPR is kept in float64 (the official script casts it to float32, a relative error up to ~6e-8);
the official curve appends an extra (1, 1) point after its last point (which is already (1, 1) up
to rounding, so the extra segment has zero width), here the last point is set to exactly (1, 1)
instead; and NaN scores or masks without normal / anomalous pixels raise ``ValueError`` instead of
producing NaN or an assertion error.
"""
from __future__ import annotations

import sys

import numpy as np
from scipy import ndimage

from .errors import InputError

__all__ = ["au_pro", "f1_max", "image_auroc", "pixel_auroc", "pro_curve", "trapezoid"]

# In-plane 8-connectivity for a stack of (H, W) masks labelled in one call: the middle plane of
# the 3x3x3 structure is all ones (8 neighbours), the planes above and below are empty, so no
# region connects pixels of two different images.
_STACK_8_CONNECTIVITY = np.zeros((3, 3, 3), dtype=bool)
_STACK_8_CONNECTIVITY[1] = True


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------

def _real_array(x, name: str, ndim: int, shape_text: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name}: expected a real-valued numeric array of shape {shape_text}, "
                         f"got dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise InputError(f"{name}: expected real values, got complex dtype {arr.dtype}.")
    if arr.ndim != ndim:
        raise InputError(f"{name}: expected shape {shape_text}, got shape {arr.shape} "
                         f"({arr.ndim} dimension(s)).")
    if arr.size == 0:
        raise InputError(f"{name}: expected a non-empty array of shape {shape_text}, "
                         f"got shape {arr.shape}.")
    return arr


def _check_no_nan(arr: np.ndarray, name: str) -> None:
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        n = int(np.count_nonzero(np.isnan(arr)))
        raise InputError(f"{name}: expected no NaN scores, got {n} NaN value(s) of {arr.size}. "
                         "Replace them (e.g. numpy.nan_to_num) or fix the model output.")


def _maps_and_masks(maps, masks) -> tuple[np.ndarray, np.ndarray]:
    """Check (N, H, W) maps and masks; return the maps unchanged and the masks as bool."""
    maps = _real_array(maps, "maps", 3, "(N, H, W)")
    masks = _real_array(masks, "masks", 3, "(N, H, W)")
    if maps.shape != masks.shape:
        raise InputError(f"maps and masks: expected the same shape (N, H, W), got maps {maps.shape} "
                         f"and masks {masks.shape}. Resize the anomaly maps to the mask size "
                         "(or the masks to the map size) first.")
    _check_no_nan(maps, "maps")
    if masks.dtype != bool:
        if np.issubdtype(masks.dtype, np.floating) and np.isnan(masks).any():
            raise InputError("masks: expected 0 (normal) / non-zero (anomalous) values, got NaN.")
        masks = masks != 0
    return maps, masks


# --------------------------------------------------------------------------------------------
# ROC AUC (scikit-learn)
# --------------------------------------------------------------------------------------------

def _sklearn_metric(name: str):
    try:
        import sklearn.metrics
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("image_auroc, pixel_auroc and f1_max need scikit-learn: pip install scikit-learn") from e
    return getattr(sklearn.metrics, name)


def _roc_auc_score():
    return _sklearn_metric("roc_auc_score")


def _scores_and_labels(scores, labels, fn: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Check (N,) image scores and binary labels with both classes present; labels as bool."""
    scores = _real_array(scores, "scores", 1, "(N,)")
    labels = _real_array(labels, "labels", 1, "(N,)")
    if scores.shape != labels.shape:
        raise InputError(f"scores and labels: expected the same shape (N,), got scores {scores.shape} "
                         f"and labels {labels.shape}.")
    _check_no_nan(scores, "scores")
    if labels.dtype != bool:
        bad = (labels != 0) & (labels != 1)
        if bad.any():
            raise InputError(f"labels: expected bool or values in {{0, 1}} (1 = anomalous), got "
                             f"values such as {np.unique(labels[bad])[:5].tolist()}.")
        labels = labels == 1
    n_pos = int(np.count_nonzero(labels))
    if n_pos == 0 or n_pos == labels.size:
        which = "anomalous" if n_pos else "good"
        raise InputError(f"{fn}: expected both good (0) and anomalous (1) images, got only "
                         f"{which} ones ({labels.size} image(s)); {what} is undefined with a "
                         "single class.")
    return scores, labels


def image_auroc(scores, labels) -> float:
    """Area under the ROC curve of image-level anomaly scores (detection AUROC).

    scores: (N,) real values, one anomaly score per image, larger means more anomalous, no NaN.
    labels: (N,) bool, or integers in {0, 1}: True / 1 = anomalous image, False / 0 = good.
    Returns ``sklearn.metrics.roc_auc_score(labels, scores)`` as a float in [0, 1] (tied scores
    count one half, the usual trapezoidal ROC). Raises InputError (a ValueError) when the shapes
    differ or are not 1-D, the labels are not binary, a score is NaN, or only one class is present
    (the AUROC is undefined then).
    """
    scores, labels = _scores_and_labels(scores, labels, "image_auroc", "the AUROC")
    return float(_roc_auc_score()(labels, scores))


def f1_max(scores, labels) -> tuple[float, float]:
    """The best F1 score of image-level decisions over all thresholds, and that threshold.

    scores, labels: as for ``image_auroc``. An image is called anomalous when ``score >= t``;
    every distinct score is a candidate ``t`` (scikit-learn's ``precision_recall_curve``), and
    F1 = 2 * precision * recall / (precision + recall), 0 where both are 0. Returns ``(f1, t)``
    with ``t`` the score (one of ``scores``) at which the maximum is reached; when several reach
    it, the lowest of them (the first maximum in increasing order, as anomalib's adaptive F1
    threshold picks it). Raises InputError as ``image_auroc`` does.

    The threshold is chosen on the labels it is scored with: an optimistic figure for comparing
    with other tools, not a threshold to deploy.
    """
    scores, labels = _scores_and_labels(scores, labels, "f1_max", "F1-max")
    precision, recall, thresholds = _sklearn_metric("precision_recall_curve")(labels, scores)
    # The curve's last point (precision 1, recall 0) has no threshold: it predicts nothing.
    precision, recall = precision[:-1], recall[:-1]
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def pixel_auroc(maps, masks) -> float:
    """Area under the ROC curve of per-pixel anomaly scores, all pixels of all images pooled.

    maps: (N, H, W) real anomaly maps (float32 for large sets; no NaN). masks: (N, H, W) ground
    truth, bool or numeric (non-zero = anomalous pixel). Returns
    ``sklearn.metrics.roc_auc_score(masks.ravel(), maps.ravel())`` as a float. Raises InputError
    (a ValueError) when the shapes differ or are not (N, H, W), a score is NaN, or the masks hold
    no anomalous or no normal pixel.

    Memory: the arrays reach scikit-learn as flat views (no float64 copy is made here);
    scikit-learn itself allocates a few arrays of N*H*W elements (argsort indices and cumulative
    sums, 8 bytes each), a few hundred MB for 150 maps of 256x256.
    """
    maps, masks = _maps_and_masks(maps, masks)
    n_pos = int(np.count_nonzero(masks))
    if n_pos == 0 or n_pos == masks.size:
        which = "anomalous" if n_pos else "normal"
        raise InputError(f"pixel_auroc: expected both normal (0) and anomalous (non-zero) mask pixels, "
                         f"got only {which} ones ({masks.size} pixels in {masks.shape[0]} mask(s)); "
                         "the AUROC is undefined with a single class.")
    return float(_roc_auc_score()(masks.reshape(-1), maps.reshape(-1)))


# --------------------------------------------------------------------------------------------
# PRO curve and AU-PRO
# --------------------------------------------------------------------------------------------

def _order_key32(scores: np.ndarray) -> np.ndarray | None:
    """(P,) scores -> (P,) uint64 keys < 2**32 that sort, and compare equal, exactly as the
    scores do; None for dtypes wider than 32 bits (which need the argsort path)."""
    dt = scores.dtype
    if dt == bool or (np.issubdtype(dt, np.unsignedinteger) and dt.itemsize <= 4):
        return scores.astype(np.uint64)
    if np.issubdtype(dt, np.signedinteger) and dt.itemsize <= 4:
        return (scores.astype(np.int64) + 2 ** 31).astype(np.uint64)
    if np.issubdtype(dt, np.floating) and dt.itemsize <= 4:
        # IEEE bits: flip all bits of negatives, set the sign bit of positives. "+ 0" first turns
        # -0.0 into +0.0, which compare equal and must get the same key (a tie).
        bits = (scores.astype(np.float32) + np.float32(0)).view(np.uint32)
        negative = bits >= np.uint32(0x80000000)
        key = np.where(negative, ~bits, bits | np.uint32(0x80000000))
        return key.astype(np.uint64)
    return None


def _sort_descending(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort (P,) scores in decreasing order, carrying the (P,) int32 region labels along.

    Returns ``(keys, labels)``: arrays (possibly strided views) of P elements, ``keys`` compare
    equal exactly where the sorted scores are equal, ``labels`` are the labels in the same order.
    The order among equal scores is unspecified (it does not matter, ties are merged).

    For scores of at most 32 bits (float32, float16, int32, uint8, ...) an order-preserving key
    and the label are packed into one uint64 and sorted by value (numpy's vectorised sort, several
    times faster than argsort plus two gathers); wider dtypes use argsort.
    """
    key = _order_key32(scores)
    if key is None:
        order = np.argsort(scores)[::-1]
        return scores[order], labels[order]
    key <<= np.uint64(32)
    key |= labels.astype(np.uint32)
    key.sort()
    words = key.view(np.uint32).reshape(-1, 2)[::-1]       # decreasing
    high = 1 if sys.byteorder == "little" else 0
    return words[:, high], words[:, 1 - high]


def pro_curve(maps, masks) -> tuple[np.ndarray, np.ndarray]:
    """The per-region overlap (PRO) curve of MVTec AD's official evaluation.

    maps: (N, H, W) real anomaly maps, any float or integer dtype, no NaN. masks: (N, H, W) ground
    truth, bool or numeric (non-zero = anomalous), with at least one anomalous and one normal
    pixel over the whole set. Returns ``(fpr, pro)``: two float64 arrays of equal length K + 1,
    where K is the number of distinct scores in ``maps``. Point 0 is (0, 0); point k >= 1 is
    (FPR, PRO) when every pixel with a score >= the k-th largest distinct score is called
    anomalous; the last point is exactly (1, 1). Both are non-decreasing, in [0, 1]. (The official
    ``compute_pro`` returns the same points plus a duplicate final (1, 1).) Raises InputError as
    ``au_pro`` does.

    Cost: one sort of the N*H*W scores plus O(N*H*W) vector work, no Python loop over
    thresholds or regions. Scores of at most 32 bits (float32, float16, 8-32 bit integers) use a
    packed value sort, wider ones (float64, int64) an argsort, about twice slower: pass float32
    maps for speed. Peak extra memory about 30 bytes per pixel (float32 maps).
    """
    maps, masks = _maps_and_masks(maps, masks)

    # Ground-truth regions: 8-connected components of each image's mask, numbered 1..n_regions
    # across the whole stack (0 = normal pixel).
    labeled, n_regions = ndimage.label(masks, structure=_STACK_8_CONNECTIVITY)
    if n_regions == 0:
        raise InputError(f"masks: expected at least one anomalous (non-zero) pixel, got none in "
                         f"{masks.shape[0]} mask(s) of {masks.shape[1]}x{masks.shape[2]}; the PRO "
                         "curve / AU-PRO is undefined without ground-truth regions.")
    sizes = np.bincount(labeled[masks], minlength=n_regions + 1)   # sizes[0] is unused
    n_normal = masks.size - int(sizes.sum())
    if n_normal == 0:
        raise InputError(f"masks: expected at least one normal (zero) pixel, got {masks.size} anomalous "
                         "pixels and no normal ones; the false positive rate is undefined.")

    # One global sort, decreasing score. Pixels are visited in that order; the label of each
    # visited pixel says how much it adds to the FPR (normal) or to the PRO (region k).
    # Only the last position of each run of equal scores is kept (the official tie rule).
    sorted_keys, sorted_labels = _sort_descending(maps.reshape(-1), labeled.reshape(-1))
    del labeled
    keep = np.empty(sorted_keys.size, dtype=bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=keep[:-1])
    keep[-1] = True
    del sorted_keys
    keep_idx = np.flatnonzero(keep)
    del keep

    # FPR: running count of normal pixels (exact integers) / n_normal.
    fp_count = np.cumsum(sorted_labels == 0, dtype=np.int64)[keep_idx]
    # PRO: running sum of 1 / (size of the pixel's region * n_regions), 0 for normal pixels.
    weight = np.empty(n_regions + 1, dtype=np.float64)
    weight[0] = 0.0
    weight[1:] = 1.0 / (sizes[1:].astype(np.float64) * n_regions)
    pro_sum = weight[sorted_labels]
    del sorted_labels
    np.cumsum(pro_sum, out=pro_sum)
    pro_sum = pro_sum[keep_idx]

    fpr = np.empty(keep_idx.size + 1, dtype=np.float64)
    pro = np.empty(keep_idx.size + 1, dtype=np.float64)
    fpr[0] = pro[0] = 0.0
    np.divide(fp_count, n_normal, out=fpr[1:])
    # Rounding of the float cumsum can leave values a hair above 1 (or the end a hair below);
    # the last point includes every pixel, so it is exactly (1, 1).
    np.minimum(pro_sum, 1.0, out=pro[1:])
    fpr[-1] = pro[-1] = 1.0
    return fpr, pro


def trapezoid(x, y, x_max: float | None = None) -> float:
    """Area under the polyline (x, y) by the trapezoid rule, optionally only up to ``x_max``.

    Same semantics as ``trapezoid`` in MVTec AD's ``generic_util.py``: ``x`` must be sorted
    in increasing order and may repeat values (vertical steps, taken in the given order). If
    ``x_max`` is not one of the x values, the y value at ``x_max`` is linearly interpolated
    between the last point with x <= x_max and the next point. Unlike the official function,
    non-finite points raise instead of being dropped with a warning. x, y: (K,) float arrays,
    K >= 1; x_max: the upper limit, within [x[0], x[-1]], or None for the whole curve. Returns the
    area as a float.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise InputError(f"trapezoid: expected two non-empty 1-D arrays of the same length, got "
                         f"x {x.shape} and y {y.shape}.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("trapezoid: expected finite x and y values.")
    if x.size > 1 and np.any(x[1:] < x[:-1]):
        raise InputError("trapezoid: expected x sorted in increasing order.")
    correction = 0.0
    if x_max is not None:
        if not x[0] <= x_max <= x[-1]:
            raise InputError(f"trapezoid: expected x_max within [{x[0]}, {x[-1]}], got {x_max}.")
        # Number of points with x <= x_max (bisect_right); all of them are integrated.
        n = int(np.searchsorted(x, x_max, side="right"))
        if x[n - 1] != x_max:
            # x[n - 1] < x_max < x[n]: interpolate y at x_max and add the partial trapezoid.
            x0, x1, y0, y1 = x[n - 1], x[n], y[n - 1], y[n]
            y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
            correction = 0.5 * (y0 + y_at) * (x_max - x0)
        x, y = x[:n], y[:n]
    area = float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])))
    return area + correction


def au_pro(maps, masks, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to a false positive rate (MVTec AD's AU-PRO).

    maps: (N, H, W) real anomaly maps, any float or integer dtype, no NaN. masks: (N, H, W) ground
    truth, bool or numeric (non-zero = anomalous); images without anomalous pixels may be included
    (they add normal pixels only). fpr_limit: the upper FPR limit, 0 < fpr_limit <= 1 (the paper:
    0.3). Returns ``trapezoid(*pro_curve(maps, masks), x_max=fpr_limit) / fpr_limit`` as a float
    in [0, 1]: 1.0 for a perfect map, fpr_limit / 2 for a constant map. Raises InputError (a
    ValueError) when maps and masks are not both (N, H, W) of one shape, a score is NaN, the masks
    hold no anomalous pixel (no regions: AU-PRO undefined) or no normal pixel (FPR undefined), or
    fpr_limit is outside (0, 1].
    """
    fpr_limit = float(fpr_limit)
    if not 0.0 < fpr_limit <= 1.0:
        raise InputError(f"fpr_limit: expected a false positive rate in (0, 1], got {fpr_limit}.")
    fpr, pro = pro_curve(maps, masks)
    # Only the points up to the first one beyond the limit take part (same area, less work).
    n = int(np.searchsorted(fpr, fpr_limit, side="right")) + 1
    return trapezoid(fpr[:n], pro[:n], x_max=fpr_limit) / fpr_limit
