"""What a training run tells its user around its epochs: the banner before the first one, and
what Ctrl-C prints (what the run folder holds, and the command that continues it). ``cfg`` is
the run's ``nsa_fast.train.TrainConfig``."""
from __future__ import annotations

import contextlib
import shlex
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from .devices import autocast_dtype
from .presets import Preset


@dataclass
class Progress:
    """How far this invocation got: what Ctrl-C says to do next."""
    saved_epochs: int | None = None  # epochs held by --out's last.pt, once this run wrote or resumed it
    evaluating: bool = False


def banner(cfg, preset: Preset, files: list[Path], device: torch.device, world: int,
           start: int, end: int, kept: str = "") -> str:
    """What the run is about to do, printed before its first epoch: the data, the device, how the
    synthetic anomalies are made and where everything goes."""
    from .blend.pick import AUTO
    from .demo import DEMO

    size = preset.image_size
    demo = " (the built-in demo data: --data demo)" if cfg.data == DEMO else ""
    epochs = f"epochs {start + 1}-{end} of {cfg.epochs}" + (" (resumed)" if start else "")
    where = str(device) if device.type != "cuda" else f"{device} ({torch.cuda.get_device_name(device)})"
    amp = "bf16 autocast" if autocast_dtype(cfg, device) == torch.bfloat16 else "fp32"
    procs = f", {world} processes" if world > 1 else ""
    solver = AUTO.get(device.type, "dst") if cfg.solver == "auto" else cfg.solver
    how = {"workers": (f"OpenCV in {cfg.workers} worker process{'es' if cfg.workers != 1 else ''}" if cfg.workers
                       else "OpenCV in the training process"),
           "device": f"made on {device.type}, Poisson solver {solver}",
           "dali": f"DALI reads the files, blended on {device.type} with Poisson solver {solver}"}[cfg.synth]
    layout = f" ({cfg.layout} layout)" if cfg.layout not in ("auto", "mvtec", "generic") else ""
    return (f"Training class {cfg.category!r} on {len(files)} images in {str(files[0].parent)!r}{layout}{demo}, "
            f"resized to {size}x{size}; preset {preset.name!r} ({preset.kind}); {epochs}\n"
            f"  device {where}, {amp}{procs}; synthetic anomalies: --synth {cfg.synth} ({how})\n"
            f"  output folder {str(cfg.out)!r}{kept}")


@contextlib.contextmanager
def sigint_deferred():
    """Ctrl-C waits for the end of the block (a checkpoint and its log row are written whole),
    then stops the run as usual. Only the main thread with Python's own handler defers it; the
    block runs as it is elsewhere."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def interrupted_message(argv: list[str], cfg, resume: bool, world: int, progress: Progress) -> str:
    """The one line Ctrl-C prints: what --out holds, and the command that goes on from there."""
    out = Path(cfg.out)
    if progress.evaluating:
        command = ["python", "-m", "nsa_fast.evaluate", "--checkpoint", str(out / "last.pt"), "--data", cfg.data,
                   "--category", cfg.category, "--out", str(out / "eval")]
        return (f"interrupted during the evaluation; the model is trained ({str(out / 'last.pt')!r}). "
                f"Evaluate it with: {shlex.join(command)}")
    if progress.saved_epochs is None:
        return ("interrupted before the first checkpoint; there is nothing to resume. Run the same command again "
                "to start over.")
    return (f"interrupted; {str(out / 'last.pt')!r} holds epoch {progress.saved_epochs} of {cfg.epochs}. "
            f"Continue with: {resume_command(argv, cfg, resume, world)}")


def resume_command(argv: list[str], cfg, resume: bool, world: int) -> str:
    """The command that continues this run: the same arguments, --out named, --resume added and
    --overwrite (which would delete the run) dropped."""
    args = [a for a in argv if not (a.startswith("--ov") and "--overwrite".startswith(a))]
    if not any(a.split("=")[0] in ("--ou", "--out") for a in args):
        args += ["--out", str(cfg.out)]
    if not resume:
        args.append("--resume")
    head = ["python", "-m"] if world == 1 else ["torchrun", f"--nproc_per_node={world}", "-m"]
    return shlex.join([*head, "nsa_fast.train", *args])



def kept_out(held: list[Path], dataset) -> str:
    """The banner's line on the normal images training does not see, and what they are for."""
    parts = [f"{len(held)} normal image{'s' * (len(held) != 1)} by --holdout (listed in config.json)"] if held else []
    if dataset.validation:
        parts.append(f"{len(dataset.validation)} normal validation images ({dataset.layout} layout)")
    return f"\n  kept out of training, for the thresholds: {' and '.join(parts)}" if parts else ""
