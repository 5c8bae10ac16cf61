"""Decision thresholds set on normal images only, stored beside the checkpoint they belong to.

The image threshold is a score: an image whose score (the mean of its anomaly map, as in
evaluation) lies above it is called defective. It is placed so that the asked share of the normal
images lie above it (the false-reject rate), halfway between the last accepted and the first
rejected normal score. How far the rate it will really have on new normal images can lie from the
asked one is a bootstrap 95 % interval: the normals are resampled, the threshold set again by the
same rule on each resample, and the share of the original normals above it taken.

The pixel threshold marks defect pixels: the same rule over the map values of the normal images'
pixels the network sees (the central crop for object presets), at a chosen rate of false positive
pixels.

Both are written to CKPT's ``<stem>.thresholds.json`` (``last.pt`` -> ``last.thresholds.json``)
with how they were made and the checkpoint's SHA-256, so that a threshold is never applied to a
checkpoint it was not made for.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

HELD_OUT = "the run's held-out normal images"   # the normals' source when the run kept them
DEFAULT_FALSE_REJECT = 0.01
DEFAULT_FALSE_POSITIVE_PIXELS = 0.001
BOOTSTRAP = 2000        # resamples of the interval
FEW_ABOVE = 5           # fewer normals above the threshold than this: the interval is wide, say so
# The network's map rises along the edges of what it sees (its zero padding), on good parts too: the
# pixel threshold is set, and defect masks drawn, this many evaluation pixels inside those edges.
EDGE = 2


def mask_region(box: tuple[int, int, int, int] | None, size: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Where defect masks may mark pixels: the region the network sees (``viz.seen_box``, None:
    the whole size x size evaluation image) less EDGE pixels at each side, as a bool map of the
    evaluation size, or brought to ``shape`` (H, W) by the nearest pixel, as the map is resized."""
    import cv2

    y0, y1, x0, x1 = box if box is not None else (0, size, 0, size)
    inside = np.zeros((size, size), np.uint8)
    inside[y0 + EDGE:y1 - EDGE, x0 + EDGE:x1 - EDGE] = 1
    if shape is not None and shape != (size, size):
        inside = cv2.resize(inside, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return inside.astype(bool)


@dataclass(frozen=True)
class Thresholds:
    image: float                    # an image is defective when its score is above this
    pixel: float                    # a pixel is marked defective when its map value is above this
    scale: float                    # twice the threshold's distance from the median normal score
    false_reject: float             # the rate asked
    achieved: float                 # the share of the normals above ``image``
    interval: tuple[float, float]   # bootstrap 95 % interval of the false-reject rate
    false_positive_pixels: float    # the pixel rate asked
    pixels_achieved: float
    n_images: int
    n_pixels: int
    normals: str                    # where the normal images came from
    checkpoint: str                 # the checkpoint's file name and SHA-256
    checkpoint_sha256: str

    def normalised(self, score):
        """0 at the median normal score, 0.5 at the threshold, 1 at twice the threshold's distance
        from that median; clipped to 0..1."""
        return np.clip(0.5 + (np.asarray(score, np.float64) - self.image) / self.scale, 0.0, 1.0)

    def defective(self, score):
        return np.asarray(score) > self.image

    @property
    def expected(self) -> float:
        """The false-reject rate to expect on new normal images, on average: a threshold between
        the k-th and (k+1)-th highest of n normal scores leaves about (k + 1/2) / (n + 1) of new
        ones above it (order statistics), a little more than the k / n on the normals themselves."""
        return (round(self.achieved * self.n_images) + 0.5) / (self.n_images + 1)

    def describe(self) -> str:
        lo, hi = self.interval
        return (f"image threshold {self.image:.6g}: {100 * self.achieved:.2f} % of {self.n_images} normal images above "
                f"it (rate {100 * self.false_reject:.3g} %); on new normal images expect about "
                f"{100 * self.expected:.1f} % (95 % interval {100 * lo:.1f}-{100 * hi:.1f} %). Pixel threshold "
                f"{self.pixel:.6g}: {100 * self.pixels_achieved:.3f} % of {self.n_pixels} normal pixels above it "
                f"(asked {100 * self.false_positive_pixels:g} %)")


def check_rate(rate: float, name: str) -> float:
    if not (isinstance(rate, (int, float)) and 0.0 < rate < 1.0):
        raise InputError(f"{name} must be a rate strictly between 0 and 1 (0.01 is 1 %), got {rate!r}.")
    return float(rate)


def place(values: np.ndarray, rate: float) -> tuple[float, float]:
    """The threshold with floor(rate * n) of ``values`` above it, halfway between the last value at
    or below and the first above; and the share of ``values`` above it."""
    v = np.sort(np.asarray(values, np.float64).reshape(-1))
    n = v.size
    k = math.floor(rate * n + 1e-9)
    if not 1 <= k < n:
        raise ValueError(f"{k} of {n} values above the threshold")
    t = float(0.5 * (v[n - k - 1] + v[n - k]))
    return t, float((v > t).mean())


def least_images(rate: float) -> int:
    return math.ceil(1 / rate - 1e-9)


def check_enough(n: int, rate: float, what: str, option: str) -> None:
    """One normal image (or pixel) at least must lie above the threshold for the rate to mean
    anything, and one at least below it."""
    if math.floor(rate * n + 1e-9) >= n:
        raise InputError(f"a rate of {100 * rate:g} % leaves none of {n} normal {what} below the threshold; ask "
                         f"{option} well below 1 (0.01 is 1 %).")
    if math.floor(rate * n + 1e-9) < 1:
        raise InputError(f"{n} normal {what} cannot support a rate of {100 * rate:g} % (one in {least_images(rate)} "
                         f"must lie above the threshold, so at least {least_images(rate)} are needed); the smallest "
                         f"rate {n} {what} support is 1/{n} = {100 / n:.3g} %. Give {option} {1 / n:.3g} or more, or "
                         "more normal images.")


def bootstrap_interval(scores: np.ndarray, rate: float, seed: int = 0, n_boot: int = BOOTSTRAP) -> tuple[float, float]:
    """95 % interval of the false-reject rate a threshold set by ``place`` on such a sample has."""
    s = np.sort(np.asarray(scores, np.float64))
    n = s.size
    k = max(1, math.floor(rate * n + 1e-9))
    rng = np.random.default_rng(seed)
    resampled = np.sort(s[rng.integers(0, n, (n_boot, n))], axis=1)
    t = 0.5 * (resampled[:, n - k - 1] + resampled[:, n - k])
    frr = (n - np.searchsorted(s, t, side="right")) / n
    lo, hi = np.percentile(frr, (2.5, 97.5))
    return float(lo), float(hi)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make(scores: np.ndarray, pixels: np.ndarray, ckpt: Path, normals: str, false_reject: float = DEFAULT_FALSE_REJECT,
         false_positive_pixels: float = DEFAULT_FALSE_POSITIVE_PIXELS, seed: int = 0) -> Thresholds:
    """Thresholds from the normal images' scores (N,) and their seen pixels' map values."""
    check_rate(false_reject, "--false-reject")
    check_rate(false_positive_pixels, "--false-positive-pixels")
    scores = np.asarray(scores, np.float64)
    check_enough(scores.size, false_reject, "images", "--false-reject")
    check_enough(pixels.size, false_positive_pixels, "pixels", "--false-positive-pixels")
    image, achieved = place(scores, false_reject)
    pixel, pixels_achieved = place(pixels, false_positive_pixels)
    scale = 2 * (image - float(np.median(scores)))
    if not scale > 0:  # rates of a half and more put the threshold at or below the median
        scale = float(scores.max() - scores.min()) or 1.0
    return Thresholds(image=image, pixel=pixel, scale=scale, false_reject=false_reject,
                      achieved=achieved, interval=bootstrap_interval(scores, false_reject, seed),
                      false_positive_pixels=false_positive_pixels, pixels_achieved=pixels_achieved,
                      n_images=int(scores.size), n_pixels=int(pixels.size), normals=normals,
                      checkpoint=Path(ckpt).name, checkpoint_sha256=file_sha256(Path(ckpt)))


def path_for(ckpt) -> Path:
    return Path(ckpt).with_suffix(".thresholds.json")


def save(th: Thresholds, ckpt) -> Path:
    from .io import write_text_atomic

    path = path_for(ckpt)
    write_text_atomic(path, json.dumps(asdict(th), indent=2))
    return path


def load_for(ckpt, path=None) -> Thresholds | None:
    """The thresholds stored for ``ckpt`` (or in ``path``); None when there are none. A file made
    for another checkpoint (retrained or resumed since) is refused."""
    path = Path(path) if path is not None else path_for(ckpt)
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        d["interval"] = tuple(d["interval"])
        th = Thresholds(**d)
    except (ValueError, TypeError, KeyError) as err:
        raise InputError(f"{str(path)!r} is not a thresholds file of this nsa_fast version ({err}); make it again "
                         "with python -m nsa_fast.threshold.") from err
    if th.checkpoint_sha256 != file_sha256(Path(ckpt)):
        normals = "" if th.normals == HELD_OUT else f" --normals {th.normals}"
        raise InputError(f"the thresholds in {str(path)!r} were set for another state of {str(ckpt)!r} (it has been "
                         "trained since); set them again as they were made: python -m nsa_fast.threshold --checkpoint "
                         f"{ckpt}{normals} --false-reject {th.false_reject:g} --false-positive-pixels "
                         f"{th.false_positive_pixels:g} --overwrite")
    return th
