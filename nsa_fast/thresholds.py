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

DEFAULT_FALSE_REJECT = 0.01
DEFAULT_FALSE_POSITIVE_PIXELS = 0.001
BOOTSTRAP = 2000        # resamples of the interval
FEW_ABOVE = 5           # fewer normals above the threshold than this: the interval is wide, say so


@dataclass(frozen=True)
class Thresholds:
    image: float                    # an image is defective when its score is above this
    pixel: float                    # a pixel is marked defective when its map value is above this
    scale: float                    # spread of the normal scores (max - min): the normalised score's unit
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
        """0.5 at the threshold, 0.5 more or less per the normal scores' spread, clipped to 0..1."""
        return np.clip(0.5 + (np.asarray(score, np.float64) - self.image) / self.scale, 0.0, 1.0)

    def defective(self, score):
        return np.asarray(score) > self.image

    def describe(self) -> str:
        lo, hi = self.interval
        return (f"image threshold {self.image:.6g}: {100 * self.achieved:.2f} % of {self.n_images} normal images above "
                f"it (asked {100 * self.false_reject:g} %; 95 % interval of the rate on new normal images "
                f"{100 * lo:.2f}-{100 * hi:.2f} %); pixel threshold {self.pixel:.6g}: {100 * self.pixels_achieved:.3f} % "
                f"of {self.n_pixels} normal pixels above it (asked {100 * self.false_positive_pixels:g} %)")


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
    if k < 1:
        raise ValueError("no value above the threshold")
    t = float(0.5 * (v[n - k - 1] + v[n - k]))
    return t, float((v > t).mean())


def least_images(rate: float) -> int:
    return math.ceil(1 / rate - 1e-9)


def check_enough(n: int, rate: float, what: str, option: str) -> None:
    """One normal image (or pixel) at least must lie above the threshold for the rate to mean anything."""
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
    spread = float(scores.max() - scores.min())
    return Thresholds(image=image, pixel=pixel, scale=spread if spread > 0 else 1.0, false_reject=false_reject,
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
        raise InputError(f"the thresholds in {str(path)!r} were set for another state of {str(ckpt)!r} (it has been "
                         "trained since); set them again: python -m nsa_fast.threshold --checkpoint "
                         f"{ckpt} --overwrite")
    return th
