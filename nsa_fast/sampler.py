"""The randomness of a synthetic sample: its generator, its source image and transforms, its
patches' geometry (object masks in, plans out).

Every random number of a sample is drawn here, from the ``numpy.random.Generator`` of that
sample (``sample_rng``), in one order that every pipeline follows (``draw_pair``, then
``sample_plan``). A plan is plain data (integer boxes and mode codes), so the OpenCV executor and
the batched executor run the very same plans.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError, PresetError, check_mask
from .objects import resized_object_mask
from .presets import Preset
from .transforms import Augment, draw_augment

# Blend mode of a patch. The Poisson modes follow cv2.seamlessClone's NORMAL_CLONE and MIXED_CLONE.
PASTE, INTERPOLATE, NORMAL, MIXED = 0, 1, 2, 3
MODE_NAMES = {PASTE: "paste", INTERPOLATE: "interpolate", NORMAL: "normal", MIXED: "mixed"}
POISSON_MODES = (NORMAL, MIXED)


@dataclass(frozen=True)
class Task:
    """How a self-supervised task builds its patches; all tasks share the sampler and executors."""

    name: str
    same_source: bool   # the patch comes from the destination image itself (CutPaste)
    shift: bool         # the patch lands elsewhere (otherwise at the source location, as FPI)
    resize: bool        # the patch is rescaled before blending
    blend: str          # poisson (preset's clone mode), mixed (always MIXED), paste, interpolate
    fractional: bool    # Poisson mask value ceil(255 f) instead of 255 (FPI-Poisson)
    default_label: str


TASKS: dict[str, Task] = {
    "nsa": Task("nsa", False, True, True, "poisson", False, "logistic"),
    "nsa-swap": Task("nsa-swap", False, True, True, "paste", False, "logistic"),
    "cutpaste": Task("cutpaste", True, True, False, "paste", False, "binary"),
    "fpi": Task("fpi", False, False, False, "interpolate", False, "continuous"),
    "fpi-poisson": Task("fpi-poisson", False, False, False, "mixed", True, "continuous"),
}


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample; independent streams for distinct (seed, epoch, index), so a
    sample does not depend on which worker, rank or pipeline makes it."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))


def pick_source(rng: np.random.Generator, index: int, n: int, same: bool) -> int:
    """Any image but the destination (the destination itself for same-image tasks)."""
    if same or n < 2:
        return index
    j = int(rng.integers(n - 1))
    return j + (j >= index)


def draw_pair(rng: np.random.Generator, index: int, n: int, shape: tuple[int, int], preset: Preset,
              same: bool, augment: bool = True) -> tuple[int, Augment | None, Augment | None]:
    """A sample's source image and the two transforms, drawn in the one order every pipeline uses
    (source, destination transform, source transform; the plan is drawn after), so the CPU and
    device pipelines make the same samples from the same generator."""
    j = pick_source(rng, index, n, same)
    if not augment:
        return j, None, None
    dst_aug = draw_augment(preset, shape, rng)
    return j, dst_aug, dst_aug if j == index else draw_augment(preset, shape, rng)


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise PresetError(f"unknown task {name!r}; known tasks are {sorted(TASKS)}.") from None


def patch_mode(task: Task, preset: Preset) -> int:
    if task.blend == "poisson":
        return NORMAL if preset.clone == "normal" else MIXED
    return {"mixed": MIXED, "paste": PASTE, "interpolate": INTERPOLATE}[task.blend]


SKIP_REASONS = ("source_object", "destination_object", "too_large", "small_mask", "thin_mask",
                "outside_image")


@dataclass
class Stats:
    """Counts of patch attempts; they add up over samples."""

    samples: int = 0
    tried: int = 0          # patches attempted (the first always, further ones by coin flip)
    accepted: int = 0
    rejected_source_tries: int = 0       # source locations redrawn (object share too small)
    rejected_destination_tries: int = 0  # destination locations redrawn (object or overlap too small)
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    empty_labels: int = 0                # samples whose label came out empty after all attempts
    label_retries: int = 0               # extra attempts spent by Preset.ensure_label

    def __iadd__(self, other: "Stats") -> "Stats":
        for f in dataclasses.fields(self):
            if f.name == "skipped":
                for k, v in other.skipped.items():
                    self.skipped[k] = self.skipped.get(k, 0) + v
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def to_array(self) -> np.ndarray:
        """The counts as int64 (STATS_LEN,), in a fixed order: they cross process boundaries in
        DataLoader batches this way."""
        return np.asarray([self.samples, self.tried, self.accepted, self.rejected_source_tries,
                           self.rejected_destination_tries, *(self.skipped.get(r, 0) for r in SKIP_REASONS),
                           self.empty_labels, self.label_retries], np.int64)

    @classmethod
    def from_array(cls, a) -> "Stats":
        """The inverse of ``to_array``; a (..., STATS_LEN) array is summed over its leading axes."""
        v = [int(x) for x in np.asarray(a, np.int64).reshape(-1, STATS_LEN).sum(0)]
        k = len(SKIP_REASONS)
        return cls(samples=v[0], tried=v[1], accepted=v[2], rejected_source_tries=v[3],
                   rejected_destination_tries=v[4], skipped=dict(zip(SKIP_REASONS, v[5:5 + k])),
                   empty_labels=v[5 + k], label_retries=v[6 + k])

    def summary(self) -> str:
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items() if v) or "none"
        return (f"samples {self.samples}: patches tried {self.tried}, accepted {self.accepted}, "
                f"skipped {sum(self.skipped.values())} ({skipped}); redrawn locations: source "
                f"{self.rejected_source_tries}, destination {self.rejected_destination_tries}; "
                f"empty labels {self.empty_labels} (after {self.label_retries} retries)")


STATS_LEN = 7 + len(SKIP_REASONS)


@dataclass(frozen=True)
class Plan:
    """The geometry of one synthetic sample.

    src_box, dst_box: (P, 4) int32 boxes ``(y0, y1, x0, x1)``, half-open, in pixels of the source and
    destination image; the destination box's size is the resized patch size. mode: (P,) int8 blend
    modes, applied in order. factor: the interpolation factor f of continuous labels and FPI.
    mask_value: the value of the Poisson mask (255, or ceil(255 f) for FPI-Poisson).
    half_draws: (P, 2) float64, each patch's drawn half-height and half-width as fractions of the
    side, before clipping (diagnostics: the Gamma draws themselves).
    scale_draws: (P,) float64, each patch's drawn resize scale before clipping (NaN when the task
    does not resize).
    """

    src_box: np.ndarray
    dst_box: np.ndarray
    mode: np.ndarray
    factor: float
    mask_value: int
    stats: Stats
    half_draws: np.ndarray
    scale_draws: np.ndarray

    @property
    def n_patches(self) -> int:
        return len(self.mode)


def _bounds(frac: tuple[float, float], side: int) -> tuple[int, int]:
    # ndarray.round() rounds half to even, as the authors' code does.
    return int(np.round(frac[0] * side)), int(np.round(frac[1] * side))


def _resized_size(h: int, w: int, hb: tuple[int, int], wb: tuple[int, int], preset: Preset,
                  drawn: float) -> tuple[int, int]:
    """The patch's size after resizing by the drawn scale N(1, 0.5), clipped to resize_bounds."""
    lo, hi = preset.resize_bounds
    scale = float(np.clip(drawn, lo, hi))
    if preset.resize_clip == "code":
        # The authors' clip: the new FULL size is bounded by the HALF-width bounds, aspect kept.
        new_h = float(np.clip(scale * h, *hb))
        new_w = int(np.clip(int(new_h / h * w), *wb))
        new_h = int(np.clip(int(new_w / w * h), *hb))
        return new_h, new_w
    # The paper's eq. (9): full-size bounds, one scale for both sides. s * h >= 2 hb[0] up to
    # rounding and hb[0] >= 1 (sample_plan refuses less), so both sizes are at least 1.
    s = max(2 * wb[0] / w, 2 * hb[0] / h, min(scale, 2 * wb[1] / w, 2 * hb[1] / h))
    return int(s * h), int(s * w)


def sample_plan(shape: tuple[int, int], preset: Preset, task: Task, rng: np.random.Generator,
                src_obj: np.ndarray | None = None, dst_obj: np.ndarray | None = None) -> Plan:
    """Draw the patches of one sample.

    shape: (H, W) of both images. src_obj, dst_obj: (H, W) bool object masks of the source and the
    ORIGINAL destination (``objects.object_mask``), or None for classes without background.
    """
    H, W = int(shape[0]), int(shape[1])
    src_obj = check_mask(src_obj, (H, W), "source object mask")
    dst_obj = check_mask(dst_obj, (H, W), "destination object mask")
    if (src_obj is None) != (dst_obj is None):
        raise InputError("pass object masks for both source and destination, or for neither.")
    use_obj = src_obj is not None
    hb, wb = _bounds(preset.half_h, H), _bounds(preset.half_w, W)
    if hb[0] < 1 or wb[0] < 1 or H - hb[0] <= hb[0] or W - wb[0] <= wb[0]:
        raise InputError(
            f"image of {H}x{W} pixels is too small for preset {preset.name!r} (half-size bounds "
            f"{hb} x {wb} pixels); use images of at least 64 pixels a side.")
    shape_k, scale_k, offset = preset.gamma
    mode = patch_mode(task, preset)
    factor = float(rng.uniform(0.05, 0.95))
    mask_value = int(np.ceil(factor * 255)) if task.fractional else 255
    stats = Stats(samples=1)
    src_boxes, dst_boxes, draws, scales = [], [], [], []
    for i in range(preset.n_max):
        if i > 0 and rng.integers(2) == 0:
            continue
        stats.tried += 1
        draw = offset + rng.gamma(shape_k, scale_k, size=2)
        half_h, half_w = int(np.clip(draw[0] * H, *hb)), int(np.clip(draw[1] * W, *wb))
        sbox = None
        for _ in range(preset.max_tries):
            cy, cx = rng.integers(hb[0], H - hb[0]), rng.integers(wb[0], W - wb[0])
            y0, y1 = max(cy - half_h, 0), min(cy + half_h, H)
            x0, x1 = max(cx - half_w, 0), min(cx + half_w, W)
            if not use_obj or src_obj[y0:y1, x0:x1].mean() > preset.t_object:
                sbox = (y0, y1, x0, x1)
                break
            stats.rejected_source_tries += 1
        if sbox is None:
            stats.skipped["source_object"] += 1
            continue
        h, w = sbox[1] - sbox[0], sbox[3] - sbox[2]
        scale = np.nan
        if task.resize:
            scale = float(rng.normal(1.0, 0.5))
            h, w = _resized_size(h, w, hb, wb, preset, scale)
        if task.shift:
            dbox = _destination(h, w, H, W, sbox, preset, rng, src_obj, dst_obj, stats)
            if dbox is None:
                continue
        else:
            dbox = sbox
        if mode in POISSON_MODES:
            # OpenCV's clone region is the mask's bounding box after the 1-pixel frame is zeroed.
            if (h - 2) * (w - 2) < preset.min_mask_pixels:
                stats.skipped["small_mask"] += 1
                continue
            if min(h, w) < 5:  # cv2.seamlessClone fails on regions thinner than 3 px inside the frame
                stats.skipped["thin_mask"] += 1
                continue
            if dbox[2] + w - 1 + (w & 1) > W:  # the reference's centre puts odd widths 1 px right
                stats.skipped["outside_image"] += 1
                continue
        src_boxes.append(sbox)
        dst_boxes.append(dbox)
        draws.append(draw)
        scales.append(scale)
        stats.accepted += 1
    n = len(src_boxes)
    return Plan(src_box=np.asarray(src_boxes, np.int32).reshape(n, 4),
                dst_box=np.asarray(dst_boxes, np.int32).reshape(n, 4),
                mode=np.full(n, mode, np.int8), factor=factor, mask_value=mask_value, stats=stats,
                half_draws=np.asarray(draws, np.float64).reshape(n, 2),
                scale_draws=np.asarray(scales, np.float64).reshape(n))


def _destination(h, w, H, W, sbox, preset, rng, src_obj, dst_obj, stats):
    """Draw the destination box of an h x w patch, or None (and count why)."""
    ylo, yhi, xlo, xhi = h // 2 + 1, H - h // 2 - 1, w // 2 + 1, W - w // 2 - 1
    if yhi <= ylo or xhi <= xlo:
        stats.skipped["too_large"] += 1
        return None
    if src_obj is not None:
        y0, y1, x0, x1 = sbox
        s_obj = resized_object_mask(src_obj, sbox, h, w)
        s_sum = int(s_obj.sum())
        if not s_sum / (h * w) > preset.t_object:
            # The reference redraws the destination max_tries times though no draw can succeed.
            stats.rejected_destination_tries += preset.max_tries
            stats.skipped["destination_object"] += 1
            return None
    for _ in range(preset.max_tries):
        cy, cx = rng.integers(ylo, yhi), rng.integers(xlo, xhi)
        box = (cy - h // 2, cy + (h + 1) // 2, cx - w // 2, cx + (w + 1) // 2)
        if src_obj is None:
            return box
        overlap = np.count_nonzero(dst_obj[box[0]:box[1], box[2]:box[3]] & s_obj)
        if overlap / s_sum > preset.t_overlap:
            return box
        stats.rejected_destination_tries += 1
    stats.skipped["destination_object"] += 1
    return None


@dataclass(frozen=True)
class PlanBatch:
    """The patches of a batch of plans as flat host arrays, for a batched executor.

    One row per patch, samples in order and each sample's patches in blending order: sample (P,)
    the patch's sample, round (P,) its place within the sample, src_box and dst_box (P, 4)
    ``(y0, y1, x0, x1)``, mode (P,); per sample: factor (B,) float32, mask_value (B,),
    n_patches (B,). Integer arrays are int64.
    """

    sample: np.ndarray
    round: np.ndarray
    src_box: np.ndarray
    dst_box: np.ndarray
    mode: np.ndarray
    factor: np.ndarray
    mask_value: np.ndarray
    n_patches: np.ndarray

    @classmethod
    def stack(cls, plans: list[Plan]) -> "PlanBatch":
        counts = np.asarray([p.n_patches for p in plans], np.int64)
        return cls(sample=np.repeat(np.arange(len(plans), dtype=np.int64), counts),
                   round=np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) if plans
                   else np.zeros(0, np.int64),
                   src_box=np.concatenate([p.src_box for p in plans] or [np.zeros((0, 4))]).reshape(-1, 4).astype(np.int64),
                   dst_box=np.concatenate([p.dst_box for p in plans] or [np.zeros((0, 4))]).reshape(-1, 4).astype(np.int64),
                   mode=np.concatenate([p.mode for p in plans] or [np.zeros(0)]).astype(np.int64),
                   factor=np.asarray([p.factor for p in plans], np.float32),
                   mask_value=np.asarray([p.mask_value for p in plans], np.int64),
                   n_patches=counts)

    @property
    def dst_size(self) -> np.ndarray:
        """(P, 2) rows and columns of each patch at its destination (its resized size)."""
        return np.stack([self.dst_box[:, 1] - self.dst_box[:, 0], self.dst_box[:, 3] - self.dst_box[:, 2]], 1)

    @property
    def rounds(self) -> int:
        """Blending rounds: the most patches any sample has."""
        return int(self.n_patches.max(initial=0))
