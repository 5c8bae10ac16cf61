"""Synthetic anomalies from a set of normal images: one sample (``synthesize``, the OpenCV
executor), a torch-style dataset of them, and the first n samples of either executor.

Randomness: each sample draws from its own generator, ``sampler.sample_rng(seed, epoch, index)``,
so a sample does not depend on which DataLoader worker makes it, nor on how many workers there are.
"""
from __future__ import annotations

import numpy as np

from .blend.opencv import Synthetic, execute_plan
from .errors import InputError, check_image
from .labels import Label
from .objects import object_mask
from .presets import Preset
from .sampler import Stats, Task, draw_pair, get_task, sample_plan, sample_rng
from .transforms import apply_augment, check_size


def synthesize(dst: np.ndarray, src: np.ndarray, preset: Preset, task: Task, label_mode: str,
               rng: np.random.Generator, dst_obj=None, src_obj=None) -> tuple[Synthetic, Stats]:
    """One synthetic sample on the CPU (OpenCV executor).

    dst, src: uint8 (H, W, C) of the same shape (src is ignored when the task takes its patch from
    dst). Object masks are computed from the images when the preset has a background and they are
    not given. With ``preset.ensure_label`` > 0, a sample whose label is empty is drawn again up to
    that many times; what happened is counted in the returned stats.
    """
    label = Label.for_preset(label_mode, preset)
    dst = check_image(dst, "destination image")
    src = dst if task.same_source else check_image(src, "source image")
    if preset.uses_object_masks:
        dst_obj = object_mask(dst, preset.background) if dst_obj is None else dst_obj
        src_obj = dst_obj if task.same_source else (
            object_mask(src, preset.background) if src_obj is None else src_obj)
    else:
        dst_obj = src_obj = None
    total = Stats()
    for attempt in range(preset.ensure_label + 1):
        plan = sample_plan(dst.shape[:2], preset, task, rng, src_obj, dst_obj)
        total += plan.stats
        total.samples -= attempt > 0  # a retry is not another sample
        out = execute_plan(dst, src, plan, label, src_obj=src_obj, dst_obj=dst_obj)
        if out.label.any():
            return out, total
        if attempt < preset.ensure_label:
            total.label_retries += 1
    total.empty_labels += 1
    return out, total


class SyntheticDataset:
    """Synthetic samples from a list of equally sized uint8 images (a torch-style map dataset).

    Item i uses image i as destination and another image, drawn by the sample's own generator, as
    source; with ``augment`` each gets its own draw of the preset's training transform first.
    Items are dicts of numpy arrays: image uint8 (h, w, C), original (the transformed destination),
    label float32 (h, w), boxes int32 (n_max, 4) padded with -1, index, and stats (the sample's
    ``Stats.to_array()``, which survives a DataLoader worker where ``self.stats`` does not).
    """

    def __init__(self, images: list[np.ndarray], preset: Preset, task: str = "nsa",
                 label_mode: str | None = None, seed: int = 0, augment: bool = True):
        if not images:
            raise InputError("no images were given; a synthetic dataset needs at least one.")
        self.images = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        shapes = {im.shape for im in self.images}
        if len(shapes) > 1:
            raise InputError(f"all images must have one shape, got {sorted(shapes)}; resize them first.")
        self.task = get_task(task)
        self.label_mode = label_mode or self.task.default_label
        self.label = Label.for_preset(self.label_mode, preset)
        self.preset, self.seed, self.epoch, self.augment = preset, int(seed), 0, augment
        if augment:
            check_size(self.images[0], preset, "the images")
            self.masks = [None] * len(self.images)  # computed after each draw of the transform
        else:
            self.masks = [object_mask(im, preset.background) for im in self.images]
        self.stats = Stats()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key) -> dict:
        """key: an index (this dataset's epoch), or (epoch, index) from a keyed batch sampler,
        which reaches worker processes where set_epoch would not."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        rng = sample_rng(self.seed, epoch, index)
        dst = self.images[index]
        j, dst_aug, src_aug = draw_pair(rng, index, len(self.images), dst.shape[:2], self.preset,
                                        self.task.same_source, self.augment)
        src = self.images[j]
        if self.augment:
            dst = apply_augment(dst, self.preset, dst_aug)
            src = dst if j == index else apply_augment(src, self.preset, src_aug)
        out, stats = synthesize(dst, src, self.preset, self.task, self.label_mode, rng,
                                self.masks[index], self.masks[j])
        self.stats += stats
        boxes = np.full((self.preset.n_max, 4), -1, np.int32)
        boxes[:len(out.boxes)] = out.boxes
        return {"image": out.image, "original": dst, "label": out.label, "boxes": boxes,
                "index": index, "stats": stats.to_array()}


def sample_keys(n: int, n_images: int) -> list[tuple[int, int]]:
    """The (epoch, index) keys of n samples: each image in turn is the destination, and past the
    last image the next epoch's draws begin, so every sample is distinct."""
    return [(i // n_images, i % n_images) for i in range(n)]
