"""Datasets on disk decoded into uint8 arrays: training images, test images and their masks.

Where a class's files are depends on its layout (MVTec AD, MPDD, MVTec AD 2, BTAD, VisA or a
generic folder): ``nsa_fast.layouts`` reads each as distributed.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import InputError, warn, wxh
from .io import convert, decode, imread_quiet, intensity_window, raw_pixels
from .layouts import TestItem, open_dataset
from .presets import Preset


def train_files(root: str | Path, category: str, layout: str = "auto") -> list[Path]:
    """Normal training images of a class in its layout (``nsa_fast.layouts``)."""
    return open_dataset(root, category, layout).train


def test_items(root: str | Path, category: str, layout: str = "auto") -> list[TestItem]:
    """Test images with labels and mask paths; every anomalous image must have its mask."""
    return open_dataset(root, category, layout, need_train=False).test_items()


def split_holdout(files: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(training, held out): ``fraction`` of the normal training images, drawn by ``seed`` and at
    least one when the fraction is not 0, kept for thresholds; two at least stay for training."""
    if not fraction:
        return list(files), []
    n = len(files)
    k = max(1, round(fraction * n))
    if n - k < 2:
        raise InputError(f"--holdout {fraction:g} keeps {k} of the {n} training images out of training, leaving "
                         f"{n - k}; training needs two at least. Use a smaller --holdout, or give the normal images "
                         "for thresholds with python -m nsa_fast.threshold --normals DIR.")
    held = set(np.random.default_rng(seed).permutation(n)[:k].tolist())
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def input_size(files: list[Path]) -> list[int] | None:
    """[width, height] of the first training image: the size an export takes by default."""
    if not files:
        return None
    h, w = raw_pixels(files[0]).shape[:2]
    return [int(w), int(h)]


def with_intensity_window(preset: Preset, files, synth: str) -> Preset:
    """16-bit training images: the preset gains the window that maps them to 8 bits (the 0.1-99.9
    percentiles of their values), which config.json and the checkpoint carry to evaluation,
    prediction and export."""
    if preset.window is not None:
        return preset
    window = intensity_window(files)
    if window is None:
        return preset
    if synth == "dali":
        raise InputError("the training images are 16-bit: --synth dali scales them by its own rule (x / 257), not by "
                       "the training set's intensity window; use --synth workers or device.")
    print(f"note: 16-bit training images: grey levels {window[0]:g}..{window[1]:g} (the 0.1-99.9 percentiles of the "
          "training set) map to 0..255, here and in evaluation, prediction and export (preset field window)")
    return preset.replace(window=window)


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
        img = decode(p, preset.window)
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
        shape = raw_pixels(it.path).shape[:2]
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


def check_test_set(root: Path, category: str, preset: Preset, layout: str = "auto") -> bool:
    """Whether ``root/category`` has a test set to evaluate on; a broken one (an image that does
    not decode, grey and colour mixed, a mask missing or of the wrong size) is reported now, before
    training, not after it."""
    if not open_dataset(root, category, layout, need_train=False).has_test_set():
        print(f"note: no test set under {Path(root) / category}; the run will not be evaluated")
        return False
    items = test_items(root, category, layout)
    load_images([i.path for i in items], preset, eval_size(preset))
    load_masks(items, eval_size(preset))
    return True
