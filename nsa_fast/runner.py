"""``python -m nsa_fast.runner``: train and evaluate several classes and seeds, then tabulate.

    python -m nsa_fast.runner --data ROOT --categories bottle,carpet --seeds 0,1,2,3,4 --out DIR \\
        [-- any further python -m nsa_fast.train arguments]

Each run goes to DIR/<category>/seed<k>/ (trained with --resume, so an interrupted table picks up
where it stopped); the table, mean and standard error over seeds as in the paper, goes to
DIR/table.md and DIR/table.csv.
Exit codes: 0 success, 2 bad input, 1 a run failed.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

METRICS = ("image_auroc", "pixel_auroc", "au_pro_0.3")


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
    return md


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(prog="python -m nsa_fast.runner", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--categories", required=True, help="comma-separated class names")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (the paper used 5)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(own)
    from .train import main as train_main

    out = Path(a.out)
    results: dict[str, list[dict]] = {}
    for cat in [c for c in a.categories.split(",") if c]:
        for seed in [int(s) for s in a.seeds.split(",") if s]:
            run = out / cat / f"seed{seed}"
            rc = train_main(["--data", a.data, "--category", cat, "--seed", str(seed), "--out", str(run),
                             "--resume", *extra])
            if rc != 0:
                print(f"error: run {cat} seed {seed} failed (exit {rc})", file=sys.stderr)
                return 1 if rc != 2 else 2
            metrics = json.loads((run / "eval" / "metrics.json").read_text())
            results.setdefault(cat, []).append(metrics)
    out.mkdir(parents=True, exist_ok=True)
    print(tabulate(results, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
