"""Where training samples are made (``--synth``): CPU workers, the training device, or DALI.

``make_pipeline`` is the one place that turns the choice into a pipeline; all three offer the
``Pipeline`` protocol: ``batches(epoch)`` (this rank's batches, which fix the steps of an epoch),
``epoch(epoch)`` (an iterator of TrainBatch: images uint8 (B, h, w, C), labels float32 (B, h, w),
the sampler's Stats) and ``stats`` (the counts of every batch made so far). Every pipeline draws a
sample's randomness from ``sample_rng(seed, epoch, index)`` in the same order (source image,
destination transform, source transform, patch plan), so a sample does not depend on the number
of workers, ranks or on the pipeline. ``to_training_device`` is the one place that moves batches
to the device the network trains on.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from .errors import NsaError
from .labels import Label
from .objects import object_mask
from .presets import Preset
from .sampler import Stats, draw_pair, get_task, sample_plan, sample_rng
from .synthesis import SyntheticDataset
from .transfer import HostPack
from .transforms import augment_on_device, pack_augment

SYNTH_CHOICES = ("workers", "device", "dali")


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """This rank's batches of one epoch: a seeded shuffle, split across ranks, then into batches.

    Every rank gets the same number of samples, hence of batches and optimizer steps (a rank with
    an extra step would wait forever in DDP's all-reduce): when ``world`` does not divide ``n``
    the shuffled order is wrapped around, so a few images appear twice in that epoch, as
    torch's DistributedSampler does. A trailing batch of one sample is dropped on every rank
    alike (batch norm needs two); other partial batches stay, so classes with fewer images than
    the batch size still train.
    """
    order = np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)
    per_rank = -(-n // world)
    order = np.resize(order, per_rank * world)[rank::world]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [b for b in batches if len(b) > 1]


class TrainBatch(NamedTuple):
    """What every pipeline yields: images uint8 (B, h, w, C), labels float32 (B, h, w), and the
    sampler's Stats of the batch (on the host)."""

    images: torch.Tensor
    labels: torch.Tensor
    stats: Stats


def to_training_device(batches: Iterable[TrainBatch], device: torch.device):
    """Every pipeline's batches, on the device the network trains on (the one place that moves
    them). Host-to-GPU copies are asynchronous (the CPU pipelines pin their batches when training
    on CUDA); a copy back to the host waits for its data, as the host reads it next."""
    for images, labels, stats in batches:
        async_ok = device.type != "cpu" and images.device.type == "cpu"
        yield TrainBatch(images.to(device, non_blocking=async_ok), labels.to(device, non_blocking=async_ok), stats)


def with_index(device: torch.device) -> torch.device:
    """``cuda`` as ``cuda:N`` (the current device): per-thread CUDA calls need the index."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _bind_device(device: torch.device) -> None:
    """Runs in the prefetch thread: CUDA's current device is per thread, and without this every
    rank's thread would create a context on GPU 0."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def prefetched(jobs: Iterable[Callable[[], TrainBatch]], device: torch.device) -> Iterator[TrainBatch]:
    """Run each job in a background thread, one ahead of the caller.

    On CUDA the thread works on its own stream with ``device`` current, and the caller's stream
    waits for that work before it uses the tensors, so making the next batch overlaps the
    training step on the current one without a host synchronisation.
    """
    device = with_index(device)
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def run(job):
        if stream is None:
            return job(), None
        with torch.cuda.stream(stream):
            out = job()
            ready = torch.cuda.Event()
            ready.record(stream)
        return out, ready

    jobs = iter(jobs)
    with ThreadPoolExecutor(max_workers=1, initializer=_bind_device, initargs=(device,)) as pool:
        first = next(jobs, None)
        pending = None if first is None else pool.submit(run, first)
        while pending is not None:
            out, ready = pending.result()
            job = next(jobs, None)
            pending = None if job is None else pool.submit(run, job)
            if ready is not None:  # the consumer's stream waits for the side stream's work
                consumer = torch.cuda.current_stream(device)
                consumer.wait_event(ready)
                for t in out:
                    if isinstance(t, torch.Tensor):
                        t.record_stream(consumer)
            yield out


class Pipeline:
    """A source of training batches: ``batches(epoch)``, ``epoch(epoch)`` and ``stats``."""

    def __init__(self):
        self.stats = Stats()

    def batches(self, epoch: int):
        """This rank's batches of one epoch (their number is the epoch's steps)."""
        raise NotImplementedError

    def epoch(self, epoch: int) -> Iterator[TrainBatch]:
        """The batches of one epoch, in order, on the pipeline's device."""
        for batch in self._make(epoch):
            self.stats += batch.stats
            yield batch

    def _make(self, epoch: int) -> Iterator[TrainBatch]:
        raise NotImplementedError


def make_pipeline(synth: str, source, preset: Preset, task: str, label: str, seed: int, batch_size: int,
                  device: torch.device, *, workers: int = 0, solver: str = "auto", rank: int = 0,
                  world: int = 1) -> Pipeline:
    """The pipeline of ``--synth``: ``workers`` (DataLoader workers, OpenCV; source: decoded images),
    ``device`` (cache, augmentation and blending on ``device``; source: decoded images) or
    ``dali`` (DALI reads and augments files on ``device``, then blends there; source: files).
    ``solver`` names the batched executor's Poisson solver (``blend.pick.pick_solver``)."""
    from .blend.pick import pick_solver

    if synth not in SYNTH_CHOICES:
        raise NsaError(f"--synth must be one of {SYNTH_CHOICES}, got {synth!r}.")
    if synth == "workers":
        if solver != "auto":
            raise NsaError(f"--solver {solver} chooses the Poisson solver of the batched executor; CPU workers blend "
                           "with OpenCV. Add --synth device (or --gpu-blend), or drop --solver.")
        return CpuPipeline(source, preset, task, label, seed, batch_size, workers, device, rank=rank, world=world)
    cls = BatchedPipeline if synth == "device" else DaliPipeline
    extra = {"workers": workers} if synth == "dali" else {}
    return cls(source, preset, task, label, seed, batch_size, device, solver=pick_solver(solver, device),
               rank=rank, world=world, **extra)


def check_device_needs(device: torch.device, label: Label, disk_median) -> None:
    """Labels with an intensity map need the disk-median kernel on CUDA, hence CuPy: say so before
    the first batch (the kernel is CuPy's even with --solver dst, whose solve is torch's)."""
    if device.type == "cuda" and disk_median is None and label.kind.uses_intensity:
        from .blend.cuda import cupy

        cupy()


class CpuPipeline(Pipeline):
    """Synthetic anomalies made by DataLoader workers with the OpenCV executor (the reference path).

    Batches stay on the CPU, in pinned memory when the network trains on CUDA.
    """

    def __init__(self, images: np.ndarray, preset: Preset, task: str, label: str, seed: int,
                 batch_size: int, workers: int, device: torch.device, rank: int = 0, world: int = 1):
        super().__init__()
        self.ds = SyntheticDataset(list(images), preset, task, label, seed)
        self.batch_size, self.workers, self.device = batch_size, workers, device
        self.seed, self.rank, self.world = seed, rank, world

    def batches(self, epoch: int) -> list[np.ndarray]:
        return epoch_batches(len(self.ds), self.batch_size, self.seed, epoch, self.rank, self.world)

    def _make(self, epoch: int):
        keyed = [[(epoch, int(i)) for i in b] for b in self.batches(epoch)]
        loader = DataLoader(self.ds, batch_sampler=keyed, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda")
        for item in loader:
            yield TrainBatch(item["image"], item["label"], Stats.from_array(item["stats"].numpy()))


class _BlendsOnDevice(Pipeline):
    """What the two batched pipelines share: the sampler's settings and the batched executor on
    one device (with its index: the prefetch thread needs it)."""

    def __init__(self, preset: Preset, task: str, label: str, seed: int, device: torch.device, solver, disk_median):
        from .blend.batched import BatchedExecutor
        from .blend.solvers import dst_solve

        super().__init__()
        self.device = with_index(device)
        self.preset, self.task, self.seed = preset, get_task(task), seed
        self.label = Label.for_preset(label, preset)
        self.executor = BatchedExecutor(solver or dst_solve, disk_median)
        check_device_needs(self.device, self.label, disk_median)


class BatchedPipeline(_BlendsOnDevice):
    """The image cache, the augmentation and the blending on one device (``--gpu-blend`` on CUDA).

    The CPU only draws the plans. Per batch: one host-to-device copy of the transforms, one
    device-to-host copy of the augmented images' object masks (the sampler needs them), one
    host-to-device copy of the plans.
    """

    def __init__(self, images: np.ndarray, preset: Preset, task: str, label: str, seed: int,
                 batch_size: int, device: torch.device, solver=None, disk_median=None,
                 rank: int = 0, world: int = 1):
        super().__init__(preset, task, label, seed, device, solver, disk_median)
        # decoded once, kept on the device (a tensor already there is used as it is)
        cache = images if isinstance(images, torch.Tensor) else torch.from_numpy(images)
        self.cache = cache.to(self.device)
        self.batch_size, self.rank, self.world = batch_size, rank, world

    def batches(self, epoch: int) -> list[np.ndarray]:
        return epoch_batches(len(self.cache), self.batch_size, self.seed, epoch, self.rank, self.world)

    def _make(self, epoch: int):
        """Batches of one epoch; the next one is made in a background thread while the caller
        trains on the current one."""
        jobs = [lambda b=b: self.make(epoch, b) for b in self.batches(epoch)]
        return prefetched(jobs, self.device)

    def make(self, epoch: int, indices: np.ndarray) -> TrainBatch:
        """A TrainBatch of images and labels on the device."""
        _, batch, stats = self.sample(epoch, indices)
        return TrainBatch(batch.images, batch.labels, stats)

    def sample(self, epoch: int, indices: np.ndarray):
        """The augmented destinations uint8 (B, h, w, C) and the executor's Batch, on the device,
        and the sampler's Stats of the batch."""
        n, shape = len(self.cache), tuple(self.cache.shape[1:3])
        rngs = [sample_rng(self.seed, epoch, int(i)) for i in indices]
        draws = [draw_pair(rng, int(i), n, shape, self.preset, self.task.same_source)
                 for i, rng in zip(indices, rngs)]
        src_idx, dst_aug, src_aug = (list(x) for x in zip(*draws))
        pack = HostPack()
        rot_d = pack_augment(pack, "dst.", indices, dst_aug, self.preset, shape)
        rot_s = pack_augment(pack, "src.", src_idx, src_aug, self.preset, shape)
        packed = pack.send(self.device)  # host -> device: the batch's transforms
        dst = augment_on_device(self.cache, packed, "dst.", rot_d)
        src = augment_on_device(self.cache, packed, "src.", rot_s)
        return (dst, *synthesize_batch(self.executor, dst, src, rngs, self.preset, self.task, self.label))


def synthesize_batch(executor, dst: torch.Tensor, src: torch.Tensor, rngs, preset: Preset, task, label: Label):
    """Object masks on the device, plans on the CPU, blending and labels on the device; returns
    the executor's Batch and the plans' Stats."""
    plans_of = lambda d, s: [sample_plan(dst.shape[1:3], preset, task, rng, s[k], d[k])  # noqa: E731
                             for k, rng in enumerate(rngs)]
    if preset.background is None:
        plans = plans_of([None] * len(rngs), [None] * len(rngs))
        d_obj = s_obj = None
    else:
        d_obj, s_obj = object_mask(dst, preset.background), object_mask(src, preset.background)
        # device -> host: the sampler needs the object masks (the one read-back of a batch)
        both = torch.stack([d_obj, s_obj]).cpu().numpy()
        plans = plans_of(both[0], both[1])
    stats = Stats()
    for plan in plans:
        stats += plan.stats
    # boxes padded to the preset's n_max: one shape for every batch (NSA.batch, synth stack them)
    return executor(dst, src, plans, label, src_obj=s_obj, dst_obj=d_obj, n_max=preset.n_max), stats


class DaliPipeline(_BlendsOnDevice):
    """Files read, decoded and augmented by DALI (for sets too large to cache), then blended by the
    batched executor on the same device, in a background thread as ``BatchedPipeline`` does.

    The source of each sample is the next image of the same batch (DALI hands out batches, not
    random access), with its own augmentation. DALI's reader keeps its own shuffle state, so a
    resumed run sees a different image order than an uninterrupted one (the plans still come
    from ``sample_rng(seed, epoch, index)``).
    """

    def __init__(self, files, preset: Preset, task: str, label: str, seed: int, batch_size: int,
                 device: torch.device, solver=None, disk_median=None, rank: int = 0, world: int = 1,
                 workers: int = 2):
        from .dali_loader import DaliTrainLoader

        super().__init__(preset, task, label, seed, device, solver, disk_median)
        device = self.device
        self.loader = DaliTrainLoader(files, preset, batch_size, seed,
                                      device="gpu" if device.type == "cuda" else "cpu",
                                      device_id=device.index if device.type == "cuda" else None,
                                      shard_id=rank, num_shards=world, num_threads=max(1, workers),
                                      return_indices=True)

    def batches(self, epoch: int) -> range:
        return range(len(self.loader))

    def _make(self, epoch: int):
        source = iter(self.loader)
        # Each job pulls DALI's next batch and blends it, both in the prefetch thread.
        return prefetched([lambda: self._blend(epoch, *next(source)) for _ in self.batches(epoch)], self.device)

    def _blend(self, epoch: int, images: torch.Tensor, indices: torch.Tensor):
        rngs = [sample_rng(self.seed, epoch, int(i)) for i in indices.tolist()]  # indices are on the host
        src = images if self.task.same_source else images.roll(1, 0)
        out, stats = synthesize_batch(self.executor, images, src, rngs, self.preset, self.task, self.label)
        return TrainBatch(out.images, out.labels, stats)
