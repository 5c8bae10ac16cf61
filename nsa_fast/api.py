"""NSA as a generator for your own training loop.

    from nsa_fast import NSA

    nsa = NSA.from_preset("bottle", task="nsa", label="logistic")
    s = nsa(dst, src, rng)                       # one sample: numpy uint8 (H, W, C) images
    s = nsa.sample(images, index, seed=0)        # as the trainer makes sample `index` of epoch 0
    b = nsa.batch(cache, indices, seed=0)        # a batch on cache's device (torch uint8 (N, H, W, C))

``sample`` and ``batch`` follow the seeding contract of the command lines: sample ``index`` of
``epoch`` draws from ``NSA.rng(seed, epoch, index)`` (its source image, both training transforms,
then its patches), so they give what ``python -m nsa_fast.synth`` and ``train`` give for that
seed (``batch`` what ``--gpu-blend`` gives).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError
from .presets import Preset, get_preset
from .labels import get_label_type
from .sampler import Stats, get_task, sample_rng
from .synthesis import SyntheticDataset, synthesize
from .transforms import check_size


@dataclass(frozen=True)
class Sample:
    """One synthetic sample: image uint8 (H, W, C), label float32 (H, W), boxes int32 (P, 4)
    ``(y0, y1, x0, x1)`` of the blended patches, and the sampler's counts."""

    image: np.ndarray
    label: np.ndarray
    boxes: np.ndarray
    stats: Stats


@dataclass(frozen=True)
class BatchSample:
    """A batch on one device: images uint8 (B, h, w, C), labels float32 (B, h, w), boxes int32
    (B, n_max, 4) padded with -1; ``originals`` the transformed destinations; stats on the host."""

    images: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    originals: torch.Tensor
    stats: Stats


class NSA:
    """Natural Synthetic Anomalies of one preset, task and label mode."""

    def __init__(self, preset: Preset, task: str = "nsa", label: str | None = None):
        self.preset, self.task = preset, get_task(task)
        self.label = label or self.task.default_label
        get_label_type(self.label)  # an unknown label is refused here, not at the first sample

    @classmethod
    def from_preset(cls, name: str, task: str = "nsa", label: str | None = None, **overrides) -> "NSA":
        """The generator of a class preset (``bottle``, ``carpet``, ..., ``generic``), with preset
        fields overridden by keyword, e.g. ``n_max=4``."""
        preset = get_preset(name)
        return cls(preset.replace(**overrides) if overrides else preset, task, label)

    @staticmethod
    def rng(seed: int, epoch: int, index: int) -> np.random.Generator:
        """The generator of sample ``index`` of ``epoch`` for ``seed``, as the command lines use."""
        return sample_rng(seed, epoch, index)

    def __call__(self, dst: np.ndarray, src: np.ndarray, rng: np.random.Generator) -> Sample:
        """One sample from a destination and a source image (uint8 (H, W, C), same shape; no
        training transform: pass them as you want them blended). Object masks come from the
        images when the preset has a background."""
        if not isinstance(rng, np.random.Generator):
            raise InputError(f"rng: expected a numpy.random.Generator (np.random.default_rng(seed), or "
                             f"NSA.rng(seed, epoch, index)), got {type(rng).__name__}.")
        self._check_channels(np.asarray(dst).shape[-1] if np.ndim(dst) == 3 else 1, "dst")
        out, stats = synthesize(dst, src, self.preset, self.task, self.label, rng)
        return Sample(out.image, out.label, out.boxes, stats)

    def sample(self, images, index: int, *, seed: int = 0, epoch: int = 0) -> Sample:
        """Sample ``index`` of ``epoch``, made as the trainer's CPU workers make it: images[index]
        is the destination, the source and both training transforms are drawn first."""
        images = list(images)
        index, seed, epoch = _whole(index, "index", len(images)), _whole(seed, "seed"), _whole(epoch, "epoch")
        if images:
            self._check_channels(np.asarray(images[0]).shape[-1] if np.ndim(images[0]) == 3 else 1, "images")
        ds = SyntheticDataset(images, self.preset, self.task.name, self.label, seed)
        item = ds[(epoch, int(index))]
        return Sample(item["image"], item["label"], item["boxes"], ds.stats)

    def batch(self, images: torch.Tensor, indices, *, seed: int = 0, epoch: int = 0,
              solver: str = "auto") -> BatchSample:
        """Samples ``indices`` of ``epoch`` made on ``images``' device as ``--synth device`` makes
        them (augmentation and blending there, plans on the CPU). images: uint8 (N, H, W, C)."""
        from .blend.pick import pick_solver
        from .pipelines import BatchedPipeline

        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise InputError("images: expected a uint8 torch tensor (N, H, W, C) on the device to blend on, got "
                             f"{type(images).__name__} {getattr(images, 'dtype', '')} {tuple(getattr(images, 'shape', ()))}.")
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()  # from any device; one small read
        indices = [_whole(i, "indices", len(images)) for i in np.asarray(indices, dtype=object).ravel()]
        seed, epoch = _whole(seed, "seed"), _whole(epoch, "epoch")
        if not indices:
            raise InputError("indices: expected at least one image index, got none.")
        self._check_channels(images.shape[-1], "images (N, H, W, C)")
        check_size(images[0], self.preset, "images")
        pipe = BatchedPipeline(images, self.preset, self.task.name, self.label, seed, len(indices), images.device,
                               solver=pick_solver(solver, images.device))
        originals, out, stats = pipe.sample(epoch, np.asarray(indices, np.int64))
        return BatchSample(out.images, out.labels, out.boxes, originals, stats)

    def _check_channels(self, c: int, name: str) -> None:
        if c != self.preset.channels:
            raise InputError(f"{name}: preset {self.preset.name!r} takes {self.preset.channels}-channel images, got "
                             f"{c} channel(s) (channels last). Convert the images, or use a preset with "
                             f"channels={c} (from_preset(..., channels={c}, normalize='none') for grey images).")


def _whole(value, name: str, below: int | None = None) -> int:
    """A non-negative integer (below ``below`` when given), or a clear InputError."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < 0 or (below is not None and value >= below):
        span = f"0..{below - 1}" if below is not None else "0 or more"
        raise InputError(f"{name}: expected integers in {span}, got {value!r}.")
    return int(value)
