"""Thresholds from normal images only: the rule and its interval on scores of a known distribution,
--holdout and the threshold command on a briefly trained demo model, and predict's decisions,
masks and overlays."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.stats import norm

from nsa_fast import thresholds
from nsa_fast.demo import ensure_demo
from nsa_fast.predict import main as predict_main
from nsa_fast.threshold import check_usual
from nsa_fast.threshold import main as threshold_main
from nsa_fast.train import main as train_main

TINY = ["--preset", "generic", "--set", "image_size=80", "--set", "center_crop=72", "--set", "crop=64", "--epochs", "1",
        "--steps-per-epoch", "2", "--batch-size", "8", "--workers", "0", "--no-eval"]


# -- the rule, on scores whose true false-reject rate is known --------------------------------

@pytest.mark.parametrize("n, rate", [(200, 0.05), (100, 0.01), (1000, 0.003), (40, 0.25)])
def test_the_threshold_rejects_the_asked_share_of_the_normals_it_was_made_from(n, rate):
    scores = np.random.default_rng(n).normal(size=n)
    t, achieved = thresholds.place(scores, rate)
    assert achieved == (scores > t).mean() == math.floor(rate * n) / n
    above, below = np.sort(scores)[::-1][:math.floor(rate * n) + 1][-2:]
    assert below < t < above  # between the last accepted and the first rejected score


def test_the_bootstrap_interval_covers_the_true_false_reject_rate_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    covered, tries = 0, 200
    for i in range(tries):
        scores = rng.normal(size=300)
        t, _ = thresholds.place(scores, 0.05)
        lo, hi = thresholds.bootstrap_interval(scores, 0.05, seed=i, n_boot=1000)
        covered += lo <= norm.sf(t) <= hi  # the rate on all future normals of this distribution
    assert 0.90 <= covered / tries <= 0.99


def test_a_rate_the_normals_cannot_support_is_refused_with_the_rate_they_can():
    with pytest.raises(thresholds.InputError, match=r"20 normal images cannot support a rate of 1 %.*1/20 = 5 %"):
        thresholds.check_enough(20, 0.01, "images", "--false-reject")
    thresholds.check_enough(100, 0.01, "images", "--false-reject")
    with pytest.raises(thresholds.InputError, match="leaves none of 20 normal images below"):
        thresholds.check_enough(20, 1 - 1e-12, "images", "--false-reject")
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(thresholds.InputError, match="strictly between 0 and 1"):
            thresholds.check_rate(bad, "--false-reject")


def test_the_expected_rate_on_new_normals_is_that_of_the_order_statistics():
    rng = np.random.default_rng(3)
    made = [thresholds.place(rng.normal(size=100), 0.01)[0] for _ in range(2000)]
    th = thresholds.make(rng.normal(size=100), np.arange(2000.0), __file__, "x", 0.01)
    assert th.achieved == 0.01 and th.expected == pytest.approx(1.5 / 101)
    assert float(np.mean(norm.sf(made))) == pytest.approx(th.expected, rel=0.1)  # the mean over many draws


def test_the_normalised_score_is_one_half_at_the_threshold_and_keeps_the_order():
    th = thresholds.Thresholds(image=0.3, pixel=0.5, scale=0.1, false_reject=0.01, achieved=0.01, interval=(0, 0.03),
                               false_positive_pixels=0.001, pixels_achieved=0.001, n_images=100, n_pixels=1000,
                               normals="x", checkpoint="last.pt", checkpoint_sha256="0")
    s = np.array([0.0, 0.25, 0.3, 0.31, 0.35, 2.0])
    n = th.normalised(s)
    assert n[2] == 0.5 and n[0] == 0.0 and n[-1] == 1.0 and np.all(np.diff(n) >= 0)
    assert n[3] == pytest.approx(0.6) and list(th.defective(s)) == [False, False, False, True, True, True]


def test_unusual_normals_are_named(capsys):
    train = np.random.default_rng(0).uniform(0.30, 0.31, 32)
    check_usual(np.full(10, 0.305), train)  # like the training images: quiet
    assert capsys.readouterr().err == ""
    check_usual(np.full(10, 0.5), train)
    assert "100 % of the normal images score above every one of 32 training images" in capsys.readouterr().err


# -- a trained run --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step model on the demo data with a quarter of its normal images held out."""
    root = ensure_demo(tmp_path_factory.mktemp("demo"))
    out = tmp_path_factory.mktemp("run")
    assert train_main(["--data", str(root), "--category", "demo", "--out", str(out), "--holdout", "0.25", *TINY]) == 0
    return root, out


def test_holdout_keeps_its_images_out_of_training_and_sets_the_thresholds_on_them(run):
    _, out = run
    cfg = json.loads((out / "config.json").read_text())
    held = {p.split("/")[-1] for p in cfg["holdout_files"]}
    assert len(held) == 10 and cfg["config"]["holdout"] == 0.25 and cfg["input_size"] == [256, 256]
    assert len(cfg["validation_files"]) == 100  # the demo's validation/good: never trained on either
    th = thresholds.load_for(out / "last.pt")
    # 110 normals support the default 1 %: one of them lies above the threshold
    assert (th.n_images, th.false_reject, th.achieved) == (110, 0.01, 1 / 110)
    assert th.interval[0] <= th.achieved <= th.interval[1] and th.normals == "the run's held-out normal images"
    assert th.checkpoint_sha256 == thresholds.file_sha256(out / "last.pt")


def test_the_holdout_is_drawn_by_the_seed():
    from pathlib import Path

    from nsa_fast.data import split_holdout

    files = [Path(f"{i:03d}.png") for i in range(40)]
    a, b, c = (split_holdout(files, 0.25, s)[1] for s in (0, 0, 1))
    assert a == b and a != c and len(a) == 10
    assert split_holdout(files, 0.0, 0) == (files, [])
    with pytest.raises(thresholds.InputError, match="leaving 1"):
        split_holdout(files[:4], 0.7, 0)


def test_threshold_command_reproduces_the_asked_rate_and_refuses_to_overwrite(run, tmp_path, capsys):
    root, out = run
    ckpt = tmp_path / "last.pt"
    shutil.copy(out / "last.pt", ckpt)
    shutil.copy(out / "config.json", tmp_path / "config.json")
    good = root / "demo" / "test" / "good"
    assert threshold_main(["--checkpoint", str(ckpt), "--normals", str(good), "--false-reject", "0.2"]) == 0
    said = capsys.readouterr().out
    th = thresholds.load_for(ckpt)
    assert (th.n_images, th.achieved) == (10, 0.2) and "20.00 % of 10 normal images above it" in said
    assert threshold_main(["--checkpoint", str(ckpt), "--normals", str(good), "--false-reject", "0.2"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    # the run's own held-out images, without --normals
    assert threshold_main(["--checkpoint", str(ckpt), "--false-reject", "0.3", "--overwrite"]) == 0
    assert thresholds.load_for(ckpt).normals == "the run's held-out normal images"


@pytest.mark.parametrize("args, expect", [
    (["--false-reject", "0.01"], "10 normal images cannot support a rate of 1 %"),
    (["--false-reject", "0"], "expected a share above 0 and below 1"),
    (["--false-reject", "1"], "expected a share above 0 and below 1"),
    (["--false-positive-pixels", "2"], "expected a share above 0 and below 1"),
])
def test_threshold_bad_rates_are_one_line(run, tmp_path, capsys, args, expect):
    root, out = run
    rc = threshold_main(["--checkpoint", str(out / "last.pt"), "--normals", str(root / "demo" / "test" / "good"),
                         *args])
    err = capsys.readouterr().err
    assert rc == 2 and expect in err and err.count("\n") == 1 and err.startswith("error:")


def test_threshold_needs_normals_the_model_never_saw(run, tmp_path, capsys):
    root, out = run
    nothing = tmp_path / "empty"
    nothing.mkdir()
    assert threshold_main(["--checkpoint", str(out / "last.pt"), "--normals", str(nothing)]) == 2
    assert "holds no images" in capsys.readouterr().err
    (nothing / "good").mkdir()
    assert threshold_main(["--checkpoint", str(out / "last.pt"), "--normals", str(nothing)]) == 2
    assert "give its sub-folders instead (good)" in capsys.readouterr().err
    trained_on = root / "demo" / "train" / "good"
    assert threshold_main(["--checkpoint", str(out / "last.pt"), "--normals", str(trained_on),
                           "--false-reject", "0.1"]) == 2
    assert "30 of the 40 normal images were trained on" in capsys.readouterr().err
    # a run without --holdout has nothing of its own to offer
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(out / "last.pt", bare / "last.pt")
    assert threshold_main(["--checkpoint", str(bare / "last.pt")]) == 2
    assert "train with --holdout" in capsys.readouterr().err


def test_a_threshold_made_for_another_state_of_the_checkpoint_is_refused(run, tmp_path, capsys):
    root, out = run
    ckpt = tmp_path / "last.pt"
    shutil.copy(out / "last.pt", ckpt)
    shutil.copy(out / "last.thresholds.json", tmp_path / "last.thresholds.json")
    with open(ckpt, "ab") as f:
        f.write(b"\0")  # trained since: other bytes
    rc = predict_main(["--checkpoint", str(ckpt), str(root / "demo" / "test" / "good"), "--out", str(tmp_path / "p")])
    assert rc == 2 and "were set for another state" in capsys.readouterr().err


def test_predict_writes_decisions_masks_and_overlays_at_the_stored_thresholds(run, tmp_path):
    root, out = run
    th = thresholds.load_for(out / "last.pt")
    scratch = root / "demo" / "test" / "scratch"
    assert predict_main(["--checkpoint", str(out / "last.pt"), str(scratch), "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "scores.csv").read_text().splitlines()))
    assert list(rows[0]) == ["path", "score", "normalized_score", "decision", "max", "heatmap", "mask", "overlay"]
    for r in rows:
        score = float(r["score"])
        assert r["decision"] == ("defective" if score > th.image else "good")
        assert float(r["normalized_score"]) == pytest.approx(min(1, max(0, 0.5 + (score - th.image) / th.scale)),
                                                             abs=1e-4)
        mask = cv2.imread(str(tmp_path / r["mask"]), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(r["path"])
        assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 255}
        overlay = cv2.imread(str(tmp_path / r["overlay"]))
        changed = np.abs(overlay.astype(int) - image).max(-1) > 0
        assert changed.any() == (mask > 0).any()  # the contour is drawn where, and only where, a mask is
        assert not (changed & ~cv2.dilate(mask, np.ones((5, 5), np.uint8)).astype(bool)).any()
        # never on the edge of the region the network sees, where its map rises on good parts too
        assert not (mask > 0)[~thresholds.mask_region((8, 72, 8, 72), 80, mask.shape)].any()  # crop 64 of 80


def test_predict_without_thresholds_says_how_to_get_them(run, tmp_path, capsys):
    root, out = run
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(out / "last.pt", bare / "last.pt")
    assert predict_main(["--checkpoint", str(bare / "last.pt"), str(root / "demo" / "test" / "good"),
                         "--out", str(tmp_path / "p")]) == 0
    said = capsys.readouterr().out
    assert "python -m nsa_fast.threshold --checkpoint" in said
    rows = list(csv.DictReader((tmp_path / "p" / "scores.csv").read_text().splitlines()))
    assert list(rows[0]) == ["path", "score", "max", "heatmap"] and not list((tmp_path / "p").glob("*_mask.png"))


def test_a_run_from_before_holdout_resumes_and_a_changed_holdout_is_refused():
    from nsa_fast import rundir

    saved = {"config": {"category": "demo", "seed": 0, "epochs": 3}, "preset": {"crop": 64}}
    rundir.check_resume(saved, {"category": "demo", "seed": 0, "epochs": 3, "holdout": 0.0}, {"crop": 64}, 1)
    with pytest.raises(rundir.NsaError, match=r"holdout: 0.0 in last.pt, 0.2 now"):
        rundir.check_resume(saved, {"category": "demo", "seed": 0, "epochs": 3, "holdout": 0.2}, {"crop": 64}, 1)


def test_the_pixel_threshold_and_the_masks_leave_out_the_rim_of_what_the_network_sees(monkeypatch):
    """The map rises along the crop's edge on good parts too: neither threshold nor mask counts it."""
    from nsa_fast import evaluate
    from nsa_fast import threshold as cmd
    from nsa_fast.presets import Preset

    preset = Preset(name="t", kind="object", image_size=80, center_crop=72, crop=64)
    rng = np.random.default_rng(0)
    maps = rng.uniform(0, 0.1, (5, 80, 80)).astype(np.float32)
    maps[:, 8:72, 8:72][:, [0, -1]] = 1.0  # the rim rows of the crop (8..71)
    maps[:, 8:72, 8:72][:, :, [0, -1]] = 1.0
    maps[:, :8] = maps[:, 72:] = maps[:, :, :8] = maps[:, :, 72:] = 0  # zero padding
    monkeypatch.setattr("nsa_fast.data.load_images", lambda files, p, size: np.zeros((5, 80, 80, 3), np.uint8))
    monkeypatch.setattr(evaluate, "anomaly_maps", lambda model, images, p, device: maps)
    _, pixels = cmd.score_images(None, preset, [None] * 5, "cpu")
    assert pixels.size == 5 * (64 - 2 * thresholds.EDGE) ** 2 and pixels.max() < 0.1
    region = thresholds.mask_region((8, 72, 8, 72), 80)
    assert region.sum() == 60 * 60 and not region[8:10].any() and region[10, 10] and region[69, 69] and not region[70, 70]
    big = thresholds.mask_region((8, 72, 8, 72), 80, (160, 240))
    assert big.shape == (160, 240) and not big[:20].any() and big[20:140, 30:210].all()


def test_too_few_held_out_images_set_no_threshold_after_training(tmp_path, capsys):
    from nsa_fast.threshold import AUTO_MIN_IMAGES, thresholds_after_training

    ckpt = tmp_path / "last.pt"
    assert thresholds_after_training(ckpt, [tmp_path / f"{i}.png" for i in range(AUTO_MIN_IMAGES - 1)], "cpu") is None
    said = capsys.readouterr().out
    assert f"{AUTO_MIN_IMAGES - 1} held-out normal images are too few for a threshold" in said
    assert "--normals DIR" in said and not thresholds.path_for(ckpt).exists()


def test_copies_of_training_images_are_refused_and_stale_advice_repeats_how_they_were_made(run, tmp_path, capsys):
    root, out = run
    copies = tmp_path / "copies"
    copies.mkdir()
    cfg = json.loads((out / "config.json").read_text())
    trained = sorted(set((root / "demo" / "train" / "good").glob("*.png")) - {Path(p) for p in cfg["holdout_files"]})
    for i, f in enumerate(trained[:12]):
        shutil.copy(f, copies / f"renamed_{i}.png")
    assert threshold_main(["--checkpoint", str(out / "last.pt"), "--normals", str(copies), "--false-reject", "0.1"]) == 2
    assert "12 of the 12 normal images were trained on" in capsys.readouterr().err
    ckpt = tmp_path / "last.pt"
    shutil.copy(out / "last.pt", ckpt)
    good = root / "demo" / "test" / "good"
    assert threshold_main(["--checkpoint", str(ckpt), "--normals", str(good), "--false-reject", "0.2"]) == 0
    with open(ckpt, "ab") as f:
        f.write(b"\0")
    with pytest.raises(thresholds.InputError) as err:
        thresholds.load_for(ckpt)
    assert f"--normals {good.resolve()} --false-reject 0.2 --false-positive-pixels 0.001 --overwrite" in str(err.value)
