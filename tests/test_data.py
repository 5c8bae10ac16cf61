"""Bad data gets clear errors that name the file and say what to do."""
import cv2
import numpy as np
import pytest

from nsa_fast.data import load_images, load_masks, test_items, train_files
from nsa_fast.errors import InputError
from nsa_fast.presets import get_preset
from nsa_fast.train import main as train_main

PRESET = get_preset("carpet")


def write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def mvtec(root, n_train=3, size=64):
    rng = np.random.default_rng(0)
    img = lambda: rng.integers(0, 256, (size, size, 3)).astype(np.uint8)  # noqa: E731
    for i in range(n_train):
        write(root / "c" / "train" / "good" / f"{i}.png", img())
    write(root / "c" / "test" / "good" / "0.png", img())
    write(root / "c" / "test" / "hole" / "0.png", img())
    mask = np.zeros((size, size), np.uint8)
    mask[10:20, 10:20] = 255
    write(root / "c" / "ground_truth" / "hole" / "0_mask.png", mask)
    return root


def test_valid_layout_loads(tmp_path):
    root = mvtec(tmp_path)
    assert len(train_files(root, "c")) == 3
    items = test_items(root, "c")
    assert [(i.defect, i.label) for i in items] == [("good", 0), ("hole", 1)]
    masks = load_masks(items, 32)
    assert masks.shape == (2, 32, 32) and masks[1].sum() == 25 and not masks[0].any()


def test_generic_layout_without_good_subfolder(tmp_path):
    write(tmp_path / "mine" / "train" / "a.png", np.zeros((40, 40, 3), np.uint8))
    assert [p.name for p in train_files(tmp_path, "mine")] == ["a.png"]


def test_missing_folders(tmp_path):
    with pytest.raises(InputError, match="no class folder .*Check --data and --category"):
        train_files(tmp_path, "bottle")
    (tmp_path / "bottle").mkdir()
    with pytest.raises(InputError, match="no training folder"):
        train_files(tmp_path, "bottle")
    with pytest.raises(InputError, match="no test folder"):
        test_items(tmp_path, "bottle")


def test_folder_without_images(tmp_path):
    (tmp_path / "c" / "train" / "good").mkdir(parents=True)
    (tmp_path / "c" / "train" / "good" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="holds no images"):
        train_files(tmp_path, "c")


def test_corrupt_png_is_named(tmp_path):
    root = mvtec(tmp_path)
    bad = root / "c" / "train" / "good" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InputError, match=r"cannot decode the image .*1\.png.*corrupt"):
        load_images(train_files(root, "c"), PRESET, 32)


def test_mask_of_another_size(tmp_path):
    root = mvtec(tmp_path)
    write(root / "c" / "ground_truth" / "hole" / "0_mask.png", np.zeros((50, 64), np.uint8))
    with pytest.raises(InputError, match=r"0_mask\.png' is 50x64 but its image .* is 64x64"):
        load_masks(test_items(root, "c"), 32)


def test_test_image_without_mask(tmp_path):
    root = mvtec(tmp_path)
    write(root / "c" / "test" / "hole" / "1.png", np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match=r"test image .*hole/1\.png' has no mask: expected .*1_mask\.png"):
        test_items(root, "c")


def test_mixed_channel_counts(tmp_path):
    root = mvtec(tmp_path)
    write(root / "c" / "train" / "good" / "9.png", np.zeros((64, 64), np.uint8))  # grayscale among RGB
    # the message names full paths: a file name alone may exist in several folders
    with pytest.raises(InputError, match=r"mixed grayscale and colour.*1 with 1 channel \(e\.g\. '[^']*/c/train/good/9\.png'\); "
                                         r"3 with 3 channels \(e\.g\. '[^']*/c/train/good/0\.png'\)"):
        load_images(train_files(root, "c"), PRESET, 32)


def test_grayscale_and_16_bit_and_alpha_are_read(tmp_path):
    write(tmp_path / "g.png", (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8))
    write(tmp_path / "h.png", np.full((64, 64), 40000, np.uint16))
    gray = load_images([tmp_path / "g.png", tmp_path / "h.png"], get_preset("chest_xray"), 64)
    assert gray.shape == (2, 64, 64, 1) and gray[1].max() == 40000 >> 8
    write(tmp_path / "a.png", np.full((64, 64, 4), 9, np.uint8))
    assert load_images([tmp_path / "a.png"], PRESET, 64).shape == (1, 64, 64, 3)


def test_trainer_reports_bad_data_with_exit_code_2(tmp_path, capsys):
    rc = train_main(["--data", str(tmp_path), "--category", "nothing", "--out", str(tmp_path / "o")])
    assert rc == 2 and "no class folder" in capsys.readouterr().err
