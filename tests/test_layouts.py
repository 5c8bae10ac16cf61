"""The dataset layouts as distributed (file names, extensions, mask values), each read end to end.

Fixtures mirror the layouts' documentation: MVTec AD / MPDD (CLASS/train/good, test/<defect>,
ground_truth/<defect>/<name>_mask.png), MVTec AD 2 (train/good, validation/good, test_public/
{good,bad}, test_public/ground_truth/bad/<name>_mask.png, test_private*/ without masks), BTAD
(01 BMP images with PNG masks, 02 PNG and PNG, 03 BMP and BMP; train/ok, test/ok, test/ko,
ground_truth/ko/<name>.<ext>) and VisA (split_csv/1cls.csv, Data/Images/{Normal,Anomaly}/*.JPG,
Data/Masks/Anomaly/*.png with values 0/1 or 0/255).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from nsa_fast.data import load_masks, test_items, train_files
from nsa_fast.errors import InputError
from nsa_fast.layouts import detect, open_dataset

SIDE = 72
SMALL = ["--set", "image_size=72", "--set", "crop=64", "--set", "center_crop=none", "--batch-size", "4",
         "--epochs", "1", "--steps-per-epoch", "1", "--workers", "0", "--grid-every", "1"]


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = cv2.cvtColor(cv2.resize(data.brick(), (SIDE, SIDE), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
    return [np.clip(base.astype(int) + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)
            for _ in range(n)]


def _defect(img: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = rng.integers(10, SIDE - 26, 2)
    out, mask = img.copy(), np.zeros(img.shape[:2], np.uint8)
    out[y:y + 16, x:x + 16] = 255
    mask[y:y + 16, x:x + 16] = 1
    return out, mask


def _write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def make_mvtec(root: Path, category: str = "bracket_black", defect: str = "hole") -> Path:
    d = root / category
    for i, img in enumerate(_images(6, 0)):
        _write(d / "train" / "good" / f"{i:03d}.png", img)
    for i, img in enumerate(_images(2, 1)):
        _write(d / "test" / "good" / f"{i:03d}.png", img)
        bad, mask = _defect(img, i)
        _write(d / "test" / defect / f"{i:03d}.png", bad)
        _write(d / "ground_truth" / defect / f"{i:03d}_mask.png", mask * 255)
    return root


def make_mvtec_ad2(root: Path, category: str = "can") -> Path:
    d = root / category
    for i, img in enumerate(_images(6, 0)):
        _write(d / "train" / "good" / f"{i:03d}_regular.png", img)
    for i, img in enumerate(_images(20, 2)):  # enough for training to set the thresholds on them (5 %)
        _write(d / "validation" / "good" / f"{i:03d}_regular.png", img)
    for i, img in enumerate(_images(2, 1)):
        _write(d / "test_public" / "good" / f"{i:03d}_regular.png", img)
        bad, mask = _defect(img, i)
        _write(d / "test_public" / "bad" / f"{i:03d}_overexposed.png", bad)
        _write(d / "test_public" / "ground_truth" / "bad" / f"{i:03d}_overexposed_mask.png", mask * 255)
        _write(d / "test_private" / f"{i:03d}_regular.png", bad)
        _write(d / "test_private_mixed" / f"{i:03d}_mixed.png", img)
    return root


BTAD_EXT = {"01": (".bmp", ".png"), "02": (".png", ".png"), "03": (".bmp", ".bmp")}


def make_btad(root: Path, category: str = "01") -> Path:
    d = root / category
    ext, mext = BTAD_EXT[category]
    for i, img in enumerate(_images(6, 0)):
        _write(d / "train" / "ok" / f"{i:04d}{ext}", img)
    for i, img in enumerate(_images(2, 1)):
        _write(d / "test" / "ok" / f"{i:04d}{ext}", img)
        bad, mask = _defect(img, i)
        _write(d / "test" / "ko" / f"{i:04d}{ext}", bad)
        _write(d / "ground_truth" / "ko" / f"{i:04d}{mext}", mask * 255)
    return root


def make_visa(root: Path, category: str = "candle", mask_value: int = 1) -> Path:
    d = root / category / "Data"
    rows = [["object", "split", "label", "image", "mask"]]
    for i, img in enumerate(_images(6, 0)):
        _write(d / "Images" / "Normal" / f"{i:04d}.JPG", img)
        rows.append([category, "train", "normal", f"{category}/Data/Images/Normal/{i:04d}.JPG", ""])
    for i, img in enumerate(_images(2, 1)):
        _write(d / "Images" / "Normal" / f"{i + 6:04d}.JPG", img)
        rows.append([category, "test", "normal", f"{category}/Data/Images/Normal/{i + 6:04d}.JPG", ""])
        bad, mask = _defect(img, i)
        _write(d / "Images" / "Anomaly" / f"{i:03d}.JPG", bad)
        _write(d / "Masks" / "Anomaly" / f"{i:03d}.png", mask * mask_value)
        rows.append([category, "test", "anomaly", f"{category}/Data/Images/Anomaly/{i:03d}.JPG",
                     f"{category}/Data/Masks/Anomaly/{i:03d}.png"])
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root


MAKERS = {"mpdd": (make_mvtec, "bracket_black"), "mvtec_ad2": (make_mvtec_ad2, "can"),
          "btad": (make_btad, "01"), "visa": (make_visa, "candle")}


@pytest.mark.parametrize("layout", sorted(MAKERS))
def test_each_layout_is_detected_and_split_by_role(tmp_path, layout):
    make, category = MAKERS[layout]
    root = make(tmp_path)
    expect = "mvtec" if layout == "mpdd" else layout  # MPDD is the MVTec AD layout
    assert detect(root, category) == [expect]
    ds = open_dataset(root, category)
    assert ds.layout == expect and len(ds.train) == 6
    items = ds.test_items()
    assert [i.label for i in items].count(1) == 2 and [i.label for i in items].count(0) == 2
    assert all(i.mask is not None and i.mask.is_file() for i in items if i.label)
    assert not {i.path for i in items} & set(ds.train)
    masks = load_masks(items, SIDE)
    assert all(m.sum() == 16 * 16 for m, i in zip(masks, items) if i.label)  # 0/1 and 0/255 masks alike
    assert not masks[[i.label == 0 for i in items]].any()


@pytest.mark.parametrize("category", sorted(BTAD_EXT))
def test_btad_reads_its_three_products_with_their_own_extensions(tmp_path, category):
    root = make_btad(tmp_path, category)
    ext, mext = BTAD_EXT[category]
    items = test_items(root, category)
    assert {i.path.suffix for i in items} == {ext} and {i.mask.suffix for i in items if i.label} == {mext}
    assert {i.defect for i in items} == {"ok", "ko"}


@pytest.mark.parametrize("value", [1, 255])
def test_visa_masks_of_0_1_and_0_255_mark_the_same_pixels(tmp_path, value):
    root = make_visa(tmp_path, mask_value=value)
    items = test_items(root, "candle")
    assert [int(m.sum()) for m in load_masks(items, SIDE)] == [256 * i.label for i in items] and sum(i.label for i in items) == 2


def test_mvtec_ad2_keeps_validation_and_private_sets_out_of_training(tmp_path):
    root = make_mvtec_ad2(tmp_path)
    ds = open_dataset(root, "can")
    assert len(ds.validation) == 20 and not set(ds.validation) & set(ds.train)
    assert sorted(ds.unlabelled) == ["test_private", "test_private_mixed"]
    assert all(p.parent.name.startswith("test_private") for v in ds.unlabelled.values() for p in v)
    assert train_files(root, "can") == ds.train
    assert all(p.parent == root / "can" / "train" / "good" for p in ds.train)


def test_an_ambiguous_folder_names_the_candidates_and_layout_decides(tmp_path):
    root = make_mvtec(tmp_path, "part")
    (root / "part" / "train" / "ok").mkdir()
    for i, img in enumerate(_images(2, 5)):
        _write(root / "part" / "train" / "ok" / f"{i:04d}.bmp", img)
    with pytest.raises(InputError, match=r"fits several layouts \(btad, mvtec\); say which with --layout btad"):
        open_dataset(root, "part")
    assert len(open_dataset(root, "part", "mvtec").train) == 6
    assert len(open_dataset(root, "part", "btad").train) == 2


def test_a_folder_of_no_known_layout_says_what_each_expects(tmp_path):
    (tmp_path / "part" / "images").mkdir(parents=True)
    with pytest.raises(InputError, match="MVTec AD/MPDD \\(train/good\\).*BTAD \\(train/ok\\).*VisA"):
        open_dataset(tmp_path, "part")


def test_visa_split_file_with_a_missing_image_names_the_row(tmp_path):
    root = make_visa(tmp_path)
    (root / "candle" / "Data" / "Images" / "Normal" / "0002.JPG").unlink()
    with pytest.raises(InputError, match="names the image 'candle/Data/Images/Normal/0002.JPG'"):
        open_dataset(root, "candle")


def _cli(module: str, argv: list[str]) -> int:
    return __import__(f"nsa_fast.{module}", fromlist=["main"]).main(argv)


@pytest.mark.parametrize("layout", sorted(MAKERS))
def test_each_layout_trains_and_evaluates_end_to_end(tmp_path, layout, capsys):
    make, category = MAKERS[layout]
    expect = "mvtec" if layout == "mpdd" else layout  # MPDD is the MVTec AD layout
    root = make(tmp_path / "data")
    out = tmp_path / "run"
    assert _cli("train", ["--data", str(root), "--category", category, "--out", str(out), *SMALL]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["layout"] == expect  # the layout read, as detected
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["n_test"] == 4 and metrics["n_anomalous"] == 2
    printed = capsys.readouterr().out
    assert "Results on" in printed
    assert (f"({expect} layout)" in printed.splitlines()[0]) == (expect not in ("mvtec", "generic"))
    if layout == "mvtec_ad2":
        assert "kept out of training, for the thresholds: 20 normal validation images (mvtec_ad2 layout)" in printed
        assert len(config["validation_files"]) == 20 and not set(config["validation_files"]) & {
            str(p.resolve()) for p in (root / category / "train" / "good").iterdir()}
        th = json.loads((out / "last.thresholds.json").read_text())  # set on the validation images alone
        assert th["n_images"] == 20 and th["false_reject"] == 0.05 and th["normals"] == "the run's held-out normal images"
        private = root / category / "test_private"
        assert _cli("predict", ["--checkpoint", str(out / "last.pt"), str(private), "--out", str(tmp_path / "p")]) == 0
        rows = (tmp_path / "p" / "scores.csv").read_text().splitlines()
        assert len(rows) == 1 + 2 and "decision" in rows[0]


def test_layout_flag_is_refused_when_the_folder_does_not_fit(tmp_path, capsys):
    root = make_btad(tmp_path / "data")
    rc = _cli("train", ["--data", str(root), "--category", "01", "--layout", "visa", "--out", str(tmp_path / "r"),
                        *SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert "split_csv" in err and "looks like the btad layout: use --layout btad (or auto)" in err


# -- images of more than 8 bits ------------------------------------------------------------------

def _sixteen_bit(root: Path, top: int = 4095) -> Path:
    """A generic class of 12-bit data in 16-bit PNGs (values 0..top), with a test set."""
    d = root / "cam"
    for i, img in enumerate(_images(6, 0)):
        wide = (img.astype(np.int32) * top // 255).astype(np.uint16)
        wide[0, 0] = top if i == 0 else wide[0, 0]
        _write(d / "train" / f"{i:03d}.png", wide)
    for i, img in enumerate(_images(2, 1)):
        _write(d / "test" / "good" / f"{i:03d}.png", (img.astype(np.int32) * top // 255).astype(np.uint16))
        bad, mask = _defect(img, i)
        _write(d / "test" / "spot" / f"{i:03d}.png", (bad.astype(np.int32) * top // 255).astype(np.uint16))
        _write(d / "ground_truth" / "spot" / f"{i:03d}_mask.png", mask * 255)
    return root


def test_16_bit_images_use_the_training_sets_window_everywhere(tmp_path, capsys):
    from nsa_fast.evaluate import load_model
    from nsa_fast.io import decode, intensity_window

    root = _sixteen_bit(tmp_path / "data")
    files = train_files(root, "cam")
    lo, hi = intensity_window(files)
    raw = np.concatenate([cv2.imread(str(f), cv2.IMREAD_UNCHANGED).ravel() for f in files])
    assert (lo, hi) == tuple(np.percentile(raw, (0.1, 99.9)))
    assert hi > 2000  # 12-bit values: spread over 0..255, not squeezed into the high byte's 0..15
    img = decode(files[0], (lo, hi))
    assert img.max() == 255 and len(np.unique(img)) > 50
    assert len(np.unique(decode(files[0]))) <= 16  # what the high byte alone keeps
    out = tmp_path / "run"
    assert _cli("train", ["--data", str(root), "--category", "cam", "--out", str(out), *SMALL]) == 0
    assert "16-bit training images: grey levels" in capsys.readouterr().out
    window = json.loads((out / "config.json").read_text())["preset"]["window"]
    assert window == [lo, hi]
    _, preset, _ = load_model(out / "last.pt", "cpu")
    assert preset.window == (lo, hi)  # evaluation and prediction decode with it
    assert _cli("predict", ["--checkpoint", str(out / "last.pt"), str(root / "cam" / "test" / "spot"),
                            "--out", str(tmp_path / "p")]) == 0
    assert "12-bit data?" not in capsys.readouterr().err


def test_8_and_16_bit_training_images_mixed_are_refused(tmp_path, capsys):
    root = make_mvtec(tmp_path / "data", "part")
    _write(root / "part" / "train" / "good" / "999.png", np.zeros((SIDE, SIDE, 3), np.uint16))
    rc = _cli("train", ["--data", str(root), "--category", "part", "--out", str(tmp_path / "r"), *SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and "mix 8-bit (6" in err and "16-bit files (1" in err, err


def test_a_window_out_of_range_is_refused_by_name():
    from nsa_fast.errors import PresetError
    from nsa_fast.presets import get_preset

    with pytest.raises(PresetError, match=r"window must be \(lo, hi\) with 0 <= lo < hi <= 65535"):
        get_preset("generic").replace(window="500,100")


def test_real_mvtec_3d_ad_tire_keeps_its_validation_images_out_of_training(tire_root):
    ds = open_dataset(tire_root, "tire")
    assert ds.layout == "mvtec" and len(ds.train) == 210 and len(ds.validation) == 29
    assert not set(ds.validation) & set(ds.train)
    assert {i.defect for i in ds.test_items()} == {"good", "combined", "contamination", "cut", "hole"}
