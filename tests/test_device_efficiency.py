"""What the GPU path costs the device, counted on the stand-in GPU (tests/standin_gpu.py).

A GTX 1080 computes float64 at 1/32 of its float32 rate, every kernel launch costs 5-10 us of
host time, and every read of device data makes the host wait for the GPU. So, for one synthetic
batch of 64 at 224 px (bottle preset, logistic labels) made as ``--synth device`` makes it on
CUDA, and for the training steps that consume such batches:

- no float64 tensor is made on the device (the FPI tasks' interpolation excepted, which floors
  float64 products as the authors do: tests/test_blend_ops.py shows float32 would change pixels);
- the CuPy kernels take one launch per blending round (all sweeps of a solve in one launch) and
  one for the disk median, whatever the solver; the torch ops stay within a budget of hundreds;
- the synthetic batch reads nothing back but the object masks the CPU sampler needs, and a
  training step reads one number (the loss for the log), plus one count at the end of an epoch.
The figures are printed by ``python bench/device_counts.py`` and kept in docs/gpu-and-docker.md.
"""
from __future__ import annotations

import numpy as np
import pytest

from _support import objects_on_background
from standin_gpu import DEVICE, batch_counts, cuda_executor, standin_gpu, training_counts
from nsa_fast.pipelines import BatchedPipeline
from nsa_fast.presets import get_preset

SOLVERS = ("dst", "sor", "jacobi")
CUPY_LAUNCHES = {"dst": 1, "sor": 4, "jacobi": 4}  # bottle: up to 3 rounds of clones, then the median
TORCH_OPS_BUDGET = 1000  # measured 806 (dst) and 665 (sor, jacobi) on 2026-12-07; a loop over samples makes thousands


@pytest.fixture(scope="module")
def bottle_counts():
    images = np.stack(objects_on_background(64, size=256))
    return {s: batch_counts(images, get_preset("bottle"), s) for s in SOLVERS}


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_synthetic_batch_makes_no_float64_on_the_device(bottle_counts, solver):
    assert bottle_counts[solver]["float64"] == []
    assert bottle_counts[solver]["patches"] > 64  # the batch blended patches: the count means something


@pytest.mark.parametrize("solver", SOLVERS)
def test_kernel_launches_of_a_synthetic_batch_stay_in_their_budget(bottle_counts, solver):
    c = bottle_counts[solver]
    assert len(c["cupy"]) == CUPY_LAUNCHES[solver], c["cupy"]
    assert c["cupy"][-1] == "median_disk"
    assert 200 < c["torch_ops"] <= TORCH_OPS_BUDGET, c["torch_ops"]


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_synthetic_batch_reads_back_only_the_object_masks(bottle_counts, solver):
    c = bottle_counts[solver]
    assert (c["h2d"], c["d2h"], c["syncs"]) == (2, 1, 0), c["events"]
    assert c["events"][1].startswith("d2h: (2, 64, 224, 224)")  # both object masks in one copy


def test_a_texture_batch_reads_nothing_back_and_makes_no_float64():
    from nsa_fast.demo import normal_images

    images = np.stack(normal_images(8))
    c = batch_counts(images, get_preset("carpet").replace(image_size=256, crop=256), "sor", batch=8)
    assert (c["h2d"], c["d2h"], c["syncs"], c["float64"]) == (2, 0, 0, []), c["events"]
    assert len(c["cupy"]) <= 5  # up to 4 rounds (n_max 4) and the median


def test_only_the_interpolation_of_the_fpi_tasks_takes_float64():
    """FPI's interpolation floors float64 products as the authors' code does: its factor and its
    arithmetic are the only float64 on the device."""
    images = np.stack(objects_on_background(8, size=256))
    c = batch_counts(images, get_preset("bottle"), "sor", task="fpi", batch=8)
    assert c["float64"], "the FPI batch interpolated nothing"
    places = {event.split(" in ")[-1] for event in c["float64"]}
    assert places <= {"transfer.py:get", "batched.py:_blend_round", "ops.py:<lambda>", "ops.py:interpolate"}, places


def test_a_training_step_fed_by_the_device_pipeline_reads_one_number():
    """The training loop waits for the device once a step (the loss, for the log and the progress
    bar) and once an epoch (the count of empty labels); the synthesis thread once a batch (the
    object masks); nothing else crosses back."""
    imgs = np.stack(objects_on_background(8, size=256))
    with standin_gpu(execute=False):
        pipe = BatchedPipeline(imgs, get_preset("bottle"), "nsa", "logistic", 0, 4, DEVICE)
        pipe.executor = cuda_executor("sor")
        dev, threads, res = training_counts(pipe, pipe.preset, steps=2)
    assert res.step == 2 and np.isfinite(res.loss)
    (synth,) = threads  # the batches were made in the one prefetch thread
    assert dev.d2h == 2 + 1 and dev.syncs == 0, dev.events
    assert [e for e in dev.events if e.startswith("d2h")] == ["d2h: _local_scalar_dense reads a value"] * 3
    assert dev.h2d == 0, dev.events  # the batches are already on the device
    assert synth.d2h == 2 and synth.syncs == 0 and synth.h2d == 2 * 2, synth.events  # per batch: masks; two packs


def test_a_training_step_fed_by_cpu_workers_copies_one_batch_in():
    from nsa_fast.pipelines import CpuPipeline

    imgs = np.stack(objects_on_background(8, size=256))
    pipe = CpuPipeline(imgs, get_preset("bottle"), "nsa", "logistic", 0, 4, 0, DEVICE)
    dev, threads, res = training_counts(pipe, get_preset("bottle"), steps=2)
    assert res.step == 2 and not threads
    assert dev.h2d == 2 * 2 and dev.d2h == 2 + 1 and dev.syncs == 0, dev.events  # images and labels a step
