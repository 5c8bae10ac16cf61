"""Every command line refuses a user's mistake the same way: exit code 2, one ``error:`` line that
names the problem, no traceback, and nothing written or changed that was there before."""
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nsa_fast import doctor, evaluate, predict, runner, synth, train
from nsa_fast.demo import ensure_demo

SMALL = ["--set", "image_size=72", "--set", "crop=64", "--batch-size", "4", "--workers", "0"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Demo data, a finished one-epoch run, and some broken files."""
    base = tmp_path_factory.mktemp("cli")
    root = ensure_demo(base / "data")
    run = base / "run"
    assert train.main(["--data", str(root), "--category", "demo", "--out", str(run), *SMALL, "--epochs", "1",
                       "--steps-per-epoch", "1", "--no-eval"]) == 0
    (base / "bad.yaml").write_text("n_max: [1, 2\n  oops: }")
    (base / "bad.json").write_text("{n_max: 3")
    torch.save({"weights": torch.zeros(3)}, base / "foreign.pt")
    data = (run / "last.pt").read_bytes()
    (base / "truncated.pt").write_bytes(data[: len(data) // 3])
    (base / "a_file").write_text("not a folder")
    one = base / "one" / "cls" / "train" / "good"
    one.mkdir(parents=True)
    shutil.copy(root / "demo" / "train" / "good" / "000.png", one / "000.png")
    # a test set whose mask has the wrong size
    broken = base / "broken"
    shutil.copytree(root / "demo", broken / "demo")
    mask = next((broken / "demo" / "ground_truth" / "stain").glob("*.png"))
    cv2.imwrite(str(mask), np.zeros((10, 10), np.uint8))
    # grey and colour images mixed
    mixed = base / "mixed" / "cls" / "train" / "good"
    mixed.mkdir(parents=True)
    for i, f in enumerate(sorted((root / "demo" / "train" / "good").glob("*.png"))[:4]):
        img = cv2.imread(str(f))
        cv2.imwrite(str(mixed / f.name), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if i == 0 else img)
    # a checkpoint whose weights do not fit the network it describes
    state = torch.load(run / "last.pt", weights_only=True)
    state["model_args"]["in_channels"] = 1
    torch.save(state, base / "wrong_channels.pt")
    notest = base / "notest" / "cls" / "train" / "good"
    notest.mkdir(parents=True)
    for f in sorted((root / "demo" / "train" / "good").glob("*.png"))[:6]:
        shutil.copy(f, notest / f.name)
    return {"root": str(root), "run": str(run), "base": base}


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nothing can be written to, root included (a read-only tmpfs when we are root)."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(d)]).returncode != 0:
            assert not os.environ.get("CI"), "CI runs as root and can mount a read-only tmpfs"
            pytest.skip("cannot mount a read-only tmpfs here")
        yield d
        subprocess.run(["umount", str(d)])
    else:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)


def snapshot(path: Path) -> dict:
    if not path.exists():
        return {}
    if path.is_file():
        return {path: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in path.rglob("*")}


def refused(capsys, fn, argv, match, watch=()):
    """fn(argv) exits 2 with one error line matching ``match`` and changes nothing in ``watch``."""
    before = [snapshot(Path(w)) for w in watch]
    rc = fn(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2, f"exit {rc}, stderr: {err}"
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.search(match, lines[0]), lines[0]
    assert [snapshot(Path(w)) for w in watch] == before, "earlier output changed"
    return lines[0]


def T(w, *extra, out=None, data=None, category="demo"):
    return ["--data", data or w["root"], "--category", category, "--out", str(out or w["base"] / "new"), *SMALL,
            "--epochs", "1", "--steps-per-epoch", "1", *extra]


TRAIN_CASES = [
    (["--batch-size", "0"], r"--batch-size: expected a positive integer up to 1,000,000, got '0'"),
    (["--batch-size", "-2"], r"--batch-size: expected a positive integer up to 1,000,000, got '-2'"),
    (["--batch-size", "1"], r"--batch-size must be at least 2"),
    (["--grid-every", "0"], r"--grid-every: expected a positive integer"),
    (["--workers", "-1"], r"--workers: expected a non-negative integer up to 256"),
    (["--lr", "-1"], r"--lr: expected a positive number up to 10, got '-1'"),
    (["--lr", "nan"], r"--lr: expected a positive number up to 10, got 'nan'"),
    (["--lr", "1e99"], r"--lr: expected a positive number up to 10, got '1e99'"),
    (["--seed", "99999999999999999999"], r"--seed: expected a non-negative integer up to 4,294,967,295"),
    (["--workers", "99999999999999999999"], r"--workers: expected a non-negative integer up to 256"),
    (["--epochs", "99999999999999999999"], r"--epochs: expected a positive integer up to 1,000,000"),
    (["--set", "n_max=Infinity"], r"preset field 'n_max': expected an integer \(1..16\), got 'Infinity'"),
    (["--set", "n_max=1e400"], r"preset field 'n_max': expected an integer"),
    (["--set", "image_size=0"], r"image_size must be at least 32 pixels, got 0"),
    (["--set", "label_tol=255"], r"label_tol must be 0..254"),
    (["--set", "ensure_label=1000000000"], r"ensure_label must be 0..100"),
    (["--set", "min_mask_pixels=1000000000"], r"min_mask_pixels must be below the crop's 4096 pixels"),
    (["--set", "half_h=0.03,0.06", "--set", "half_w=0.03,0.06"],
     r"no synthetic anomaly in 8 trial samples .*accepted 0, skipped \d+ \(small_mask \d+\)"),
    (["--seed", "-1"], r"--seed: expected a non-negative integer up to 4,294,967,295"),
    (["--epochs", "0"], r"--epochs: expected a positive integer"),
    (["--steps-per-epoch", "0"], r"--steps-per-epoch: expected a positive integer"),
    (["--stop-after", "0"], r"--stop-after: expected a positive integer"),
    (["--solver", "fast"], r"--solver: invalid choice"),
    (["--set", "channels=1"], r"channels=1 needs normalize=none"),
    (["--set", "n_max=abc"], r"preset field 'n_max': expected an integer \(1..16\), got 'abc'"),
    (["--set", "t_object=5"], r"t_object must be a share in \[0, 1\), got 5"),
    (["--set", "t_overlap=-1"], r"t_overlap must be a share"),
    (["--set", "label_tol=-3"], r"label_tol must be 0..254"),
    (["--set", "logistic=0,0"], r"logistic must be \(k, y0\) with k > 0"),
    (["--set", "rotation=1e9"], r"rotation must be 0..180 degrees"),
    (["--set", "kind=banana"], r"kind must be one of"),
    (["--set", "crop=50"], r"crop must be a multiple of 32 pixels to train .* e\.g\. --set crop=32"),
    (["--preset", "bottle", "--set", "image_size=64", "--set", "crop=64"],
     r"center_crop \(230\) must lie between crop \(64\) and image_size \(64\); set it too"),
    (["--resume", "--overwrite"], r"--resume and --overwrite contradict"),
    (["--resume"], r"--resume: there is no checkpoint"),
]


@pytest.mark.parametrize("extra,match", TRAIN_CASES, ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_train_refuses_bad_arguments(world, capsys, extra, match):
    refused(capsys, train.main, T(world, *extra, out=world["base"] / "fresh"), match)
    assert not (world["base"] / "fresh" / "last.pt").exists()


def test_train_refuses_bad_files_and_folders(world, capsys, readonly_dir, monkeypatch, tmp_path):
    w, base = world, world["base"]
    refused(capsys, train.main, T(w, "--preset-file", str(base / "bad.yaml")), r"not valid YAML")
    refused(capsys, train.main, T(w, "--preset-file", str(base / "bad.json")), r"not valid JSON")
    refused(capsys, train.main, T(w, out=base / "a_file"), r"--out .*a_file' is a file", watch=[base / "a_file"])
    refused(capsys, train.main, T(w, out=readonly_dir / "run"), r"cannot write to --out")
    refused(capsys, train.main, T(w, out=w["run"]), r"already holds a run .*Add --resume .*--overwrite",
            watch=[w["run"]])
    refused(capsys, train.main, T(w, "--preset", "demo", data=str(base / "one"), category="cls", out=tmp_path / "one"),
            r"no optimizer step: 1 training image")
    refused(capsys, train.main, T(w, "--preset", "demo", data=str(base / "mixed"), category="cls",
                                  out=tmp_path / "mixed"),
            r"mixed grayscale and colour .*cls/train/good/000\.png")
    refused(capsys, train.main, T(w, "--preset", "demo", category="nope", out=tmp_path / "nope"), r"no class folder")
    monkeypatch.setenv("NSA_FAST_CACHE", str(readonly_dir))
    refused(capsys, train.main, ["--data", "demo", "--category", "demo", "--out", str(tmp_path / "d"), *SMALL],
            r"cannot write the demo data .*NSA_FAST_CACHE")


def test_wrong_data_is_named_before_the_run_folder_in_the_way(world, capsys, tmp_path):
    # a second run into the same --out with a wrong --data or --category: the data is the problem
    w, base = world, world["base"]
    refused(capsys, train.main, T(w, data=str(base / "nowhere"), out=w["run"]),
            r"no class folder .*the dataset root --data '[^']*nowhere' is not a folder", watch=[w["run"]])
    refused(capsys, train.main, T(w, "--preset", "demo", category="dmeo", out=w["run"]),
            r"no class folder 'dmeo' under '[^']+'; found: demo \(did you mean 'demo'\?\)", watch=[w["run"]])
    refused(capsys, train.main, T(w, data=str(base / "broken"), out=w["run"]), r"mask .* is 10x10",
            watch=[w["run"]])
    # with the data right, the run in the way is named, and still nothing is overwritten
    refused(capsys, train.main, T(w, out=w["run"]), r"already holds a run", watch=[w["run"]])


def test_a_broken_test_set_is_reported_before_training(world, capsys, tmp_path):
    refused(capsys, train.main, T(world, data=str(world["base"] / "broken"), out=tmp_path / "b"),
            r"mask .* is 10x10 but its image .* is 256x256 \(width x height\)")
    assert not (tmp_path / "b" / "last.pt").exists() and not (tmp_path / "b" / "log.csv").exists()


def _copy_run(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    return run


@pytest.mark.parametrize("extra,match", [
    (["--task", "cutpaste"], r"other settings \(task: 'nsa' in last\.pt, 'cutpaste' now; label: 'logistic' in "
                             r"last\.pt, 'binary' now\)"),
    (["--label", "binary"], r"label: 'logistic' in last\.pt, 'binary' now"),
    (["--set", "channels=1", "--set", "normalize=none"], r"preset channels: 3 in last\.pt, 1 now"),
    (["--seed", "3"], r"seed: 0 in last\.pt, 3 now"),
    (["--batch-size", "8"], r"batch_size: 4 in last\.pt, 8 now"),
])
def test_resume_refuses_other_settings(world, capsys, tmp_path, extra, match):
    run = _copy_run(world, tmp_path)
    refused(capsys, train.main, T(world, "--resume", *extra, out=run), match, watch=[run])


def test_resume_refuses_other_categories_and_foreign_files(world, capsys, tmp_path):
    run = _copy_run(world, tmp_path)
    refused(capsys, train.main, T(world, "--resume", "--preset", "demo", data=str(world["base"] / "notest"),
                                  category="cls", out=run), r"category: 'demo' in last\.pt, 'cls' now", watch=[run])
    shutil.copy(world["base"] / "foreign.pt", run / "last.pt")
    refused(capsys, train.main, T(world, "--resume", out=run), r"not an nsa_fast checkpoint", watch=[run])
    shutil.copy(world["base"] / "truncated.pt", run / "last.pt")
    refused(capsys, train.main, T(world, "--resume", out=run), r"cannot read the checkpoint .*truncated",
            watch=[run])


def test_evaluate_and_predict_refuse_bad_checkpoints_and_data(world, capsys, tmp_path):
    w, base = world, world["base"]
    ev = ["--data", w["root"], "--category", "demo", "--out", str(tmp_path / "ev")]
    for ckpt, match in ((base / "foreign.pt", r"not an nsa_fast checkpoint"),
                        (base / "truncated.pt", r"cannot read the checkpoint"),
                        (base / "missing.pt", r"no checkpoint at"),
                        (base / "wrong_channels.pt", r"does not describe a network")):
        refused(capsys, evaluate.main, ["--checkpoint", str(ckpt), *ev], match)
        refused(capsys, predict.main, ["--checkpoint", str(ckpt), w["root"] + "/demo/test/good",
                                       "--out", str(tmp_path / "p")], match)
    ckpt = ["--checkpoint", str(Path(w["run"]) / "last.pt")]
    refused(capsys, evaluate.main, [*ckpt, "--data", str(base / "notest"), "--category", "cls", "--out",
                                    str(tmp_path / "e2")], r"no test folder")
    if not torch.cuda.is_available():
        refused(capsys, evaluate.main, [*ckpt, *ev, "--device", "cuda"], r"--device cuda: no CUDA GPU")
    refused(capsys, predict.main, [*ckpt, "--out", str(tmp_path / "p")], r"give images or folders")
    refused(capsys, predict.main, [*ckpt, str(base / "bad.json"), "--out", str(tmp_path / "p")],
            r"neither an image .* nor a folder")
    refused(capsys, predict.main, [*ckpt, w["root"] + "/demo/test/good", "--out", str(base / "a_file")],
            r"a_file", watch=[base / "a_file"])
    text = tmp_path / "log.csv"
    text.write_text("epoch,loss\n1,0.5\n")
    refused(capsys, evaluate.main, ["--checkpoint", str(text), *ev], r"is not a checkpoint: a checkpoint is a torch file")
    # a refused run leaves no empty output folder behind
    assert not any((tmp_path / name).exists() for name in ("ev", "e2", "p")), sorted(tmp_path.iterdir())


SYNTH_CASES = [
    (["-n", "0"], r"-n/--num: expected a positive integer up to 1,000,000, got '0'"),
    (["--num", "-3"], r"expected a positive integer up to 1,000,000, got '-3'"),
    (["--seed", "-1"], r"--seed: expected a non-negative integer up to 4,294,967,295"),
    (["--set", "crop=0"], r"crop must be at least 32 pixels, got 0"),
    (["--task", "bogus"], r"--task: invalid choice"),
]


@pytest.mark.parametrize("extra,match", SYNTH_CASES, ids=[" ".join(c[0]) for c in SYNTH_CASES])
def test_synth_refuses_bad_arguments(world, capsys, tmp_path, extra, match):
    refused(capsys, synth.main, ["--data", world["root"], "--category", "demo", "--out", str(tmp_path / "s"),
                                 *extra], match)
    assert not (tmp_path / "s").exists()


def test_synth_refuses_a_missing_gpu_and_a_file_for_out(world, capsys, tmp_path):
    common = ["--data", world["root"], "--category", "demo", "-n", "2"]
    if not torch.cuda.is_available():
        refused(capsys, synth.main, [*common, "--out", str(tmp_path / "s"), "--solver", "sor", "--device", "cuda"],
                r"--device cuda: no CUDA GPU")
    refused(capsys, synth.main, [*common, "--out", str(world["base"] / "a_file")], r"a_file",
            watch=[world["base"] / "a_file"])


@pytest.mark.parametrize("seeds,categories,match", [
    ("0,a", "demo", r"--seeds expects comma-separated non-negative integers .* got '0,a'"),
    ("-1", "demo", r"--seeds expects distinct non-negative integers"),
    ("0,0", "demo", r"--seeds expects distinct non-negative integers"),
    ("0", ",", r"--categories expects distinct class names"),
])
def test_runner_refuses_bad_lists(world, capsys, tmp_path, seeds, categories, match):
    argv = ["--data", world["root"], "--categories", categories, "--seeds", seeds, "--out", str(tmp_path / "t")]
    refused(capsys, runner.main, argv, match)
    assert not (tmp_path / "t").exists()


def test_runner_checks_every_test_set_before_training(world, capsys, tmp_path):
    refused(capsys, runner.main, ["--data", str(world["base"] / "notest"), "--categories", "cls", "--out",
                                  str(tmp_path / "t")], r"class 'cls' has no test set")
    assert not (tmp_path / "t").exists()


def test_doctor_refuses_unknown_arguments(capsys):
    refused(capsys, doctor.main, ["--bogus"], r"unrecognized arguments: --bogus")


@pytest.mark.parametrize("module,argv,match", [
    ("nsa_fast.train", ["--data", "demo", "--category", "demo", "--batch-size", "0"], "--batch-size"),
    ("nsa_fast.evaluate", ["--checkpoint", "nope.pt", "--data", "demo", "--category", "demo", "--out", "x"],
     "no checkpoint at"),
    ("nsa_fast.runner", ["--data", "demo", "--categories", "demo", "--seeds", "0,a", "--out", "x"], "--seeds"),
    ("nsa_fast.threshold", ["--checkpoint", "last.pt", "--false-reject", "1.5"], "--false-reject"),
])
def test_the_real_entry_points_refuse_the_same_way(module, argv, match, tmp_path):
    run = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "NSA_FAST_CACHE": str(tmp_path / "cache")})
    assert run.returncode == 2 and "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], run.stderr


def test_overwrite_checks_everything_before_deleting_the_old_run(world, capsys, tmp_path):
    run = _copy_run(world, tmp_path)
    refused(capsys, train.main, T(world, "--overwrite", "--preset", "demo", category="dmeo", out=run),
            r"no class folder", watch=[run])
    refused(capsys, train.main, T(world, "--overwrite", data=str(world["base"] / "broken"), out=run),
            r"mask .* is 10x10", watch=[run])


def test_a_run_stopped_before_its_first_checkpoint_can_simply_be_run_again(world, capsys, tmp_path):
    out = tmp_path / "stopped"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "log.csv").write_text("epoch,step,loss\n")
    assert train.main(T(world, "--no-eval", out=out)) == 0
    assert (out / "last.pt").is_file() and len((out / "log.csv").read_text().splitlines()) == 2


def test_runner_refuses_train_args_it_sets_itself_or_that_are_wrong(world, capsys, tmp_path):
    base = ["--data", world["root"], "--categories", "demo", "--seeds", "0,1", "--out", str(tmp_path / "t"), "--"]
    refused(capsys, runner.main, [*base, "--seed", "3"], r"--seed after -- would override")
    refused(capsys, runner.main, [*base, "--no-eval"], r"--no-eval after -- would override")
    refused(capsys, runner.main, [*base, "--batch-size", "0"], r"--batch-size: expected a positive integer")
    refused(capsys, runner.main, [*base, "--bogus"], r"unrecognized arguments: --bogus")
    refused(capsys, runner.main, ["--data", str(tmp_path / "nowhere"), "--categories", "demo", "--out",
                                  str(tmp_path / "t")], r"--data .*nowhere': no such folder")
    assert not (tmp_path / "t").exists()


def test_checkpoint_messages_name_the_file_and_not_torchs_unsafe_advice(world, capsys, tmp_path):
    torch.save({"x": {1, 2}}, tmp_path / "obj.pt")  # a set: not loadable with weights_only=True
    line = refused(capsys, evaluate.main, ["--checkpoint", str(tmp_path / "obj.pt"), "--data", world["root"],
                                           "--category", "demo", "--out", str(tmp_path / "e")], r"obj\.pt")
    assert "weights_only=False" not in line and "trust" not in line
    # a run folder stands for its last.pt
    assert evaluate.main(["--checkpoint", world["run"], "--data", world["root"], "--category", "demo", "--out",
                          str(tmp_path / "e2")]) == 0
    refused(capsys, evaluate.main, ["--checkpoint", world["run"], "--data", world["root"], "--category", "demo",
                                    "--out", ""], r"--out is empty")


def test_preset_files_that_are_not_text_empty_or_folders(world, capsys, tmp_path):
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "empty.yaml").write_text("")
    for f, match in ((tmp_path / "binary.json", r"is not text \(UTF-8\)"), (tmp_path / "empty.yaml", r"is empty"),
                     (tmp_path, r"is a folder")):
        refused(capsys, train.main, T(world, "--preset-file", str(f), out=tmp_path / "x"), match)


def test_only_rank_0_of_a_torchrun_job_prints_the_error(world, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert train.main(T(world, "--batch-size", "1")) == 2
    assert train.main(T(world, "--preset", "demo", category="nope")) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert train.main(T(world, "--preset", "demo", category="nope")) == 2
    assert capsys.readouterr().err.startswith("error: no class folder")


def test_a_test_image_that_does_not_decode_is_found_before_training(world, capsys, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(Path(world["root"]) / "demo", data / "demo")
    (data / "demo" / "test" / "good" / "zzz.png").write_bytes(b"not a png")
    refused(capsys, train.main, T(world, data=str(data), out=tmp_path / "r"), r"cannot decode the image .*zzz\.png")
    assert not (tmp_path / "r" / "last.pt").exists()
