"""Evaluation protocol, reports, prediction and ONNX export on a briefly trained model."""
import csv
import json

import cv2
import numpy as np
import pytest
import torch

from nsa_fast.demo import DEFECTS, ensure_demo
from nsa_fast.evaluate import anomaly_maps, evaluate, load_model
from nsa_fast.evaluate import main as eval_main
from nsa_fast.predict import main as predict_main
from nsa_fast.train import main as train_main


def read_csv(path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step object-style model on the demo data: image 80, centre crop 72, random crop 64."""
    root = ensure_demo(tmp_path_factory.mktemp("demo"))
    out = tmp_path_factory.mktemp("run")
    rc = train_main(["--data", str(root), "--category", "demo", "--preset", "generic", "--out", str(out),
                     "--set", "image_size=80", "--set", "center_crop=72", "--set", "crop=64",
                     "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--workers", "0",
                     "--no-eval"])
    assert rc == 0
    return root, out / "last.pt"


def test_object_protocol_feeds_the_centre_crop_and_pads_the_map(trained):
    _, ckpt = trained
    model, preset, _ = load_model(ckpt, torch.device("cpu"))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 80, 80, 3)).astype(np.uint8)
    maps = anomaly_maps(model, images, preset, torch.device("cpu"))
    assert maps.shape == (3, 80, 80)
    assert not maps[:, :8].any() and not maps[:, -8:].any() and not maps[:, :, :8].any()
    assert (maps[:, 8:72, 8:72] > 0).all()  # sigmoid outputs inside the crop
    # the map depends only on the centre crop
    changed = images.copy()
    changed[:, :8] = 0
    np.testing.assert_array_equal(anomaly_maps(model, changed, preset, torch.device("cpu")), maps)


def test_evaluate_writes_reports(trained, tmp_path, capsys):
    root, ckpt = trained
    rc = eval_main(["--checkpoint", str(ckpt), "--data", str(root), "--category", "demo", "--out", str(tmp_path)])
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for k in ("image_auroc", "pixel_auroc", "au_pro_0.3"):
        assert 0.0 <= metrics[k] <= 1.0
    assert metrics["n_test"] == 31 and metrics["n_anomalous"] == 21
    assert {f"image_auroc/{d}" for d in DEFECTS} <= set(metrics)
    rows = read_csv(tmp_path / "scores.csv")
    assert len(rows) == 31 and {r["label"] for r in rows} == {"0", "1"}
    # the figures follow from the protocol, recomputed here: scores are the maps' means, AUROCs by
    # scikit-learn, the per-defect AUROC over that defect's images and the good ones
    from sklearn.metrics import roc_auc_score

    from nsa_fast.data import load_images, load_masks, test_items

    labels, scores = np.array([int(r["label"]) for r in rows]), np.array([float(r["score"]) for r in rows])
    assert metrics["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)
    for defect in DEFECTS:
        keep = np.array([r["defect"] in (defect, "good") for r in rows])
        assert metrics[f"image_auroc/{defect}"] == pytest.approx(roc_auc_score(labels[keep], scores[keep]), abs=1e-4)
    model, preset, _ = load_model(ckpt, torch.device("cpu"))
    items = test_items(root, "demo")
    images, masks = load_images([i.path for i in items], preset, 80), load_masks(items, 80)
    maps = anomaly_maps(model, images, preset, torch.device("cpu"))
    np.testing.assert_allclose(maps.reshape(31, -1).mean(1), scores, rtol=1e-5)
    assert metrics["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-9)
    for name in ("roc.png", "pro.png"):
        img = cv2.imread(str(tmp_path / name))
        assert img is not None and img.shape == (500, 500, 3) and (img < 128).any()  # drawn, not blank
    # F1-max: the best of every test score as threshold (score >= t), the lowest t among equals
    f1s = {t: 2 * np.sum((scores >= t) & (labels == 1)) / (np.sum(scores >= t) + labels.sum()) for t in sorted(scores)}
    best = max(f1s.values())
    assert metrics["f1_max"] == pytest.approx(best, abs=1e-12)
    assert metrics["f1_max_threshold"] == pytest.approx(min(t for t, f in f1s.items() if f == best), rel=1e-7)
    printed = capsys.readouterr().out
    assert f"image AUROC  {100 * metrics['image_auroc']:5.1f} %" in printed
    assert f"AU-PRO@0.3   {100 * metrics['au_pro_0.3']:5.1f} %" in printed
    assert f"F1-max       {100 * metrics['f1_max']:5.1f} %   best F1 over all thresholds, at score >= " in printed
    assert "threshold" in metrics  # its rows: test_evaluate_reports_false_rejects_and_misses_at_the_stored_threshold
    assert f"image AUROC per defect: {min(DEFECTS)}" in printed and str(tmp_path / "roc.png") in printed
    assert "heatmap_vmax" not in printed  # the table holds metrics only


def test_evaluate_reports_false_rejects_and_misses_at_the_stored_threshold(trained, tmp_path, capsys):
    import shutil

    from nsa_fast import thresholds

    root, fixture_ckpt = trained
    # a copy, without the thresholds training set beside the fixture's: the file written here must
    # not reach the other tests
    ckpt = tmp_path / "last.pt"
    shutil.copy(fixture_ckpt, ckpt)
    assert eval_main(["--checkpoint", str(ckpt), "--data", str(root), "--category", "demo",
                      "--out", str(tmp_path / "before")]) == 0
    assert json.loads((tmp_path / "before" / "metrics.json").read_text())["threshold"] is None
    assert (f"  no stored threshold: set one with python -m nsa_fast.threshold --checkpoint {ckpt} --normals DIR "
            "(or train with --holdout)\n") in capsys.readouterr().out
    rows = read_csv(tmp_path / "before" / "scores.csv")
    scores, labels = np.array([float(r["score"]) for r in rows]), np.array([int(r["label"]) for r in rows])
    good = np.sort(scores[labels == 0])
    assert good.size == 10 and good[4] < good[5]
    # "normals" 9 below and 1 above t; at a false-reject rate of 0.1 the threshold is their midpoint, t:
    # halfway between the 5th and 6th good test scores
    t = 0.5 * (good[4] + good[5])
    normals = np.array([t - 1.0] * 9 + [t + 1.0])
    th = thresholds.make(normals, np.linspace(0, 1, 2000), ckpt, "test", false_reject=0.1)
    assert th.image == pytest.approx(t, abs=1e-12)
    thresholds.save(th, ckpt)
    assert eval_main(["--checkpoint", str(ckpt), "--data", str(root), "--category", "demo",
                      "--out", str(tmp_path / "after")]) == 0
    metrics = json.loads((tmp_path / "after" / "metrics.json").read_text())
    misses = int(np.sum((scores <= t) & (labels == 1)))  # defective means score > threshold
    assert metrics["threshold"] == th.image
    assert (metrics["false_rejects"], metrics["n_good"], metrics["misses"]) == (5, 10, misses)
    assert metrics["false_reject_rate"] == 0.5 and metrics["miss_rate"] == misses / 21
    printed = capsys.readouterr().out
    assert f"false reject  50.0 %   5 of 10 good images rejected at the stored threshold (score > {t:.6g}" in printed
    assert f"missed       {100 * misses / 21:5.1f} %   {misses} of 21 anomalous images passed as good" in printed
    assert "no stored threshold" not in printed
    # retrained since (here: changed): the thresholds are refused with a warning, the AUROCs still come
    with open(ckpt, "ab") as f:
        f.write(b"\0")
    assert evaluate(ckpt, root, "demo", tmp_path / "stale")["threshold"] is None
    assert "warning: evaluating without a threshold: the thresholds in" in capsys.readouterr().err


def test_examples_figure_has_captions_and_a_colour_scale(trained, tmp_path):
    from nsa_fast.viz import (
        BOX_COLOUR,
        CROP_NOTE,
        GAP,
        LABEL_W,
        LINE_H,
        caption_band,
        wrap,
    )

    root, ckpt = trained
    evaluate(ckpt, root, "demo", tmp_path)
    fig = cv2.cvtColor(cv2.imread(str(tmp_path / "examples.png")), cv2.COLOR_BGR2RGB)
    S, cols, band = 80, 8, 2 * LINE_H + GAP  # 6 anomalous and 2 good images; score and file name
    # the fixture's preset has a central crop: the maps mark it, and a note under them says why
    note = caption_band(wrap([CROP_NOTE], fig.shape[1]), fig.shape[1]).shape[0]
    assert fig.shape[0] == 3 * S + 2 * GAP + band + note
    maps_row = fig[2 * (S + GAP): 2 * (S + GAP) + S, LABEL_W:LABEL_W + S]
    assert (maps_row == BOX_COLOUR).all(-1).any()  # the dashed line of the crop, drawn by evaluate
    assert fig.shape[1] == LABEL_W + cols * (S + GAP) - GAP + 80
    for c in range(cols):  # text under every column, in both caption lines
        x0 = LABEL_W + c * (S + GAP)
        for line in range(2):
            rows = fig[3 * S + 2 * GAP + line * LINE_H: 3 * S + 2 * GAP + (line + 1) * LINE_H, x0:x0 + S]
            assert (rows < 128).any(), (c, line)
    labels = fig[:3 * S, :LABEL_W]
    assert all((labels[r * (S + GAP): r * (S + GAP) + S] < 128).any() for r in range(3))  # row labels
    bar = fig[LINE_H:3 * S, -80 + 4:-80 + 18].reshape(-1, 3).astype(int)
    assert (bar.max(1) - bar.min(1)).max() > 100  # a coloured ramp, not white


def test_predict_matches_evaluation_scores(trained, tmp_path):
    root, ckpt = trained
    ev = tmp_path / "ev"
    evaluate(ckpt, root, "demo", ev)
    want = {r["path"]: float(r["score"]) for r in read_csv(ev / "scores.csv")}
    folder = root / "demo" / "test" / "stain"
    one = root / "demo" / "test" / "good" / "000.png"
    assert predict_main(["--checkpoint", str(ckpt), str(folder), str(one), "--out", str(tmp_path / "p")]) == 0
    got = read_csv(tmp_path / "p" / "scores.csv")
    assert len(got) == len(list(folder.glob("*.png"))) + 1
    for r in got:
        assert float(r["score"]) == pytest.approx(want[r["path"]], rel=1e-5)
        assert float(r["max"]) >= float(r["score"])
    # two inputs with the name 000.png: each keeps its folder below the common one
    # each heatmap figure shows its input at the input's own size, unchanged, in its top-left corner
    src = cv2.imread(str(one))
    fig = cv2.imread(str(tmp_path / "p" / "good" / "000_heatmap.png"))
    np.testing.assert_array_equal(fig[:src.shape[0], :src.shape[1]], src)
    assert (tmp_path / "p" / "stain" / "000_heatmap.png").is_file()
    assert predict_main(["--checkpoint", str(ckpt), str(tmp_path / "nope.txt"), "--out", str(tmp_path / "q")]) == 2


def test_masks_stored_as_0_and_1_score_like_0_and_255(trained, tmp_path):
    import shutil

    root, ckpt = trained
    ones = tmp_path / "ones"
    shutil.copytree(root / "demo", ones / "demo")
    for f in (ones / "demo" / "ground_truth").rglob("*.png"):
        m = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        assert set(np.unique(m)) == {0, 255}
        cv2.imwrite(str(f), (m > 0).astype(np.uint8))
    a = evaluate(ckpt, root, "demo", tmp_path / "a")
    b = evaluate(ckpt, ones, "demo", tmp_path / "b")
    for k in ("image_auroc", "pixel_auroc", "au_pro_0.3"):
        assert a[k] == b[k], k


def test_predict_writes_one_heatmap_per_input_and_never_reads_its_own(trained, tmp_path):
    import shutil

    _, ckpt = trained
    root, _ = trained
    data = tmp_path / "in"
    for sub in ("good", "stain"):  # two folders of files with the same names
        shutil.copytree(root / "demo" / "test" / sub, data / sub)
    names = {f.name for f in (data / "good").glob("*.png")} & {f.name for f in (data / "stain").glob("*.png")}
    assert names
    n = len(list(data.rglob("*.png")))
    for out in (tmp_path / "preds", data / "good"):  # the second: the output folder is an input folder
        for _ in range(2):  # a second run must not pick up the first run's heatmaps
            assert predict_main(["--checkpoint", str(ckpt), str(data / "good"), str(data / "stain"),
                                 "--out", str(out)]) == 0
            rows = read_csv(out / "scores.csv")
            assert len(rows) == n and not any(r["path"].endswith("_heatmap.png") for r in rows)
            assert len({r["heatmap"] for r in rows}) == n  # one heatmap per input, none overwritten
            assert all((out / r["heatmap"]).is_file() for r in rows)


def test_predict_keeps_equal_stems_with_other_suffixes_apart(trained, tmp_path):
    _, ckpt = trained
    root, _ = trained
    data = tmp_path / "in"
    data.mkdir()
    img = cv2.imread(str(root / "demo" / "test" / "good" / "000.png"))
    cv2.imwrite(str(data / "000.png"), img)
    cv2.imwrite(str(data / "000.jpg"), img)
    assert predict_main(["--checkpoint", str(ckpt), str(data), "--out", str(tmp_path / "p")]) == 0
    rows = read_csv(tmp_path / "p" / "scores.csv")
    assert sorted(r["heatmap"] for r in rows) == ["000.jpg_heatmap.png", "000.png_heatmap.png"]
    assert all((tmp_path / "p" / r["heatmap"]).is_file() for r in rows)


def test_evaluate_help_lists_every_file_it_writes(trained, tmp_path, capsys):
    root, ckpt = trained
    assert eval_main(["--checkpoint", str(ckpt), "--data", str(root), "--category", "demo", "--out",
                      str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert eval_main(["--help"]) == 0
    listed = sorted(line.split()[0][len("DIR/"):] for line in capsys.readouterr().out.splitlines()
                    if line.startswith("  DIR/"))
    assert listed == written  # one line each, nothing missing and nothing it does not write
