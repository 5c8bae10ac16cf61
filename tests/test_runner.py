import csv
import json

import cv2

import numpy as np
import pytest

from nsa_fast.demo import ensure_demo
from nsa_fast.runner import main, mean_se, tabulate


def test_mean_and_standard_error():
    m, se = mean_se([0.9, 0.95, 1.0])
    assert m == pytest.approx(0.95) and se == pytest.approx(np.std([0.9, 0.95, 1.0], ddof=1) / np.sqrt(3))
    assert mean_se([0.5]) == (0.5, 0.0)


def test_table_rows_and_overall_mean(tmp_path):
    res = {"a": [{"image_auroc": 0.9, "pixel_auroc": 0.8, "au_pro_0.3": 0.7},
                 {"image_auroc": 1.0, "pixel_auroc": 0.9, "au_pro_0.3": 0.8}],
           "b": [{"image_auroc": 0.5, "pixel_auroc": 0.6, "au_pro_0.3": 0.4},
                 {"image_auroc": 0.7, "pixel_auroc": 0.6, "au_pro_0.3": 0.6}]}
    md = tabulate(res, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    assert [r["category"] for r in rows] == ["a", "b", "mean"]
    assert float(rows[0]["image_auroc"]) == pytest.approx(0.95)
    assert float(rows[0]["image_auroc_se"]) == pytest.approx(0.05)
    assert float(rows[2]["image_auroc"]) == pytest.approx(0.775)
    assert "| a | 2 | 95.0 ± 5.0 | 85.0 ± 5.0 | 75.0 ± 5.0 |" in md
    chart = cv2.imread(str(tmp_path / "chart.png"))
    assert chart is not None and chart.shape[1] > chart.shape[0] and (chart < 128).any()


def test_the_chart_sets_the_papers_figures_beside_the_measured_ones(tmp_path, monkeypatch):
    from nsa_fast import runner, viz

    drawn = {}
    monkeypatch.setattr(viz, "runner_chart", lambda path, rows, metrics, names, paper:
                        drawn.update(cats=[r["category"] for r in rows], paper=paper))
    res = {c: [{"image_auroc": 0.9, "pixel_auroc": 0.9, "au_pro_0.3": 0.9}] for c in ("bottle", "tire")}
    tabulate(res, tmp_path)
    assert drawn["cats"] == ["bottle", "tire"]  # not the overall mean row
    assert drawn["paper"]["bottle"] == (97.7, 98.3, 92.9) and "tire" not in drawn["paper"]
    assert len(runner.PAPER) == 15 and runner.PAPER["transistor"] == (95.1, 88.0, 75.3)


@pytest.mark.slow  # trains two seeds, half a minute; CI runs -m slow
def test_runner_trains_and_tabulates_two_seeds(tmp_path):
    root = ensure_demo(tmp_path / "data")
    rc = main(["--data", str(root), "--categories", "demo", "--seeds", "0,1", "--out", str(tmp_path / "t"), "--",
               "--set", "image_size=72", "--set", "crop=64", "--epochs", "1", "--steps-per-epoch", "1",
               "--batch-size", "8", "--workers", "0"])
    assert rc == 0
    rows = list(csv.DictReader(open(tmp_path / "t" / "table.csv")))
    assert rows[0]["category"] == "demo" and rows[0]["seeds"] == "2"
    per_seed = [json.loads((tmp_path / "t" / "demo" / f"seed{s}" / "eval" / "metrics.json").read_text())
                ["image_auroc"] for s in (0, 1)]
    assert float(rows[0]["image_auroc"]) == pytest.approx(np.mean(per_seed))
