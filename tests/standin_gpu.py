"""A whole stand-in GPU for CPU-only machines: the stand-in device and the stand-in CuPy at once.

``standin_gpu()`` puts tensors "on the device" (tests/fake_device.py: they refuse to mix with host
tensors and count copies, reads, data-dependent waits, kernel-like ops and float64 tensors made
there) and CuPy's place taken by tests/emulation/standin_cupy.py (launches checked against CUDA's
rules, logged, and run on CPU threads from the kernels' own source, on the device tensors' data).
``cuda_executor`` is the batched executor as it is configured on CUDA: the CuPy solver of
``--solver`` (the direct solve is torch code either way), the CuPy disk median, one size group.

Used by the tests, by the GPU benchmarks' bodies on the CPU (bench/conftest.py) and by
``bash bench/gpu_check.sh --dry-run`` (bench/device_counts.py).
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fake_device import DEVICE, DeviceTensor, FakeDevice  # noqa: E402

STREAM = 0x5EED5  # the pointer of "torch's current stream" on the stand-in


class _Stream:
    cuda_stream = STREAM


@contextmanager
def standin_gpu(execute: bool = True):
    """(FakeDevice, stand-in CuPy) while active. execute=False checks and logs every CuPy launch
    without running it: for launches too large to emulate on CPU threads, where only the counts
    matter."""
    from emulation import standin_cupy
    from emulation.harness import missing_tool
    from nsa_fast.blend import cuda

    if execute and missing_tool("library"):
        pytest.skip(f"the kernel emulation needs {missing_tool('library')}")
    standin_cupy.reset()
    standin_cupy.execute = execute
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "cupy", standin_cupy)
        mp.setattr(cuda, "_MODULES", {})
        real_check = cuda._check_cuda
        mp.setattr(cuda, "_check_cuda",
                   lambda *ts: real_check(*[t for t in ts if not isinstance(t, DeviceTensor)]))
        mp.setattr(torch.cuda, "current_stream", lambda device=None: _Stream())
        from nsa_fast import pipelines

        def bind(device):  # a pipeline's prefetch thread computes on the stand-in device too
            mode = FakeDevice()
            mode.__enter__()
            dev.threads.append(mode)

        mp.setattr(pipelines, "_bind_device", bind)
        with FakeDevice() as dev:
            dev.threads = []  # the FakeDevice of each prefetch thread, counted apart
            yield dev, standin_cupy
    standin_cupy.reset()


def cuda_executor(solver: str):
    """The batched executor as CUDA runs it for ``--solver solver``."""
    from nsa_fast.blend.batched import BatchedExecutor
    from nsa_fast.blend.cuda import disk_median_cuda
    from nsa_fast.blend.pick import pick_solver

    return BatchedExecutor(pick_solver(solver, torch.device("cuda")), disk_median_cuda, buckets=1)


def batch_counts(images, preset, solver: str, task: str = "nsa", label: str = "logistic", batch: int = 64) -> dict:
    """What one batch of ``--synth device`` costs the device, made as CUDA makes it, after a first
    batch (one-off copies are not per batch): copies each way, reads that wait for the device,
    torch's kernel-like ops, the CuPy launches by kernel, and where float64 tensors were made."""
    from nsa_fast.pipelines import BatchedPipeline

    with standin_gpu(execute=False) as (dev, cp):
        pipe = BatchedPipeline(images, preset, task, label, 0, batch, DEVICE)
        pipe.executor = cuda_executor(solver)
        pipe.make(0, pipe.batches(0)[0])
        dev.reset()
        cp.launches.clear()
        images_out, labels, stats = pipe.make(1, pipe.batches(1)[0])
        assert images_out.device == labels.device == DEVICE
        return dict(h2d=dev.h2d, d2h=dev.d2h, syncs=dev.syncs, torch_ops=dev.kernels, float64=list(dev.float64),
                    cupy=[r.kernel for r in cp.launches], patches=stats.accepted, events=list(dev.events))


def training_counts(pipeline, preset, steps: int):
    """``train.train_epoch`` for ``steps`` steps on the stand-in device, the network and its
    optimizer there too: (the training thread's FakeDevice, the prefetch threads' FakeDevices,
    the epoch's result). Call it inside ``standin_gpu()`` for a pipeline on the device."""
    from nsa_fast.model import EncoderDecoder, normalize
    from nsa_fast.progress import Logger
    from nsa_fast.train import TrainConfig, train_epoch

    cfg = TrainConfig(data="-", category="-", out="-", steps_per_epoch=steps, batch_size=2)
    threads = []
    with pytest.MonkeyPatch.context() as mp, FakeDevice() as dev:
        from nsa_fast import pipelines

        def bind(device):  # the prefetch thread computes on the stand-in device, counted apart
            mode = FakeDevice()
            mode.__enter__()
            threads.append(mode)

        mp.setattr(pipelines, "_bind_device", bind)
        torch.manual_seed(0)
        model = EncoderDecoder().to(DEVICE, memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        normalize(torch.zeros(1, 8, 8, 3, dtype=torch.uint8).to(DEVICE), "imagenet")  # its statistics: once a device
        dev.reset()
        res = train_epoch(model, opt, pipeline, 0, cfg, preset, DEVICE, None,
                          Logger(Path("unused"), 1, steps, 0, 0, enabled=False), 0)
    return dev, threads, res


__all__ = ["DEVICE", "standin_gpu", "cuda_executor", "batch_counts", "training_counts", "STREAM"]
