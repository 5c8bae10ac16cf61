"""``python -m nsa_fast.predict``: anomaly maps for new images, no ground truth needed.

    python -m nsa_fast.predict --checkpoint CKPT PATH [PATH ...] --out DIR
    python -m nsa_fast.predict --checkpoint CKPT --export onnx --out DIR

Images or folders in; DIR/<name>_heatmap.png (the map over the image) and DIR/scores.csv (image
score = mean of the map, as in evaluation, and the map's maximum) out. ``--export onnx`` writes
DIR/model.onnx mapping a normalised (B, C, H, W) float32 batch to (B, H, W) maps.
Exit codes: 0 success, 2 bad input.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from .errors import InputError, NsaError
from .io import IMAGE_SUFFIXES, list_images


def collect(paths: list[str]) -> list[Path]:
    """Image files named directly or found in the folders named; an error for anything else."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += list_images(p)
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
        else:
            raise InputError(f"{str(p)!r} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a folder.")
    return files


class MapModel(torch.nn.Module):
    """The exported graph: normalised input -> anomaly map."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.anomaly_map(x)


def export_onnx(model, preset, path: Path) -> Path:
    """ONNX with a dynamic batch axis; input (B, C, crop, crop), already normalised."""
    x = torch.zeros(1, preset.channels, preset.crop, preset.crop)
    torch.onnx.export(MapModel(model).eval(), (x,), str(path), input_names=["image"], output_names=["map"],
                      dynamic_axes={"image": {0: "batch"}, "map": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    return path


def predict(ckpt, paths: list[str], out_dir, device=None) -> list[tuple[Path, float, float]]:
    from .data import eval_size, load_images
    from .evaluate import anomaly_maps, display_max, heatmap_overlay, load_model
    from .io import write_image

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, preset, _ = load_model(ckpt, device)
    files = collect(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = load_images(files, preset, eval_size(preset))
    maps = anomaly_maps(model, images, preset, device)
    vmax = display_max(maps)
    rows = []
    for f, img, m in zip(files, images, maps):
        write_image(out / f"{f.stem}_heatmap.png", heatmap_overlay(img, m, vmax))
        rows.append((f, float(m.mean()), float(m.max())))
    with open(out / "scores.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "score", "max"])
        w.writerows([(str(f), f"{s:.6g}", f"{mx:.6g}") for f, s, mx in rows])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nsa_fast.predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("paths", nargs="*", help="images or folders of images")
    ap.add_argument("--out", required=True)
    ap.add_argument("--export", choices=("onnx",), help="write the model as ONNX instead of predicting")
    a = ap.parse_args(argv)
    try:
        if a.export:
            from .evaluate import load_model

            model, preset, _ = load_model(a.checkpoint, torch.device("cpu"))
            Path(a.out).mkdir(parents=True, exist_ok=True)
            print(f"wrote {export_onnx(model, preset, Path(a.out) / 'model.onnx')}")
            return 0
        if not a.paths:
            raise InputError("give images or folders to predict on (or --export onnx).")
        rows = predict(a.checkpoint, a.paths, a.out)
    except NsaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(rows)} images; heatmaps and scores.csv in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
