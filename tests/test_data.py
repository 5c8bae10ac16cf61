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


def test_jpeg_masks_and_12_bit_images_are_named(tmp_path, capsys):
    from nsa_fast.data import load_masks, test_items
    from nsa_fast.errors import _WARNED
    from nsa_fast.io import decode

    _WARNED.clear()
    img = np.zeros((64, 64), np.uint16)
    img[10:20] = 4000  # 12-bit data stored in a 16-bit file
    cv2.imwrite(str(tmp_path / "deep.png"), img)
    assert decode(tmp_path / "deep.png").max() == 4000 >> 8
    assert "values stay below 4096 (12-bit data?)" in capsys.readouterr().err
    root = tmp_path / "r" / "c"
    for sub in ("test/good", "test/cut", "ground_truth/cut"):
        (root / sub).mkdir(parents=True)
    rgb = np.full((32, 32, 3), 128, np.uint8)
    cv2.imwrite(str(root / "test/good/0.png"), rgb)
    cv2.imwrite(str(root / "test/cut/0.png"), rgb)
    m = np.zeros((32, 32), np.uint8)
    m[8:16, 8:16] = 255
    cv2.imwrite(str(root / "ground_truth/cut/0_mask.jpg"), m)
    for _ in range(2):  # named once, however often the masks are read
        load_masks(test_items(tmp_path / "r", "c"), 32)
    err = capsys.readouterr().err
    assert err.count("mask(s) are JPEG files") == 1 and "Store masks as PNG" in err


def test_atomic_writes_name_the_file_and_leave_nothing_half_written(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from nsa_fast.io import write_text_atomic

    write_text_atomic(tmp_path / "config.json", "old")

    def full(self, data):
        Path.open(self, "wb").write(data[:1])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as err:
        write_text_atomic(tmp_path / "config.json", "new contents")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "config.json")
    monkeypatch.undo()
    assert (tmp_path / "config.json").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
