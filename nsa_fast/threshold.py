"""``python -m nsa_fast.threshold``: decision thresholds from normal images the model never saw.

    python -m nsa_fast.threshold --checkpoint CKPT --normals DIR [--false-reject 0.01]
    python -m nsa_fast.threshold --checkpoint CKPT            # the run's --holdout / validation images

The image threshold is the score at the asked false-reject rate on those normals (an image is
defective when its score, the mean of its anomaly map, lies above it), with a bootstrap 95 %
interval for the rate it will have on new normal images; the pixel threshold marks defect pixels
at the asked rate of false positive pixels. Both are written to CKPT's <stem>.thresholds.json
(last.pt -> last.thresholds.json), which predict, evaluate and the ONNX export then use.
Exit codes: 0 success, 2 bad input.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import cli, thresholds
from .cli import Parser
from .errors import InputError, warn

TRAIN_SAMPLE = 32       # training images scored to see whether the normals look like them
UNUSUAL = 0.5           # share of the normals above every training image's score that is suspicious
AUTO_MIN_IMAGES = 20    # held-out images below which training sets no threshold itself (a rate of 5 %)


def score_images(model, preset, files: list[Path], device) -> tuple[np.ndarray, np.ndarray]:
    """Image scores (N,) and the map values of the pixels defect masks may mark (``thresholds.mask_region``)."""
    from .data import eval_size, load_images
    from .evaluate import anomaly_maps
    from .viz import seen_box

    size = eval_size(preset)
    maps = anomaly_maps(model, load_images(files, preset, size), preset, device)
    return maps.reshape(len(maps), -1).mean(1), maps[:, thresholds.mask_region(seen_box(preset, size), size)]


def run_config(ckpt: Path) -> dict | None:
    path = Path(ckpt).parent / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def held_out(ckpt: Path) -> list[Path]:
    """The normal images the run kept out of training: --holdout's and the layout's validation set."""
    cfg = run_config(ckpt) or {}
    return [Path(p) for p in cfg.get("holdout_files", []) + cfg.get("validation_files", [])]


def training_files(ckpt: Path) -> list[Path] | None:
    """The images the checkpoint was trained on, when its run folder and data can still be read."""
    from .demo import resolve_root
    from .errors import NsaError
    from .layouts import open_dataset

    cfg = run_config(ckpt)
    if not cfg or "config" not in cfg:
        return None
    c = cfg["config"]
    root = cfg.get("data_root") or c.get("data")  # data_root: absolute, so any working folder finds it
    try:
        files = open_dataset(resolve_root(root), c["category"], c.get("layout", "auto")).train
    except (NsaError, KeyError, OSError, TypeError):
        print(f"note: the training images of {str(ckpt)!r} (data {root!r}) cannot be read from here, so the normal "
              "images are not checked against them")
        return None
    kept = {Path(p).resolve() for p in cfg.get("holdout_files", [])}
    return [f for f in files if f.resolve() not in kept]


def check_unseen(files: list[Path], trained_on: list[Path] | None) -> None:
    """Refuse normal images the model trained on, by content: a copy under another name too."""
    if trained_on is None:
        return
    known = {thresholds.file_sha256(f) for f in trained_on}
    seen = [f for f in files if thresholds.file_sha256(f) in known]
    if seen:
        raise InputError(f"{len(seen)} of the {len(files)} normal images were trained on (e.g. {str(seen[0])!r}, the "
                         "same file content); a model scores its training images lower than new ones, so the "
                         "threshold would reject too many good parts. Give normal images kept out of training (train "
                         "with --holdout).")


def check_usual(scores: np.ndarray, reference: np.ndarray | None) -> None:
    """Warn when the normals score above every training image in large numbers: a folder with
    defective parts in it, or images unlike the training set (another product, camera, light)."""
    if reference is None or not len(reference):
        return
    above = float((scores > reference.max()).mean())
    if above > UNUSUAL:
        warn(f"{100 * above:.0f} % of the normal images score above every one of {len(reference)} training images "
             f"(median {np.median(scores):.4g} against at most {reference.max():.4g}): are they all good parts, taken "
             "as the training images were? Defective images among them raise the threshold, and misses with it.")


def set_thresholds(ckpt: Path, files: list[Path], source: str, false_reject: float, false_positive_pixels: float,
                   device=None, overwrite: bool = False, given: bool = True) -> thresholds.Thresholds:
    """Thresholds on ``files``, saved beside ``ckpt``. ``given``: the images come from the user, so
    check them against the training images and warn of a wide interval; the run's own held-out
    images at the end of training need neither."""
    from .evaluate import load_model

    ckpt = Path(ckpt)
    thresholds.check_rate(false_reject, "--false-reject")
    thresholds.check_rate(false_positive_pixels, "--false-positive-pixels")
    thresholds.check_enough(len(files), false_reject, "images", "--false-reject")
    trained_on = training_files(ckpt) if given else None
    check_unseen(files, trained_on)
    out = thresholds.path_for(ckpt)
    if out.exists() and not overwrite:
        raise InputError(f"{str(out)!r} exists; pass --overwrite to replace it.")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, preset, _ = load_model(ckpt, device)
    scores, pixels = score_images(model, preset, files, device)
    reference = None
    if trained_on:
        pick = np.random.default_rng(0).permutation(len(trained_on))[:TRAIN_SAMPLE]
        reference = score_images(model, preset, [trained_on[i] for i in sorted(pick)], device)[0]
    check_usual(scores, reference)
    th = thresholds.make(scores, pixels, ckpt, source, false_reject, false_positive_pixels)
    if given and th.n_images * th.false_reject < thresholds.FEW_ABOVE:
        warn(f"only {round(th.achieved * th.n_images)} of {th.n_images} normal images lie above the threshold: the rate "
             f"on new images is known only to {100 * th.interval[0]:.2f}-{100 * th.interval[1]:.2f} %; "
             f"{thresholds.least_images(th.false_reject) * thresholds.FEW_ABOVE} normal images would narrow it.")
    thresholds.save(th, ckpt)
    return th


def thresholds_after_training(ckpt: Path, files: list[Path], device) -> tuple[str, Path, str] | None:
    """Thresholds on the run's held-out normals at the default rates, or at the smallest false-reject
    rate they support down to AUTO_MIN_IMAGES of them; the run's outputs line for them (None: too
    few images, said in a note)."""
    if len(files) < AUTO_MIN_IMAGES:
        print(f"note: {len(files)} held-out normal images are too few for a threshold (a false-reject rate of 1/"
              f"{len(files)} would be guessed from one image); none is set. Hold out {AUTO_MIN_IMAGES} or more, or "
              f"set one later: python -m nsa_fast.threshold --checkpoint {ckpt} --normals DIR")
        return None
    rate = max(thresholds.DEFAULT_FALSE_REJECT, 1 / len(files))
    if rate > thresholds.DEFAULT_FALSE_REJECT:
        print(f"note: {len(files)} held-out normal images support false-reject rates down to {100 * rate:.3g} %, "
              f"not {100 * thresholds.DEFAULT_FALSE_REJECT:g} %; the threshold is set there")
    th = set_thresholds(ckpt, files, thresholds.HELD_OUT, rate,
                        thresholds.DEFAULT_FALSE_POSITIVE_PIXELS, device, overwrite=True, given=False)
    print(th.describe())
    path = thresholds.path_for(ckpt)
    return path.name, path, "image and pixel thresholds for predict, evaluate and the export"


def main(argv=None) -> int:
    return cli.run(_main, argv)


def _main(argv) -> int:
    from .evaluate import pick_eval_device
    from .inputs import collect

    ap = Parser(prog="python -m nsa_fast.threshold", description=__doc__)
    ap.add_argument("--checkpoint", required=True, help="last.pt of a training run")
    ap.add_argument("--normals", nargs="+", metavar="PATH",
                    help="normal images or folders the model never saw (default: the run's --holdout and validation "
                         "images, listed in its config.json)")
    ap.add_argument("--false-reject", type=cli.rate, default=thresholds.DEFAULT_FALSE_REJECT,
                    help="share of good parts the image threshold may reject")
    ap.add_argument("--false-positive-pixels", type=cli.rate, default=thresholds.DEFAULT_FALSE_POSITIVE_PIXELS,
                    help="share of good pixels the defect masks may mark")
    ap.add_argument("--overwrite", action="store_true", help="replace the checkpoint's thresholds file")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where the network runs (auto: CUDA when visible)")
    a = ap.parse_args(argv)
    ckpt = Path(a.checkpoint)
    if a.normals:
        files, source = collect(a.normals), " ".join(str(Path(n).resolve()) for n in a.normals)
    else:
        files, source = held_out(ckpt), thresholds.HELD_OUT
        if not files:
            raise InputError(f"no normal images to set thresholds on: the run of {str(ckpt)!r} kept none out of training. "
                             "Give --normals DIR (good parts the model never saw), or train with --holdout 0.2.")
    th = set_thresholds(ckpt, files, source, a.false_reject, a.false_positive_pixels, pick_eval_device(a.device),
                        a.overwrite)
    print(th.describe())
    print(f"Wrote {thresholds.path_for(ckpt)}. predict now decides: python -m nsa_fast.predict --checkpoint {ckpt} "
          "IMAGES --out DIR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
