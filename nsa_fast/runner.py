"""``python -m nsa_fast.runner``: train and evaluate several classes and seeds, then tabulate.

    python -m nsa_fast.runner --data ROOT --categories bottle,carpet --seeds 0,1,2,3,4 --out DIR \\
        [-- any further python -m nsa_fast.train arguments]

Each run goes to DIR/<category>/seed<k>/ (an interrupted table picks up where it stopped: runs
with a last.pt resume); the table, mean and standard error over seeds as in the paper, goes to
DIR/table.md and DIR/table.csv, and DIR/chart.png shows each class's measured figures beside the
paper's (for the MVTec AD classes).
Exit codes: 0 success, 2 bad input, 1 a run failed.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from . import cli
from .cli import Parser
from .errors import NsaError

METRICS = ("image_auroc", "pixel_auroc", "au_pro_0.3")
NAMES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "au_pro_0.3": "AU-PRO@0.3"}
# The paper's Table 1 (NSA, logistic labels, mean of 5 seeds), in %: image AUROC, pixel AUROC,
# AU-PRO@0.3 per MVTec AD class.
PAPER = {"bottle": (97.7, 98.3, 92.9), "cable": (94.5, 96.0, 89.9), "capsule": (95.2, 97.6, 91.4),
         "hazelnut": (94.7, 97.6, 93.6), "metal_nut": (98.7, 98.4, 94.6), "pill": (99.2, 98.5, 96.0),
         "screw": (90.2, 96.5, 90.1), "toothbrush": (100.0, 94.9, 90.7), "transistor": (95.1, 88.0, 75.3),
         "zipper": (99.8, 94.2, 89.2), "carpet": (95.6, 95.5, 85.0), "grid": (99.9, 99.2, 96.8),
         "leather": (99.9, 99.5, 98.7), "tile": (100.0, 99.3, 95.3), "wood": (97.5, 90.7, 85.3)}


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / sqrt(n); 0 for one run)."""
    v = np.asarray(values, float)
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return float(v.mean()), se


def tabulate(results: dict[str, list[dict]], out: Path) -> str:
    """Write table.csv and table.md from {category: [metrics per seed]}; returns the markdown."""
    rows = []
    for cat, runs in results.items():
        row = {"category": cat, "seeds": len(runs)}
        for m in METRICS:
            row[m], row[m + "_se"] = mean_se([r[m] for r in runs])
        rows.append(row)
    if len(rows) > 1:
        row = {"category": "mean", "seeds": min(r["seeds"] for r in rows)}
        for m in METRICS:  # the paper's overall row: mean of the class means and of their errors
            row[m] = float(np.mean([r[m] for r in rows]))
            row[m + "_se"] = float(np.mean([r[m + "_se"] for r in rows]))
        rows.append(row)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| class | seeds | image AUROC | pixel AUROC | AU-PRO@0.3 |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{100 * r[m]:.1f} ± {100 * r[m + '_se']:.1f}" for m in METRICS]
        lines.append(f"| {r['category']} | {r['seeds']} | " + " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    (out / "table.md").write_text(md)
    from .viz import runner_chart

    runner_chart(out / "chart.png", [r for r in rows if r["category"] != "mean"], METRICS, NAMES, PAPER)
    return md


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise NsaError(f"--seeds expects comma-separated non-negative integers such as 0,1,2, got {text!r}.") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise NsaError(f"--seeds expects distinct non-negative integers such as 0,1,2, got {text!r}.")
    return seeds


def _categories(text: str, root: Path) -> list[str]:
    cats = [c.strip() for c in text.split(",") if c.strip()]
    if not cats or len(set(cats)) != len(cats):
        raise NsaError(f"--categories expects distinct class names separated by commas such as bottle,carpet, "
                       f"got {text!r}.")
    for cat in cats:  # the table needs every class's test set: check before hours of training
        if not (root / cat / "test").is_dir():
            raise NsaError(f"class {cat!r} has no test set ({str(root / cat / 'test')!r}); the runner evaluates "
                           "every run. Add test/good and test/<defect> with masks, or leave the class out.")
    return cats


RUNNER_SETS = ("--data", "--category", "--seed", "--out", "--resume", "--overwrite", "--no-eval")


def _train_args(extra: list[str], data: str, cats: list[str]) -> list[str]:
    """The arguments passed through to every training run: none that the runner sets itself, and
    all of them valid for every class (checked by the trainer's own parser before the first run)."""
    clash = [a for a in extra if a.split("=")[0] in RUNNER_SETS]
    if clash:
        raise NsaError(f"{', '.join(clash)} after -- would override what the runner sets for each run (data, class, "
                       f"seed, folder, resuming, evaluation); use the runner's own --data, --categories, --seeds "
                       f"and --out instead.")
    from .train import parse_args

    for cat in cats:
        parse_args(["--data", data, "--category", cat, "--out", "x", *extra])  # exits 2 with the message
    return extra


def main(argv=None) -> int:
    return cli.run(_main, argv)


def _main(argv) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = Parser(prog="python -m nsa_fast.runner", description=__doc__,
                usage="python -m nsa_fast.runner --data ROOT --categories A,B --out DIR [--seeds 0,1,2] "
                      "[-- TRAIN_ARGS ...]")
    ap.add_argument("--data", required=True, help="dataset root (MVTec layout) or 'demo'")
    ap.add_argument("--categories", required=True, help="comma-separated class names")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (the paper used 5)")
    ap.add_argument("--out", required=True, help="folder of the runs and the table")
    a = ap.parse_args(own)
    from .demo import resolve_root
    from .train import main as train_main

    seeds = _seeds(a.seeds)
    root = resolve_root(a.data)
    if not root.is_dir():
        raise NsaError(f"--data {a.data!r}: no such folder; pass the dataset root that holds the class folders.")
    cats = _categories(a.categories, root)
    extra = _train_args(extra, a.data, cats)
    out = Path(a.out)
    results: dict[str, list[dict]] = {}
    for cat in cats:
        for seed in seeds:
            run = out / cat / f"seed{seed}"
            resume = ["--resume"] if (run / "last.pt").is_file() else []  # an interrupted table picks up
            rc = train_main(["--data", a.data, "--category", cat, "--seed", str(seed), "--out", str(run),
                             *resume, *extra])
            if rc != 0:  # the trainer has said why
                print(f"runner: stopped at class {cat}, seed {seed}; the runs before it are kept in {str(out)!r} "
                      "and resume when the runner is started again", file=sys.stderr)
                return 1 if rc != 2 else 2
            metrics = json.loads((run / "eval" / "metrics.json").read_text())
            results.setdefault(cat, []).append(metrics)
    out.mkdir(parents=True, exist_ok=True)
    print(tabulate(results, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
