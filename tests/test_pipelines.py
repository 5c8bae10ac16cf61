"""The two training pipelines draw the same samples from the same seeds."""
import numpy as np
import torch

from _support import objects_on_background
from nsa_fast.pipelines import BatchedPipeline, CpuPipeline, epoch_batches
from nsa_fast.presets import get_preset


def test_prefetching_yields_exactly_the_batches_made_directly():
    imgs = np.stack(objects_on_background(12, size=256))
    pipe = BatchedPipeline(imgs, get_preset("bottle"), "nsa", "logistic", 0, 4, torch.device("cpu"))
    streamed = list(pipe.epoch(1))
    direct = [pipe.make(1, b) for b in pipe.batches(1)]
    assert len(streamed) == len(direct) == 3
    for (a, la), (b, lb) in zip(streamed, direct):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_cpu_workers_and_device_pipeline_agree():
    # no rotation (carpet): both pipelines see identical augmented images, object masks and plans;
    # only the Poisson solver (OpenCV's FFT vs the batched DST) may differ by a grey level
    preset = get_preset("carpet")
    imgs = np.stack(objects_on_background(10, size=264))
    cpu = CpuPipeline(imgs, preset, "nsa", "logistic", 3, 5, 0, torch.device("cpu"))
    dev = BatchedPipeline(imgs, preset, "nsa", "logistic", 3, 5, torch.device("cpu"))
    for (a, la), (b, lb) in zip(cpu.epoch(2), dev.epoch(2)):
        assert a.shape == b.shape == (5, 256, 256, 3)
        assert (a.int() - b.int()).abs().max() <= 1
        assert (la == lb).float().mean() >= 0.999


def test_epoch_batches_cover_the_data_once():
    got = np.concatenate(epoch_batches(23, 5, seed=0, epoch=0))
    assert sorted(got) == list(range(23))  # 5+5+5+5+3
    assert all(len(b) > 1 for b in epoch_batches(21, 5, 0, 0))  # a lone last sample is dropped
