"""Image files in and out: decoding with clear errors, the MVTec folder layout."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files of a folder; an error if the folder is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"expected a folder of images at {str(folder)!r}, but it does not exist. "
                         "Check --data and --category (MVTec layout: ROOT/CLASS/train/good).")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"the folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    return files


def read_image(path: str | Path, channels: int = 3, size: int | None = None) -> np.ndarray:
    """Decode an image file to uint8 (H, W, channels), RGB order, optionally resized to size x size.

    Area interpolation when shrinking (it averages, like the data's own downsampling), bilinear
    when enlarging.
    """
    path = Path(path)
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    img = cv2.imread(str(path), flag)
    if img is None:
        raise InputError(f"cannot decode the image {str(path)!r}: the file is missing, empty or "
                         "corrupt. Replace or remove it.")
    if img.dtype != np.uint8:  # 16-bit files: keep the high byte
        img = (img >> 8).astype(np.uint8)
    if channels == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if size is not None and img.shape[:2] != (size, size):
        shrink = img.shape[0] > size or img.shape[1] > size
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return img.reshape(img.shape[0], img.shape[1], channels)


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write a uint8 RGB or grayscale image (PNG by suffix)."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {str(path)!r}: check that the folder exists and is writable.")


def load_train_images(root: str | Path, category: str, channels: int, size: int) -> list[np.ndarray]:
    """The normal training images of a class in the MVTec layout ``ROOT/CLASS/train/good``."""
    return [read_image(p, channels, size) for p in list_images(Path(root) / category / "train" / "good")]
