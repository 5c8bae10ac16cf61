"""Where training batches come from: synthetic anomalies on CPU workers, or on the GPU.

Both pipelines draw every sample's randomness from ``sample_rng(seed, epoch, index)`` in the same
order (source image, destination transform, source transform, patch plan), so a sample does not
depend on the number of workers, ranks or on the pipeline. Each yields (images uint8 (B, h, w, C),
labels float32 (B, h, w)) on the training device.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from .presets import Preset
from .sampler import get_task, sample_plan
from .synth import SyntheticDataset, draw_pair, sample_rng
from .transforms import apply_augment_batch


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """This rank's batches of one epoch: a seeded shuffle, split across ranks, then into batches.

    A trailing batch of one sample is dropped (batch norm needs two); other partial batches stay,
    so classes with fewer images than the batch size still train.
    """
    order = np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)[rank::world]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [b for b in batches if len(b) > 1]


class CpuPipeline:
    """Synthetic anomalies made by DataLoader workers with the OpenCV executor (the reference path)."""

    def __init__(self, images: np.ndarray, preset: Preset, task: str, label: str, seed: int,
                 batch_size: int, workers: int, device: torch.device, rank: int = 0, world: int = 1):
        self.ds = SyntheticDataset(list(images), preset, task, label, seed)
        self.batch_size, self.workers, self.device = batch_size, workers, device
        self.seed, self.rank, self.world = seed, rank, world

    def batches(self, epoch: int) -> list[np.ndarray]:
        return epoch_batches(len(self.ds), self.batch_size, self.seed, epoch, self.rank, self.world)

    def epoch(self, epoch: int):
        keyed = [[(epoch, int(i)) for i in b] for b in self.batches(epoch)]
        loader = DataLoader(self.ds, batch_sampler=keyed, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda")
        for item in loader:
            # CPU -> device: one copy of the batch, asynchronous from pinned memory
            yield (item["image"].to(self.device, non_blocking=True),
                   item["label"].to(self.device, non_blocking=True))


class BatchedPipeline:
    """The image cache, the augmentation and the blending on one device (``--gpu-blend`` on CUDA).

    The CPU only draws the plans; it sees the object masks of the augmented images through one
    device-to-host copy per batch.
    """

    def __init__(self, images: np.ndarray, preset: Preset, task: str, label: str, seed: int,
                 batch_size: int, device: torch.device, solver=None, rank: int = 0, world: int = 1):
        from .blend.batched import BatchedExecutor
        from .blend.solvers import dst_solve

        self.cache = torch.from_numpy(images).to(device)  # decoded once, kept on the device
        self.preset, self.task, self.label, self.seed = preset, get_task(task), label, seed
        self.batch_size, self.device, self.rank, self.world = batch_size, device, rank, world
        self.executor = BatchedExecutor(solver or dst_solve)

    def batches(self, epoch: int) -> list[np.ndarray]:
        return epoch_batches(len(self.cache), self.batch_size, self.seed, epoch, self.rank, self.world)

    def epoch(self, epoch: int):
        """Batches of one epoch; the next one is made in a background thread (on its own CUDA
        stream) while the caller trains on the current one, so plan drawing and blending overlap
        the training step."""
        from concurrent.futures import ThreadPoolExecutor

        batches = self.batches(epoch)
        if not batches:
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self._make_ready, epoch, batches[0])
            for k in range(len(batches)):
                images, labels, ready = pending.result()
                if k + 1 < len(batches):
                    pending = pool.submit(self._make_ready, epoch, batches[k + 1])
                if ready is not None:  # the consumer's stream waits for the side stream's work
                    torch.cuda.current_stream(self.device).wait_event(ready)
                    images.record_stream(torch.cuda.current_stream(self.device))
                    labels.record_stream(torch.cuda.current_stream(self.device))
                yield images, labels

    def _make_ready(self, epoch: int, indices: np.ndarray):
        if self.device.type != "cuda":
            return (*self.make(epoch, indices), None)
        if not hasattr(self, "_stream"):
            self._stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(self._stream):
            images, labels = self.make(epoch, indices)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        return images, labels, ready

    def make(self, epoch: int, indices: np.ndarray):
        n, shape = len(self.cache), self.cache.shape[1:3]
        rngs = [sample_rng(self.seed, epoch, int(i)) for i in indices]
        draws = [draw_pair(rng, int(i), n, shape, self.preset, self.task.same_source)
                 for i, rng in zip(indices, rngs)]
        src_idx, dst_aug, src_aug = (list(x) for x in zip(*draws))
        dev = self.device
        dst = apply_augment_batch(self.cache, torch.as_tensor(indices, device=dev), dst_aug, self.preset)
        src = apply_augment_batch(self.cache, torch.as_tensor(src_idx, device=dev), src_aug, self.preset)
        return synthesize_batch(self.executor, dst, src, rngs, self.preset, self.task, self.label)


def synthesize_batch(executor, dst: torch.Tensor, src: torch.Tensor, rngs, preset: Preset, task, label: str):
    """Object masks on the device, plans on the CPU, blending and labels on the device."""
    from .blend.batched import object_mask_batch

    bg = preset.background
    d_obj, s_obj = object_mask_batch(dst, bg), object_mask_batch(src, bg)
    # device -> host: the sampler needs the object masks (the one sync of a batch)
    d_host = None if d_obj is None else d_obj.cpu().numpy()
    s_host = None if s_obj is None else s_obj.cpu().numpy()
    plans = [sample_plan(dst.shape[1:3], preset, task, rng,
                         None if s_host is None else s_host[k], None if d_host is None else d_host[k])
             for k, rng in enumerate(rngs)]
    out = executor(dst, src, plans, label, logistic=preset.logistic, label_tol=preset.label_tol,
                   src_obj=s_obj, dst_obj=d_obj, n_max=preset.n_max)
    return out.images, out.labels


class DaliPipeline:
    """Files read, decoded and augmented by DALI (for sets too large to cache), then blended by the
    batched executor on the same device.

    The source of each sample is the next image of the same batch (DALI hands out batches, not
    random access), with its own augmentation. DALI's reader keeps its own shuffle state, so a
    resumed run sees a different image order than an uninterrupted one (the plans still come
    from ``sample_rng(seed, epoch, index)``).
    """

    def __init__(self, files, preset: Preset, task: str, label: str, seed: int, batch_size: int,
                 device: torch.device, rank: int = 0, world: int = 1, workers: int = 2):
        from .blend.batched import BatchedExecutor
        from .dali_loader import DaliTrainLoader

        self.loader = DaliTrainLoader(files, preset, batch_size, seed,
                                      device="gpu" if device.type == "cuda" else "cpu",
                                      shard_id=rank, num_shards=world, num_threads=max(1, workers),
                                      return_indices=True)
        self.preset, self.task, self.label, self.seed = preset, get_task(task), label, seed
        self.executor = BatchedExecutor()

    def batches(self, epoch: int) -> range:
        return range(len(self.loader))

    def epoch(self, epoch: int):
        for images, indices in self.loader:
            rngs = [sample_rng(self.seed, epoch, int(i)) for i in indices]
            src = images if self.task.same_source else images.roll(1, 0)
            yield synthesize_batch(self.executor, images, src, rngs, self.preset, self.task, self.label)
