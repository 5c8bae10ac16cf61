"""Datasets on disk: the MVTec AD layout and a generic one, decoded once into a uint8 cache.

MVTec AD: ``ROOT/CLASS/train/good``, ``ROOT/CLASS/test/<type>``, ``ROOT/CLASS/ground_truth/<type>/
<name>_mask.png``. Generic (users' own data): normal training images directly in
``ROOT/CLASS/train``; optional test images in ``test/good`` (or ``test/normal``) and
``test/<anything>`` with masks in ``ground_truth/<anything>/<name>_mask.png`` (or ``<name>.png``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .io import IMAGE_SUFFIXES, list_images
from .presets import Preset

NORMAL_NAMES = ("good", "normal")


@dataclass(frozen=True)
class TestItem:
    __test__ = False  # not a pytest test class
    path: Path
    defect: str          # the test folder's name; "good"/"normal" for normal images
    label: int           # 1 anomalous, 0 normal
    mask: Path | None    # ground truth of anomalous images


def class_dir(root: str | Path, category: str) -> Path:
    d = Path(root) / category
    if not d.is_dir():
        raise InputError(f"no class folder {str(d)!r}: expected ROOT/CLASS with ROOT={str(root)!r} "
                         f"and CLASS={category!r}. Check --data and --category.")
    return d


def train_files(root: str | Path, category: str) -> list[Path]:
    """Normal training images: train/good (MVTec) or train/ itself (generic)."""
    d = class_dir(root, category) / "train"
    if not d.is_dir():
        raise InputError(f"no training folder {str(d)!r}: expected {category}/train/good (MVTec layout) "
                         f"or {category}/train holding the normal images.")
    good = d / "good"
    return list_images(good if good.is_dir() else d)


def test_items(root: str | Path, category: str) -> list[TestItem]:
    """Test images with labels and mask paths; every anomalous image must have its mask."""
    base = class_dir(root, category)
    d = base / "test"
    if not d.is_dir():
        raise InputError(f"no test folder {str(d)!r}: evaluation needs {category}/test/good and "
                         f"{category}/test/<defect> with masks in {category}/ground_truth/<defect>.")
    items = []
    for sub in sorted(p for p in d.iterdir() if p.is_dir()):
        normal = sub.name in NORMAL_NAMES
        for f in list_images(sub):
            mask = None
            if not normal:
                cands = [base / "ground_truth" / sub.name / f"{f.stem}_mask{s}" for s in IMAGE_SUFFIXES] + \
                        [base / "ground_truth" / sub.name / f"{f.stem}{s}" for s in IMAGE_SUFFIXES]
                mask = next((c for c in cands if c.is_file()), None)
                if mask is None:
                    raise InputError(f"test image {str(f)!r} has no mask: expected {str(cands[0])!r}. "
                                     "Add the mask, or move the image to test/good if it is normal.")
            items.append(TestItem(f, sub.name, 0 if normal else 1, mask))
    if not items:
        raise InputError(f"the test folder {str(d)!r} holds no images in its subfolders.")
    if not any(i.label for i in items) or all(i.label for i in items):
        raise InputError(f"the test set of {str(d)!r} needs normal (test/good) and anomalous images "
                         "for AUROC; it has only one kind.")
    return items


def _decode(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot decode the image {str(path)!r}: the file is missing, empty or corrupt. "
                         "Replace or remove it.")
    if img.dtype == np.uint16:  # 16-bit files: keep the high byte
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        raise InputError(f"{str(path)!r}: expected an 8- or 16-bit image, got {img.dtype}.")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]  # the alpha channel carries no appearance
    return img


def load_images(paths: list[Path], preset: Preset, size: int) -> np.ndarray:
    """Decode and resize images to uint8 (N, size, size, preset.channels), RGB order.

    All files must share one kind (grayscale or colour): a mixture usually means a mistake in the
    data, so it is refused rather than silently converted.
    """
    out = np.empty((len(paths), size, size, preset.channels), np.uint8)
    kinds: dict[int, list[Path]] = {}
    for i, p in enumerate(paths):
        img = _decode(p)
        c = 1 if img.ndim == 2 else img.shape[2]
        kinds.setdefault(c, []).append(p)
        if preset.channels == 1:
            img = img if c == 1 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB if c == 1 else cv2.COLOR_BGR2RGB)
        if img.shape[:2] != (size, size):
            shrink = img.shape[0] > size or img.shape[1] > size
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        out[i] = img.reshape(size, size, preset.channels)
    if len(kinds) > 1:
        desc = ", ".join(f"{len(v)} with {'1 channel' if k == 1 else f'{k} channels'} (e.g. {v[0].name})"
                         for k, v in sorted(kinds.items()))
        raise InputError(f"mixed channel counts in {str(paths[0].parent)!r} and siblings: {desc}. "
                         "Convert all images to one kind (grayscale or RGB).")
    return out


def load_masks(items: list[TestItem], size: int) -> np.ndarray:
    """Ground-truth masks resized (nearest) to (N, size, size) bool; zeros for normal images.

    Each mask must have its image's size.
    """
    out = np.zeros((len(items), size, size), bool)
    for i, it in enumerate(items):
        if it.mask is None:
            continue
        m = cv2.imread(str(it.mask), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise InputError(f"cannot decode the mask {str(it.mask)!r}: the file is missing, empty or corrupt.")
        shape = _decode(it.path).shape[:2]
        if m.shape != shape:
            raise InputError(f"the mask {str(it.mask)!r} is {m.shape[0]}x{m.shape[1]} but its image "
                             f"{str(it.path)!r} is {shape[0]}x{shape[1]}; masks must match their images.")
        out[i] = cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) > 127
    return out


test_items.__test__ = False  # not a pytest test


def eval_size(preset: Preset) -> int:
    """Side of the evaluation maps: 256 for the MVTec presets (textures are tested at their crop
    size, objects at image_size and fed the centre crop)."""
    return preset.crop if preset.kind == "texture" else preset.image_size


def eval_input(images: np.ndarray, preset: Preset) -> tuple[np.ndarray, int]:
    """The model's input for evaluation images (N, S, S, C) and the offset of its crop in them."""
    S = images.shape[1]
    if preset.kind == "texture" or preset.crop >= S:
        return images, 0
    o = (S - preset.crop) // 2
    return np.ascontiguousarray(images[:, o:o + preset.crop, o:o + preset.crop]), o
