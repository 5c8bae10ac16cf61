"""``python -m nsa_fast.predict``: anomaly maps for new images, no ground truth needed.

    python -m nsa_fast.predict --checkpoint CKPT PATH [PATH ...] --out DIR
    python -m nsa_fast.predict --checkpoint CKPT --export onnx --out DIR [--input-size WxH]
    python -m nsa_fast.predict --checkpoint CKPT --verify-export DIR/model.onnx PATH [PATH ...]

Images or folders in; DIR/<name>_heatmap.png (at the input's own size: the input beside the map
over it, a colour bar, and a caption with the file name, its score and the map's maximum; for
object presets a dashed box marks the central crop the network sees; inputs from several folders
keep their folders below the common one, so equal names do not collide) and DIR/scores.csv (image
score = mean of the map, as in evaluation, and the map's maximum) out. With thresholds stored for
the checkpoint (python -m nsa_fast.threshold, or train --holdout) also the decision and a
normalised score (0.5 at the threshold) per image, DIR/<name>_mask.png (255 on defect pixels) and
DIR/<name>_overlay.png (the mask's outline on the input).

``--export onnx`` writes DIR/model.onnx and DIR/model.json: a graph that takes the camera's
pixels (input ``images``: uint8, or uint16 for 16-bit training images, (N, H, W, 3) RGB or
(N, H, W) grey, of exactly the size exported) and does predict's preprocessing itself; outputs
``anomaly_map`` (N, H, W) and ``score`` (N,), and with stored thresholds ``normalized_score``,
``is_defective`` and ``defect_mask``. ``--verify-export`` runs images through it (ONNX Runtime)
and through PyTorch and reports the differences (``nsa_fast.export``).
Exit codes: 0 success, 1 the export disagrees with PyTorch, 2 bad input.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from . import cli
from .cli import Parser
from .errors import InputError, NsaError, warn
from .inputs import HEATMAP_SUFFIX, MASK_SUFFIX, OVERLAY_SUFFIX, collect, to_input_size
from .io import csv_text, output_folder, write_text_atomic


def heatmap_names(files: list[Path]) -> list[Path]:
    """Output paths relative to the output folder, one per input and all distinct: each file's
    path below the inputs' common folder, with ``_heatmap.png`` for its suffix."""
    base = Path(os.path.commonpath([str(f.parent) for f in files]))
    names = [f.parent.relative_to(base) / f"{f.stem}{HEATMAP_SUFFIX}" for f in files]
    seen: dict[Path, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    # 000.png and 000.jpg in one folder: keep the suffix in the name
    return [n if seen[n] == 1 else n.with_name(f"{f.name}{HEATMAP_SUFFIX}") for n, f in zip(names, files)]


def score_label(state: dict) -> str:
    """What the heatmaps' colour bar measures, by the checkpoint's label type."""
    from .heatmaps import SCORE_LABEL
    from .labels import get_label_type

    try:
        relu = get_label_type(state["config"]["label"]).head == "relu"
    except (KeyError, TypeError, NsaError):
        return "anomaly score (model output)"
    return "anomaly score (model output, grey levels)" if relu else SCORE_LABEL


def predict(ckpt, paths: list[str], out_dir, device=None) -> list[dict]:
    """Maps, scores.csv and one heatmap figure per input (``heatmaps.heatmap_figure``, at the input's
    own size, its caption naming the file, its score and maximum as scores.csv has them). With
    thresholds stored for the checkpoint (``python -m nsa_fast.threshold``) also the decision, the
    normalised score, a defect mask (PNG, 255 on defect pixels, at the input's size) and an overlay
    of the mask's contour on the input. Returns one row (dict of scores.csv's columns) per input."""
    from .data import eval_size, load_images
    from .evaluate import anomaly_maps, load_model
    from .heatmaps import heatmap_figure, score_caption, score_text
    from .io import convert, decode, write_image
    from .thresholds import load_for, mask_region
    from .viz import display_max, seen_box

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, preset, state = load_model(ckpt, device)
    th = load_for(ckpt)
    files = collect(paths, exclude=Path(out_dir))
    if th is None:
        print(f"note: no thresholds are stored for {str(ckpt)!r}, so scores come without decisions or defect masks; "
              f"set them on good parts the model never saw: python -m nsa_fast.threshold --checkpoint {ckpt} "
              "--normals DIR")
    out = output_folder(out_dir)  # after the checks: a refused run leaves no empty folder behind
    size = eval_size(preset)
    images = load_images(files, preset, size)
    maps = anomaly_maps(model, images, preset, device)
    vmax, box, label = display_max(maps), seen_box(preset, size), score_label(state)
    rows = []
    for f, name, m in zip(files, heatmap_names(files), maps):
        score, top = float(m.mean()), float(m.max())
        shown = convert(decode(f, preset.window), 3)  # the input as stored, its own size, in colour for the figure
        full, shown_box = to_input_size(m, shown.shape[:2], box)
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        row = {"path": str(f), "score": score_text(score)}
        norm = None if th is None else float(th.normalised(score))
        if th is not None:
            row.update(normalized_score=f"{norm:.4f}", decision="defective" if th.defective(score) else "good")
        row.update(max=score_text(top), heatmap=str(name))
        caption = score_caption(str(name.parent / f.name), score, top, None if th is None else th.image, norm)
        write_image(out / name, heatmap_figure(shown, full, vmax, caption, shown_box, label))
        if th is not None:
            mask = (full > th.pixel) & mask_region(box, size, full.shape)
            base = str(name)[:-len(HEATMAP_SUFFIX)]
            row.update(mask=f"{base}{MASK_SUFFIX}", overlay=f"{base}{OVERLAY_SUFFIX}")
            write_image(out / row["mask"], (255 * mask).astype(np.uint8))
            write_image(out / row["overlay"], contour_overlay(shown, mask))
        rows.append(row)
    columns = list(rows[0])
    write_text_atomic(out / "scores.csv", csv_text([columns] + [[r[c] for c in columns] for r in rows]))
    return rows


def contour_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The input (H, W, 3 uint8) with the defect mask tinted red and outlined in yellow, a colour
    that stands out on most products (red alone vanishes on red or brown surfaces)."""
    import cv2

    out = image.copy()
    if mask.any():
        out[mask] = (0.6 * out[mask] + 0.4 * np.array([255, 0, 0], np.float32)).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 230, 0), max(2, round(min(mask.shape) / 200)))
    return out


def main(argv=None) -> int:
    return cli.run(_main, argv)


def _main(argv) -> int:
    from .export import MAP_TOLERANCE, SCORE_TOLERANCE

    ap = Parser(prog="python -m nsa_fast.predict", description=__doc__)
    ap.add_argument("--checkpoint", required=True, help="last.pt of a training run")
    ap.add_argument("paths", nargs="*", help="images or folders of images")
    ap.add_argument("--out", help="folder for the heatmaps and scores.csv, or for model.onnx and model.json "
                                  "(no default: needed to predict and to export)")
    ap.add_argument("--export", choices=("onnx",), help="write the model as ONNX instead of predicting (default: predict)")
    ap.add_argument("--input-size", metavar="WxH",
                    help="with --export: the image size the export takes, width x height (default: the training "
                         "images' size from config.json beside the checkpoint, else the preset's evaluation size)")
    ap.add_argument("--overwrite", action="store_true", help="with --export: replace an existing DIR/model.onnx")
    ap.add_argument("--verify-export", metavar="MODEL.ONNX",
                    help="run the images given through this export (ONNX Runtime) and through PyTorch; print the "
                         "largest map and score differences and every decision that differs; exit 1 when a decision "
                         f"differs, the map by more than {MAP_TOLERANCE:g} or the score by more than "
                         f"{SCORE_TOLERANCE:g} of the map's full scale (1, or 255 for grey-level maps) (default: "
                         "predict)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where the network runs (auto: CUDA when visible)")
    a = ap.parse_args(argv)
    from . import export
    from .evaluate import pick_eval_device

    if a.export and a.verify_export:
        raise InputError("--export and --verify-export are two steps: export first, then verify the file it wrote.")
    for flag, given in (("--input-size", a.input_size), ("--overwrite", a.overwrite)):
        if given and not a.export:
            warn(f"{flag} applies to --export onnx only; it is ignored")
    if (a.export or a.verify_export) and a.device == "cuda":
        warn(f"{'--export onnx' if a.export else '--verify-export'} works on the CPU; --device cuda is ignored")
    if a.verify_export:
        if not a.paths:
            raise InputError("--verify-export needs images or folders to compare on: give them after the options.")
        if a.out:
            warn("--verify-export writes nothing; --out is ignored")
        return export.verify(a.checkpoint, a.verify_export, a.paths)
    if not a.out:
        raise InputError("give --out DIR: the folder for " + ("model.onnx." if a.export else "the heatmaps and scores.csv."))
    if a.export:
        if a.paths:
            warn(f"--export onnx writes the model only; the {len(a.paths)} image path(s) given are ignored")
        onnx_path, json_path = export.export(a.checkpoint, a.out, a.input_size, a.overwrite)
        print(f"wrote {onnx_path} and {json_path}")
        return 0
    if not a.paths:
        raise InputError("give images or folders to predict on (or --export onnx).")
    rows = predict(a.checkpoint, a.paths, a.out, pick_eval_device(a.device))
    if "decision" in rows[0]:
        bad = sum(r["decision"] == "defective" for r in rows)
        print(f"{len(rows)} images: {bad} defective, {len(rows) - bad} good at the stored thresholds; heatmaps, "
              f"defect masks, overlays and scores.csv in {a.out}")
    else:
        print(f"{len(rows)} images; heatmaps and scores.csv in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
