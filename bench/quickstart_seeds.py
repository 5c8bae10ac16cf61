"""The README's quick start over seeds: what a reader sees, as a range rather than one run's digits.

    python bench/quickstart_seeds.py --out DIR [--seeds 0,1,2,3,4] [--threads N] [--command CMD] [--dry-run]

Runs the quick start's training command (read from README.md's quick-start block, so the two
cannot drift apart; ``--command`` runs another one instead, to try a change before the README
shows it) once per seed with ``--seed N``, each run in DIR/seedN; all share one demo
data folder, DIR/cache (``NSA_FAST_CACHE``), which the first run writes. Prints a table of the
image AUROC, pixel AUROC and AU-PRO of each seed, the seconds its training epochs took (from its
log.csv: start-up and evaluation excluded) and the command's wall time, then the mean, min and
max over the seeds, and writes every figure to DIR/seeds.json. Columns: "train s", the sum of
the epochs' seconds; "median", the median epoch's seconds times the epochs (what the training
takes when nothing else runs: a few epochs slowed by another process do not move it); "wall s",
the whole command (start-up, demo data on the first run, evaluation); "load", the 1-minute load
average before and after the run.

The runs go one after another (each uses the machine's cores); the load average before and after
each is recorded, since figures of seconds from a shared machine mean little without it.
``--threads N`` sets OMP_NUM_THREADS for the runs (default: left as it is). ``--dry-run`` runs
each seed for 1 epoch: it shows that the script works, not the quick start's figures.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("au_pro_0.3", "AU-PRO@0.3"))


def quick_start_job() -> list[str]:
    """The arguments of the README's training command (after ``python``), as a reader runs it."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start\s+(?:<!--.*?-->\s*)?```bash\n(.*?)```", text, re.S)
    if not block:
        raise SystemExit("README.md has no bash block under '## Quick start'")
    first = next(line for line in block.group(1).splitlines() if line.strip())
    return parse_job(first.split("&&")[-1])


def parse_job(command: str) -> list[str]:
    job = shlex.split(command)
    if job[1:3] != ["-m", "nsa_fast.train"]:
        raise SystemExit(f"--command must be a training command (PYTHON -m nsa_fast.train ...), got {command!r}")
    return job[1:]


def load() -> float:
    return os.getloadavg()[0]


def run_seed(job: list[str], seed: int, out: Path, cache: Path, threads: int | None, dry: bool) -> dict:
    run_dir = out / f"seed{seed}"
    cmd = [sys.executable, *job, "--seed", str(seed), "--out", str(run_dir), "--overwrite"]
    if dry:
        cmd += ["--epochs", "1"]
    env = {**os.environ, "NSA_FAST_CACHE": str(cache)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    load_before = load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out / f"seed{seed}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    row = {"seed": seed, "returncode": proc.returncode, "wall_s": round(wall, 1),
           "load_before": round(load_before, 2), "load_after": round(load(), 2)}
    if proc.returncode != 0:
        row["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return row
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    with open(run_dir / "log.csv", newline="") as f:
        epochs = list(csv.DictReader(f))
    row.update({key: metrics[key] for key, _ in FIGURES})
    row.update({k: v for k, v in metrics.items() if k.startswith("image_auroc/")})
    row["epochs"] = len(epochs)
    seconds = sorted(float(e["seconds"]) for e in epochs)
    row["train_s"] = round(sum(seconds), 1)
    # The median epoch times the epochs: what the training takes when nothing else runs, since a
    # few epochs slowed by another process (common on a shared machine) do not move the median.
    row["train_s_median"] = round(seconds[len(seconds) // 2] * len(seconds), 1)
    row["samples_per_s"] = round(sum(float(e["samples_per_s"]) for e in epochs) / max(len(epochs), 1), 2)
    return row


def table(rows: list[dict]) -> str:
    ok = [r for r in rows if r["returncode"] == 0]
    head = f"{'seed':>6}  " + "  ".join(f"{name:>11}" for _, name in FIGURES) + \
        f"  {'train s':>8}  {'median':>7}  {'wall s':>7}  {'load':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["returncode"]:
            lines.append(f"{r['seed']:>6}  failed (exit {r['returncode']}): {' '.join(r['error'])}")
            continue
        lines.append(f"{r['seed']:>6}  " + "  ".join(f"{100 * r[key]:9.1f} %" for key, _ in FIGURES) +
                     f"  {r['train_s']:8.1f}  {r['train_s_median']:7.1f}  {r['wall_s']:7.1f}"
                     f"  {r['load_before']:4.1f}-{r['load_after']:<4.1f}")
    if ok:
        lines.append("-" * len(head))
        for name, fn in (("mean", lambda v: sum(v) / len(v)), ("min", min), ("max", max)):
            lines.append(f"{name:>6}  " + "  ".join(f"{100 * fn([r[key] for r in ok]):9.1f} %" for key, _ in FIGURES) +
                         f"  {fn([r['train_s'] for r in ok]):8.1f}  {fn([r['train_s_median'] for r in ok]):7.1f}"
                         f"  {fn([r['wall_s'] for r in ok]):7.1f}")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["returncode"] == 0]
    out = {}
    for key in [k for k, _ in FIGURES] + ["train_s", "train_s_median", "wall_s"]:
        values = [r[key] for r in ok]
        if values:
            out[key] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for the runs, the shared demo cache and seeds.json")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (default 0,1,2,3,4)")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the runs (default: as set)")
    ap.add_argument("--command", help="the training command to run instead of the README's, e.g. "
                                      "'.venv/bin/python -m nsa_fast.train --data demo --category demo'")
    ap.add_argument("--dry-run", action="store_true", help="1 epoch a seed: checks the script, not the figures")
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    job = quick_start_job() if a.command is None else parse_job(a.command)
    print(f"quick start: python {' '.join(job)} --seed N   (seeds {a.seeds}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={a.threads or os.environ.get('OMP_NUM_THREADS', 'unset')})", flush=True)
    rows = []
    for seed in seeds:
        rows.append(run_seed(job, seed, out, out / "cache", a.threads, a.dry_run))
        r = rows[-1]
        print(f"  seed {seed}: " + ("done" if r["returncode"] == 0 else "failed") + f" in {r['wall_s']} s", flush=True)
    print(table(rows))
    result = {"command": ["python", *job], "seeds": seeds, "dry_run": a.dry_run, "cpus": os.cpu_count(),
              "omp_num_threads": a.threads or os.environ.get("OMP_NUM_THREADS"), "runs": rows, "summary": summary(rows)}
    (out / "seeds.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {out / 'seeds.json'}")
    return 0 if all(r["returncode"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
