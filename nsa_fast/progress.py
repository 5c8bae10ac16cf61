"""What a training run shows and records: a progress bar on a terminal, one line per epoch
elsewhere (a pipe, a file, a CI log), log.csv (appended across resumes) and TensorBoard when
installed. Epochs count from 1 everywhere a person reads them: the console's "epoch 3/40" is
log.csv's row with epoch 3.
"""
from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

from .sampler import SKIP_REASONS, Stats

STATS_FIELDS = ("patches_tried", "patches_accepted", *(f"skipped_{r}" for r in SKIP_REASONS),
                "empty_labels", "label_retries")


def stats_row(stats: Stats) -> dict:
    """The synthetic-anomaly counts of an epoch as log.csv columns."""
    row = {"patches_tried": stats.tried, "patches_accepted": stats.accepted,
           "empty_labels": stats.empty_labels, "label_retries": stats.label_retries}
    row.update({f"skipped_{r}": stats.skipped.get(r, 0) for r in SKIP_REASONS})
    return row


def rate(x: float) -> str:
    """A rate with sensible precision: 1234, 56.7, 0.42."""
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def wants_bar(stream) -> bool:
    """A bar on a terminal with a width; lines elsewhere, also on a terminal that reports no
    columns (a pseudo-terminal nobody sized: ``script -c``, ``docker run -t`` in CI), where a bar
    would show nothing."""
    if not stream.isatty():
        return False
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # a terminal-like stream without a descriptor
        return True
    return columns >= 20


def renumber_from_zero(path: Path) -> None:
    """A log.csv of an earlier version counted epochs from 0; a run resumed now continues it
    counted from 1, so its old rows are renumbered first (a log counted from 1 has no epoch 0)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2 or "epoch" not in rows[0]:
        return
    col = rows[0].index("epoch")
    if rows[1][col:col + 1] != ["0"]:
        return
    for r in rows[1:]:
        if r[col:col + 1] and r[col].isdigit():
            r[col] = str(int(r[col]) + 1)
    import io

    from .io import write_text_atomic

    buf = io.StringIO()
    csv.writer(buf).writerows(rows)  # the line ending of the rows appended later
    write_text_atomic(path, buf.getvalue())


class Logger:
    """log.csv, TensorBoard, and the progress a person sees (bar or lines)."""

    FIELDS = ("epoch", "step", "loss", "lr", "samples_per_s", "data_s", "step_s", "seconds", *STATS_FIELDS)

    def __init__(self, out: Path, epochs: int, steps_per_epoch: int, start_epoch: int, done_steps: int,
                 enabled: bool, stream=None):
        self.enabled, self.epochs, self.start = enabled, epochs, start_epoch
        self.stream = stream or sys.stdout
        self.path = out / "log.csv"
        self.tb = self.bar = None
        self.t0 = time.perf_counter()
        if not enabled:
            return
        if self.path.exists():
            with open(self.path, newline="") as f:
                self.fields = next(csv.reader(f), None) or list(self.FIELDS)
            renumber_from_zero(self.path)
        else:
            self.fields = list(self.FIELDS)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
        except ImportError:  # TensorBoard is optional
            pass
        if wants_bar(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=steps_per_epoch * epochs, initial=done_steps, unit="step", dynamic_ncols=True,
                            file=self.stream)

    def begin_epoch(self, epoch: int) -> None:
        """The epoch of index ``epoch`` (from 0) begins: the bar shows it as ``epoch + 1``."""
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch + 1}/{self.epochs}")

    def step(self, loss: float, samples_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"loss {loss:.4f}, {rate(samples_per_s)} samples/s")

    def epoch(self, row: dict) -> None:
        """An epoch ended: its row of log.csv, ``row["epoch"]`` counted from 1 (as the console shows it)."""
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k in ("loss", "lr", "samples_per_s", "empty_labels"):
                self.tb.add_scalar(k, row[k], row["step"])
        if self.bar is None:  # not a terminal: one line an epoch
            done = row["epoch"] - self.start
            elapsed = time.perf_counter() - self.t0
            eta = elapsed / max(done, 1) * (self.epochs - row["epoch"])
            print(f"epoch {row['epoch']}/{self.epochs}: loss {row['loss']:.4f}, lr {row['lr']:.3g}, "
                  f"{rate(row['samples_per_s'])} samples/s, elapsed {clock(elapsed)}, ETA {clock(eta)}",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
