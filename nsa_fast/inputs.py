"""The images a command is given (files and folders, each once, never its own outputs) and
anomaly maps brought back to the images' own size."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .io import IMAGE_SUFFIXES, list_images

HEATMAP_SUFFIX = "_heatmap.png"
MASK_SUFFIX = "_mask.png"
OVERLAY_SUFFIX = "_overlay.png"
OUTPUT_SUFFIXES = (HEATMAP_SUFFIX, MASK_SUFFIX, OVERLAY_SUFFIX)


def collect(paths: list[str], exclude: Path | None = None) -> list[Path]:
    """Image files named directly or found in the folders named, each once, in order; an error
    for anything else. Heatmaps, masks and overlays inside ``exclude`` (the output folder, which may be an input
    folder too) are skipped, so that a run never reads its own or an earlier run's outputs."""
    files: list[Path] = []
    skip = exclude.resolve() if exclude is not None else None
    for p in map(Path, paths):
        if p.is_dir():
            found = list_images(p)
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            found = [p]
        else:
            raise InputError(f"{str(p)!r} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a folder.")
        files += [f for f in found if skip is None or not (f.name.endswith(OUTPUT_SUFFIXES)
                                                          and f.resolve().is_relative_to(skip))]
    unique = list(dict.fromkeys(f.resolve() for f in files))
    if not unique:
        where = "" if exclude is None else f" (outside the output folder {str(exclude)!r})"
        raise InputError(f"no images in {paths}{where}; give image files ({', '.join(IMAGE_SUFFIXES)}) or folders "
                         "holding them.")
    return unique


def to_input_size(amap: np.ndarray, shape: tuple[int, int], box: tuple[int, int, int, int] | None):
    """A square map of the evaluation size (predict resized the input to it) back on the input's
    own (H, W) grid by the inverse resize (bilinear), and the seen region's box (y0, y1, x0, x1,
    ``viz.seen_box``) in the input's pixels (None with ``box`` None)."""
    import cv2

    H, W = shape
    size = amap.shape[0]
    full = cv2.resize(amap, (W, H), interpolation=cv2.INTER_LINEAR) if amap.shape != (H, W) else amap
    if box is None:
        return full, None
    y0, y1, x0, x1 = box
    return full, (round(y0 * H / size), round(y1 * H / size), round(x0 * W / size), round(x1 * W / size))
