"""Built-in demo data, made from texture photos that scikit-image ships (CC0 licences).

``--data demo`` resolves to a small anomaly-detection dataset in the MVTec AD layout, written on
first use under ``<cache>/data`` (the cache is ``$NSA_FAST_CACHE`` or ``~/.cache/nsa_fast``)::

    demo/train/good/000.png ...                 normal images (training)
    demo/test/good/000.png ...                  normal images not in the training set
    demo/test/<defect>/000.png ...              images with one synthetic defect each
    demo/ground_truth/<defect>/000_mask.png ... uint8 0/255 masks of exactly the changed region
    demo/README.txt                             sources, licences, how it was made

Everything is derived from the gravel, grass and brick photos bundled with scikit-image, so
nothing is downloaded, and generation is deterministic (fixed seeds): the same library versions
give byte-identical files.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from .errors import NsaError

DEMO = "demo"
SIZE = 256
N_TRAIN = 40
N_TEST_GOOD = 10
N_PER_DEFECT = 7
DEFECTS = ("scratch", "stain", "patch")
# Each defect covers this fraction of the image: big enough to see and to score, small enough
# that detecting it is not trivial (MVTec defects are mostly in this range too).
MIN_AREA, MAX_AREA = 0.002, 0.05
# Separate seeds keep the test images out of the training set and leave the training images
# byte-identical to those of older caches, which held only them.
TRAIN_SEED, TEST_GOOD_SEED, DEFECT_SEED = 0, 1, 2
# Warm colour for the grayscale photos, so the demo is RGB.
TINT = np.array([1.0, 0.9, 0.75], np.float32)


def cache_dir() -> Path:
    return Path(os.environ.get("NSA_FAST_CACHE", Path.home() / ".cache" / "nsa_fast"))


def _photo(name: str) -> np.ndarray:
    """A bundled grayscale scikit-image photo, tinted to uint8 RGB."""
    from skimage import data

    g = getattr(data, name)().astype(np.float32)
    return np.clip(g[..., None] * TINT, 0, 255).astype(np.uint8)


def _texture() -> np.ndarray:
    return _photo("gravel")  # 512x512, CC0


def normal_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """n normal demo images, uint8 (256, 256, 3): random crops, flips and 90-degree turns."""
    rng = np.random.default_rng(seed)
    tex = _texture()
    out = []
    for _ in range(n):
        side = int(rng.integers(300, 400))
        y, x = rng.integers(0, tex.shape[0] - side, size=2)
        crop = np.rot90(tex[y:y + side, x:x + side], int(rng.integers(4)))
        if rng.integers(2):
            crop = crop[:, ::-1]
        out.append(cv2.resize(np.ascontiguousarray(crop), (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return out


# --- defects ------------------------------------------------------------------------------------
# Every defect is drawn as a binary mask first and the image is changed only inside it, so the
# ground truth is exact: no changed pixel lies outside the mask.

def _blob_mask(rng: np.random.Generator, area: float) -> np.ndarray:
    """A filled, smoothly wobbling closed shape of about ``area`` (fraction of the image)."""
    radius = math.sqrt(area * SIZE * SIZE / math.pi)
    theta = np.linspace(0.0, 2.0 * math.pi, 96, endpoint=False)
    r = np.ones_like(theta)
    for k in (2, 3, 4):  # low harmonics only: an irregular but smooth outline, no spikes
        r += rng.uniform(0.0, 0.5 / k) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    stretch = rng.uniform(0.7, 1.3)  # elongated, not round
    margin = 2.0 * radius + 4  # keep it whole inside the image, so the area is as intended
    cy, cx = rng.uniform(margin, SIZE - margin, size=2)
    rot = rng.uniform(0, 2 * math.pi)
    ex, ey = radius * r * np.cos(theta) * stretch, radius * r * np.sin(theta) / stretch
    pts = np.stack([cx + ex * math.cos(rot) - ey * math.sin(rot),
                    cy + ex * math.sin(rot) + ey * math.cos(rot)], axis=1)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255, lineType=cv2.LINE_8)
    return mask


def _scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One or two thin curved strokes, bright or dark, like a scratch on the surface."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        p0 = rng.uniform(30, SIZE - 30, size=2)
        length = rng.uniform(60, 150)
        angle = rng.uniform(0, 2 * math.pi)
        p2 = np.clip(p0 + length * np.array([math.cos(angle), math.sin(angle)]), 8, SIZE - 8)
        normal = np.array([-math.sin(angle), math.cos(angle)])
        p1 = (p0 + p2) / 2 + normal * rng.uniform(-0.35, 0.35) * length  # bend of the curve
        t = np.linspace(0, 1, 40)[:, None]
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2  # quadratic Bezier
        cv2.polylines(mask, [np.round(curve).astype(np.int32)], False, 255,
                      thickness=int(rng.integers(2, 4)), lineType=cv2.LINE_8)
    level = rng.uniform(225, 255) if rng.integers(2) else rng.uniform(10, 40)
    inside = mask > 0
    out = img.copy()
    # Mostly the scratch colour, a little of the texture showing through, so it is not flat.
    out[inside] = np.clip(0.8 * level * TINT + 0.2 * img[inside], 0, 255).astype(np.uint8)
    return out, mask


def _stain(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth colour-shifted blob, strongest in its middle, like a spill or a rust spot."""
    mask = _blob_mask(rng, float(np.exp(rng.uniform(np.log(0.006), np.log(0.03)))))
    inside = mask > 0
    # Strength ramps up from the edge over a few pixels but is exactly zero outside the mask.
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    alpha = np.clip(dist / rng.uniform(3, 8), 0, 1) * rng.uniform(0.7, 0.9)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5) * inside
    gains = [(0.55, 0.4, 0.3), (0.5, 0.75, 1.25), (0.7, 1.05, 0.6), (0.45, 0.45, 0.5)]  # rust, blue, green, oil
    target = img.astype(np.float32) * np.array(gains[int(rng.integers(len(gains)))], np.float32)
    out = img.astype(np.float32) * (1 - alpha[..., None]) + target * alpha[..., None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8), mask


def _patch(img: np.ndarray, rng: np.random.Generator, sources: dict[str, np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray]:
    """A blob of a foreign texture (grass or brick) pasted in: a texture, not a colour, anomaly."""
    mask = _blob_mask(rng, float(np.exp(rng.uniform(np.log(0.005), np.log(0.025)))))
    src = sources[("grass", "brick")[int(rng.integers(2))]]
    # Near the source's own scale: much smaller and grass strands blur into noise like gravel.
    scale = rng.uniform(0.7, 1.2)
    small = cv2.resize(src, None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = rng.integers(0, small.shape[0] - SIZE + 1, size=2)
    foreign = small[y:y + SIZE, x:x + SIZE].astype(np.float32)
    # Match the surrounding brightness, so what differs is the texture itself.
    inside = mask > 0
    foreign += img[inside].astype(np.float32).mean(axis=0) - foreign[inside].mean(axis=0)
    out = img.copy()
    out[inside] = np.clip(np.round(foreign[inside]), 0, 255).astype(np.uint8)
    return out, mask


def defect_images(kind: str, n: int = N_PER_DEFECT, seed: int = DEFECT_SEED
                  ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """n (normal, defective, mask) triples of one defect kind; masks uint8 0/255, (256, 256)."""
    k = DEFECTS.index(kind)
    bases = normal_images(n * len(DEFECTS), seed)[k * n:(k + 1) * n]  # other base per kind
    sources = {name: _photo(name) for name in ("grass", "brick")} if kind == "patch" else {}
    out = []
    for i, base in enumerate(bases):
        rng = np.random.default_rng([seed, k, i])
        for _ in range(100):  # redraw until the area is in bounds; it nearly always is at once
            if kind == "scratch":
                img, mask = _scratch(base, rng)
            elif kind == "stain":
                img, mask = _stain(base, rng)
            else:
                img, mask = _patch(base, rng, sources)
            if MIN_AREA <= np.count_nonzero(mask) / mask.size <= MAX_AREA:
                break
        else:  # pragma: no cover - only if the drawing code above is broken
            raise RuntimeError(f"could not draw a {kind} defect within the area bounds")
        out.append((base, img, mask))
    return out


# --- files --------------------------------------------------------------------------------------

README = f"""\
nsa_fast demo dataset (MVTec AD folder layout)
==============================================

train/good/                 {N_TRAIN} normal images, 256x256 RGB PNG
test/good/                  {N_TEST_GOOD} normal images, not in the training set
test/<defect>/              {N_PER_DEFECT} images each for the defects {", ".join(DEFECTS)}
ground_truth/<defect>/      <stem>_mask.png: uint8 single-channel, 255 = changed pixels, else 0

Sources and licences
--------------------
All images are derived only from photographs bundled with scikit-image (skimage.data);
nothing else was used. Per scikit-image's documentation of these images:

- skimage.data.gravel(): from CC0Textures (texture "Gravel04"), Creative Commons CC0 licence.
  The base texture of every image.
- skimage.data.grass(): from DeviantArt ("Grass-01" by linolafett), Creative Commons CC0
  licence. Foreign texture pasted in by the "patch" defect.
- skimage.data.brick(): from CC0Textures (texture "Bricks25"), Creative Commons CC0 licence.
  Foreign texture pasted in by the "patch" defect.

scikit-image itself (the code) is distributed under the BSD 3-Clause licence.

How it was made
---------------
The grayscale photos are tinted to a warm RGB colour. Normal images are random square crops
(300-399 px) of the gravel photo, turned by a random multiple of 90 degrees, mirrored half of
the time and resized to 256x256 (area interpolation); training, good test and defect base
images use different seeds ({TRAIN_SEED}, {TEST_GOOD_SEED}, {DEFECT_SEED}). Each defect image is such a normal
image with one synthetic defect, drawn first as its mask; pixels outside the mask are unchanged:

- scratch: one or two thin (2-3 px) curved strokes (quadratic Bezier), bright or dark.
- stain:   a smooth irregular blob whose colour is shifted (rust, blue, green or dark oil),
           strongest in the middle.
- patch:   a smooth irregular blob of grass or brick texture, brightness matched to the
           surroundings.

Each defect covers {MIN_AREA:.1%} to {MAX_AREA:.0%} of the image. Generated by nsa_fast.demo
(deterministic: fixed seeds).
"""


def _stem(i: int) -> str:
    return f"{i:03d}"


def demo_layout() -> list[str]:
    """Relative paths (under ``demo/``) of every file of the demo dataset."""
    paths = [f"train/good/{_stem(i)}.png" for i in range(N_TRAIN)]
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
    # Gravel is close to noise and barely compresses; zlib level 1 gives the smallest files
    # here (about 30 % below OpenCV's default settings), and quickly.
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
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


def ensure_demo(root: Path | None = None) -> Path:
    """Write whatever is missing of the demo dataset; returns its root (holding ``demo/``).

    Files already there are kept (generation is deterministic, so they match), which also
    completes older caches that held only the training images.
    """
    root = Path(root) if root else cache_dir() / "data"
    base = root / DEMO
    missing = [rel for rel in demo_layout() if not (base / rel).is_file()]
    if missing:
        files = build_demo()
        try:
            for rel in missing:
                _write_atomic(base / rel, files[rel])
        except OSError as err:
            raise NsaError(f"cannot write the demo data to {str(base)!r} ({err.strerror or err}); set "
                           "NSA_FAST_CACHE to a writable folder.") from err
    return root


def resolve_root(data: str) -> Path:
    """``demo`` names the built-in data; anything else is a folder."""
    return ensure_demo() if data == DEMO else Path(data)
