"""The output folder of a training run: refuse to mix two runs, resume only what matches.

A run folder holds ``last.pt``, ``log.csv``, ``config.json``, ``grid_epoch*.png``, ``tb/`` and
``eval/``. Training into a folder that holds a run needs ``--resume`` (continue it: the
checkpoint's settings must match the command's) or ``--overwrite`` (delete those files first).
"""
from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

from .errors import NsaError

RUN_FILES = ("last.pt", "last.pt.tmp", "log.csv", "config.json", "last.thresholds.json")
RUN_GLOBS = ("grid_epoch*.png",)
RUN_DIRS = ("eval", "tb")
# A folder holds a run once a run has produced something of value: a checkpoint, a grid or an
# evaluation. config.json, log.csv and tb/ alone are what a run leaves when it stops before its
# first checkpoint; a new run replaces them.
PROGRESS = ("last.pt", "grid_epoch*.png", "eval")
# Settings a resumed run may change: where and how fast it runs, how long, what it writes.
# Everything else (task, label, class, preset, batch, learning rate, seed) shapes the model.
FREE_ON_RESUME = frozenset({"data", "out", "epochs", "stop_after", "workers", "grid_every", "evaluate", "device",
                            "synth", "amp", "solver", "steps_per_epoch", "deterministic", "layout"})


def run_files(out: Path) -> list[Path]:
    """The files and folders of a run that ``out`` holds."""
    found = [out / f for f in RUN_FILES if (out / f).exists()]
    for pattern in RUN_GLOBS:
        found += sorted(out.glob(pattern))
    return found + [out / d for d in RUN_DIRS if (out / d).exists()]


def holds_a_run(out: Path) -> bool:
    return out.is_dir() and any(next(out.glob(p), None) is not None for p in PROGRESS)


def check_flags(resume: bool, overwrite: bool) -> None:
    """--resume and --overwrite exclude each other (checked first: no file needs reading)."""
    if resume and overwrite:
        raise NsaError("--resume and --overwrite contradict each other: --resume continues the run in --out, "
                       "--overwrite deletes it. Choose one.")


def check(out: Path, resume: bool, overwrite: bool) -> None:
    """Check that ``out`` can take this run, before anything is trained or changed (the trainer
    checks the data first, so that a wrong --data is not reported as a run in the way).

    Refuses a file where the folder should be, ``--resume`` without a checkpoint, a folder that
    holds another run (unless ``--overwrite``) and a folder that cannot be written.
    """
    check_flags(resume, overwrite)
    if out.exists() and not out.is_dir():
        raise NsaError(f"--out {str(out)!r} is a file, not a folder; choose another --out.")
    if resume:
        if not (out / "last.pt").is_file():
            raise NsaError(f"--resume: there is no checkpoint {str(out / 'last.pt')!r} to continue from. Drop "
                           "--resume to start a new run there, or point --out at the run to continue.")
    elif holds_a_run(out) and not overwrite:
        names = ", ".join(p.name for p in run_files(out)[:4]) + (", ..." if len(run_files(out)) > 4 else "")
        raise NsaError(f"--out {str(out)!r} already holds a run ({names}). Add --resume to continue it, "
                       "--overwrite to delete it and start again, or choose another --out.")
    probe = out
    while not probe.exists():  # the nearest existing folder must be writable for out to be made
        probe = probe.parent
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-test-"):
            pass
    except OSError as err:
        raise NsaError(f"cannot write to --out {str(out)!r} ({err.strerror or err}); choose a writable folder.") from err


def prepare(out: Path, resume: bool) -> None:
    """Make ``out`` ready once every check has passed: a new run first deletes the files of the
    run there (which ``check`` allowed: --overwrite, or leftovers of a run that never reached
    its first checkpoint) and nothing else."""
    if not resume:
        for p in run_files(out) if out.is_dir() else []:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NsaError(f"cannot make the folder --out {str(out)!r} ({err.strerror or err}); choose another.") from err


ADDED_SINCE = {"holdout": 0.0}


def check_resume(saved: dict, config: dict, preset: dict, done_epochs: int) -> None:
    """Refuse to resume a checkpoint whose settings differ from the command's, listing them."""
    was = {**ADDED_SINCE, **saved["config"]}  # fields newer than the checkpoint held their defaults
    diffs = [f"{k}: {was.get(k)!r} in last.pt, {v!r} now" for k, v in config.items()
             if k not in FREE_ON_RESUME and was.get(k) != v]
    old = dict(saved["preset"], epochs=None)
    diffs += [f"preset {k}: {_plain(old.get(k))!r} in last.pt, {_plain(v)!r} now"
              for k, v in dict(preset, epochs=None).items() if _plain(old.get(k)) != _plain(v)]
    if diffs:
        raise NsaError("--resume: the checkpoint was trained with other settings (" + "; ".join(diffs) +
                       "). Resume with the same settings, or train into another --out (or --overwrite).")
    if config["epochs"] <= done_epochs and config["epochs"] != saved["config"]["epochs"]:
        raise NsaError(f"--resume --epochs {config['epochs']}: the run has already trained {done_epochs} epochs. "
                       f"Ask for more than {done_epochs} epochs to extend it.")


def _plain(v):
    """Lists from JSON and tuples from the preset compare equal."""
    return list(v) if isinstance(v, (list, tuple)) else v


def extend_schedule(sched, epochs: int) -> float | None:
    """Stretch a cosine schedule to ``epochs`` (a resumed run asked for more): the learning rate
    then follows the cosine of the new length from the epoch reached. Returns the new rate, or
    None when the length is unchanged."""
    if sched.T_max == epochs:
        return None
    sched.T_max = epochs
    for group, base in zip(sched.optimizer.param_groups, sched.base_lrs):
        group["lr"] = sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * sched.last_epoch / epochs)) / 2
    sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]
    return sched.optimizer.param_groups[0]["lr"]
