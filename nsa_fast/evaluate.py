"""``python -m nsa_fast.evaluate``: the paper's evaluation protocol on a test set.

    python -m nsa_fast.evaluate --checkpoint CKPT --data ROOT --category CLASS --out DIR

Objects are fed the central crop (224 of 256) and the map is zero-padded back to 256; textures
are fed the full 256 image. Image score = mean of the map. Image AUROC, pixel AUROC over all
pixels, AU-PRO up to a false-positive rate of 0.3 as MVTec's official script computes it; F1-max
with its threshold, to compare with other tools. When the checkpoint has a stored threshold
(python -m nsa_fast.threshold, or train --holdout), the good test images it rejects and the
anomalous ones it misses.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import checkpoint, cli, thresholds, viz
from .cli import Parser
from .errors import InputError, NsaError, warn
from .io import csv_text, output_folder, write_text_atomic
from .layouts import add_layout_arg
from .model import EncoderDecoder, normalize
from .presets import Preset


def load_model(ckpt_path, device) -> tuple[EncoderDecoder, Preset, dict]:
    """The trained network (eval mode) and the preset it was trained with."""
    state = checkpoint.load(ckpt_path)
    try:
        preset = Preset(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["preset"].items()})
        model = EncoderDecoder(**state["model_args"])
        model.load_state_dict(state["model"])
    except (TypeError, RuntimeError, ValueError) as err:
        raise NsaError(f"the checkpoint {str(ckpt_path)!r} does not describe a network this version can build "
                       f"({' '.join(str(err).split())[:300]}); use a checkpoint of this nsa_fast version.") from err
    return model.to(device).eval(), preset, state


@torch.no_grad()
def anomaly_maps(model: EncoderDecoder, images: np.ndarray, preset: Preset, device, batch: int = 16) -> np.ndarray:
    """Maps (N, S, S) float32 for uint8 images (N, S, S, C) by the paper's protocol."""
    from .data import eval_input

    inputs, off = eval_input(images, preset)
    N, S = len(images), images.shape[1]
    out = np.zeros((N, S, S), np.float32)
    for i in range(0, N, batch):
        x = normalize(torch.from_numpy(inputs[i:i + batch]).to(device), preset.normalize)
        m = model.anomaly_map(x).float().cpu().numpy()  # device -> host once per batch
        out[i:i + batch, off:off + m.shape[1], off:off + m.shape[2]] = m
    return out


def evaluate(ckpt_path, root, category: str, out_dir, device=None, layout: str = "auto") -> dict:
    """Evaluate a checkpoint on the test set of ROOT/CATEGORY (in its layout, ``nsa_fast.layouts``);
    writes the reports and returns the metrics."""
    from .data import eval_size, load_images, load_masks, test_items
    from .metrics import au_pro, f1_max, image_auroc, pixel_auroc, pro_curve

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, preset, state = load_model(ckpt_path, device)
    th = stored_thresholds(ckpt_path)
    items = test_items(root, category, layout)
    out = output_folder(out_dir)  # after the checks: a refused run leaves no empty folder behind
    trained_on = state["config"].get("category")
    if trained_on != category:
        warn(f"the checkpoint was trained on class {trained_on!r} and is evaluated on {category!r}")
    size = eval_size(preset)
    images = load_images([i.path for i in items], preset, size)
    masks = load_masks(items, size)
    maps = anomaly_maps(model, images, preset, device)
    labels = np.array([i.label for i in items])
    scores = maps.reshape(len(maps), -1).mean(1)
    fpr, pro = pro_curve(maps, masks)
    metrics = {"category": category, "checkpoint": str(ckpt_path), "epoch": int(state["epoch"]) + 1,
               "n_test": len(items), "n_anomalous": int(labels.sum()),
               "image_auroc": image_auroc(scores, labels), "pixel_auroc": pixel_auroc(maps, masks),
               "au_pro_0.3": au_pro(maps, masks, PRO_LIMIT)}
    metrics["f1_max"], metrics["f1_max_threshold"] = f1_max(scores, labels)
    metrics.update(at_threshold(th, scores, labels, ckpt_path))
    for defect in sorted({i.defect for i in items if i.label}):
        keep = np.array([i.label == 0 or i.defect == defect for i in items])
        metrics[f"image_auroc/{defect}"] = image_auroc(scores[keep], labels[keep])
    metrics["heatmap_vmax"] = vmax = viz.display_max(maps)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    rows = [["path", "defect", "label", "score"]] + [[str(it.path), it.defect, it.label, f"{s:.9g}"]
                                                      for it, s in zip(items, scores)]
    write_text_atomic(out / "scores.csv", csv_text(rows))
    write_figures(out, images, masks, maps, scores, labels, items, vmax, metrics, (fpr, pro),
                  box=viz.seen_box(preset, size))
    return metrics


PRO_LIMIT = 0.3
FIGURES = ("examples.png", "roc.png", "pro.png")


def stored_thresholds(ckpt_path) -> thresholds.Thresholds | None:
    """The checkpoint's thresholds; None when it has none, or (with a warning) when they cannot be
    used: a stale file must not stop the AUROCs, which do not need it."""
    try:
        return thresholds.load_for(ckpt_path)
    except InputError as err:
        warn(f"evaluating without a threshold: {err}")
        return None


def at_threshold(th: thresholds.Thresholds | None, scores: np.ndarray, labels: np.ndarray, ckpt_path) -> dict:
    """What the stored threshold does on the test set: good images rejected, anomalous ones missed
    (defective means score > threshold, the rule predict applies)."""
    if th is None:
        return {"threshold": None}
    # float64: a float32 comparison would round the threshold onto a neighbouring score
    defective = th.defective(np.asarray(scores, np.float64))
    good, bad = labels == 0, labels == 1
    n_good, n_bad = int(good.sum()), int(bad.sum())
    false_rejects, misses = int(np.count_nonzero(defective & good)), int(np.count_nonzero(~defective & bad))
    return {"threshold": th.image, "thresholds_file": str(thresholds.path_for(ckpt_path)),
            "false_rejects": false_rejects, "n_good": n_good, "false_reject_rate": false_rejects / n_good,
            "misses": misses, "miss_rate": misses / n_bad}


def write_figures(out: Path, images, masks, maps, scores, labels, items, vmax, metrics, curve, box=None) -> None:
    """examples.png (Figure 2 with captions and a colour scale; ``box``: the central crop the network
    sees, marked on the maps), roc.png and pro.png."""
    from .io import write_image

    names = [f"{it.defect}/{it.path.name}" for it in items]
    write_image(out / "examples.png", viz.examples_figure(images, masks, maps, scores, names,
                                                          viz.example_picks(labels), vmax, box=box))
    viz.roc_figure(out / "roc.png", scores, labels, maps, masks, (metrics["image_auroc"], metrics["pixel_auroc"]))
    viz.pro_figure(out / "pro.png", *curve, PRO_LIMIT, metrics["au_pro_0.3"])


ROWS = (("image_auroc", "image AUROC", "tells anomalous from good images by the image score (mean of the map)"),
        ("pixel_auroc", "pixel AUROC", "tells defect pixels from normal ones by the map, over all test pixels"),
        ("au_pro_0.3", "AU-PRO@0.3", "mean overlap with each defect region, up to 30 % false positive pixels"))


def results_table(metrics: dict, outputs: list[tuple[str, Path, str]]) -> str:
    """What a person reads at the end of a run: the metrics as percentages with what each means,
    F1-max and its threshold, the stored threshold's false rejects and misses (or how to set one),
    the image AUROC per defect type, and where every output file is."""
    lines = [(f"Results on {metrics['category']!r}: {metrics['n_test']} test images "
              f"({metrics['n_anomalous']} anomalous), checkpoint of epoch {metrics['epoch']}")]
    lines += [f"  {name:<12} {100 * metrics[key]:5.1f} %   {meaning}" for key, name, meaning in ROWS]
    lines.append(f"  {'F1-max':<12} {100 * metrics['f1_max']:5.1f} %   best F1 over all thresholds, at score >= "
                 f"{metrics['f1_max_threshold']:.6g}; chosen on these test labels: to compare tools, not to deploy")
    lines += threshold_rows(metrics)
    per = [(k.split("/", 1)[1], v) for k, v in metrics.items() if k.startswith("image_auroc/")]
    if per:
        lines.append("  image AUROC per defect: " + ", ".join(f"{d} {100 * v:.1f} %" for d, v in per))
    width = max(len(n) for n, _, _ in outputs)
    lines.append("Outputs:")
    lines += [f"  {name:<{width}}  {path}  ({what})" for name, path, what in outputs]
    return "\n".join(lines)


def threshold_rows(metrics: dict) -> list[str]:
    """The stored threshold's false rejects and misses, or how to set one."""
    m = metrics
    if m.get("threshold") is None:
        return [(f"  no stored threshold: set one with python -m nsa_fast.threshold --checkpoint {m['checkpoint']} "
                 "--normals DIR (or train with --holdout)")]
    rejected = (f"{m['false_rejects']} of {m['n_good']} good images rejected at the stored threshold "
                f"(score > {m['threshold']:.6g}, {Path(m['thresholds_file']).name})")
    missed = f"{m['misses']} of {m['n_anomalous']} anomalous images passed as good at that threshold"
    return [f"  {'false reject':<12} {100 * m['false_reject_rate']:5.1f} %   {rejected}",
            f"  {'missed':<12} {100 * m['miss_rate']:5.1f} %   {missed}"]


def eval_outputs(out: Path) -> list[tuple[str, Path, str]]:
    out = Path(out)
    return [("metrics.json", out / "metrics.json",
             "every figure, for programs: per-defect AUROCs, F1-max, rates at the stored threshold"),
            ("scores.csv", out / "scores.csv", "the score of each test image, with its defect type and label"),
            ("examples.png", out / "examples.png", "inputs, ground truth, anomaly maps"),
            ("roc.png", out / "roc.png", "image and pixel ROC curves"),
            ("pro.png", out / "pro.png", f"PRO curve up to FPR {PRO_LIMIT}")]


def help_text() -> str:
    """The module's description for --help, with every file it writes, one line each."""
    outputs = eval_outputs(Path("DIR"))
    width = max(len(str(p)) for _, p, _ in outputs)
    files = "\n".join(f"  {p!s:<{width}}  {what}" for _, p, what in outputs)
    return f"{__doc__.rstrip()}\n\nWrites, into --out DIR:\n{files}\n\nExit codes: 0 success, 2 bad input, 130 Ctrl-C.\n"


def main(argv=None) -> int:
    return cli.run(_main, argv)


def _main(argv) -> int:
    ap = Parser(prog="python -m nsa_fast.evaluate", description=help_text())
    ap.add_argument("--checkpoint", required=True, help="last.pt of a training run")
    ap.add_argument("--data", required=True, help="dataset root (see --layout) or 'demo'")
    add_layout_arg(ap)
    ap.add_argument("--category", required=True, help="class folder under --data with a test set")
    ap.add_argument("--out", required=True, help="folder for metrics.json, scores.csv and the figures")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where the network runs (auto: CUDA when visible)")
    a = ap.parse_args(argv)
    from .demo import resolve_root

    return report(a.checkpoint, resolve_root(a.data), a.category, a.out, pick_eval_device(a.device), layout=a.layout)


def pick_eval_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise NsaError("--device cuda: no CUDA GPU is visible; use --device cpu (or auto).")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def report(ckpt_path, root, category: str, out_dir, device=None, more_outputs=(), layout: str = "auto") -> int:
    """Evaluate and print the results table; exit code 0 (errors propagate to the CLI)."""
    metrics = evaluate(ckpt_path, root, category, out_dir, device, layout)
    print(results_table(metrics, [*more_outputs, *eval_outputs(out_dir)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
