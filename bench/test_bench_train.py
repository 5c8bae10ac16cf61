"""Training throughput at 224 px: the network step, and the data path that feeds it.

CPU rows: one core, batch 8 (a batch of 64 takes ~10 s a step here). CUDA rows (when a GPU is
present): batch 64 at 224 px with bf16 where the GPU has it fast, a step on a fixed batch beside
steps fed by the --gpu-blend pipeline and by CPU workers; the data path's share of a step is
1 - fixed / fed (bench/gpu_summary.py prints it), and with --gpu-blend it must stay under 10 %.
Run: pytest bench/ --benchmark-only
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nsa_fast.model import EncoderDecoder, normalize
from nsa_fast.pipelines import BatchedPipeline, CpuPipeline
from nsa_fast.presets import get_preset
from nsa_fast.train import loss_fn

CUDA = pytest.mark.cuda
PRESET = get_preset("bottle")


def step_fn(device, batch, amp_dtype=None):
    torch.manual_seed(0)
    model = EncoderDecoder().to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    images = torch.randint(0, 256, (batch, 224, 224, 3), dtype=torch.uint8, device=device)
    labels = torch.rand(batch, 224, 224, device=device)

    def step():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(normalize(images, "imagenet"))[:, 0]
        loss = loss_fn(logits, labels, "logistic")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()  # sync, as the trainer does
    return step


def record_rate(benchmark, batch):
    if benchmark.stats:
        benchmark.extra_info["images_per_s"] = round(batch / benchmark.stats.stats.mean, 1)


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
def test_train_step_cuda(benchmark):
    dev = torch.device("cuda")
    amp = torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else None
    benchmark.group = "training at 224 px"
    benchmark.pedantic(step_fn(dev, 64, amp), rounds=20, warmup_rounds=3)
    record_rate(benchmark, 64)


def fed_steps(device, pipeline, amp_dtype):
    """One training step a call, each on the pipeline's next batch (epochs roll over)."""
    from nsa_fast.pipelines import to_training_device

    torch.manual_seed(0)
    model = EncoderDecoder().to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def batches():
        epoch = 0
        while True:
            yield from to_training_device(pipeline.epoch(epoch), device)
            epoch += 1

    it = batches()

    def step():
        images, labels = next(it)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(normalize(images, "imagenet"))[:, 0]
        loss = loss_fn(logits, labels, "logistic")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()  # sync, as the trainer does
    return step


@CUDA
@pytest.mark.parametrize("source", ["gpu_blend", "cpu_workers"])
def test_train_step_cuda_fed_by(benchmark, bottle_like_256, source):
    """A batch-64 training step on the next batch of a pipeline: --gpu-blend, or CPU workers."""
    import os

    dev = torch.device("cuda")
    amp = torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else None
    imgs = np.stack([bottle_like_256[i % len(bottle_like_256)] for i in range(640)])  # 10 batches an epoch
    if source == "gpu_blend":
        pipe = BatchedPipeline(imgs, PRESET, "nsa", "logistic", 0, 64, dev)
    else:
        workers = min(8, os.cpu_count() or 1)
        pipe = CpuPipeline(imgs, PRESET, "nsa", "logistic", 0, 64, workers, dev)
        benchmark.extra_info["workers"] = workers
    benchmark.group = "training at 224 px"
    loss = benchmark.pedantic(fed_steps(dev, pipe, amp), rounds=20, warmup_rounds=5)
    assert np.isfinite(loss)
    record_rate(benchmark, 64)


@CUDA
def test_data_path_gpu_blend(benchmark, bottle_like_256):
    dev = torch.device("cuda")
    imgs = np.stack([bottle_like_256[i % len(bottle_like_256)] for i in range(64)])
    pipe = BatchedPipeline(imgs, PRESET, "nsa", "logistic", 0, 64, dev)
    order = np.arange(64)

    def make():
        images, labels = pipe.make(0, order)
        torch.cuda.synchronize()
        return images, labels

    benchmark.group = "training at 224 px"
    images, labels = benchmark.pedantic(make, rounds=20, warmup_rounds=3)
    assert images.is_cuda and labels.any()
    record_rate(benchmark, 64)
