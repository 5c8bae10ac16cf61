"""Built-in demo data, made from texture photos that scikit-image ships (CC0 licences).

``--data demo`` resolves to a small anomaly-detection dataset in the MVTec AD layout, written on
first use under ``<cache>/data`` (the cache is ``$NSA_FAST_CACHE`` or ``~/.cache/nsa_fast``)::

    demo/train/good/000.png ...                 normal images (training)
    demo/test/good/000.png ...                  normal images not in the training set
    demo/test/<defect>/000.png ...              images with one synthetic defect each
    demo/ground_truth/<defect>/000_mask.png ... uint8 0/255 masks of exactly the changed region
    demo/README.txt                             sources, licences, how it was made (and the version)

The surface is a brick pavement: scikit-image's brick photo, tinted to a terracotta colour, a
regular texture whose normal look a network learns in a few minutes on a CPU. The defects are
ones a reader recognises: scratches, stains and missing pieces (holes with rubble underneath,
from the gravel photo). Nothing is downloaded, and generation is deterministic (fixed seeds):
the same library versions give byte-identical files.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from .errors import NsaError

DEMO = "demo"
# The demo's version, written into its README.txt: a cache whose README.txt is not this version's
# holds another demo (0.1's gravel, say) and is rewritten whole rather than completed.
VERSION = 3
SIZE = 256
N_TRAIN = 40
N_TEST_GOOD = 10
N_VALIDATION = 100
N_PER_DEFECT = 7
DEFECTS = ("scratch", "stain", "missing")
# Each defect covers this fraction of the image: large and contrasted enough to see at a glance
# and to move the image score (the mean of the anomaly map) in a few minutes' training.
MIN_AREA, MAX_AREA = 0.01, 0.08
# Normal images are crops of this many photo pixels a side (of 512), resized to SIZE.
CROP_MIN, CROP_MAX = 224, 256
# Separate seeds keep the test images out of the training set.
TRAIN_SEED, TEST_GOOD_SEED, DEFECT_SEED, VALIDATION_SEED = 0, 1, 2, 3
# Terracotta colour for the grayscale brick photo, so the demo is RGB.
TINT = np.array([1.25, 0.85, 0.65], np.float32)


def cache_dir() -> Path:
    return Path(os.environ.get("NSA_FAST_CACHE", Path.home() / ".cache" / "nsa_fast"))


def _gray(name: str) -> np.ndarray:
    """A bundled grayscale scikit-image photo, float32 (512, 512)."""
    from skimage import data

    return getattr(data, name)().astype(np.float32)


def _tint(gray: np.ndarray) -> np.ndarray:
    return np.clip(np.round(gray[..., None] * TINT), 0, 255).astype(np.uint8)


def _texture() -> np.ndarray:
    return _tint(_gray("brick"))  # 512x512, CC0


def normal_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """n normal demo images, uint8 (SIZE, SIZE, 3): random crops, mirrored or upside down."""
    rng = np.random.default_rng(seed)
    tex = _texture()
    out = []
    for _ in range(n):
        side = int(rng.integers(CROP_MIN, CROP_MAX + 1))
        y, x = rng.integers(0, tex.shape[0] - side + 1, size=2)
        crop = tex[y:y + side, x:x + side]
        if rng.integers(2):
            crop = crop[:, ::-1]
        if rng.integers(2):
            crop = crop[::-1]
        out.append(cv2.resize(np.ascontiguousarray(crop), (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return out


# --- defects ------------------------------------------------------------------------------------
# Every defect is drawn as a binary mask first and the image is changed only inside it, so the
# ground truth is exact: no changed pixel lies outside the mask.

def _blob_mask(rng: np.random.Generator, area: float, jagged: float = 0.0) -> np.ndarray:
    """A filled closed shape of about ``area`` (fraction of the image): smoothly wobbling, with
    ``jagged`` > 0 also a broken, chipped outline."""
    radius = math.sqrt(area * SIZE * SIZE / math.pi)
    theta = np.linspace(0.0, 2.0 * math.pi, 96, endpoint=False)
    r = np.ones_like(theta)
    for k in (2, 3, 4):  # low harmonics: an irregular but smooth outline
        r += rng.uniform(0.0, 0.5 / k) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    if jagged:
        r *= 1 + jagged * rng.uniform(-1, 1, theta.size)
    stretch = rng.uniform(0.75, 1.3)  # elongated, not round
    margin = 1.8 * radius + 4  # keep it whole inside the image, so the area is as intended
    cy, cx = rng.uniform(margin, SIZE - margin, size=2)
    rot = rng.uniform(0, 2 * math.pi)
    ex, ey = radius * r * np.cos(theta) * stretch, radius * r * np.sin(theta) / stretch
    pts = np.stack([cx + ex * math.cos(rot) - ey * math.sin(rot),
                    cy + ex * math.sin(rot) + ey * math.cos(rot)], axis=1)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255, lineType=cv2.LINE_8)
    return mask


def _scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One or two long curved grooves scraped into the surface: pale, with the texture faintly
    showing through, like a scratch on fired clay."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        p0 = rng.uniform(0.1 * SIZE, 0.9 * SIZE, size=2)
        length = rng.uniform(0.45, 0.8) * SIZE
        angle = rng.uniform(0, 2 * math.pi)
        p2 = np.clip(p0 + length * np.array([math.cos(angle), math.sin(angle)]), 8, SIZE - 8)
        normal = np.array([-math.sin(angle), math.cos(angle)])
        p1 = (p0 + p2) / 2 + normal * rng.uniform(-0.25, 0.25) * length  # bend of the curve
        t = np.linspace(0, 1, 60)[:, None]
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2  # quadratic Bezier
        cv2.polylines(mask, [np.round(curve).astype(np.int32)], False, 255,
                      thickness=int(rng.integers(5, 9)), lineType=cv2.LINE_8)
    inside = mask > 0
    pale = np.array([235, 225, 205], np.float32) * rng.uniform(0.9, 1.0)
    out = img.copy()
    out[inside] = np.clip(0.8 * pale + 0.2 * img[inside], 0, 255).astype(np.uint8)
    return out, mask


STAINS = {"oil": (0.3, 0.3, 0.35), "moss": (0.45, 0.85, 0.45), "paint": (0.45, 0.75, 1.6)}


def _stain(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth colour-shifted blob, strongest in its middle: a spill of oil, moss or paint."""
    mask = _blob_mask(rng, float(np.exp(rng.uniform(np.log(0.02), np.log(0.06)))))
    inside = mask > 0
    # Strength ramps up from the edge over a few pixels but is exactly zero outside the mask.
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    alpha = np.clip(dist / rng.uniform(4, 10), 0, 1) * rng.uniform(0.85, 0.95)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5) * inside
    gain = np.array(list(STAINS.values())[int(rng.integers(len(STAINS)))], np.float32)
    target = img.astype(np.float32) * gain
    out = img.astype(np.float32) * (1 - alpha[..., None]) + target * alpha[..., None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8), mask


def _missing(img: np.ndarray, rng: np.random.Generator, rubble: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A piece broken out of the surface: a chipped hole showing grey rubble (the gravel photo)
    in its shadow, darkest under the edge that faces the light."""
    mask = _blob_mask(rng, float(np.exp(rng.uniform(np.log(0.02), np.log(0.06)))), jagged=0.08)
    inside = mask > 0
    y, x = rng.integers(0, rubble.shape[0] - SIZE + 1, size=2)
    floor = rubble[y:y + SIZE, x:x + SIZE] * rng.uniform(0.45, 0.6)
    # The hole's own shadow: the rim casts it inwards, most on the side away from the light.
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    shade = 0.45 + 0.55 * np.clip(dist / 12.0, 0, 1)
    light = rng.uniform(0, 2 * math.pi)
    shifted = cv2.warpAffine(mask, np.float32([[1, 0, 6 * math.cos(light)], [0, 1, 6 * math.sin(light)]]),
                             (SIZE, SIZE))
    shade = np.where(shifted > 0, shade, 0.45 * shade)  # the part the rim hides from the light
    grey = floor * shade
    out = img.copy()
    out[inside] = np.clip(np.round(grey[inside][:, None] * np.float32([1.0, 0.97, 0.92])), 0, 255).astype(np.uint8)
    return out, mask


def defect_images(kind: str, n: int = N_PER_DEFECT, seed: int = DEFECT_SEED
                  ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """n (normal, defective, mask) triples of one defect kind; masks uint8 0/255, (SIZE, SIZE)."""
    k = DEFECTS.index(kind)
    bases = normal_images(n * len(DEFECTS), seed)[k * n:(k + 1) * n]  # other base per kind
    rubble = cv2.resize(_gray("gravel"), (768, 768), interpolation=cv2.INTER_LINEAR) if kind == "missing" else None
    out = []
    for i, base in enumerate(bases):
        rng = np.random.default_rng([seed, k, i])
        for _ in range(100):  # redraw until the area is in bounds; it nearly always is at once
            if kind == "scratch":
                img, mask = _scratch(base, rng)
            elif kind == "stain":
                img, mask = _stain(base, rng)
            else:
                img, mask = _missing(base, rng, rubble)
            if MIN_AREA <= np.count_nonzero(mask) / mask.size <= MAX_AREA:
                break
        else:  # pragma: no cover - only if the drawing code above is broken
            raise RuntimeError(f"could not draw a {kind} defect within the area bounds")
        out.append((base, img, mask))
    return out
# --- files --------------------------------------------------------------------------------------

README = f"""\
nsa_fast demo dataset (MVTec AD folder layout), version {VERSION}
==============================================================

train/good/                 {N_TRAIN} normal images, {SIZE}x{SIZE} RGB PNG
validation/good/            {N_VALIDATION} normal images, never trained on: for the decision thresholds
test/good/                  {N_TEST_GOOD} normal images, not in the training set
test/<defect>/              {N_PER_DEFECT} images each for the defects {", ".join(DEFECTS)}
ground_truth/<defect>/      <stem>_mask.png: uint8 single-channel, 255 = changed pixels, else 0

Sources and licences
--------------------
All images are derived only from photographs bundled with scikit-image (skimage.data);
nothing else was used. Per scikit-image's documentation of these images:

- skimage.data.brick(): from CC0Textures (texture "Bricks25"), Creative Commons CC0 licence.
  The surface of every image.
- skimage.data.gravel(): from CC0Textures (texture "Gravel04"), Creative Commons CC0 licence.
  The rubble seen through the holes of the "missing" defect.

scikit-image itself (the code) is distributed under the BSD 3-Clause licence.

How it was made
---------------
The grayscale brick photo (512x512) is tinted to a terracotta RGB colour. Normal images are
random square crops ({CROP_MIN}-{CROP_MAX} px) of it, mirrored left-right and upside down half of
the time each, and resized to {SIZE}x{SIZE} (area interpolation); training, good test, defect
base and validation images use different seeds ({TRAIN_SEED}, {TEST_GOOD_SEED}, {DEFECT_SEED}, {VALIDATION_SEED}). Each defect image is such a
normal image with one synthetic defect, drawn first as its mask; pixels outside the mask are
unchanged:

- scratch: one or two long curved grooves (quadratic Bezier, 5-8 px wide), pale clay colour
           with the texture faintly showing through.
- stain:   a smooth irregular blob whose colour is shifted (dark oil, green moss or blue paint),
           strongest in the middle.
- missing: a piece broken out of the surface: a blob with a chipped outline showing dark grey
           rubble (a crop of the gravel photo) in the hole's shadow.

Each defect covers {MIN_AREA:.0%} to {MAX_AREA:.0%} of the image. Generated by nsa_fast.demo
(deterministic: fixed seeds).
"""


def _stem(i: int) -> str:
    return f"{i:03d}"


def demo_layout() -> list[str]:
    """Relative paths (under ``demo/``) of every file of the demo dataset, README.txt last."""
    paths = [f"train/good/{_stem(i)}.png" for i in range(N_TRAIN)]
    paths += [f"validation/good/{_stem(i)}.png" for i in range(N_VALIDATION)]
    paths += [f"test/good/{_stem(i)}.png" for i in range(N_TEST_GOOD)]
    for kind in DEFECTS:
        for i in range(N_PER_DEFECT):
            paths += [f"test/{kind}/{_stem(i)}.png", f"ground_truth/{kind}/{_stem(i)}_mask.png"]
    return paths + ["README.txt"]


def build_demo() -> dict[str, np.ndarray | str]:
    """The whole demo dataset in memory, keyed by the paths of :func:`demo_layout`."""
    files: dict[str, np.ndarray | str] = {}
    for i, img in enumerate(normal_images(N_TRAIN, TRAIN_SEED)):
        files[f"train/good/{_stem(i)}.png"] = img
    for i, img in enumerate(normal_images(N_VALIDATION, VALIDATION_SEED)):
        files[f"validation/good/{_stem(i)}.png"] = img
    for i, img in enumerate(normal_images(N_TEST_GOOD, TEST_GOOD_SEED)):
        files[f"test/good/{_stem(i)}.png"] = img
    for kind in DEFECTS:
        for i, (_, img, mask) in enumerate(defect_images(kind)):
            files[f"test/{kind}/{_stem(i)}.png"] = img
            files[f"ground_truth/{kind}/{_stem(i)}_mask.png"] = mask
    files["README.txt"] = README
    return files


def encode(content: np.ndarray | str) -> bytes:
    """The bytes of one demo file: UTF-8 text, or a PNG of a uint8 RGB or single-channel image."""
    if isinstance(content, str):
        return content.encode("utf-8")
    img = cv2.cvtColor(content, cv2.COLOR_RGB2BGR) if content.ndim == 3 else content
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError("could not encode a demo image as PNG")
    return buf.tobytes()


def _write_atomic(path: Path, content: np.ndarray | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A per-process temporary name: two processes filling the cache at once never share a
    # half-written file, and a half-written file never carries the final name.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        tmp.write_bytes(encode(content))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_current(base: Path) -> bool:
    """Whether ``base`` (a ``demo/`` folder) was written by this version of the demo: its
    README.txt, written last, is this version's."""
    try:
        return (base / "README.txt").read_bytes() == encode(README)
    except OSError:
        return False


def _remove_stale(base: Path) -> None:
    """Delete the image folders of another version's demo (its defect folders may differ from
    today's, and an evaluation would count them); only the folders this module writes."""
    for sub in ("train", "validation", "test", "ground_truth"):
        shutil.rmtree(base / sub, ignore_errors=True)
    (base / "README.txt").unlink(missing_ok=True)


def ensure_demo(root: Path | None = None) -> Path:
    """Write whatever is missing of the demo dataset; returns its root (holding ``demo/``).

    A folder of this version (see :func:`is_current`) keeps the files it has (generation is
    deterministic, so they match) and gets the missing ones; one of another version, or one
    whose writing was interrupted before README.txt, is written anew.
    """
    root = Path(root) if root else cache_dir() / "data"
    base = root / DEMO
    try:
        if is_current(base):
            missing = [rel for rel in demo_layout() if not (base / rel).is_file()]
        else:
            if base.exists():
                _remove_stale(base)
            missing = demo_layout()
        if missing:
            files = build_demo()
            for rel in missing:  # README.txt last: it marks a complete folder
                _write_atomic(base / rel, files[rel])
    except OSError as err:
        raise NsaError(f"cannot write the demo data to {str(base)!r} ({err.strerror or err}); set "
                       "NSA_FAST_CACHE to a writable folder.") from err
    return root


def resolve_root(data: str) -> Path:
    """``demo`` names the built-in data; anything else is a folder."""
    return ensure_demo() if data == DEMO else Path(data)
