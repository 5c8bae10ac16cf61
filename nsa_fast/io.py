"""Image files in and out: decoding with clear errors, the MVTec folder layout."""
from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError, warn

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files of a folder; an error if the folder is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"expected a folder of images at {str(folder)!r}, but it does not exist. "
                         "Check --data and --category (MVTec layout: ROOT/CLASS/train/good).")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        subs = sorted(d.name for d in folder.iterdir() if d.is_dir())
        inside = f"; give its sub-folders instead ({', '.join(subs[:6])}{', ...' if len(subs) > 6 else ''})" if subs else ""
        raise InputError(f"the folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}){inside}.")
    return files


def decode(path: str | Path, window: tuple[float, float] | None = None) -> np.ndarray:
    """Decode an image file to uint8 (H, W) grayscale or (H, W, 3) BGR.

    16-bit files (industrial cameras' 10-, 12- and 16-bit data) are mapped to 0..255 by ``window``
    (lo, hi): lo and below give 0, hi and above 255, linearly between (``intensity_window`` sets it
    from the training images, and the preset carries it to evaluation and prediction). Without a
    window a 16-bit file keeps its high byte. An alpha channel is dropped (it carries no appearance).
    """
    path = Path(path)
    img = raw_pixels(path)
    if img.dtype == np.uint16:
        img = to_8bit(img, window, path)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


def raw_pixels(path: Path) -> np.ndarray:
    """The file's pixels as stored: uint8 or uint16."""
    img = imread_quiet(Path(path), cv2.IMREAD_UNCHANGED)
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{str(path)!r}: expected an 8- or 16-bit image, got {img.dtype}.")
    return img


def to_8bit(img: np.ndarray, window: tuple[float, float] | None, path: Path) -> np.ndarray:
    if window is None:
        if img.max(initial=0) < 4096:
            warn(f"{str(path)!r} is a 16-bit image whose values stay below 4096 (12-bit data?), and the model was "
                 "not trained on 16-bit images: its high byte, which is read, spans 0..15 grey levels only. "
                 "Train on 16-bit images to map them by the training set's intensity window.")
        return (img >> 8).astype(np.uint8)
    lo, hi = window
    out = (img.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)


WINDOW_PERCENTILES = (0.1, 99.9)
WINDOW_SAMPLES = 4_000_000  # pixel values the percentiles are taken over, spread evenly over the files


def intensity_window(paths: list[Path]) -> tuple[float, float] | None:
    """(lo, hi) for 16-bit training images: the 0.1 and 99.9 percentiles of their pixel values
    (over every channel), so that a few saturated or dead pixels do not stretch the scale; None
    when the images are 8-bit. A mix of 8- and 16-bit files is refused."""
    depths: dict[str, list[Path]] = {}
    values = []
    per_file = max(1, WINDOW_SAMPLES // max(1, len(paths)))
    for p in paths:
        img = raw_pixels(p)
        depths.setdefault(img.dtype.name, []).append(p)
        if img.dtype == np.uint16:
            flat = img.reshape(-1)
            values.append(flat[:: max(1, flat.size // per_file)])
    if len(depths) > 1:
        raise InputError(f"the training images mix 8-bit ({len(depths['uint8'])}, e.g. {str(depths['uint8'][0])!r}) "
                         f"and 16-bit files ({len(depths['uint16'])}, e.g. {str(depths['uint16'][0])!r}); "
                         "store them all at one bit depth.")
    if not values:
        return None
    lo, hi = (float(v) for v in np.percentile(np.concatenate(values), WINDOW_PERCENTILES))
    if hi <= lo:
        raise InputError(f"the 16-bit training images are flat: the {WINDOW_PERCENTILES[0]} and "
                         f"{WINDOW_PERCENTILES[1]} percentiles of their values are both {lo:g}. Check the files.")
    return lo, hi


def imread_quiet(path: Path, flags: int, what: str = "image") -> np.ndarray:
    """``cv2.imread`` without the decoders' own messages on the console: an error (InputError)
    when the file is missing, empty or does not decode, naming the file and the decoder's reason;
    a warning when it decodes but the decoder complained (a truncated JPEG decodes, grey below
    the cut)."""
    if not path.is_file():
        raise InputError(f"cannot decode the {what} {str(path)!r}: the file is missing. Check the path.")
    if path.stat().st_size == 0:
        raise InputError(f"cannot decode the {what} {str(path)!r}: the file is empty (0 bytes). Replace or "
                         "remove it.")
    with decoder_messages() as said:
        img = cv2.imread(str(path), flags)
    reason = f" (the decoder says: {said[0]})" if said else ""
    if img is None:
        raise InputError(f"cannot decode the {what} {str(path)!r}: the file is corrupt or not an image"
                         f"{reason}. Replace or remove it.")
    if said:
        warn(f"the {what} {str(path)!r} decodes with a complaint{reason}: it may be truncated or damaged, "
             "and is used as decoded. Check it.")
    return img


_FD_LOCK = threading.Lock()


@contextlib.contextmanager
def decoder_messages():
    """Keep what image decoders print to the console while the block runs, instead of showing
    it: OpenCV's log (``[ WARN:0@...] global loadsave.cpp ...``) is set silent, and what the C
    libraries write to file descriptor 2 themselves (libjpeg's "Premature end of JPEG file",
    libpng's errors) goes to a temporary file. Yields a list that receives those lines when the
    block ends. Both are restored after, also on an error. Descriptor 2 is the process's: other
    threads' output during a decode (milliseconds) lands in that file too."""
    said: list[str] = []
    log = cv2.utils.logging
    with _FD_LOCK, contextlib.ExitStack() as stack:
        saved = f = None
        try:
            f = stack.enter_context(tempfile.TemporaryFile())
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no temporary file or no descriptor 2: OpenCV's log only
            pass
        level = log.getLogLevel()
        log.setLogLevel(log.LOG_LEVEL_SILENT)
        try:
            if saved is not None:
                os.dup2(f.fileno(), 2)
            yield said
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
                f.seek(0)
                said += [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
            log.setLogLevel(level)


def convert(img: np.ndarray, channels: int, size: int | None = None) -> np.ndarray:
    """A decoded image as uint8 (H, W, channels), RGB order, optionally resized to size x size.

    Area interpolation when shrinking (it averages, like the data's own downsampling), bilinear
    when enlarging.
    """
    gray = img.ndim == 2
    if channels == 1:
        img = img if gray else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB if gray else cv2.COLOR_BGR2RGB)
    if size is not None and img.shape[:2] != (size, size):
        shrink = img.shape[0] > size or img.shape[1] > size
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return img.reshape(img.shape[0], img.shape[1], channels)


def read_image(path: str | Path, channels: int = 3, size: int | None = None,
               window: tuple[float, float] | None = None) -> np.ndarray:
    """Decode an image file to uint8 (H, W, channels), RGB order, optionally resized."""
    return convert(decode(path, window), channels, size)


def output_folder(path: str | Path, flag: str = "--out") -> Path:
    """The folder a command writes to, made and checked before any work is done."""
    if not str(path).strip():
        raise InputError(f"{flag} is empty; name the folder to write to.")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {str(path)!r} is a file, not a folder; choose another {flag}.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise InputError(f"cannot write to {flag} {str(path)!r} ({err.strerror or err}); choose a writable folder.") from err
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write a file whole or not at all (a temporary name, then a rename); an OSError names the
    file, so that a full disk or a read-only folder is reported with its path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from err


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def csv_text(rows: list[list]) -> str:
    """Rows as CSV text (for write_text_atomic)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write a uint8 RGB or grayscale image (format by suffix, PNG for figures), atomically."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(Path(path).suffix or ".png", img)
    if not ok:
        raise InputError(f"OpenCV cannot encode an image as {Path(path).suffix!r} for {str(path)!r}; use .png.")
    write_bytes_atomic(path, buf.tobytes())
