"""``python -m nsa_fast.train``: train the NSA encoder-decoder on normal images.

    python -m nsa_fast.train --data ROOT --category CLASS [--synth {workers,device,dali}] [--epochs N] [--out DIR]

Reads the normal training images of ROOT/CLASS (MVTec AD, MPDD, MVTec AD 2, BTAD, VisA or a generic
folder: --layout; or ``--data demo``), makes synthetic anomalies on CPU
workers or, with --synth device (--gpu-blend), on the GPU, and writes DIR/last.pt (atomically, every epoch),
DIR/log.csv, DIR/config.json and a PNG grid of inputs, labels and predictions every few epochs.
``--resume`` continues from DIR/last.pt exactly where it stopped; Ctrl-C stops a run and prints
the command that continues it. Multi-GPU: torchrun.
Exit codes: 0 success, 2 bad input or configuration, 130 stopped by Ctrl-C.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint, cli, rundir
from .cli import Parser, fraction, positive_float, positive_int, seed_int, worker_count
from .devices import all_ranks, autocast_dtype, determinism, distribute, pick_device, precision, setup_distributed
from .errors import NsaError, warn
from .io import write_text_atomic
from .model import EncoderDecoder, normalize
from .presets import Preset, add_preset_args, base_preset, check_trainable, resolve_preset
from .blend.pick import SOLVER_NAMES
from .labels import get_label_type, label_names
from .pipelines import SYNTH_CHOICES, to_training_device
from .data import check_test_set, input_size, split_holdout, with_intensity_window
from .layouts import add_layout_arg
from .progress import Logger, stats_row
from .sampler import TASKS, Stats, get_task
from .session import Progress, banner, interrupted_message, kept_out, sigint_deferred


@dataclass(frozen=True)
class TrainConfig:
    data: str
    category: str
    out: str
    layout: str = "auto"              # how --data is organised (nsa_fast.layouts)
    task: str = "nsa"
    label: str = "logistic"
    synth: str = "workers"            # where samples are made: workers, device, dali (pipelines.SYNTH_CHOICES)
    epochs: int = 320
    batch_size: int = 64
    lr: float = 1e-3
    lr_min: float = 1e-6
    seed: int = 0
    workers: int = 2
    grid_every: int = 10
    amp: str = "auto"
    device: str = "auto"
    solver: str = "auto"
    steps_per_epoch: int | None = None  # cap, for smoke runs
    stop_after: int | None = None       # epochs to run in this invocation (then --resume)
    evaluate: bool = True
    deterministic: bool = False         # deterministic algorithms: bit-for-bit runs and resumes on a GPU too
    holdout: float = 0.0                # share of the normal training images kept for thresholds


def parse_args(argv=None) -> tuple[TrainConfig, Preset, bool, bool, bool]:
    """The resolved configuration and preset, the --resume and --overwrite flags, and whether the
    number of epochs was asked for (a resumed run keeps its own otherwise)."""
    ap = Parser(prog="python -m nsa_fast.train", description=__doc__)
    ap.add_argument("--data", required=True, help="dataset root (see --layout) or 'demo'")
    add_layout_arg(ap)
    ap.add_argument("--out", default=None, help="output folder (default runs/CATEGORY-TASK-LABEL-sSEED)")
    ap.add_argument("--task", default="nsa", choices=sorted(TASKS), help="self-supervised task")
    ap.add_argument("--label", choices=label_names(), help="label mode (default: the task's; logistic for nsa)")
    ap.add_argument("--synth", choices=SYNTH_CHOICES,
                    help="where synthetic anomalies are made: workers (CPU DataLoader workers, OpenCV; the "
                         "default), device (image cache, augmentation and blending on the training device), "
                         "dali (DALI reads and augments the files each epoch, then blending on the training device)"
                         " (default: workers)")
    ap.add_argument("--gpu-blend", action="store_true",
                    help="--synth device on a CUDA GPU (refused when none is visible)")
    ap.add_argument("--epochs", type=positive_int, help="epochs (default: the preset's, e.g. 320)")
    ap.add_argument("--batch-size", type=positive_int, default=64, help="images a step (at least 2: batch norm)")
    ap.add_argument("--lr", type=positive_float, default=1e-3, help="Adam's learning rate")
    ap.add_argument("--seed", type=seed_int, default=0, help="seeds the weights and every sample")
    ap.add_argument("--workers", type=worker_count,
                    help="CPU workers making synthetic anomalies with --synth workers (DALI's threads with "
                         "--synth dali); 0: in the main process (default: min(8, CPU cores))")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where the network trains (auto: CUDA when visible)")
    ap.add_argument("--loader", choices=("memory", "dali"),
                    help="the older spelling of --synth dali (dali); memory changes nothing (default: memory)")
    ap.add_argument("--solver", choices=SOLVER_NAMES, default="auto",
                    help="Poisson solver of --synth device and dali: dst, the "
                         "direct sine-transform solve; sor and jacobi, iterative (CUDA kernels on a GPU); "
                         "auto, the fastest on the device (see README)")
    ap.add_argument("--grid-every", type=positive_int, default=10, help="write a PNG grid every N epochs")
    ap.add_argument("--amp", choices=("auto", "off", "bf16"), default="auto",
                    help="auto: bf16 on GPUs with fast bf16 (sm_80+), fp32 elsewhere (Pascal included)")
    ap.add_argument("--steps-per-epoch", type=positive_int, help="cap steps per epoch, for smoke runs (default: no cap)")
    ap.add_argument("--stop-after", type=positive_int, metavar="N",
                    help="stop after N epochs of this run (the schedule still spans --epochs); "
                         "continue later with --resume (default: run to the last epoch)")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    ap.add_argument("--holdout", type=fraction, default=0.0, metavar="FRACTION",
                    help="keep this share of the normal training images out of training (drawn by --seed, listed in "
                         "config.json); the image and pixel thresholds are set on them (and on a layout's validation "
                         "images) at the end, at 1 %% false rejects where they allow it (python -m nsa_fast.threshold "
                         "sets others). 0 keeps every image, as the paper's presets")
    ap.add_argument("--deterministic", action="store_true",
                    help="deterministic algorithms only (cuDNN without autotuning, a fixed cuBLAS workspace, a "
                         "matrix-product upsampling): the same seed gives the same weights bit for bit on the same "
                         "GPU and software, and a resumed run ends bit for bit where an uninterrupted one does. "
                         "Slower on a GPU; the CPU is deterministic either way")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    ap.add_argument("--overwrite", action="store_true",
                    help="delete the run files (last.pt, log.csv, grids, eval/) already in --out first")
    add_preset_args(ap)
    a = ap.parse_args(argv)
    if a.batch_size < 2:
        ap.error(f"--batch-size must be at least 2 (batch norm needs two images a step), got {a.batch_size}")
    preset = resolve_preset(a)
    check_trainable(preset)
    epochs_given = a.epochs is not None or preset.epochs != base_preset(a).epochs
    if a.epochs is not None:
        preset = preset.replace(epochs=a.epochs)
    synth = resolve_synth(ap, a)
    label = a.label or get_task(a.task).default_label
    out = a.out or f"runs/{a.category}-{a.task}-{label}-s{a.seed}"
    cfg = TrainConfig(data=a.data, category=a.category, out=out, layout=a.layout, task=a.task, label=label,
                      synth=synth, epochs=preset.epochs,
                      batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                      workers=min(8, os.cpu_count() or 1) if a.workers is None else a.workers,
                      grid_every=a.grid_every, amp=a.amp, device=a.device,
                      solver=a.solver, steps_per_epoch=a.steps_per_epoch,
                      stop_after=a.stop_after, evaluate=not a.no_eval, deterministic=a.deterministic,
                      holdout=a.holdout)
    return cfg, preset, a.resume, a.overwrite, epochs_given


def resolve_synth(ap, a) -> str:
    """The one choice of where samples are made, from --synth and its aliases (--gpu-blend: on a
    CUDA GPU, device unless dali is asked for; --loader dali: dali). The default is CPU workers."""
    if a.gpu_blend and a.synth == "workers":
        ap.error("--gpu-blend makes samples on the GPU and --synth workers on CPU workers; give one of them")
    if a.loader == "dali" and a.synth not in (None, "dali"):
        ap.error(f"--loader dali means --synth dali, which contradicts --synth {a.synth}; give one of them")
    if a.gpu_blend:
        if not torch.cuda.is_available():
            raise NsaError("--gpu-blend needs a CUDA GPU and none is visible (torch.cuda.is_available() is "
                           "False). Run without --gpu-blend: synthetic anomalies are then made on CPU "
                           "workers (--workers N) and training runs on the CPU.")
        if a.device == "cpu":
            raise NsaError("--gpu-blend trains on the GPU; it cannot be combined with --device cpu.")
    synth = a.synth or ("dali" if a.loader == "dali" else "device" if a.gpu_blend else "workers")
    if synth == "device" and a.workers is not None:
        warn(f"--workers {a.workers} applies to --synth workers and dali; --synth device makes the samples on "
             "the device, with one background thread")
    return synth


def build_pipeline(cfg: TrainConfig, preset: Preset, files: list, device, rank, world):
    """The batch source of ``cfg.synth`` (``pipelines.make_pipeline``), its images decoded and
    tried first unless DALI reads the files."""
    from .data import load_images
    from .pipelines import make_pipeline

    source = files
    if cfg.synth != "dali":
        source = load_images(files, preset, preset.image_size)
        check_anomalies(source, preset, cfg)
    return make_pipeline(cfg.synth, source, preset, cfg.task, cfg.label, cfg.seed, cfg.batch_size, device,
                         workers=cfg.workers, solver=cfg.solver, rank=rank, world=world)


TRIAL_SAMPLES = 8


def check_anomalies(images, preset: Preset, cfg: TrainConfig) -> None:
    """Make a few samples before training: settings under which no patch survives (every label
    empty) would train a network to predict nothing and report it as a success."""
    from .synthesis import SyntheticDataset

    ds = SyntheticDataset(list(images), preset, cfg.task, cfg.label, cfg.seed)
    n = min(TRIAL_SAMPLES, len(ds))
    if not any(ds[(0, i)]["label"].any() for i in range(n)):
        raise NsaError(f"no synthetic anomaly in {n} trial samples with these settings ({ds.stats.summary()}): "
                       "every patch was skipped or left no label. Check the preset's fields (--set) against the "
                       "images: patch sizes, min_mask_pixels, label_tol, t_object, t_overlap, background.")


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, label_mode: str) -> torch.Tensor:
    """The loss the label type implies (``labels.LabelType.loss``)."""
    return get_label_type(label_mode).loss(logits, labels)


@dataclass
class EpochResult:
    loss: float
    step: int
    samples_per_s: float
    data_s: float
    step_s: float
    stats: Stats
    last: tuple | None  # (images, labels, logits) of the last batch, for the grid


def train_epoch(model, opt, pipeline, epoch, cfg, preset, device, amp_dtype, logger, step) -> EpochResult:
    """One epoch of optimizer steps; the synthetic-anomaly counts of its batches are summed, and
    labels that came out empty are counted on the device (read once, at the end)."""
    model.train()
    logger.begin_epoch(epoch)
    losses, seen, t_data, t_step = [], 0, 0.0, 0.0
    stats, empty = Stats(), torch.zeros((), dtype=torch.int64, device=device)
    t0 = time.perf_counter()
    last = None
    it = iter(to_training_device(pipeline.epoch(epoch), device))
    for k in range(len(pipeline.batches(epoch))):
        if cfg.steps_per_epoch is not None and k >= cfg.steps_per_epoch:
            break
        ta = time.perf_counter()
        images, labels, batch_stats = next(it)
        tb = time.perf_counter()
        stats += batch_stats
        empty += (labels.flatten(1).amax(1) == 0).sum()
        x = normalize(images, preset.normalize)
        with precision(device, amp_dtype):
            logits = model(x)[:, 0]
        loss = loss_fn(logits, labels.float(), cfg.label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()  # sync: the progress bar and the log need the number
        tc = time.perf_counter()
        t_data, t_step = t_data + tb - ta, t_step + tc - tb
        losses.append(value)
        seen += len(images)
        step += 1
        logger.step(value, seen / max(time.perf_counter() - t0, 1e-9))
        last = (images, labels, logits)
    stats.empty_labels = int(empty)  # sync: once an epoch
    dt = time.perf_counter() - t0
    return EpochResult(float(np.mean(losses)), step, seen / max(dt, 1e-9), t_data, t_step, stats, last)


def check_schedule(pipeline, cfg: TrainConfig, n_images: int, world: int) -> int:
    """Steps per epoch, or an error when the run would take none (it would "succeed" untrained)."""
    steps = min(len(pipeline.batches(0)), cfg.steps_per_epoch or 10**9)
    if steps == 0:
        per_rank = -(-n_images // world)
        raise NsaError(f"this run would take no optimizer step: {n_images} training image(s) over {world} "
                       f"process(es) leave {per_rank} a process, and a step needs at least 2 (batch norm). "
                       "Add training images or use fewer processes.")
    return steps


def main(argv=None) -> int:
    return cli.run(_main, argv)


def _main(argv) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg, preset, resume, overwrite, epochs_given = parse_args(argv)
    rank, world, local = setup_distributed(cfg)
    device = pick_device(cfg, local)
    progress = Progress()
    try:
        with determinism(cfg.deterministic, device):
            return _run(cfg, preset, resume, overwrite, epochs_given, rank, world, local, device, progress)
    except KeyboardInterrupt:
        raise cli.Interrupted(interrupted_message(argv, cfg, resume, world, progress)) from None


def _run(cfg, preset, resume, overwrite, epochs_given, rank, world, local, device, progress=None) -> int:
    from .demo import resolve_root
    from .layouts import open_dataset

    progress = progress or Progress()
    out = Path(cfg.out)
    rundir.check_flags(resume, overwrite)
    # The data first: a wrong --data or --category is named as such, also where --out holds a run
    # already. Reading changes nothing; the run folder is checked next and changed last.
    root = resolve_root(cfg.data)
    dataset = open_dataset(root, cfg.category, cfg.layout)
    cfg = dataclasses.replace(cfg, layout=dataset.layout)  # the layout read, also when detected
    files, held = split_holdout(dataset.train, cfg.holdout, cfg.seed)
    preset = with_intensity_window(preset, files, cfg.synth)
    evaluate = cfg.evaluate and check_test_set(root, cfg.category, preset, cfg.layout)
    pipeline = build_pipeline(cfg, preset, files, device, rank, world)
    if rank == 0:
        rundir.check(out, resume, overwrite)
    saved = checkpoint.load(out / "last.pt") if resume else None
    if saved is not None:
        if not epochs_given:  # resuming continues the run as it was, unless asked for more epochs
            cfg = dataclasses.replace(cfg, epochs=saved["config"]["epochs"])
            preset = preset.replace(epochs=cfg.epochs)
        rundir.check_resume(saved, dataclasses.asdict(cfg), preset.to_dict(), saved["epoch"] + 1)
        progress.saved_epochs = saved["epoch"] + 1
    steps = check_schedule(pipeline, cfg, len(files), world)
    if rank == 0:
        rundir.prepare(out, resume)  # every check passed: only now may an old run's files go
    model, opt, sched = build_model(cfg, preset, device)
    start, step = continue_run(saved, cfg, model, opt, sched, rank) if saved is not None else (0, 0)
    model = distribute(model, device, local, world)
    if rank == 0:
        write_text_atomic(out / "config.json", json.dumps(
            {"config": dataclasses.asdict(cfg), "preset": preset.to_dict(), "world_size": world, "device": str(device),
             "input_size": input_size(files), "data_root": str(root.resolve()),
             "holdout_files": [str(f.resolve()) for f in held],
             "validation_files": [str(f.resolve()) for f in dataset.validation]}, indent=2))
    end = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, start + cfg.stop_after)
    if start >= cfg.epochs and rank == 0:
        print(f"note: the run in {str(out)!r} has already trained all its {cfg.epochs} epochs")
    if end > start and rank == 0:
        print(banner(cfg, preset, files, device, world, start, end, kept_out(held, dataset)), flush=True)
    logger = Logger(out, cfg.epochs, steps, start, step, enabled=rank == 0)
    total = Stats()
    try:
        for epoch in range(start, end):
            t0 = time.perf_counter()
            res = train_epoch(model, opt, pipeline, epoch, cfg, preset, device, autocast_dtype(cfg, device), logger,
                              step)
            step, lr = res.step, opt.param_groups[0]["lr"]
            sched.step()
            stats = all_ranks(res.stats, device, world)
            total += stats
            if stats.accepted == 0 and rank == 0:
                warn(f"epoch {epoch + 1} made no synthetic anomaly: {stats.summary()}. The network learns to "
                     "predict empty maps; check the preset (--set) against the images.")
            if rank == 0:
                with sigint_deferred():  # Ctrl-C lands after the epoch's files, never between them
                    checkpoint.save_atomic(checkpoint.make_state(model, opt, sched, epoch, step, cfg, preset,
                                                                 get_label_type(cfg.label).head), out / "last.pt")
                    progress.saved_epochs = epoch + 1
                    logger.epoch({"epoch": epoch + 1, "step": step, "loss": res.loss, "lr": lr,
                                  "samples_per_s": res.samples_per_s, "data_s": res.data_s, "step_s": res.step_s,
                                  "seconds": time.perf_counter() - t0, **stats_row(stats)})
                    if res.last is not None and ((epoch + 1) % cfg.grid_every == 0 or epoch + 1 == cfg.epochs):
                        grid(out, cfg, epoch, res)
    finally:
        logger.close()
    if world > 1:
        torch.distributed.destroy_process_group()
    if rank != 0:
        return 0
    if end > start:
        print(f"synthetic anomalies of epochs {start + 1}-{end}: {total.summary()}")
    run_outputs = [("last.pt", out / "last.pt", "the trained model"), ("log.csv", out / "log.csv", "one row an epoch"),
                   ("grids", out / "grid_epoch*.png", "synthetic inputs, labels, predictions")]
    if end == cfg.epochs and (held or dataset.validation):
        from .threshold import thresholds_after_training

        run_outputs += filter(None, [thresholds_after_training(out / "last.pt", held + dataset.validation, device)])
    if evaluate and end == cfg.epochs:
        from .evaluate import report

        progress.evaluating = True
        return report(out / "last.pt", root, cfg.category, out / "eval", device, run_outputs, cfg.layout)
    print("Outputs:\n" + "\n".join(f"  {n}  {p}  ({w})" for n, p, w in run_outputs))
    return 0


def build_model(cfg: TrainConfig, preset: Preset, device: torch.device):
    """The network (seeded), Adam and the cosine schedule of the paper."""
    torch.manual_seed(cfg.seed)  # the model's initial weights
    model = EncoderDecoder(preset.channels, get_label_type(cfg.label).head).to(device, memory_format=torch.channels_last)
    if cfg.deterministic:
        model.use_deterministic_upsampling()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr_min)
    return model, opt, sched


def continue_run(saved: dict, cfg: TrainConfig, model, opt, sched, rank: int) -> tuple[int, int]:
    """Resume a checked checkpoint (see rundir.check_resume); (start epoch, step)."""
    start, step = checkpoint.resume_from(saved, model, opt, sched)
    new_lr = rundir.extend_schedule(sched, cfg.epochs)
    if new_lr is not None and rank == 0:
        print(f"note: the run now spans {cfg.epochs} epochs (it had {saved['config']['epochs']}): the cosine "
              f"schedule is stretched to match, so the learning rate continues at {new_lr:.3g} from epoch {start + 1}")
    return start, step


def grid(out: Path, cfg: TrainConfig, epoch: int, res: EpochResult) -> None:
    from .viz import write_training_grid

    images, labels, logits = res.last
    kind = get_label_type(cfg.label)
    write_training_grid(out / f"grid_epoch{epoch + 1:04d}.png", images, labels, kind.activate(logits).detach(),
                        kind.vmax, epoch + 1, res.loss, kind.scale_name)


if __name__ == "__main__":
    sys.exit(main())
