"""The trainer end to end on small images: smoke, exact resume, a kill mid-checkpoint, bad data."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nsa_fast import checkpoint
from nsa_fast.demo import ensure_demo
from nsa_fast.train import main

SMALL = ["--set", "image_size=72", "--set", "crop=64", "--batch-size", "8", "--grid-every", "1"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return ensure_demo(tmp_path_factory.mktemp("demo"))


def train(root, out, *extra):
    return main(["--data", str(root), "--category", "demo", "--out", str(out), *SMALL, *extra])


def weights(path):
    return checkpoint.load(path)["model"]


def test_two_step_smoke(demo_root, tmp_path, capsys):
    rc = train(demo_root, tmp_path, "--epochs", "1", "--steps-per-epoch", "2", "--workers", "0")
    assert rc == 0
    state = checkpoint.load(tmp_path / "last.pt")  # loads with weights_only=True
    assert state["epoch"] == 0 and state["step"] == 2
    assert state["config"]["category"] == "demo" and state["preset"]["crop"] == 64
    assert {"torch", "numpy", "opencv"} <= set(state["versions"])
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,loss") and len(rows) == 2
    assert np.isfinite(float(rows[1].split(",")[2]))
    grid = cv2.imread(str(tmp_path / "grid_epoch0001.png"))
    assert grid is not None and grid.shape[0] > 3 * 64 and grid.shape[1] > 8 * 64  # 3 rows of 8 samples
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["image_auroc"] <= 1 and metrics["n_test"] == 31
    printed = capsys.readouterr().out
    assert "pixel AUROC" in printed and "Outputs:" in printed  # the results table


def test_resume_gives_identical_weights(demo_root, tmp_path):
    common = ("--epochs", "2", "--steps-per-epoch", "2", "--no-eval", "--device", "cpu")
    assert train(demo_root, tmp_path / "a", *common, "--workers", "2") == 0
    assert train(demo_root, tmp_path / "b", *common, "--workers", "0", "--stop-after", "1") == 0
    assert checkpoint.load(tmp_path / "b" / "last.pt")["epoch"] == 0
    assert train(demo_root, tmp_path / "b", *common, "--workers", "0", "--resume") == 0
    a, b = weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == ["1", "2"]  # the log continues across the resume, from 1


def test_batched_pipeline_trains_on_the_cpu(demo_root, tmp_path):
    # the --gpu-blend pipeline (device cache, device augmentation, batched executor) run on the CPU
    rc = train(demo_root, tmp_path, "--epochs", "1", "--steps-per-epoch", "2", "--synth", "device",
               "--no-eval")
    assert rc == 0 and checkpoint.load(tmp_path / "last.pt")["step"] == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_gpu_blend_without_cuda_says_how_to_run_on_the_cpu(demo_root, tmp_path, capsys):
    rc = train(demo_root, tmp_path, "--epochs", "1", "--gpu-blend")
    err = capsys.readouterr().err
    assert rc == 2 and "--gpu-blend needs a CUDA GPU" in err and "Run without --gpu-blend" in err


@pytest.mark.slow  # tens of seconds of training; CI runs -m slow
def test_kill_during_checkpoint_write_keeps_the_last_one(demo_root, tmp_path):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "nsa_fast.train", "--data", str(demo_root), "--category", "demo",
            "--out", str(out), *SMALL, "--steps-per-epoch", "1", "--workers", "0", "--no-eval"]
    proc = subprocess.Popen(base + ["--epochs", "200"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp, last = out / "last.pt.tmp", out / "last.pt"
    killed_mid_write = False
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            # wait for a first complete checkpoint, then for the next write to begin
            if last.exists() and tmp.exists():
                os.kill(proc.pid, signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.0005)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert killed_mid_write, "the trainer was never caught writing a checkpoint"
    state = checkpoint.load(last)  # the previous checkpoint is whole
    done = state["epoch"]
    # resume with the same schedule length: it continues from the last whole checkpoint
    run = subprocess.run(base + ["--epochs", "200", "--stop-after", "1", "--resume"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert checkpoint.load(last)["epoch"] == done + 1


def test_broken_checkpoint_gets_a_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="is not a checkpoint: a checkpoint is a torch file"):
        checkpoint.load(bad)
    bad.write_bytes(b"PK\x03\x04 a zip archive cut short")
    with pytest.raises(Exception, match="cannot read the checkpoint"):
        checkpoint.load(bad)
    with pytest.raises(Exception, match="no checkpoint at"):
        checkpoint.load(tmp_path / "missing.pt")


@pytest.mark.parametrize("flag", [("--synth", "dali"), ("--loader", "dali")])
def test_dali_pipeline_trains_in_cpu_mode(demo_root, tmp_path, flag):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install -e '.[gpu]')")
    rc = train(demo_root, tmp_path, "--epochs", "1", "--steps-per-epoch", "2", *flag, "--no-eval")
    assert rc == 0 and checkpoint.load(tmp_path / "last.pt")["step"] == 2
    assert checkpoint.load(tmp_path / "last.pt")["config"]["synth"] == "dali"


def torchrun(*args, port):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(port), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})  # two CPU ranks, also on a GPU machine


DDP_ARGS = ["--set", "image_size=72", "--set", "crop=64", "--batch-size", "4", "--workers", "0", "--epochs", "1"]


@pytest.fixture(scope="module")
def ddp_runs(demo_root, tmp_path_factory):
    """The trainer under torchrun (two gloo ranks; rank 0 writes the checkpoint), and the same epoch
    made of the trainer's own pieces by tests/ddp_worker.py, which saves every rank's weights."""
    out, probe = tmp_path_factory.mktemp("ddp"), tmp_path_factory.mktemp("ddp_worker")
    run = torchrun("-m", "nsa_fast.train", "--data", str(demo_root), "--category", "demo", "--out", str(out),
                   *DDP_ARGS, "--no-eval", port=29533)
    assert run.returncode == 0, run.stderr[-2000:]
    run = torchrun(str(Path(__file__).parent / "ddp_worker.py"), str(demo_root), str(probe), *DDP_ARGS, port=29534)
    assert run.returncode == 0, run.stderr[-2000:]
    return out, [torch.load(probe / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.mark.slow  # two torchrun launches, half a minute: CI's slow group runs them
def test_torchrun_two_processes_on_the_cpu(ddp_runs):
    out, (r0, _) = ddp_runs
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    state = checkpoint.load(out / "last.pt")
    assert state["step"] == 5 and not any(k.startswith("module.") for k in state["model"])  # 40 images, 20 a rank
    # the trainer's rank 0 ends where the DDP probe's rank 0 ends: its steps averaged the ranks' gradients
    for k, v in r0["weights"].items():
        assert torch.equal(state["model"][k], v), k


@pytest.mark.slow  # two torchrun launches, half a minute: CI's slow group runs them
def test_ddp_ranks_train_disjoint_shards_with_synchronised_gradients(ddp_runs):
    # DDP averages the gradients, so both ranks end with the same weights although each saw other
    # images, and together they saw the whole epoch
    _, (r0, r1) = ddp_runs
    assert not set(r0["indices"]) & set(r1["indices"])
    assert sorted(r0["indices"] + r1["indices"]) == list(range(40))  # 40 demo images, 20 a rank
    fresh = tr_build_model()
    params = [k for k in r0["weights"] if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(params) > 60
    for k in params:  # batch-norm statistics are each rank's own, as DDP keeps them
        assert torch.equal(r0["weights"][k], r1["weights"][k]), k
    assert not torch.equal(r0["weights"]["encoder.0.weight"], fresh["encoder.0.weight"])  # it trained


def tr_build_model():
    from nsa_fast.presets import get_preset
    from nsa_fast.train import TrainConfig, build_model

    return build_model(TrainConfig(data="d", category="demo", out="o"), get_preset("demo"),
                       torch.device("cpu"))[0].state_dict()


def test_ranks_see_disjoint_shards():
    from nsa_fast.pipelines import epoch_batches

    a = np.concatenate(epoch_batches(40, 8, seed=1, epoch=3, rank=0, world=2))
    b = np.concatenate(epoch_batches(40, 8, seed=1, epoch=3, rank=1, world=2))
    assert not set(a) & set(b) and len(a) + len(b) == 40
    assert not np.array_equal(np.concatenate(epoch_batches(40, 8, 1, 4)), np.concatenate(epoch_batches(40, 8, 1, 3)))


@pytest.mark.cuda
@pytest.mark.parametrize("solver", ["auto", "sor"])
def test_gpu_blend_trains_on_cuda(demo_root, tmp_path, solver):
    # sor: the CuPy kernels (shared-memory SOR, disk median) on the training path
    rc = train(demo_root, tmp_path, "--epochs", "2", "--steps-per-epoch", "2", "--gpu-blend", "--solver", solver,
               "--no-eval")
    assert rc == 0
    state = checkpoint.load(tmp_path / "last.pt")
    assert state["step"] == 4 and json.loads((tmp_path / "config.json").read_text())["device"].startswith("cuda")


def _resumed_and_uninterrupted(root, tmp_path, *common):
    """(weights of a run of 2 epochs, of the same run stopped after 1 and resumed, their states)."""
    assert train(root, tmp_path / "a", *common) == 0
    assert train(root, tmp_path / "b", *common, "--stop-after", "1") == 0
    assert "cuda" in checkpoint.load(tmp_path / "b" / "last.pt")["rng"]
    assert train(root, tmp_path / "b", *common, "--resume") == 0
    a, b = checkpoint.load(tmp_path / "a" / "last.pt"), checkpoint.load(tmp_path / "b" / "last.pt")
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (1, 4)  # the same schedule
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    return a["model"], b["model"]


@pytest.mark.cuda
@pytest.mark.parametrize("source", [("--workers", "0"), ("--workers", "2"), ("--synth", "device")])
def test_cpu_made_batches_train_a_cuda_model_and_resume_to_a_tolerance(demo_root, tmp_path, source):
    """Without --deterministic a GPU's atomics (cuDNN's weight gradients, the bilinear upsampling's
    backward) make two runs differ in the last bits: a resumed run keeps the schedule and ends with
    weights equal to the uninterrupted run's to a tolerance, not bit for bit."""
    a, b = _resumed_and_uninterrupted(demo_root, tmp_path, "--epochs", "2", "--steps-per-epoch", "2", "--no-eval",
                                      "--device", "cuda", *source)
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-4, msg=k)


@pytest.mark.cuda
def test_deterministic_resume_on_cuda_is_bit_for_bit(demo_root, tmp_path):
    a, b = _resumed_and_uninterrupted(demo_root, tmp_path, "--epochs", "2", "--steps-per-epoch", "2", "--no-eval",
                                      "--device", "cuda", "--synth", "device", "--deterministic")
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow  # tens of seconds of training; CI runs -m slow
def test_deterministic_sets_the_process_for_the_run_and_restores_it(demo_root, tmp_path, monkeypatch):
    """--deterministic: deterministic algorithms (an op without one raises), cuDNN without
    autotuning, cuBLAS's fixed workspace, the matrix-product upsampling; all restored after the
    run. Without it the process keeps its settings on the CPU."""
    from nsa_fast import train as trainer
    from nsa_fast.model import MatmulUpsample

    seen = []
    real = trainer.train_epoch

    def spy(model, *args, **kwargs):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                     torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                     type(model.upsample).__name__))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_epoch", spy)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    common = ("--epochs", "1", "--steps-per-epoch", "1", "--no-eval", "--workers", "0")
    assert train(demo_root, tmp_path / "d", *common, "--deterministic") == 0
    assert seen == [(True, True, False, ":4096:8", MatmulUpsample.__name__)]
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # the environment is the caller's again
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark) == before
    assert train(demo_root, tmp_path / "n", *common) == 0
    assert seen[1][0] is before[0] and seen[1][4] == "UpsamplingBilinear2d"
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())["config"]
    assert cfg["deterministic"] is True
    # the flag may change on --resume: it changes how, not what, the run computes
    assert train(demo_root, tmp_path / "d", "--epochs", "2", "--steps-per-epoch", "1", "--no-eval", "--workers", "0",
                 "--resume") == 0


def test_the_matrix_upsampling_is_the_bilinear_one_to_rounding():
    from nsa_fast.model import MatmulUpsample

    x = torch.randn(2, 16, 28, 36, requires_grad=True)
    ref = torch.nn.UpsamplingBilinear2d(scale_factor=2)(x)
    got = MatmulUpsample()(x)
    assert got.shape == ref.shape == (2, 16, 56, 72)
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-6)
    g = torch.randn_like(ref)
    (ga,) = torch.autograd.grad(ref, x, g)
    (gb,) = torch.autograd.grad(got, x, g)
    torch.testing.assert_close(gb, ga, rtol=0, atol=1e-5)


def test_grayscale_trains_with_one_channel_end_to_end(demo_root, tmp_path):
    gray_root = tmp_path / "data"
    for sub in ("train/good", "test/good", "test/stain", "ground_truth/stain"):
        (gray_root / "xr" / sub).mkdir(parents=True)
        for f in sorted((demo_root / "demo" / sub).glob("*.png")):
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img.ndim == 3:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            cv2.imwrite(str(gray_root / "xr" / sub / f.name), img)
    out = tmp_path / "run"
    rc = main(["--data", str(gray_root), "--category", "xr", "--preset", "chest_xray", "--out", str(out),
               "--set", "image_size=80", "--set", "center_crop=72", "--set", "crop=64",
               "--batch-size", "8", "--epochs", "1", "--steps-per-epoch", "2", "--workers", "0"])
    assert rc == 0
    state = checkpoint.load(out / "last.pt")
    assert state["model_args"]["in_channels"] == 1 and state["model"]["encoder.0.weight"].shape[1] == 1
    assert json.loads((out / "eval" / "metrics.json").read_text())["n_test"] == 17


def test_resume_reads_the_checkpoint_on_the_cpu_whatever_the_model_device(demo_root, tmp_path, monkeypatch):
    # A model on a non-CPU device (meta stands in for a GPU): loading the checkpoint onto the
    # model's device would hand torch.set_rng_state a non-CPU tensor, which it refuses.
    from nsa_fast.model import EncoderDecoder
    from nsa_fast.checkpoint import resume_from

    assert train(demo_root, tmp_path, "--epochs", "2", "--steps-per-epoch", "1", "--no-eval", "--workers", "0",
                 "--stop-after", "1") == 0
    state = checkpoint.load(tmp_path / "last.pt")
    state["rng"]["cuda"] = [torch.full((16,), 7, dtype=torch.uint8), torch.full((16,), 9, dtype=torch.uint8)]
    torch.save(state, tmp_path / "last.pt")
    restored = []

    def set_rng_state(new_state, device):  # CUDA's rule: a CPU byte tensor, one device at a time
        assert new_state.device.type == "cpu" and new_state.dtype == torch.uint8
        restored.append((int(new_state[0]), device))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    model = EncoderDecoder().to("meta")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2, eta_min=1e-6)
    torch.manual_seed(123)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copying into meta parameters is a no-op, and torch says so
        assert resume_from(tmp_path / "last.pt", model, opt, sched) == (1, 1)
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])
    assert restored == [(7, 0)]  # min(saved 2, visible 1) devices


def test_solver_flag_reaches_the_batched_pipeline(demo_root, tmp_path, monkeypatch, capsys):
    import nsa_fast.train as tr
    from nsa_fast.blend.solvers import sor_solve

    built = []
    real = tr.build_pipeline
    monkeypatch.setattr(tr, "build_pipeline", lambda *a: built.append(real(*a)) or built[-1])
    rc = train(demo_root, tmp_path / "a", "--epochs", "1", "--steps-per-epoch", "1", "--synth", "device",
               "--solver", "sor", "--no-eval")
    assert rc == 0 and built[0].executor.solver is sor_solve
    rc = train(demo_root, tmp_path / "b", "--epochs", "1", "--steps-per-epoch", "1", "--solver", "sor",
               "--workers", "0", "--no-eval")
    assert rc == 2 and "--solver sor chooses the Poisson solver of the batched executor" in capsys.readouterr().err


@pytest.mark.slow  # tens of seconds of training; CI runs -m slow
def test_resume_with_more_epochs_stretches_the_schedule(demo_root, tmp_path, capsys):
    import math

    common = ("--steps-per-epoch", "1", "--no-eval", "--workers", "0")
    assert train(demo_root, tmp_path, "--epochs", "4", *common) == 0
    assert train(demo_root, tmp_path, "--epochs", "6", *common, "--resume") == 0
    assert "the run now spans 6 epochs (it had 4)" in capsys.readouterr().out
    lrs = [float(r.split(",")[3]) for r in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    cosine = lambda e, T: 1e-6 + (1e-3 - 1e-6) * (1 + math.cos(math.pi * e / T)) / 2  # noqa: E731
    assert lrs[:4] == pytest.approx([cosine(e, 4) for e in range(4)])
    assert lrs[4:] == pytest.approx([cosine(e, 6) for e in (4, 5)])  # the 6-epoch curve from epoch 4 on
    assert json.loads((tmp_path / "config.json").read_text())["config"]["epochs"] == 6
    state = checkpoint.load(tmp_path / "last.pt")
    assert state["scheduler"]["T_max"] == 6 and state["epoch"] == 5


@pytest.mark.slow  # tens of seconds of training; CI runs -m slow
def test_overwrite_replaces_the_run_and_only_the_run(demo_root, tmp_path):
    common = ("--epochs", "1", "--steps-per-epoch", "1", "--no-eval", "--workers", "0")
    assert train(demo_root, tmp_path, *common) == 0
    (tmp_path / "grid_epoch0099.png").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("mine")
    assert train(demo_root, tmp_path, *common) == 2  # refused: the folder holds a run
    assert (tmp_path / "grid_epoch0099.png").read_bytes() == b"stale"
    assert train(demo_root, tmp_path, *common, "--overwrite") == 0
    assert not (tmp_path / "grid_epoch0099.png").exists() and (tmp_path / "notes.txt").read_text() == "mine"
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 2  # one history, not two


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno

    checkpoint.save_atomic({"epoch": 1, "w": torch.ones(1000)}, tmp_path / "last.pt")
    written, real = [], os.write

    def write(fd, data):  # the disk fills up after the first megabyte
        if sum(written) >= 2**20:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(real(fd, data[:2**20]))
        return written[-1]

    monkeypatch.setattr(checkpoint.os, "write", write)
    with pytest.raises(checkpoint.NsaError, match=r"the disk is full: .*last\.pt\.tmp.*still holds the previous "
                                                  r"epoch.*--resume"):
        checkpoint.save_atomic({"epoch": 2, "w": torch.ones(2**20)}, tmp_path / "last.pt")
    assert written and not (tmp_path / "last.pt.tmp").exists()
    monkeypatch.undo()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("device,gpus,backend", [("cpu", True, "gloo"), ("auto", True, "nccl"), ("auto", False, "gloo")])
def test_ddp_picks_the_backend_of_the_training_device(monkeypatch, device, gpus, backend):
    import nsa_fast.train as tr

    got = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: got.append(("device", d)))
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda b: got.append(("backend", b)))
    cfg = tr.TrainConfig(data="d", category="c", out="o", device=device)
    assert tr.setup_distributed(cfg) == (1, 2, 1)
    assert ("backend", backend) in got and (("device", 1) in got) == (backend == "nccl")


@pytest.mark.slow  # tens of seconds of training; CI runs -m slow
def test_piped_output_shows_one_line_an_epoch_and_the_results_table(demo_root, tmp_path):
    run = subprocess.run([sys.executable, "-m", "nsa_fast.train", "--data", str(demo_root), "--category", "demo",
                          "--out", str(tmp_path / "run"), *SMALL, "--epochs", "3", "--steps-per-epoch", "1",
                          "--workers", "0"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    progress = [line for line in lines if line.startswith("epoch ")]
    assert [p.split(":")[0] for p in progress] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    # log.csv counts epochs as the console does
    logged = [r.split(",")[0] for r in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]]
    assert [f"epoch {e}/3" for e in logged] == [p.split(":")[0] for p in progress]
    for p in progress:
        assert re.search(r"loss \d+\.\d{4}, lr [\d.e-]+, [\d.]+ samples/s, elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d$", p), p
    assert re.search(r"^synthetic anomalies of epochs 1-3: samples 24: patches tried \d+", run.stdout, re.M)
    table = run.stdout[run.stdout.index("Results on 'demo'"):]
    for row in ("image AUROC", "pixel AUROC", "AU-PRO@0.3", "image AUROC per defect:", "Outputs:", "last.pt",
                "roc.png", "pro.png", "examples.png"):
        assert row in table, row
    assert "\r" not in run.stdout  # no progress bar drawn into a pipe


@pytest.mark.parametrize("pipeline", [(), ("--synth", "device")])
def test_synthetic_anomaly_counts_reach_log_csv(demo_root, tmp_path, pipeline):
    import csv

    assert train(demo_root, tmp_path, "--epochs", "2", "--steps-per-epoch", "2", "--no-eval", "--workers", "0",
                 *pipeline) == 0
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 2
    for r in rows:
        tried, accepted = int(r["patches_tried"]), int(r["patches_accepted"])
        skipped = sum(int(r[k]) for k in r if k.startswith("skipped_"))
        assert tried >= 16 and accepted + skipped == tried  # 2 steps of 8 samples, at least a patch each
        assert 0 <= int(r["empty_labels"]) <= 16


@pytest.mark.slow  # tens of seconds of training; CI runs -m slow
def test_resume_without_epochs_continues_the_run_as_it_was(demo_root, tmp_path, capsys):
    common = ("--steps-per-epoch", "1", "--no-eval", "--workers", "0")
    assert main(["--data", str(demo_root), "--category", "demo", "--out", str(tmp_path), *SMALL, "--epochs", "3",
                 "--stop-after", "1", *common]) == 0
    # no --epochs: not the preset's 40, the run's own 3
    assert main(["--data", str(demo_root), "--category", "demo", "--out", str(tmp_path), *SMALL, "--resume",
                 *common]) == 0
    state = checkpoint.load(tmp_path / "last.pt")
    assert state["epoch"] == 2 and state["scheduler"]["T_max"] == 3
    assert "now spans" not in capsys.readouterr().out


def test_bf16_on_the_cpu_is_named_a_no_op(demo_root, tmp_path, capsys):
    rc = train(demo_root, tmp_path, "--epochs", "1", "--steps-per-epoch", "1", "--no-eval", "--workers", "0",
               "--amp", "bf16")
    assert rc == 0 and "warning: --amp bf16 applies on a GPU" in capsys.readouterr().err


def test_an_epoch_without_anomalies_is_named(demo_root, tmp_path, capsys, monkeypatch):
    # the trial before training passes, the epoch itself then makes none (DALI runs no trial)
    import nsa_fast.train as tr

    monkeypatch.setattr(tr, "check_anomalies", lambda *a: None)
    rc = train(demo_root, tmp_path, "--epochs", "1", "--steps-per-epoch", "1", "--no-eval", "--workers", "0",
               "--set", "half_h=0.03,0.06", "--set", "half_w=0.03,0.06")
    assert rc == 0
    assert "warning: epoch 1 made no synthetic anomaly: samples 8: patches tried" in capsys.readouterr().err


@pytest.mark.parametrize("flags, want", [([], "workers"), (["--synth", "device"], "device"), (["--synth", "dali"], "dali"),
                                         (["--loader", "dali"], "dali"), (["--loader", "memory"], "workers"),
                                         (["--loader", "dali", "--synth", "dali"], "dali")])
def test_where_samples_are_made_is_one_choice_with_its_aliases(flags, want):
    from nsa_fast.train import parse_args

    assert parse_args(["--data", "demo", "--category", "demo", *flags])[0].synth == want


@pytest.mark.parametrize("flags, want", [(["--gpu-blend"], "device"), (["--gpu-blend", "--synth", "device"], "device"),
                                         (["--gpu-blend", "--loader", "dali"], "dali"),
                                         (["--gpu-blend", "--synth", "dali"], "dali")])
def test_gpu_blend_is_the_alias_of_synth_device_on_a_gpu(monkeypatch, flags, want):
    from nsa_fast.train import parse_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert parse_args(["--data", "demo", "--category", "demo", *flags])[0].synth == want


@pytest.mark.parametrize("flags", [("--loader", "dali", "--synth", "device"), ("--loader", "dali", "--synth", "workers")])
def test_contradicting_choices_of_where_samples_are_made_are_refused(demo_root, tmp_path, capsys, flags):
    rc = train(demo_root, tmp_path, "--epochs", "1", *flags)
    err = capsys.readouterr().err
    assert rc == 2 and "contradicts" in err and "Traceback" not in err


def test_gpu_blend_with_synth_workers_is_refused(monkeypatch, capsys):
    from nsa_fast.train import parse_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(SystemExit) as exc:
        parse_args(["--data", "demo", "--category", "demo", "--gpu-blend", "--synth", "workers"])
    assert exc.value.code == 2 and "give one of them" in capsys.readouterr().err


def test_the_run_records_where_its_samples_were_made(demo_root, tmp_path):
    rc = train(demo_root, tmp_path, "--epochs", "1", "--steps-per-epoch", "1", "--synth", "device", "--no-eval")
    assert rc == 0
    assert json.loads((tmp_path / "config.json").read_text())["config"]["synth"] == "device"


def test_a_contradiction_is_named_before_the_missing_gpu(demo_root, tmp_path, capsys):
    rc = train(demo_root, tmp_path, "--epochs", "1", "--gpu-blend", "--synth", "workers")
    err = capsys.readouterr().err
    assert rc == 2 and "give one of them" in err and "needs a CUDA GPU" not in err


def test_workers_given_with_synth_device_get_a_note(capsys):
    from nsa_fast.train import parse_args

    cfg = parse_args(["--data", "demo", "--category", "demo", "--synth", "device", "--workers", "3"])[0]
    assert cfg.workers == 3 and "--workers 3 applies to --synth workers and dali" in capsys.readouterr().err
    cfg = parse_args(["--data", "demo", "--category", "demo"])[0]
    assert cfg.workers == min(8, os.cpu_count() or 1) and capsys.readouterr().err == ""


def test_the_matrix_upsampling_interpolates_in_float32_under_bf16_autocast():
    from nsa_fast.model import MatmulUpsample

    x = torch.randn(1, 4, 14, 18)
    ref = torch.nn.UpsamplingBilinear2d(scale_factor=2)(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = MatmulUpsample()(x)
    assert got.dtype == torch.float32  # the input's dtype, not autocast's
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-6)


def test_deterministic_refuses_a_cublas_setting_that_is_not_deterministic(demo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    code = train(demo_root, tmp_path / "d", "--epochs", "1", "--steps-per-epoch", "1", "--no-eval", "--workers", "0",
                 "--deterministic")
    err = capsys.readouterr().err
    assert code == 2 and "CUBLAS_WORKSPACE_CONFIG" in err and ":4096:8" in err and "':0:0'" in err


def test_a_banner_says_what_the_run_does_before_the_first_epoch(demo_root, tmp_path, capsys):
    assert train(demo_root, tmp_path / "run", "--epochs", "2", "--stop-after", "1", "--steps-per-epoch", "1",
                 "--no-eval", "--workers", "0") == 0
    out = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(out) if line.startswith("epoch 1/2"))
    n = len(list((demo_root / "demo" / "train" / "good").glob("*.png")))
    assert out[:first] == [
        f"Training class 'demo' on {n} images in '{demo_root / 'demo' / 'train' / 'good'}', resized to 72x72; "
        "preset 'demo' (texture); epochs 1-1 of 2",
        "  device cpu, fp32; synthetic anomalies: --synth workers (OpenCV in the training process)",
        f"  output folder '{tmp_path / 'run'}'",
        "  kept out of training, for the thresholds: 100 normal validation images (mvtec layout)"]


def test_the_banner_names_the_solver_the_workers_and_a_resumed_run():
    from nsa_fast.presets import get_preset
    from nsa_fast.train import TrainConfig, banner

    files = [Path("/d/c/train/good/0.png"), Path("/d/c/train/good/1.png")]
    cpu = torch.device("cpu")
    text = banner(TrainConfig(data="/d", category="c", out="o", synth="device", epochs=40), get_preset("bottle"),
                  files, cpu, 1, 10, 40)
    assert "2 images in '/d/c/train/good', resized to 256x256; preset 'bottle' (object); epochs 11-40 of 40 (resumed)" in text
    assert "--synth device (made on cpu, Poisson solver dst)" in text
    text = banner(TrainConfig(data="demo", category="demo", out="o", workers=3, solver="sor"), get_preset("demo"),
                  files, cpu, 2, 0, 5)
    assert "(the built-in demo data: --data demo)" in text and "cpu, fp32, 2 processes" in text
    assert "--synth workers (OpenCV in 3 worker processes)" in text


@pytest.mark.slow  # tens of seconds of training; CI runs -m slow
def test_ctrl_c_says_how_to_resume_and_keeps_the_checkpoint(demo_root, tmp_path):
    import shlex

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nsa_fast.train", "--data", str(demo_root), "--category", "demo", "--out", str(out),
           *SMALL, "--epochs", "200", "--steps-per-epoch", "1", "--workers", "0", "--no-eval"]
    # its own process group, which Ctrl-C signals on a terminal; SIGINT handled as on a terminal even
    # when the tests run in a background job (whose children inherit SIGINT ignored)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 300
        while not (out / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    held = int(re.search(r"holds epoch (\d+) of 200\. Continue with: ", err).group(1))
    command = err.split("Continue with: ", 1)[1].strip()
    assert command == shlex.join(["python", *cmd[1:], "--resume"])
    assert checkpoint.load(out / "last.pt")["epoch"] == held - 1  # whole, and the epoch it says
    assert not (out / "last.pt.tmp").exists()
    # the printed command continues the run (here one epoch more; in this process, to save a start-up)
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "nsa_fast.train"] and main([*words[3:], "--stop-after", "1"]) == 0
    assert checkpoint.load(out / "last.pt")["epoch"] == held
    logged = [int(r.split(",")[0]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert logged == list(range(1, held + 2))


def test_the_resume_command_drops_overwrite_and_names_the_output_folder():
    from nsa_fast.train import Progress, interrupted_message, parse_args

    argv = ["--data", "demo", "--category", "demo", "--overwrite", "--epochs", "5"]
    cfg = parse_args(argv)[0]
    line = interrupted_message(argv, cfg, False, 1, Progress(saved_epochs=2))
    assert line == ("interrupted; 'runs/demo-nsa-logistic-s0/last.pt' holds epoch 2 of 5. Continue with: python -m "
                    "nsa_fast.train --data demo --category demo --epochs 5 --out runs/demo-nsa-logistic-s0 --resume")
    assert "nothing to resume" in interrupted_message(argv, cfg, False, 1, Progress())
    line = interrupted_message(argv, cfg, False, 1, Progress(saved_epochs=5, evaluating=True))
    assert line.endswith("Evaluate it with: python -m nsa_fast.evaluate --checkpoint runs/demo-nsa-logistic-s0/last.pt "
                         "--data demo --category demo --out runs/demo-nsa-logistic-s0/eval")
    argv = ["--data", "d", "--category", "c", "--out=o", "--resume"]
    assert interrupted_message(argv, parse_args(argv)[0], True, 2, Progress(saved_epochs=1)).endswith(
        "Continue with: torchrun --nproc_per_node=2 -m nsa_fast.train --data d --category c --out=o --resume")


def test_ctrl_c_waits_until_the_epochs_files_are_written():
    from nsa_fast.train import sigint_deferred

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("Python's own Ctrl-C handler is not installed here")
    done = []
    with pytest.raises(KeyboardInterrupt), sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler has run by now; the block goes on
        done.append("written")
    assert done == ["written"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
