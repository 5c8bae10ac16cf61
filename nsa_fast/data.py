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

from .errors import InputError, warn, wxh
from .io import IMAGE_SUFFIXES, convert, decode, imread_quiet, list_images
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
    """ROOT/CLASS; when it is missing, the error lists the classes that ROOT does hold."""
    d = Path(root) / category
    if d.is_dir():
        return d
    if not Path(root).is_dir():
        raise InputError(f"no class folder {str(d)!r}: the dataset root --data {str(root)!r} is not a folder. "
                         "Pass the folder that holds the class folders (MVTec layout: ROOT/CLASS/train/good).")
    raise InputError(f"no class folder {category!r} under {str(root)!r}; {found_classes(Path(root), category)}. "
                     "Check --data and --category.")


def classes_under(root: Path) -> list[str]:
    """The class folders of a dataset root: its subfolders that hold a train or test folder."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and ((p / "train").is_dir() or (p / "test").is_dir()))


def found_classes(root: Path, category: str, shown: int = 15) -> str:
    """What a dataset root holds instead of ``category``, for an error message."""
    import difflib

    names = classes_under(root)
    if not names:
        if (root / "train").is_dir():
            return (f"it holds no class folders but is one itself (it has train/): use --data "
                    f"{str(root.parent)!r} --category {root.name!r}")
        return "it holds no class folders (folders with train/ or test/ inside)"
    text = "found: " + ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")
    close = difflib.get_close_matches(category, names, n=1)
    return text + (f" (did you mean {close[0]!r}?)" if close else "")


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


def load_images(paths: list[Path], preset: Preset, size: int) -> np.ndarray:
    """Decode and resize images to uint8 (N, size, size, preset.channels), RGB order.

    All files must share one kind (grayscale or colour): a mixture usually means a mistake in the
    data, so it is refused rather than silently converted. Images that are not square (squashed
    by the resize) or smaller than ``size`` (upscaled) get one warning line each kind.
    """
    out = np.empty((len(paths), size, size, preset.channels), np.uint8)
    kinds: dict[int, list[Path]] = {}
    odd: dict[str, list[tuple[Path, tuple[int, int]]]] = {"not square": [], "small": []}
    for i, p in enumerate(paths):
        img = decode(p)
        kinds.setdefault(1 if img.ndim == 2 else img.shape[2], []).append(p)
        h, w = img.shape[:2]
        if h != w:
            odd["not square"].append((p, img.shape))
        if min(h, w) < size:
            odd["small"].append((p, img.shape))
        out[i] = convert(img, preset.channels, size)
    if len(kinds) > 1:
        desc = "; ".join(f"{len(v)} with {'1 channel' if k == 1 else f'{k} channels'} (e.g. {str(v[0])!r})"
                         for k, v in sorted(kinds.items()))
        raise InputError(f"mixed grayscale and colour images among the {len(paths)} files: {desc}. "
                         "Convert all images to one kind (grayscale or RGB).")
    if odd["not square"]:
        f, shape = odd["not square"][0]
        warn(f"{len(odd['not square'])} of {len(paths)} images are not square (e.g. {str(f)!r} is {wxh(shape)}, "
             f"width x height); they are resized to {size}x{size}, which distorts them. Crop them square first "
             "to avoid it.")
    if odd["small"]:
        f, shape = odd["small"][0]
        warn(f"{len(odd['small'])} of {len(paths)} images are smaller than {size}x{size} (e.g. {str(f)!r} is "
             f"{wxh(shape)}, width x height); they are upscaled, which blurs them. The preset expects "
             f"image_size={size}.")
    return out


def load_masks(items: list[TestItem], size: int) -> np.ndarray:
    """Ground-truth masks resized (nearest) to (N, size, size) bool; zeros for normal images.

    A mask pixel is anomalous when it is non-zero (MVTec stores 0/255; other tools 0/1). Each
    mask must have its image's size.
    """
    out = np.zeros((len(items), size, size), bool)
    for i, it in enumerate(items):
        if it.mask is None:
            continue
        m = imread_quiet(it.mask, cv2.IMREAD_GRAYSCALE, "mask")
        shape = decode(it.path).shape[:2]
        if m.shape != shape:
            raise InputError(f"the mask {str(it.mask)!r} is {wxh(m.shape)} but its image {str(it.path)!r} is "
                             f"{wxh(shape)} (width x height); masks must match their images.")
        out[i] = cv2.resize((m > 0).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    graded = [it for it in items if it.mask is not None and it.mask.suffix.lower() in (".jpg", ".jpeg")]
    if graded:
        warn(f"{len(graded)} mask(s) are JPEG files (e.g. {str(graded[0].mask)!r}): compression noise around a "
             "defect counts as defect, since every non-zero mask pixel is anomalous. Store masks as PNG.")
    empty = [it for it, m in zip(items, out) if it.mask is not None and not m.any()]
    if empty:
        warn(f"{len(empty)} anomalous test image(s) have an all-zero mask (e.g. {str(empty[0].mask)!r}): they "
             "count for image AUROC but add no defect pixels. Mark the defects, or move such images to test/good.")
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


def check_test_set(root: Path, category: str, preset: Preset) -> bool:
    """Whether ``root/category`` has a test set to evaluate on; a broken one (an image that does
    not decode, grey and colour mixed, a mask missing or of the wrong size) is reported now, before
    training, not after it."""
    if not (Path(root) / category / "test").is_dir():
        print(f"note: no test set under {Path(root) / category}; the run will not be evaluated")
        return False
    items = test_items(root, category)
    load_images([i.path for i in items], preset, eval_size(preset))
    load_masks(items, eval_size(preset))
    return True
