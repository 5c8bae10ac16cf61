"""Bad data gets clear errors that name the file and say what to do."""
import subprocess
import sys

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
    with pytest.raises(InputError, match="no training images found for class 'bottle'.*MVTec AD/MPDD \\(train/good\\)"):
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
    # 50 rows of 64 pixels: width 64, height 50
    with pytest.raises(InputError, match=r"0_mask\.png' is 64x50 but its image .* is 64x64 \(width x height\)"):
        load_masks(test_items(root, "c"), 32)


def test_sizes_in_warnings_are_width_x_height(tmp_path, capsys):
    from nsa_fast.errors import _WARNED

    _WARNED.clear()
    write(tmp_path / "wide.png", np.zeros((20, 40, 3), np.uint8))  # 20 rows of 40 pixels: width 40, height 20
    load_images([tmp_path / "wide.png"], PRESET, 32)
    err = capsys.readouterr().err
    assert "wide.png' is 40x20, width x height); they are resized to 32x32" in err
    assert "smaller than 32x32 (e.g. " in err and "20x40" not in err


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


def test_a_missing_class_lists_the_classes_under_the_root(tmp_path):
    for name in ("bottle", "cable", "zipper"):
        (tmp_path / name / "train" / "good").mkdir(parents=True)
    (tmp_path / "notes").mkdir()  # a folder without train/ or test/ is not a class
    (tmp_path / "license.txt").write_text("x")
    with pytest.raises(InputError, match=r"no class folder 'botle' under '[^']+'; found: bottle, cable, zipper "
                                         r"\(did you mean 'bottle'\?\)\. Check --data and --category"):
        train_files(tmp_path, "botle")
    # --data pointed at a class folder itself
    with pytest.raises(InputError, match=r"no class folder 'bottle' under .*it holds no class folders but is one "
                                         r"itself .*use --data '[^']+' --category 'bottle'"):
        train_files(tmp_path / "bottle", "bottle")
    with pytest.raises(InputError, match=r"the dataset root --data '[^']*nowhere' is not a folder"):
        train_files(tmp_path / "nowhere", "bottle")


def bad_images(folder):
    """A PNG cut off in its image data (libpng prints "libpng error: Read Error" itself), a PNG
    signature before garbage (OpenCV logs "[ WARN:0@...]" and "[ERROR:0@...]"), garbage named
    .png and .jpg, and a JPEG cut short (libjpeg prints "Premature end of JPEG file")."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (96, 96, 3)).astype(np.uint8)
    png = cv2.imencode(".png", img)[1].tobytes()
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    files = {"cut.png": png[: len(png) * 3 // 4], "signature.png": b"\x89PNG\r\n\x1a\n garbage",
             "garbage.png": b"not an image", "garbage.jpg": b"not an image either", "cut.jpg": jpg[: len(jpg) // 2]}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / n for n in files]


DECODE_ONE = """
import sys
from nsa_fast import cli
from nsa_fast.io import decode
sys.exit(cli.run(lambda argv: decode(argv[0]) is None, sys.argv[1:]))
"""


def test_decoder_messages_do_not_reach_the_console(tmp_path):
    # in subprocesses: the decoders write to file descriptor 2 themselves, past sys.stderr
    for f in bad_images(tmp_path):
        run = subprocess.run([sys.executable, "-c", DECODE_ONE, str(f)], capture_output=True, text=True, timeout=120)
        lines = run.stderr.splitlines()
        if f.name == "cut.jpg":  # decodes, grey below the cut: one warning that names it
            assert run.returncode == 0 and len(lines) == 1, run.stderr
            assert lines[0].startswith("warning: the image ") and "cut.jpg" in lines[0], run.stderr
            assert "Premature end of JPEG file" in lines[0]  # quoted inside the project's line
            continue
        assert run.returncode == 2, run.stderr
        assert len(lines) == 1 and lines[0].startswith("error: cannot decode the image "), f"{f.name}: {run.stderr}"
        assert f.name in lines[0]


def test_a_corrupt_training_image_shows_one_error_line_from_the_trainer(tmp_path):
    root = mvtec(tmp_path / "data")
    bad = bad_images(tmp_path)[0]  # the PNG cut off in its image data
    (root / "c" / "train" / "good" / "1.png").write_bytes(bad.read_bytes())
    run = subprocess.run([sys.executable, "-m", "nsa_fast.train", "--data", str(root), "--category", "c",
                          "--out", str(tmp_path / "run"), "--epochs", "1"], capture_output=True, text=True,
                         timeout=300)
    lines = run.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert run.returncode == 2 and len(errors) == 1, run.stderr
    assert all(line.startswith(("error: ", "warning: ")) for line in lines), run.stderr  # nothing of the decoder's
    assert errors[0].startswith("error: cannot decode the image ") and "1.png" in errors[0]
    assert "libpng error: Read Error" in errors[0]  # the decoder's reason, inside the project's line


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
