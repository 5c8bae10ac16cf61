"""Wall time of whole training epochs, through the command line, for each place samples are made.

    python bench/epoch_time.py --out DIR [--synth device workers] [--epochs 3] [--dry-run]

Writes a class of 209 bottle-like images of 256 px (bottle's training set size; made from
scikit-image's photos, as no dataset travels to a lent GPU) into DIR/data, then runs
``python -m nsa_fast.train --preset bottle --no-eval`` on it for each ``--synth``, batch 64, and
reads the seconds of every epoch from the run's log.csv. The first epoch pays for start-up
(kernel compiles, cuDNN's autotuning, worker start); the later ones are the steady state, which
the projection to the preset's 320 epochs multiplies. DIR/epochs.json holds the figures.

``--dry-run`` walks the same steps on the CPU at a toy size (8 images of 80 px, batch 4, 64-pixel
crops, 1 epoch): it shows that the stage works, not how fast a GPU is.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PAPER_EPOCHS = 320


def write_class(root: Path, n: int, size: int) -> Path:
    """n bottle-like PNGs in root/bench/train/good (kept when already there)."""
    import cv2

    from images import objects

    good = root / "bench" / "train" / "good"
    good.mkdir(parents=True, exist_ok=True)
    if len(list(good.glob("*.png"))) != n:
        for i, img in enumerate(objects(size, n)):
            cv2.imwrite(str(good / f"{i:03d}.png"), img[..., ::-1])
    return root


def run(root: Path, out: Path, synth: str, epochs: int, dry: bool, python: str) -> dict:
    """One training run; its epochs' seconds from log.csv and the process's wall time."""
    cmd = [python, "-m", "nsa_fast.train", "--data", str(root), "--category", "bench", "--preset", "bottle",
           "--epochs", str(epochs), "--no-eval", "--synth", synth, "--out", str(out), "--overwrite",
           "--grid-every", "100000"]
    if dry:
        cmd += ["--batch-size", "4", "--device", "cpu", "--set", "image_size=80", "--set", "center_crop=72",
                "--set", "crop=64"] + (["--workers", "0"] if synth == "workers" else [])
    else:
        cmd += ["--batch-size", "64"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    row = dict(synth=synth, command=" ".join(cmd[1:]), returncode=proc.returncode, wall_s=round(wall, 2))
    if proc.returncode != 0:
        row["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return row
    with open(out / "log.csv", newline="") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    steady = seconds[1:] or seconds
    row.update(epoch_s=[round(s, 3) for s in seconds], steady_epoch_s=round(sum(steady) / len(steady), 3),
               projected_320_epochs_min=round(PAPER_EPOCHS * sum(steady) / len(steady) / 60, 1))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/epoch_time.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the data, the runs and epochs.json")
    ap.add_argument("--synth", nargs="+", default=["device", "workers"], choices=("device", "workers", "dali"))
    ap.add_argument("--epochs", type=int, default=3, help="epochs a run (default 3; the first pays start-up)")
    ap.add_argument("--images", type=int, default=209, help="training images (default 209, bottle's count)")
    ap.add_argument("--dry-run", action="store_true", help="a toy size on the CPU: the stage works, no GPU figure")
    ap.add_argument("--python", default=sys.executable, help="the interpreter that runs the trainer")
    a = ap.parse_args(argv)
    dry = a.dry_run
    n, size, epochs = (8, 80, 1) if dry else (a.images, 256, a.epochs)
    root = write_class(a.out / "data", n, size)
    rows = [run(root, a.out / f"run-{s}", s, epochs, dry, a.python) for s in a.synth]
    result = dict(images=n, size=size, batch=4 if dry else 64, epochs=epochs, dry_run=dry, runs=rows)
    (a.out / "epochs.json").write_text(json.dumps(result, indent=2))
    for r in rows:
        if r["returncode"]:
            print(f"--synth {r['synth']}: FAILED (exit code {r['returncode']}): {r['error'][0]}")
        else:
            print(f"--synth {r['synth']}: epochs {r['epoch_s']} s, steady {r['steady_epoch_s']} s an epoch, "
                  f"{PAPER_EPOCHS} epochs ~ {r['projected_320_epochs_min']} min")
    return 0 if all(r["returncode"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
