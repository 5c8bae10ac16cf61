"""The ONNX export takes a camera's pixels and agrees with predict's PyTorch path; --verify-export
says so, or names what differs; the README's ONNX Runtime example runs without nsa_fast."""
import json
import shutil
import subprocess
import sys
from dataclasses import asdict

import cv2
import numpy as np
import pytest
import torch

from nsa_fast import thresholds
from nsa_fast.data import eval_size, load_images
from nsa_fast.demo import ensure_demo
from nsa_fast.evaluate import load_model
from nsa_fast.export import (
    MAP_TOLERANCE,
    PIP,
    SCORE_TOLERANCE,
    Deployed,
    pick_input_size,
    pytorch_outputs,
)
from nsa_fast.predict import main as predict_main
from nsa_fast.train import main as train_main

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install -e '.[onnx]')")
WINDOW = (1000.0, 50000.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-step object-style model on the demo data: image 80, centre crop 72, random crop 64."""
    root = ensure_demo(tmp_path_factory.mktemp("demo"))
    shutil.rmtree(root / "demo" / "validation", ignore_errors=True)  # training would set thresholds on it: seconds
    out = tmp_path_factory.mktemp("run")
    assert train_main(["--data", str(root), "--category", "demo", "--preset", "generic", "--out", str(out),
                       "--set", "image_size=80", "--set", "center_crop=72", "--set", "crop=64", "--epochs", "1",
                       "--steps-per-epoch", "1", "--batch-size", "4", "--workers", "0", "--no-eval"]) == 0
    return root, out / "last.pt"


@pytest.fixture(scope="module")
def preset(trained):
    return load_model(trained[1], torch.device("cpu"))[1]


@pytest.fixture(scope="module")
def colour(trained, tmp_path_factory):
    """The model with thresholds (a quarter of 12 test images above the image threshold), exported
    at the size config.json records, the demo's 256x256; and PyTorch's outputs for those images."""
    root, ckpt = trained
    run = tmp_path_factory.mktemp("colour")
    for name in ("last.pt", "config.json"):
        shutil.copy(ckpt.parent / name, run / name)
    test = root / "demo" / "test"
    files = sorted({*sorted(test.rglob("*.png"))[::3], test / "scratch" / "000.png"})  # the docs' example's
    model, preset, _ = load_model(run / "last.pt", torch.device("cpu"))
    plain = pytorch_outputs(model, preset, None, files, (256, 256))
    th = thresholds.make(plain["score"], plain["anomaly_map"], run / "last.pt", "test", 0.25, 0.01)
    thresholds.save(th, run / "last.pt")
    assert predict_main(["--checkpoint", str(run / "last.pt"), "--export", "onnx", "--out", str(run / "onnx")]) == 0
    return run / "last.pt", run / "onnx", files, th, pytorch_outputs(model, preset, th, files, (256, 256))


@pytest.fixture(scope="module")
def grey16(trained, tmp_path_factory):
    """The network made grey (its first filters summed over colour) for 16-bit images with an
    intensity window, exported for 64x48 images: enlarged to 80, OpenCV's fixed-point path."""
    root, ckpt = trained
    run = tmp_path_factory.mktemp("grey16")
    state = torch.load(ckpt, weights_only=True)
    state["model"]["encoder.0.weight"] = state["model"]["encoder.0.weight"].sum(1, keepdim=True)
    state["model_args"]["in_channels"] = 1
    state["preset"].update(channels=1, normalize="none", window=list(WINDOW))
    torch.save(state, run / "last.pt")
    files = []
    for i, f in enumerate(sorted((root / "demo" / "test").rglob("*.png"))[::4]):
        grey = cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (64, 48), interpolation=cv2.INTER_AREA)
        files.append(run / f"{i:02d}.png")
        cv2.imwrite(str(files[-1]), (grey.astype(np.uint16) * 200 + 700 + 13 * i).astype(np.uint16))
    assert predict_main(["--checkpoint", str(run / "last.pt"), "--export", "onnx", "--out", str(run / "onnx"),
                         "--input-size", "64x48"]) == 0
    return run / "last.pt", run / "onnx", files


def onnx_outputs(onnx_dir, pixels: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession((onnx_dir / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": pixels})))


def rgb(files) -> np.ndarray:
    return np.stack([cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB) for f in files])


@pytest.mark.parametrize("size", [(256, 256), (160, 160), (240, 160), (250, 100), (80, 80), (64, 48), (100, 60),
                                  (50, 300)])
@pytest.mark.parametrize("kind", ["colour", "grey16"])
def test_the_graphs_resize_is_opencvs_to_the_bit(preset, tmp_path, size, kind):
    # area (fractional and integer factors, the 2x2 one rounding halves up), none, fixed-point
    # bilinear (enlarged), and area's bilinear stand-in (one side enlarged); 16-bit windowed
    W, H = size
    rng = np.random.default_rng(W * H)
    if kind == "grey16":
        preset = preset.replace(channels=1, normalize="none", window=WINDOW)
        images = rng.integers(0, 60000, (3, H, W), dtype=np.uint16)
    else:
        images = rng.integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    files = [tmp_path / f"{i}.png" for i in range(3)]
    for f, img in zip(files, images):
        cv2.imwrite(str(f), img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    want = load_images(files, preset, eval_size(preset))
    got = Deployed(None, preset, (H, W)).pixels(torch.from_numpy(images)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got, want)


def test_export_equals_pytorch_with_decisions_and_states_its_contract(colour, preset):
    _, onnx_dir, files, th, want = colour
    got = onnx_outputs(onnx_dir, rgb(files))
    assert list(got) == ["anomaly_map", "score", "normalized_score", "is_defective", "defect_mask"]
    assert got["anomaly_map"].shape == (len(files), 256, 256) and got["anomaly_map"].dtype == np.float32
    np.testing.assert_allclose(got["anomaly_map"], want["anomaly_map"], rtol=0, atol=MAP_TOLERANCE)
    np.testing.assert_allclose(got["score"], want["score"], rtol=0, atol=SCORE_TOLERANCE)
    np.testing.assert_allclose(got["normalized_score"], want["normalized_score"], rtol=0,
                               atol=SCORE_TOLERANCE / th.scale)  # its unit: the normal scores' spread
    assert 0 < want["is_defective"].sum() < len(files)  # both decisions occur
    np.testing.assert_array_equal(got["is_defective"], want["is_defective"])
    near = np.abs(want["anomaly_map"] - th.pixel) <= MAP_TOLERANCE
    assert want["defect_mask"].any() and ((got["defect_mask"] == want["defect_mask"]) | near).all()
    one = onnx_outputs(onnx_dir, rgb(files[:1]))  # the batch axis is free
    np.testing.assert_allclose(one["score"], want["score"][:1], rtol=0, atol=SCORE_TOLERANCE)
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["model.json", "model.onnx"]  # one self-contained file
    info = json.loads((onnx_dir / "model.json").read_text())
    assert info["input"]["name"] == "images" and info["input"]["dtype"] == "uint8"
    assert info["input"]["shape"] == ["N", 256, 256, 3] and info["input"]["channel_order"] == "RGB"
    assert "exactly 256x256" in info["input"]["accepted_sizes"]
    assert [o["name"] for o in info["outputs"]] == list(got) and all(o["meaning"] for o in info["outputs"])
    assert info["preset"] == json.loads(json.dumps(preset.to_dict()))
    assert info["thresholds"] == json.loads(json.dumps(asdict(th)))
    assert info["tolerances"]["map"] == MAP_TOLERANCE and info["tolerances"]["score"] == SCORE_TOLERANCE
    meta = ort.InferenceSession(str(onnx_dir / "model.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(meta["nsa_fast"]) == info


def test_grey_16bit_export_equals_pytorch(grey16, capsys):
    ckpt, onnx_dir, files = grey16
    model, preset, _ = load_model(ckpt, torch.device("cpu"))
    pixels = np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files])
    assert pixels.dtype == np.uint16 and pixels.shape == (len(files), 48, 64)
    got, want = onnx_outputs(onnx_dir, pixels), pytorch_outputs(model, preset, None, files, (48, 64))
    assert list(got) == ["anomaly_map", "score"]
    np.testing.assert_allclose(got["anomaly_map"], want["anomaly_map"], rtol=0, atol=MAP_TOLERANCE)
    np.testing.assert_allclose(got["score"], want["score"], rtol=0, atol=SCORE_TOLERANCE)
    info = json.loads((onnx_dir / "model.json").read_text())
    assert info["input"]["dtype"] == "uint16" and info["input"]["shape"] == ["N", 48, 64]
    assert info["thresholds"] is None and "1000..50000" in info["input"]["values"]
    capsys.readouterr()
    assert predict_main(["--checkpoint", str(ckpt), "--verify-export", str(onnx_dir / "model.onnx"), *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "decisions: none" in out and out.rstrip().splitlines()[-1].startswith("agrees")


def flipped(onnx_dir, th, dest):
    """The export with its image threshold moved above every score: all decisions say good."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_dir / "model.onnx"))
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node if n.op_type == "Constant"
                                               for a in n.attribute if a.name == "value"]
    hits = 0
    for t in tensors:
        v = numpy_helper.to_array(t)
        if v.dtype == np.float64 and v.size == 1 and float(v) == th.image:
            t.CopyFrom(numpy_helper.from_array(np.full(v.shape, 1e9), t.name))
            hits += 1
    assert hits
    onnx.save(model, str(dest))
    return dest


def test_verify_export_agrees_and_catches_a_decision_flipped_in_the_graph(colour, tmp_path, capsys):
    ckpt, onnx_dir, files, th, want = colour
    assert predict_main(["--checkpoint", str(ckpt), "--verify-export", str(onnx_dir / "model.onnx"),
                         *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert f"{len(files)} images" in out and "largest map difference" in out and "largest score difference" in out
    assert f"decisions: {len(files)} of {len(files)} images agree" in out and "agrees" in out.splitlines()[-1]
    bad = flipped(onnx_dir, th, tmp_path / "model.onnx")
    assert predict_main(["--checkpoint", str(ckpt), "--verify-export", str(bad), *map(str, files)]) == 1
    out = capsys.readouterr().out
    defective = [f for f, d in zip(files, want["is_defective"]) if d]
    for f in defective:
        assert f"decision differs for {str(f)!r}: PyTorch defective, ONNX good" in out
    assert out.splitlines()[-1].startswith(f"DIFFERS: {len(defective)} decision(s) differ")


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_verify_export_refuses_images_the_export_does_not_take(colour, grey16, tmp_path, capsys):
    ckpt, onnx_dir, files, _, _ = colour
    small, grey = tmp_path / "small.png", tmp_path / "grey.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(files[0])), (128, 96)))
    cv2.imwrite(str(grey), cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE))
    verify = ["--checkpoint", str(ckpt), "--verify-export", str(onnx_dir / "model.onnx")]
    assert predict_main([*verify, str(files[0]), str(small)]) == 2
    line = one_error(capsys)
    assert repr(str(small)) in line and "is 128x96" in line and "exactly 256x256" in line and "--input-size" in line
    assert predict_main([*verify, str(grey)]) == 2
    line = one_error(capsys)
    assert repr(str(grey)) in line and "grey (1 channel)" in line and "colour (3 channels)" in line
    ckpt16, onnx16, _ = grey16
    eight = tmp_path / "eight.png"
    cv2.imwrite(str(eight), cv2.resize(cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE), (64, 48)))
    assert predict_main(["--checkpoint", str(ckpt16), "--verify-export", str(onnx16 / "model.onnx"), str(eight)]) == 2
    line = one_error(capsys)
    assert repr(str(eight)) in line and "uint8" in line and "uint16" in line


def test_export_refuses_to_overwrite_and_bad_sizes(colour, capsys):
    ckpt, onnx_dir, _, _, _ = colour
    before = (onnx_dir / "model.onnx").stat().st_mtime_ns
    assert predict_main(["--checkpoint", str(ckpt), "--export", "onnx", "--out", str(onnx_dir)]) == 2
    assert "exists already; give --overwrite" in one_error(capsys)
    assert (onnx_dir / "model.onnx").stat().st_mtime_ns == before
    assert predict_main(["--checkpoint", str(ckpt), "--export", "onnx", "--out", str(onnx_dir / "x"),
                         "--input-size", "256"]) == 2
    assert "WIDTHxHEIGHT" in one_error(capsys)


def test_input_size_from_the_flag_then_config_json_then_the_evaluation_size(colour, preset, tmp_path):
    ckpt = colour[0]
    assert pick_input_size(ckpt, preset, "320x240") == (240, 320)
    assert pick_input_size(ckpt, preset, None) == (256, 256)  # config.json's input_size: the demo images
    alone = tmp_path / "last.pt"
    shutil.copy(ckpt, alone)
    assert pick_input_size(alone, preset, None) == (80, 80)


def test_missing_onnxruntime_says_what_to_install(colour, monkeypatch, capsys):
    ckpt, onnx_dir, files, _, _ = colour
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails, as when it is not installed
    assert predict_main(["--checkpoint", str(ckpt), "--verify-export", str(onnx_dir / "model.onnx"),
                         str(files[0])]) == 2
    assert PIP in one_error(capsys)


BLOCK_IMPORTS = """
import sys
class NoNsaFast:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "nsa_fast":
            raise ImportError("nsa_fast is blocked: the example must run without it")
sys.meta_path.insert(0, NoNsaFast())
exec(compile(sys.argv[1], "README.md", "exec"))
"""


def test_the_docs_example_classifies_an_image_with_onnxruntime_alone(colour, trained, tmp_path):
    from docs_blocks import REPO, blocks

    _, onnx_dir, files, _, want = colour
    root, _ = trained
    [block] = [b for b in blocks(REPO / "README.md") if "model.onnx alone" in b.body]
    assert block.lang == "python" and block.kind == "run" and len(block.body.splitlines()) <= 12
    (tmp_path / "runs" / "demo-onnx").mkdir(parents=True)
    (tmp_path / "runs" / "demo-onnx" / "model.onnx").symlink_to(onnx_dir / "model.onnx")
    image = tmp_path / "home" / ".cache" / "nsa_fast" / "data" / "demo" / "test" / "scratch" / "000.png"
    image.parent.mkdir(parents=True)
    shutil.copy(root / "demo" / "test" / "scratch" / "000.png", image)
    i = files.index(root / "demo" / "test" / "scratch" / "000.png")  # the fixture's PyTorch outputs have it
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", BLOCK_IMPORTS, block.body], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    decision = "defective" if want["is_defective"][i] else "good"
    assert run.stdout == f"score {want['score'][i]:.6f}: {decision}\n"


def test_verify_export_names_thresholds_set_again_since_the_export(colour, tmp_path, capsys):
    ckpt, _, files, _, want = colour
    run = tmp_path / "run"
    shutil.copytree(ckpt.parent, run)
    again = thresholds.make(want["score"], want["anomaly_map"], run / "last.pt", "test", 0.5, 0.01)
    thresholds.save(again, run / "last.pt")
    rc = predict_main(["--checkpoint", str(run / "last.pt"), "--verify-export", str(run / "onnx" / "model.onnx"),
                       *map(str, files[:2])])
    err = one_error(capsys)
    assert rc == 2 and "carries other thresholds" in err and "export again" in err
