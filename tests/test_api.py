"""The public generator: what a user's own training loop calls, equal to what the CLIs make."""
import json

import numpy as np
import pytest
import torch

from _support import objects_on_background
from nsa_fast import NSA
from nsa_fast.io import write_image
from nsa_fast.synth import main as synth_main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    folder = root / "cls" / "train" / "good"
    folder.mkdir(parents=True)
    images = objects_on_background(6, size=256)
    for i, img in enumerate(images):
        write_image(folder / f"{i:03d}.png", img)
    return root, np.stack(images)


def test_a_sample_on_numpy_images(data):
    _, images = data
    nsa = NSA.from_preset("bottle", task="nsa", label="logistic")
    s = nsa(images[0, :224, :224], images[1, :224, :224], NSA.rng(0, 0, 0))
    assert s.image.shape == (224, 224, 3) and s.label.shape == (224, 224) and s.label.dtype == np.float32
    assert s.stats.samples == 1 and len(s.boxes) == s.stats.accepted
    again = nsa(images[0, :224, :224], images[1, :224, :224], NSA.rng(0, 0, 0))
    assert np.array_equal(s.image, again.image) and np.array_equal(s.label, again.label)  # the generator decides


def test_sample_and_batch_equal_what_the_synth_cli_writes(data, tmp_path):
    root, images = data
    for flags, key in (([], "sample"), (["--solver", "dst", "--device", "cpu"], "batch")):
        out = tmp_path / key
        assert synth_main(["--data", str(root), "--category", "cls", "--preset", "bottle", "--out", str(out),
                           "-n", "4", "--seed", "7", *flags]) == 0
        cli = np.load(out / "synthetic.npz")
        nsa = NSA.from_preset("bottle")
        if key == "sample":
            for i in range(4):
                s = nsa.sample(images, i, seed=7)
                assert np.array_equal(s.image, cli["images"][i]) and np.array_equal(s.label, cli["labels"][i])
        else:
            b = nsa.batch(torch.from_numpy(images), [0, 1, 2, 3], seed=7, solver="dst")
            assert b.images.device.type == "cpu"
            assert np.array_equal(b.images.numpy(), cli["images"]) and np.array_equal(b.labels.numpy(), cli["labels"])
            assert np.array_equal(b.originals.numpy(), cli["originals"])
            assert json.loads((out / "stats.json").read_text())["tried"] == b.stats.tried


def test_batch_refuses_what_is_not_a_uint8_tensor(data):
    _, images = data
    with pytest.raises(Exception, match="expected a uint8 torch tensor"):
        NSA.from_preset("bottle").batch(images, [0])


@pytest.mark.cuda
def test_a_batch_on_cuda_images_stays_on_cuda_and_matches_the_cpu_batch(data):
    _, images = data
    nsa = NSA.from_preset("bottle")
    cpu = nsa.batch(torch.from_numpy(images), [0, 1, 2, 3], seed=3, solver="dst")
    gpu = nsa.batch(torch.from_numpy(images).cuda(), torch.arange(4, device="cuda"), seed=3, solver="dst")
    for t in (gpu.images, gpu.labels, gpu.boxes, gpu.originals):
        assert t.device.type == "cuda"
    assert torch.equal(gpu.originals.cpu(), cpu.originals) and torch.equal(gpu.boxes.cpu(), cpu.boxes)
    # the solve's float64 rounding may differ by one grey level on a few pixels, no more
    diff = (gpu.images.cpu().int() - cpu.images.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3
    assert gpu.stats.tried == cpu.stats.tried and gpu.labels.amax() > 0


def test_wrong_inputs_get_clear_errors_before_any_work(data):
    from nsa_fast.errors import InputError, PresetError

    _, images = data
    cache = torch.from_numpy(images)
    nsa = NSA.from_preset("bottle")
    cases = [
        (lambda: nsa.batch(cache, [0, len(images)]), rf"indices: expected integers in 0\.\.{len(images) - 1}, got 6"),
        (lambda: nsa.batch(cache, [-1]), r"indices: expected integers in 0\.\.5, got -1"),
        (lambda: nsa.batch(cache, []), "at least one image index"),
        (lambda: nsa.batch(cache, [0], seed=-2), "seed: expected integers in 0 or more"),
        (lambda: nsa.batch(cache.permute(0, 3, 1, 2).contiguous(), [0]), "takes 3-channel images, got 256"),
        (lambda: nsa.batch(cache[:, :100, :100], [0]), "smaller than the 230-pixel crop"),
        (lambda: nsa.sample(images, len(images)), r"index: expected integers in 0\.\.5"),
        (lambda: nsa.sample(images, 0, epoch=1.5), "epoch: expected integers"),
        (lambda: nsa(images[0], images[1], 7), "rng: expected a numpy.random.Generator"),
        (lambda: NSA.from_preset("chest_xray")(images[0], images[1], np.random.default_rng(0)),
         "takes 1-channel images, got 3"),
    ]
    for call, match in cases:
        with pytest.raises(InputError, match=match):
            call()
    with pytest.raises(InputError, match="label mode must be one of"):
        NSA.from_preset("bottle", label="foo")
    with pytest.raises(PresetError, match="unknown task"):
        NSA.from_preset("bottle", task="foo")
    # tensors of indices are fine
    assert nsa.batch(cache, torch.tensor([1, 2])).images.shape[0] == 2
