"""``python -m nsa_fast.synth``: synthetic anomalies of a class as a PNG grid, an .npz and stats."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from . import cli
from .blend.pick import SOLVER_NAMES
from .cli import Parser, positive_int, seed_int
from .errors import InputError
from .labels import get_label_type, label_names
from .layouts import add_layout_arg
from .presets import Preset, add_preset_args, resolve_preset
from .sampler import TASKS, Stats
from .synthesis import SyntheticDataset, sample_keys
from .viz import synthetic_grid

GRID_COLUMNS = 8  # the PNG shows the first samples side by side; the .npz holds all of them


def batched_items(images: np.ndarray, preset: Preset, task: str, label: str, seed: int, n: int,
                  solver: str, device: str) -> tuple[list[dict], Stats]:
    """The first n samples made by the batched executor (the --synth device path), as items like
    SyntheticDataset's (the same plans from the same generators, blended on ``device``), and
    the sampler's Stats."""
    import torch

    from .blend.pick import pick_solver
    from .pipelines import BatchedPipeline

    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is visible; use --device cpu (or auto).")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    N = len(images)
    pipe = BatchedPipeline(images, preset, task, label, seed, min(n, N), dev, solver=pick_solver(solver, dev))
    items, stats = [], Stats()
    for epoch in range(-(-n // N)):  # sample i is (epoch i // N, index i % N), as in sample_keys
        originals, batch, s = pipe.sample(epoch, np.arange(min(N, n - epoch * N)))
        stats += s
        host = [t.cpu().numpy() for t in (originals, batch.images, batch.labels, batch.boxes)]
        items += [{"original": o, "image": i, "label": lab, "boxes": b} for o, i, lab, b in zip(*host)]
    stats.empty_labels = sum(not it["label"].any() for it in items)
    return items, stats


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, argv)


def _main(argv) -> int:
    from .demo import resolve_root
    from .data import load_images, train_files
    from .io import write_image

    ap = Parser(prog="python -m nsa_fast.synth",
                description="Write synthetic anomalies of a class as a PNG grid and an .npz.")
    ap.add_argument("--data", required=True,
                    help="dataset root in the MVTec layout (ROOT/CLASS/train/good), or 'demo' for the "
                         "built-in demo data (category demo)")
    add_layout_arg(ap)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("-n", "--num", dest="n", type=positive_int, default=16,
                    help="number of samples; more than the training images draws further epochs")
    ap.add_argument("--task", default="nsa", choices=sorted(TASKS), help="self-supervised task")
    ap.add_argument("--label", choices=label_names(), help="label mode (default: the task's)")
    ap.add_argument("--seed", type=seed_int, default=0, help="seeds every sample")
    ap.add_argument("--solver", choices=SOLVER_NAMES,
                    help="make the samples with the batched executor and this Poisson solver (CUDA "
                         "kernels on a GPU) instead of OpenCV's seamlessClone (the default)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where the batched executor runs with --solver (auto: CUDA when visible)")
    add_preset_args(ap)
    args = ap.parse_args(argv)
    if args.device != "auto" and args.solver is None:
        ap.error(f"--device {args.device} applies to the batched executor: add --solver (e.g. --solver auto); "
                 "without it OpenCV makes the samples on the CPU")
    preset = resolve_preset(args)
    images = load_images(train_files(resolve_root(args.data), args.category, args.layout), preset, preset.image_size)
    ds = SyntheticDataset(list(images), preset, args.task, args.label, args.seed)
    n = args.n
    if n > len(ds):
        print(f"note: {n} samples from {len(ds)} training images: each image is the destination of "
              f"{-(-n // len(ds))} samples at most, with fresh draws each time")
    if args.solver is None:
        items, stats = [ds[k] for k in sample_keys(n, len(ds))], ds.stats
    else:
        items, stats = batched_items(images, preset, args.task, ds.label_mode, args.seed, n, args.solver,
                                     args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = np.stack([it["label"] for it in items])
    kind = get_label_type(ds.label_mode)
    originals = np.stack([it["original"] for it in items])
    rows = min(n, GRID_COLUMNS)
    grid = synthetic_grid(originals[:rows], [it["image"] for it in items[:rows]], labels[:rows], kind.vmax,
                          kind.scale_name)
    write_image(out / "synthetic.png", grid)
    np.savez_compressed(out / "synthetic.npz", images=np.stack([it["image"] for it in items]),
                        originals=originals, labels=labels,
                        boxes=np.stack([it["boxes"] for it in items]))
    nonempty = int((labels.reshape(n, -1) > 0).any(axis=1).sum())
    summary = {"preset": preset.name, "task": args.task, "label": ds.label_mode, "samples": n,
               "executor": "opencv" if args.solver is None else f"batched ({args.solver})",
               "nonempty_labels": nonempty, "tried": stats.tried, "accepted": stats.accepted,
               "skipped": stats.skipped, "rejected_source_tries": stats.rejected_source_tries,
               "rejected_destination_tries": stats.rejected_destination_tries,
               "empty_labels": stats.empty_labels, "label_retries": stats.label_retries}
    (out / "stats.json").write_text(json.dumps(summary, indent=2))
    print(f"preset {preset.name}, task {args.task}, label {ds.label_mode}, executor {summary['executor']}")
    print(stats.summary())
    print(f"non-empty labels: {nonempty}/{n}; wrote {out / 'synthetic.png'} and {out / 'synthetic.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
