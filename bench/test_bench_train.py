"""Training throughput at 224 px: the network step, and the data paths that feed it.

CPU rows: one core, batch 8 (a batch of 64 takes ~10 s a step here). CUDA rows (when a GPU is
present): batch 64 at 224 px with bf16 where the GPU has it fast, a step on a fixed batch beside
steps fed by each ``--synth`` (device, workers, and dali where it is installed), and the device
pipeline's batches alone for each solver. The data path's share of a step is 1 - fixed / fed
(bench/gpu_summary.py prints it); with ``--synth device`` it must stay under 10 %.
Run: pytest bench/ --benchmark-only
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from nsa_fast.model import EncoderDecoder, normalize
from nsa_fast.pipelines import BatchedPipeline, CpuPipeline, to_training_device
from nsa_fast.presets import get_preset
from nsa_fast.train import loss_fn, precision

CUDA = pytest.mark.cuda
PRESET = get_preset("bottle")


def train_step(model, opt, images, labels, amp_dtype):
    """One optimizer step as the trainer takes it; returns the loss (a sync, as the trainer's)."""
    with precision(images.device, amp_dtype):
        logits = model(normalize(images, "imagenet"))[:, 0]
    loss = loss_fn(logits, labels, "logistic")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def model_on(device):
    torch.manual_seed(0)
    model = EncoderDecoder().to(device, memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), 1e-3)


def step_fn(device, batch, amp_dtype=None, size=224):
    model, opt = model_on(device)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8).to(device)
    labels = torch.rand(batch, size, size).to(device)
    return lambda: train_step(model, opt, images, labels, amp_dtype)


def record_rate(benchmark, batch, key="images_per_s"):
    if benchmark.stats:
        benchmark.extra_info[key] = round(batch / benchmark.stats.stats.mean, 1)


def test_train_step_cpu(benchmark):
    benchmark.group = "training at 224 px"
    loss = benchmark.pedantic(step_fn(torch.device("cpu"), 8), rounds=3, warmup_rounds=1)
    assert np.isfinite(loss)
    record_rate(benchmark, 8)


def test_data_path_cpu_one_worker(benchmark, bottle_like_256):
    """A batch of 8 made in the main process (OpenCV executor), as one CPU worker makes it."""
    pipe = CpuPipeline(np.stack(bottle_like_256), PRESET, "nsa", "logistic", 0, 8, 0, torch.device("cpu"))
    benchmark.group = "training at 224 px"
    epochs = iter(range(10**6))
    images, labels, _ = benchmark.pedantic(lambda: next(pipe.epoch(next(epochs))), rounds=5, warmup_rounds=1)
    assert images.shape == (8, 224, 224, 3) and labels.any()
    record_rate(benchmark, 8)


@CUDA
def test_train_step_cuda(benchmark, gpu):
    """A step on a fixed batch: the network alone."""
    benchmark.group = "training at 224 px"
    loss = benchmark.pedantic(step_fn(gpu.device, gpu.batch, gpu.amp_dtype(), gpu.crop), rounds=20, warmup_rounds=3)
    assert np.isfinite(loss)
    record_rate(benchmark, gpu.batch)


def cache(gpu, n: int) -> np.ndarray:
    """n images of the bench's 8 bottle-like ones, at the size the GPU runs."""
    from images import objects

    eight = objects(gpu.image)
    return np.stack([eight[i % 8] for i in range(n)])


def fed_steps(gpu, pipeline):
    """One training step a call, each on the pipeline's next batch (epochs roll over)."""
    model, opt = model_on(gpu.device)

    def batches():
        epoch = 0
        while True:
            yield from to_training_device(pipeline.epoch(epoch), gpu.device)
            epoch += 1

    it = batches()

    def step():
        images, labels, _ = next(it)
        return train_step(model, opt, images, labels, gpu.amp_dtype())
    return step


def pipeline_of(source: str, gpu, images: np.ndarray, tmp_path):
    """The pipeline of ``--synth source`` on the benchmark's images (dali: the same images as files)."""
    if source == "device":
        pipe = BatchedPipeline(images, gpu.preset, "nsa", "logistic", 0, gpu.batch, gpu.device)
        pipe.executor = gpu.executor("auto")
        return pipe, {}
    if source == "workers":
        workers = 0 if gpu.standin else min(8, os.cpu_count() or 1)
        return CpuPipeline(images, gpu.preset, "nsa", "logistic", 0, gpu.batch, workers, gpu.device), \
            {"workers": workers}
    import cv2

    from nsa_fast.pipelines import DaliPipeline

    files = []
    for i, img in enumerate(images):
        files.append(tmp_path / f"{i:03d}.png")
        cv2.imwrite(str(files[-1]), img[..., ::-1])
    return DaliPipeline(files, gpu.preset, "nsa", "logistic", 0, gpu.batch, gpu.device), {"workers": 4}


@CUDA
@pytest.mark.parametrize("source", ["device", "workers", "dali"])
def test_train_step_cuda_fed_by(benchmark, gpu, source, tmp_path):
    """A batch-64 training step on the next batch of a pipeline: --synth device, workers or dali."""
    if source == "dali":
        pytest.importorskip("nvidia.dali", reason="--synth dali needs DALI (pip install nvidia-dali-cuda120)")
        if gpu.standin:
            pytest.skip("DALI's GPU pipeline has no stand-in")
    images = cache(gpu, 10 * gpu.batch)  # 10 batches an epoch
    pipe, info = pipeline_of(source, gpu, images, tmp_path)
    benchmark.extra_info.update(info)
    benchmark.group = "training at 224 px"
    loss = benchmark.pedantic(fed_steps(gpu, pipe), rounds=20, warmup_rounds=5)
    assert np.isfinite(loss)
    record_rate(benchmark, gpu.batch)


@CUDA
@pytest.mark.parametrize("solver", ["dst", "sor", "jacobi"])
def test_device_pipeline_batch(benchmark, gpu, solver):
    """A batch of 64 made by --synth device alone (augmentation, object masks, plans on the CPU,
    blending and labels), each --solver: synthetic samples per second."""
    pipe = BatchedPipeline(cache(gpu, gpu.batch), gpu.preset, "nsa", "logistic", 0, gpu.batch, gpu.device)
    pipe.executor = gpu.executor(solver)
    order = np.arange(gpu.batch)
    epochs = iter(range(10**6))

    def make():
        images, labels, stats = pipe.make(next(epochs), order)
        gpu.sync()
        return images, labels, stats

    benchmark.group = "training at 224 px"
    images, labels, stats = benchmark.pedantic(make, rounds=20 if solver != "jacobi" else 5, warmup_rounds=2)
    assert images.shape == (gpu.batch, gpu.crop, gpu.crop, 3) and gpu.host(labels).any() and stats.accepted
    record_rate(benchmark, gpu.batch, "samples_per_s")
