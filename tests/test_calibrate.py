"""python -m nsa_fast.calibrate: each rule on images made to have or lack what it looks for, the
preset file it writes read back everywhere a preset is taken, and bad input refused in one line."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from nsa_fast.calibrate import ALIGNED, SHARP_SHARE, calibrate, decide, fit_logistic, main
from nsa_fast.calibration_report import to_toml
from nsa_fast.presets import get_preset, load_preset_file

S = 256


def _texture(n: int, seed: int = 0) -> np.ndarray:
    """Brick texture crops at random offsets: content that moves, no background."""
    rng = np.random.default_rng(seed)
    big = cv2.cvtColor(data.brick(), cv2.COLOR_GRAY2RGB)
    out = []
    for _ in range(n):
        y, x = rng.integers(0, big.shape[0] - S, 2)
        out.append(big[y:y + S, x:x + S])
    return np.stack(out)


def _objects(n: int, moving: bool, seed: int = 0) -> np.ndarray:
    """A textured part (a 120 x 60 crop of a photo) on a plain dark background; ``moving``:
    rotated by up to 40 degrees and shifted by up to 30 pixels, else in place (sensor noise only)."""
    rng = np.random.default_rng(seed)
    part = cv2.resize(data.astronaut()[100:340, 150:270], (60, 120))
    out = []
    for _ in range(n):
        img = np.clip(30 + rng.normal(0, 2, (S, S, 3)), 0, 255).astype(np.uint8)
        canvas = np.zeros_like(img)
        canvas[68:188, 98:158] = part
        on = np.zeros((S, S), np.uint8)
        on[68:188, 98:158] = 1
        if moving:
            m = cv2.getRotationMatrix2D((S / 2, S / 2), float(rng.uniform(-40, 40)), 1.0)
            m[:, 2] += rng.uniform(-30, 30, 2)
            canvas = cv2.warpAffine(canvas, m, (S, S), flags=cv2.INTER_NEAREST)
            on = cv2.warpAffine(on, m, (S, S), flags=cv2.INTER_NEAREST)
        img[on > 0] = np.maximum(canvas[on > 0], 90)  # the part stands out from the background
        out.append(img)
    return np.stack(out)


def test_sizes_are_the_papers_where_the_images_are_large_enough_and_never_upscaled():
    small, large = decide(_texture(12), "t", native=256)[0], decide(_texture(12), "t", native=1024)[0]
    assert (large.image_size, large.crop) == (264, 256)
    assert small.image_size <= 256 and small.crop % 32 == 0 and small.crop < small.image_size
    obj, why, _ = decide(_objects(12, moving=True), "o", native=200)
    assert obj.image_size == 200 and obj.crop % 32 == 0 and obj.crop < obj.center_crop <= 200
    assert "the images' own 200 px (no upscaling)" in why["image_size, crop"]
    assert decide(_objects(12, moving=True), "o", native=256)[1]["image_size, crop"].endswith("the paper's")


def test_a_texture_is_called_a_texture_with_the_papers_texture_rules():
    p, reasons, measured = decide(_texture(12), "t")
    assert p.kind == "texture" and p.background is None and measured["aligned_ratio"] >= ALIGNED
    assert (p.clone, p.n_max, p.rotation, p.vflip, p.resize_bounds) == ("mixed", 4, 0.0, True, (0.5, 2.0))
    assert reasons["kind"].startswith("texture:")


def test_an_aligned_object_gets_a_background_rule_and_no_rotation_or_shift():
    images = _objects(12, moving=False)
    p, reasons, measured = decide(images, "o")
    assert p.kind == "object" and p.clone == "normal" and p.resize_bounds == (0.7, 1.3)
    b, t = p.background
    assert abs(b - 30) <= 2 and 5 <= t < 60  # the background's level; a threshold above its noise
    assert measured["mask_ok_share"] == 1.0 and "0 of 12 images" in reasons["background"]
    assert p.rotation == 0.0 and p.center_crop == p.crop  # aligned: no rotation, no random shift
    # patch bounds from the object's extent: 120 of 256 rows, 60 of 256 columns, halved
    assert p.half_h[1] == pytest.approx(0.5 * 120 / S, abs=0.02) and p.half_w[1] == pytest.approx(0.5 * 60 / S, abs=0.02)


def test_a_moving_object_gets_rotation_and_shift():
    p, reasons, measured = decide(_objects(12, moving=True), "o")
    assert p.kind == "object" and p.background is not None
    assert measured["aligned_ratio"] >= ALIGNED
    assert p.rotation == 5.0 and p.center_crop > p.crop
    assert "rotation +-5 degrees" in reasons["rotation, center_crop"]


def _soft(n: int, seed: int = 0) -> np.ndarray:
    """One scene blurred until no neighbouring pixels differ sharply (an X-ray's soft contrast), in
    place, with sensor noise: an aligned object without sharp edges."""
    rng = np.random.default_rng(seed)
    soft = cv2.GaussianBlur(cv2.resize(data.camera(), (S, S)), (0, 0), 3).astype(np.float32)
    return np.stack([np.repeat(np.clip(soft + rng.normal(0, 1, soft.shape), 0, 255).astype(np.uint8)[..., None], 3, -1)
                     for _ in range(n)])


def test_objects_clone_normally_where_contrast_changes_sharply_and_mixed_where_it_never_does():
    sharp, why_sharp, m_sharp = decide(_objects(12, moving=False), "o")
    assert sharp.clone == "normal" and m_sharp["sharp_share"] >= SHARP_SHARE
    assert why_sharp["clone"].startswith("normal, as the paper's objects")
    soft, why_soft, m_soft = decide(_soft(12), "x")
    assert soft.kind == "object" and soft.clone == "mixed" and m_soft["sharp_share"] < SHARP_SHARE
    assert "the data argues otherwise" in why_soft["clone"]
    assert decide(_texture(12), "t")[0].clone == "mixed"  # textures: mixed whatever their edges


def test_the_logistic_label_is_fitted_to_the_sample_anomalies_change():
    images = _texture(10)
    p, _, _ = decide(images, "t")
    (k, y0), why, change = fit_logistic(images, p, 40, 0)
    mid, top = np.percentile(change, (50, 90))
    assert y0 == pytest.approx(mid, abs=0.05)
    assert 1 / (1 + math.exp(-k * (top - y0))) == pytest.approx(0.95, abs=0.005)
    assert 1 / (1 + math.exp(-k * (np.percentile(change, 10) - y0))) < 0.5
    assert f"{y0:g}" in why


def test_the_preset_file_reads_back_as_the_calibrated_preset(tmp_path):
    cal = calibrate(_objects(10, moving=False), "part-calibrated", n=20)
    path = tmp_path / "part.toml"
    path.write_text(to_toml(cal, ["a header"]))
    text = path.read_text()
    assert text.startswith("# a header") and "# kind: object:" in text and 'background = [' in text
    back = load_preset_file(path)
    assert back == cal.preset and get_preset(str(path)) == cal.preset


def _class(root: Path, images: np.ndarray, name: str = "part") -> Path:
    d = root / name / "train" / "good"
    d.mkdir(parents=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(d / f"{i:03d}.png"), img[..., ::-1] if img.ndim == 3 else img)
    return root


def test_the_command_writes_the_preset_the_figure_and_the_table_and_train_takes_the_file(tmp_path, capsys):
    from nsa_fast import NSA
    from nsa_fast.train import parse_args

    root = _class(tmp_path / "data", _objects(10, moving=False))
    out = tmp_path / "cal" / "part.toml"
    assert main(["--data", str(root), "--category", "part", "--out", str(out), "--samples", "20"]) == 0
    printed = capsys.readouterr().out
    assert "kind: object:" in printed and "nearest built-in:" in printed and "Sample anomalies of this preset (20)" in printed
    assert out.with_suffix(".calibration.png").stat().st_size > 10_000
    table = __import__("json").loads(out.with_suffix(".calibration.json").read_text())
    assert set(table["statistics"]["skipped_pct"]) and table["statistics"]["patch_area_pct"]["median"] > 0
    preset = parse_args(["--data", str(root), "--category", "part", "--preset", str(out)])[1]
    assert preset == load_preset_file(out) and preset.name == "part-calibrated"
    assert NSA.from_preset(str(out)).preset == preset
    from nsa_fast.synth import main as synth_main

    assert synth_main(["--data", str(root), "--category", "part", "--preset", str(out), "-n", "2",
                       "--out", str(tmp_path / "synth")]) == 0
    assert "preset part-calibrated" in capsys.readouterr().out
    # an existing preset file is not replaced without --overwrite; another preset's figure is its own
    assert main(["--data", str(root), "--category", "part", "--out", str(out), "--samples", "20"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    figure = out.with_suffix(".calibration.png").read_bytes()
    assert main(["--data", str(root), "--category", "part", "--out", str(out.parent / "other.toml"),
                 "--samples", "20", "--seed", "1"]) == 0
    assert out.with_suffix(".calibration.png").read_bytes() == figure


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("case", ["one image", "noise", "mixed sizes", "grey and colour"])
def test_bad_training_folders_are_refused_in_one_line(tmp_path, capsys, case):
    rng = np.random.default_rng(0)
    if case == "one image":
        images, expect = _objects(1, False), "at least 8 normal training images, got 1"
    elif case == "noise":
        images, expect = rng.integers(0, 256, (10, S, S, 3), dtype=np.uint8), "look like noise"
    else:
        images, expect = _objects(10, False), None
    root = _class(tmp_path, images)
    folder = root / "part" / "train" / "good"
    if case == "mixed sizes":
        cv2.imwrite(str(folder / "999.png"), np.zeros((200, 300, 3), np.uint8) + 40)
        expect = "different sizes (width x height: 256x256 (10), 300x200 (1))"
    if case == "grey and colour":
        cv2.imwrite(str(folder / "999.png"), np.zeros((S, S), np.uint8) + 40)
        expect = "mixed grayscale and colour images"
    rc = main(["--data", str(root), "--category", "part", "--out", str(tmp_path / "p.toml"), "--samples", "10"])
    assert rc == 2 and expect in _one_error(capsys)


@pytest.mark.parametrize("line, expect", [
    ("n_max = 'many'", "n_max': expected an integer (1..16), got 'many'"),
    ("colour = 3", "unknown preset field(s) ['colour']"),
    ("half_w = [0.03, 0.7]", "half_w must satisfy 0 < min <= max < 0.5"),
    ("logistic = [-1.0, 7.0]", "logistic must be (k, y0) with k > 0"),
])
def test_an_edited_preset_file_with_a_wrong_field_is_refused_by_name(tmp_path, capsys, line, expect):
    from nsa_fast.train import main as train_main

    path = tmp_path / "p.toml"
    path.write_text(to_toml(calibrate(_texture(9), "t", n=10), ["edited"]) + line + "\n")
    if line.startswith(("n_max", "half_w", "logistic")):  # an edit, not a second key
        key = line.split(" ")[0]
        text = "\n".join(row for row in path.read_text().splitlines() if not row.startswith(f"{key} = ")) + "\n" + line
        path.write_text(text + "\n")
    rc = train_main(["--data", "demo", "--category", "demo", "--preset", str(path), "--out", str(tmp_path / "r")])
    err = _one_error(capsys)
    assert rc == 2 and expect in err and str(path) in err, err


def test_compare_real_says_which_field_to_move(tmp_path, capsys):
    images = _objects(10, False)
    root = _class(tmp_path / "data", images)
    for sub in ("test/good", "test/dot", "ground_truth/dot"):
        (root / "part" / sub).mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(root / "part/test/good" / f"{i}.png"), images[i][..., ::-1])
        bad, mask = images[i].copy(), np.zeros((S, S), np.uint8)
        bad[120:123, 120:123] = 255  # tiny and strong
        mask[120:123, 120:123] = 255
        cv2.imwrite(str(root / "part/test/dot" / f"{i}.png"), bad[..., ::-1])
        cv2.imwrite(str(root / "part/ground_truth/dot" / f"{i}_mask.png"), mask)
    out = tmp_path / "p.toml"
    assert main(["--data", str(root), "--category", "part", "--out", str(out), "--samples", "20", "--compare-real"]) == 0
    printed = capsys.readouterr().out
    assert "dot" in printed and "lower the upper bounds of half_h/half_w" in printed
    assert "raise the logistic label's y0" in printed



def test_real_tire_calibrates_as_an_object_and_checks_its_rule_on_the_validation_images(tire_root, tmp_path, capsys):
    out = tmp_path / "tire.toml"
    assert main(["--data", str(tire_root), "--category", "tire", "--out", str(out), "--samples", "30"]) == 0
    printed = capsys.readouterr().out
    preset = load_preset_file(out)
    assert preset.kind == "object" and preset.background is not None
    assert "on the 29 validation images it fails in" in printed
    table = __import__("json").loads((tmp_path / "tire.calibration.json").read_text())
    assert 0 <= table["measured"]["validation_mask_ok_share"] <= 1
