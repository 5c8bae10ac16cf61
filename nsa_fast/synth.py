"""Synthetic anomalies from a set of normal images, and ``python -m nsa_fast.synth``.

Randomness: each sample draws from its own generator seeded by (seed, epoch, index), so a sample
does not depend on which DataLoader worker makes it, nor on how many workers there are.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from . import cli
from .blend.opencv import Synthetic, execute_plan
from .cli import Parser, positive_int, seed_int
from .errors import InputError, check_image
from .presets import LABEL_MODES, Preset, add_preset_args, resolve_preset
from .sampler import Stats, Task, TASKS, get_task, object_mask, sample_plan
from .transforms import Augment, apply_augment, check_size, draw_augment
from .viz import synthetic_grid
from .blend.solvers import SOLVER_NAMES


def pick_source(rng: np.random.Generator, index: int, n: int, same: bool) -> int:
    """Any image but the destination (the destination itself for same-image tasks)."""
    if same or n < 2:
        return index
    j = int(rng.integers(n - 1))
    return j + (j >= index)


def draw_pair(rng: np.random.Generator, index: int, n: int, shape: tuple[int, int], preset: Preset,
              same: bool, augment: bool = True) -> tuple[int, Augment | None, Augment | None]:
    """A sample's source image and the two transforms, drawn in the one order every pipeline uses
    (source, destination transform, source transform; the plan is drawn after), so the CPU and
    device pipelines make the same samples from the same generator."""
    j = pick_source(rng, index, n, same)
    if not augment:
        return j, None, None
    dst_aug = draw_augment(preset, shape, rng)
    return j, dst_aug, dst_aug if j == index else draw_augment(preset, shape, rng)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample; independent streams for distinct (seed, epoch, index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))


def synthesize(dst: np.ndarray, src: np.ndarray, preset: Preset, task: Task, label_mode: str,
               rng: np.random.Generator, dst_obj=None, src_obj=None) -> tuple[Synthetic, Stats]:
    """One synthetic sample on the CPU (OpenCV executor).

    dst, src: uint8 (H, W, C) of the same shape (src is ignored when the task takes its patch from
    dst). Object masks are computed from the images when the preset has a background and they are
    not given. With ``preset.ensure_label`` > 0, a sample whose label is empty is drawn again up to
    that many times; what happened is counted in the returned stats.
    """
    dst = check_image(dst, "destination image")
    src = dst if task.same_source else check_image(src, "source image")
    if preset.uses_object_masks:
        dst_obj = object_mask(dst, preset.background) if dst_obj is None else dst_obj
        src_obj = dst_obj if task.same_source else (
            object_mask(src, preset.background) if src_obj is None else src_obj)
    else:
        dst_obj = src_obj = None
    total = Stats()
    for attempt in range(preset.ensure_label + 1):
        plan = sample_plan(dst.shape[:2], preset, task, rng, src_obj, dst_obj)
        total += plan.stats
        total.samples -= attempt > 0  # a retry is not another sample
        out = execute_plan(dst, src, plan, label_mode, logistic=preset.logistic,
                           label_tol=preset.label_tol, src_obj=src_obj, dst_obj=dst_obj)
        if out.label.any():
            return out, total
        if attempt < preset.ensure_label:
            total.label_retries += 1
    total.empty_labels += 1
    return out, total


class SyntheticDataset:
    """Synthetic samples from a list of equally sized uint8 images (a torch-style map dataset).

    Item i uses image i as destination and another image, drawn by the sample's own generator, as
    source; with ``augment`` each gets its own draw of the preset's training transform first.
    Items are dicts of numpy arrays: image uint8 (h, w, C), original (the transformed destination),
    label float32 (h, w), boxes int32 (n_max, 4) padded with -1, index, and stats (the sample's
    ``Stats.to_array()``, which survives a DataLoader worker where ``self.stats`` does not).
    """

    def __init__(self, images: list[np.ndarray], preset: Preset, task: str = "nsa",
                 label_mode: str | None = None, seed: int = 0, augment: bool = True):
        if not images:
            raise InputError("no images were given; a synthetic dataset needs at least one.")
        self.images = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        shapes = {im.shape for im in self.images}
        if len(shapes) > 1:
            raise InputError(f"all images must have one shape, got {sorted(shapes)}; resize them first.")
        self.task = get_task(task)
        self.label_mode = label_mode or self.task.default_label
        if self.label_mode not in LABEL_MODES:
            raise InputError(f"label mode must be one of {LABEL_MODES}, got {self.label_mode!r}.")
        self.preset, self.seed, self.epoch, self.augment = preset, int(seed), 0, augment
        if augment:
            check_size(self.images[0], preset, "the images")
            self.masks = [None] * len(self.images)  # computed after each draw of the transform
        else:
            self.masks = [object_mask(im, preset.background) for im in self.images]
        self.stats = Stats()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key) -> dict:
        """key: an index (this dataset's epoch), or (epoch, index) from a keyed batch sampler,
        which reaches worker processes where set_epoch would not."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        rng = sample_rng(self.seed, epoch, index)
        dst = self.images[index]
        j, dst_aug, src_aug = draw_pair(rng, index, len(self.images), dst.shape[:2], self.preset,
                                        self.task.same_source, self.augment)
        src = self.images[j]
        if self.augment:
            dst = apply_augment(dst, self.preset, dst_aug)
            src = dst if j == index else apply_augment(src, self.preset, src_aug)
        out, stats = synthesize(dst, src, self.preset, self.task, self.label_mode, rng,
                                self.masks[index], self.masks[j])
        self.stats += stats
        boxes = np.full((self.preset.n_max, 4), -1, np.int32)
        boxes[:len(out.boxes)] = out.boxes
        return {"image": out.image, "original": dst, "label": out.label, "boxes": boxes,
                "index": index, "stats": stats.to_array()}


GRID_COLUMNS = 8  # the PNG shows the first samples side by side; the .npz holds all of them


def batched_items(images: np.ndarray, preset: Preset, task: str, label: str, seed: int, n: int,
                  solver: str, device: str) -> tuple[list[dict], Stats]:
    """The first n samples made by the batched executor (the --gpu-blend path), as items like
    SyntheticDataset's (the same plans from the same generators, blended on ``device``), and
    the sampler's Stats."""
    import torch

    from .blend.solvers import pick_solver
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


def sample_keys(n: int, n_images: int) -> list[tuple[int, int]]:
    """The (epoch, index) keys of n samples: each image in turn is the destination, and past the
    last image the next epoch's draws begin, so every sample is distinct."""
    return [(i // n_images, i % n_images) for i in range(n)]


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
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("-n", "--num", dest="n", type=positive_int, default=16,
                    help="number of samples; more than the training images draws further epochs")
    ap.add_argument("--task", default="nsa", choices=sorted(TASKS), help="self-supervised task")
    ap.add_argument("--label", choices=LABEL_MODES, help="label mode (default: the task's)")
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
    images = load_images(train_files(resolve_root(args.data), args.category), preset, preset.image_size)
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
    vmax = 255.0 if ds.label_mode == "intensity" else 1.0
    originals = np.stack([it["original"] for it in items])
    rows = min(n, GRID_COLUMNS)
    grid = synthetic_grid(originals[:rows], [it["image"] for it in items[:rows]], labels[:rows], vmax,
                          "intensity" if ds.label_mode == "intensity" else "label")
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
