"""``python -m nsa_fast.predict``: anomaly maps for new images, no ground truth needed.

    python -m nsa_fast.predict --checkpoint CKPT PATH [PATH ...] --out DIR
    python -m nsa_fast.predict --checkpoint CKPT --export onnx --out DIR

Images or folders in; DIR/<name>_heatmap.png (at the input's own size: the input beside the map
over it, a colour bar, and a caption with the file name, its score and the map's maximum; for
object presets a dashed box marks the central crop the network sees; inputs from several folders
keep their folders below the common one, so equal names do not collide) and DIR/scores.csv (image
score = mean of the map, as in evaluation, and the map's maximum) out. ``--export onnx`` writes
DIR/model.onnx mapping a normalised (B, C, H, W) float32 batch to (B, H, W) maps.
Exit codes: 0 success, 2 bad input.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import numpy as np
import torch

from . import cli
from .cli import Parser
from .errors import InputError, NsaError, warn
from .io import IMAGE_SUFFIXES, csv_text, list_images, output_folder, write_text_atomic


HEATMAP_SUFFIX = "_heatmap.png"


def collect(paths: list[str], exclude: Path | None = None) -> list[Path]:
    """Image files named directly or found in the folders named, each once, in order; an error
    for anything else. Heatmaps inside ``exclude`` (the output folder, which may be an input
    folder too) are skipped, so that a run never reads its own or an earlier run's heatmaps."""
    files: list[Path] = []
    skip = exclude.resolve() if exclude is not None else None
    for p in map(Path, paths):
        if p.is_dir():
            found = list_images(p)
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            found = [p]
        else:
            raise InputError(f"{str(p)!r} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a folder.")
        files += [f for f in found if skip is None or not (f.name.endswith(HEATMAP_SUFFIX)
                                                          and f.resolve().is_relative_to(skip))]
    unique = list(dict.fromkeys(f.resolve() for f in files))
    if not unique:
        raise InputError(f"no images to predict on in {paths} (outside the output folder {str(exclude)!r}).")
    return unique


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


class MapModel(torch.nn.Module):
    """The exported graph: normalised input -> anomaly map."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.anomaly_map(x)


def export_onnx(model, preset, path: Path) -> Path:
    """ONNX with a dynamic batch axis; input (B, C, crop, crop), already normalised. Uses torch's
    current exporter (torch.export, which needs onnxscript), not the deprecated TorchScript one."""
    try:
        import onnxscript  # noqa: F401  (the exporter's own dependency: fail here with advice)
    except ImportError as err:
        raise NsaError("--export onnx needs onnxscript: pip install 'nsa_fast[onnx]'") from err
    x = torch.zeros(2, preset.channels, preset.crop, preset.crop)
    batch = torch.export.Dim("batch", min=1)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its passes
        torch.onnx.export(MapModel(model).eval(), (x,), str(path), input_names=["image"], output_names=["map"],
                          dynamic_shapes={"x": {0: batch}}, dynamo=True, verbose=False,
                          external_data=False)  # one self-contained file (46 MB, far below protobuf's 2 GB)
    return path


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


def score_label(state: dict) -> str:
    """What the heatmaps' colour bar measures, by the checkpoint's label type."""
    from .heatmaps import SCORE_LABEL
    from .labels import get_label_type

    try:
        relu = get_label_type(state["config"]["label"]).head == "relu"
    except (KeyError, TypeError, NsaError):
        return "anomaly score (model output)"
    return "anomaly score (model output, grey levels)" if relu else SCORE_LABEL


def predict(ckpt, paths: list[str], out_dir, device=None,
            threshold: float | None = None) -> list[tuple[Path, float, float]]:
    """Maps, scores.csv and one heatmap figure per input (``heatmaps.heatmap_figure``, at the input's
    own size, its caption naming the file, its score and maximum as scores.csv has them, and the
    decision when ``threshold``, on the score, is given). Returns (path, score, max) per input."""
    from .data import eval_size, load_images
    from .evaluate import anomaly_maps, load_model
    from .heatmaps import heatmap_figure, score_caption, score_text
    from .io import convert, decode, write_image
    from .viz import display_max, seen_box

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, preset, state = load_model(ckpt, device)
    files = collect(paths, exclude=Path(out_dir))
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
        caption = score_caption(str(name.parent / f.name), score, top, threshold)
        write_image(out / name, heatmap_figure(shown, full, vmax, caption, shown_box, label))
        rows.append((f, score, top, name))
    write_text_atomic(out / "scores.csv", csv_text([["path", "score", "max", "heatmap"]] + [
        [str(f), score_text(s), score_text(mx), str(name)] for f, s, mx, name in rows]))
    return [r[:3] for r in rows]


def main(argv=None) -> int:
    return cli.run(_main, argv)


def _main(argv) -> int:
    ap = Parser(prog="python -m nsa_fast.predict", description=__doc__)
    ap.add_argument("--checkpoint", required=True, help="last.pt of a training run")
    ap.add_argument("paths", nargs="*", help="images or folders of images")
    ap.add_argument("--out", required=True, help="folder for the heatmaps and scores.csv (or model.onnx)")
    ap.add_argument("--export", choices=("onnx",), help="write the model as ONNX instead of predicting (default: predict)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where the network runs (auto: CUDA when visible)")
    a = ap.parse_args(argv)
    from .evaluate import load_model, pick_eval_device

    if a.export:
        if a.paths:
            warn(f"--export onnx writes the model only; the {len(a.paths)} image path(s) given are ignored")
        if a.device not in (None, "auto", "cpu"):
            warn(f"--export onnx exports on the CPU (the file runs anywhere); --device {a.device} is ignored")
        out = output_folder(a.out)
        model, preset, _ = load_model(a.checkpoint, torch.device("cpu"))
        print(f"wrote {export_onnx(model, preset, out / 'model.onnx')}")
        return 0
    if not a.paths:
        raise InputError("give images or folders to predict on (or --export onnx).")
    rows = predict(a.checkpoint, a.paths, a.out, pick_eval_device(a.device))
    print(f"{len(rows)} images; heatmaps and scores.csv in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
