import json

import numpy as np
import pytest

from nsa_fast.io import write_image
from nsa_fast.synth import main


def test_synth_on_real_tire_data_gives_nonempty_labels(tire_root, tmp_path, capsys):
    rc = main(["--data", str(tire_root), "--category", "tire", "--out", str(tmp_path), "-n", "120",
               "--seed", "0"])
    assert rc == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["samples"] == 120 and stats["nonempty_labels"] >= 0.95 * 120
    data = np.load(tmp_path / "synthetic.npz")
    assert data["images"].shape == (120, 224, 224, 3) and data["labels"].shape == (120, 224, 224)
    assert (tmp_path / "synthetic.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "patches tried" in out and f"non-empty labels: {stats['nonempty_labels']}/120" in out


def make_class(root, name, images):
    folder = root / name / "train" / "good"
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        write_image(folder / f"{i:03d}.png", img)


@pytest.mark.parametrize("task", ["nsa", "cutpaste", "fpi", "fpi-poisson", "nsa-swap"])
def test_synth_cli_tasks_on_textures(textures, tmp_path, task):
    make_class(tmp_path / "data", "carpet", textures[:4])
    rc = main(["--data", str(tmp_path / "data"), "--category", "carpet", "--out", str(tmp_path / "o"),
               "-n", "4", "--task", task, "--seed", "1"])
    assert rc == 0
    data = np.load(tmp_path / "o" / "synthetic.npz")
    assert data["images"].shape == (4, 256, 256, 3)  # texture: 264 then a random 256 crop
    assert not np.array_equal(data["images"], data["originals"])


def test_synth_cli_grayscale(textures, tmp_path):
    gray = [t.mean(axis=2).astype(np.uint8) for t in textures[:3]]
    make_class(tmp_path / "data", "xr", gray)
    rc = main(["--data", str(tmp_path / "data"), "--category", "xr", "--preset", "chest_xray",
               "--out", str(tmp_path / "o"), "-n", "3", "--set", "background=none"])
    assert rc == 0
    assert np.load(tmp_path / "o" / "synthetic.npz")["images"].shape == (3, 224, 224, 1)


def test_synth_cli_reports_missing_folder(tmp_path, capsys):
    rc = main(["--data", str(tmp_path), "--category", "bottle", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "no class folder" in capsys.readouterr().err


@pytest.mark.parametrize("solver", ["sor", "dst"])
def test_synth_with_a_solver_uses_the_batched_executor(tmp_path, textures, solver, capsys):
    # the same plans as the OpenCV executor; the batched Poisson solve may differ by a grey level
    make_class(tmp_path / "data", "cls", [np.ascontiguousarray(t[:224, :224]) for t in textures])
    common = ["--data", str(tmp_path / "data"), "--category", "cls", "--preset", "carpet", "-n", "6",
              "--set", "image_size=136", "--set", "crop=128"]
    assert main([*common, "--out", str(tmp_path / "cv")]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--solver", solver, "--device", "cpu"]) == 0
    a, b = np.load(tmp_path / "cv" / "synthetic.npz"), np.load(tmp_path / "b" / "synthetic.npz")
    np.testing.assert_array_equal(a["originals"], b["originals"])
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    assert np.abs(a["images"].astype(int) - b["images"]).max() <= 1
    assert (a["labels"] == b["labels"]).mean() > 0.999 and b["labels"].any()
    sa, sb = (json.loads((tmp_path / d / "stats.json").read_text()) for d in ("cv", "b"))
    assert sb["executor"] == f"batched ({solver})" and sa["executor"] == "opencv"
    assert sb["tried"] == sa["tried"] > 0 and sb["accepted"] == sa["accepted"] and sb["skipped"] == sa["skipped"]
    assert f"executor batched ({solver})" in capsys.readouterr().out


def test_synth_refuses_a_device_without_a_solver(tmp_path, textures, capsys):
    make_class(tmp_path / "data", "cls", [np.ascontiguousarray(t[:224, :224]) for t in textures])
    rc = main(["--data", str(tmp_path / "data"), "--category", "cls", "--out", str(tmp_path / "s"),
               "--device", "cpu"])
    assert rc == 2 and "--device cpu applies to the batched executor: add --solver" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
