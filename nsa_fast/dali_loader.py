"""Training batches from image files with NVIDIA DALI: read, decode, resize and augment.

For image sets too large to cache in memory. The pipeline mirrors the CPU path
(``nsa_fast.io.read_image`` followed by ``nsa_fast.transforms.draw_augment`` and ``apply_augment``):

1. read the files, reshuffled as a whole every epoch;
2. decode to RGB (or grayscale when ``preset.channels == 1``, one channel);
3. resize once to ``image_size x image_size``;
4. rotate by uniform(-rotation, +rotation) degrees about the centre, same canvas, border pixels
   repeated (only when ``preset.rotation > 0``);
5. centre crop to ``center_crop`` (when set), then random crop to ``crop`` -- done as one crop;
6. random vertical flip (when ``preset.vflip``).

Batches are uint8 torch tensors (B, crop, crop, C), on the CPU for ``device="cpu"`` and on the
current CUDA device for ``device="gpu"``. Only full batches of distinct files are produced, and
every shard produces the same number per epoch (data-parallel ranks must step together):
``len(loader) == (len(files) // num_shards) // batch_size``. The files left over in an epoch
(fewer than a batch, or a larger shard's extra file) are skipped in that epoch only; the
reshuffle gives them their turn in later ones.

Differences from the CPU path (none changes what the augmentations do):

* Resize filter. ``read_image`` shrinks with OpenCV's area filter (bilinear when enlarging);
  DALI offers no area filter and uses its linear filter with antialiasing, i.e. a triangle
  filter as wide as the scale when shrinking. Photos shrunk from 300x280 to 256x256 differ from
  OpenCV's by at most 0.75 grey levels on average per image, but by up to ~20 at the sharpest
  edges (99.9 % of pixels within 6); enlarging (bilinear in both) differs by at most 1.
  Measured in ``tests/test_dali_loader.py``.
* Rotation: nearest neighbour, as on the CPU path. DALI's ``fn.rotate`` by +a degrees about the
  image centre turns as ``cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), a, 1)`` does (checked
  with linear interpolation against ``cv2.warpAffine``, within one grey level), the border
  included: with ``fill_value`` unset DALI clamps the source coordinates, i.e. repeats the border
  pixel like ``cv2.BORDER_REPLICATE``. Where a source coordinate sits on a rounding tie DALI may
  take the other neighbour than ``nsa_fast.transforms``.
* 16-bit files: DALI scales to 0..255 (x / 257), ``read_image`` keeps the high byte (x >> 8);
  they differ by at most one grey level.
* Random draws come from DALI's generators, not from ``transforms.draw_augment``'s numpy
  generator: the same seed reproduces a DALI run, not a CPU-path run. The distributions are the
  same (angle uniform in [-rotation, rotation), crop offsets uniform integers, flip p = 1/2).

DALI is an optional dependency (``pip install nvidia-dali-cuda120``); it is imported only when
a loader is built, so the rest of the package works without it.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import InputError
from .presets import Preset

DEVICES = ("cpu", "gpu")
_READER = "Reader"
# Derived seeds are kept in 0 .. 2**31 - 2, a range every DALI seed argument accepts.
_SEED_MOD = 2 ** 31 - 1


def _import_dali():
    """The DALI modules, or an ImportError that says what to install."""
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    except ImportError as err:  # also catches a broken install (missing libdali)
        raise ImportError(
            "nsa_fast.dali_loader needs NVIDIA DALI, which is not installed or cannot be loaded "
            f"({err}). Install it with `pip install nvidia-dali-cuda120` (CUDA 12 build; it also "
            "runs on CPU-only machines with device='cpu'), or train from images cached in memory "
            "(nsa_fast.data.load_images and the default --loader memory).") from err
    return dali, fn, types, DALIGenericIterator, LastBatchPolicy


def shard_range(n_files: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """Start and end (exclusive) of a shard in the reader's order, as DALI's readers split it."""
    return n_files * shard_id // num_shards, n_files * (shard_id + 1) // num_shards


def _crop_positions(image_size: int, center_crop: int | None, crop: int) -> list[float] | None:
    """Normalised window positions that make the centre crop + random crop one ``fn.crop``.

    The CPU path takes the centre ``center_crop`` window at offset (S - cc) // 2 and then a crop
    window at a uniform integer offset 0..cc-crop inside it. In the resized image that is an
    offset (S - cc) // 2 + k, k uniform in 0..cc-crop. ``fn.crop`` takes a normalised position p and
    uses round(p * (S - crop)), so drawing p from the discrete values (off + k) / (S - crop)
    reproduces exactly those integer offsets with equal probabilities (a continuous uniform p
    would give the two end offsets half the probability of the others). None: no crop needed.
    """
    if crop == image_size:
        return None
    inner = center_crop or image_size
    off = (image_size - inner) // 2
    span = image_size - crop
    return [(off + k) / span for k in range(inner - crop + 1)]


class DaliTrainLoader:
    """Epochs of augmented uint8 training batches (B, crop, crop, C) read from image files.

    files: the image files (e.g. ``nsa_fast.io.list_images(folder)``); preset: the transforms;
    batch_size: images per batch; seed: seeds the per-epoch shuffle and every random draw, so two
    loaders with the same arguments yield identical batches; device: "cpu" (batches on the CPU)
    or "gpu" (decode with the "mixed" backend, augment on the GPU, batches on CUDA);
    shard_id / num_shards: this process's part of the files for data-parallel training (all
    shards must use the same seed: the shuffle is global and each shard takes its slice);
    num_threads: DALI's CPU worker threads.

    Keyword-only: device_id selects the GPU (default: ``torch.cuda.current_device()``);
    return_indices=True yields ``(images, indices)`` with the int64 positions in ``files`` of
    the batch's images (on the CPU), for checks and debugging; prefetch_queue_depth: batches
    DALI prepares ahead.

    Iterating gives one epoch of ``len(self)`` full batches; the next ``for`` gives the next
    epoch. DALI cannot rewind a reader mid-epoch: after a ``break`` the next ``for`` resumes the
    unfinished epoch with its remaining batches. Batches are fresh tensors (not overwritten by
    later batches), so they may be kept.
    """

    def __init__(self, files: Sequence[str | Path], preset: Preset, batch_size: int, seed: int,
                 device: str = "cpu", shard_id: int = 0, num_shards: int = 1, num_threads: int = 2,
                 *, device_id: int | None = None, return_indices: bool = False,
                 prefetch_queue_depth: int = 2) -> None:
        files = [Path(f) for f in files]
        self._check_args(files, preset, batch_size, seed, device, shard_id, num_shards, num_threads)
        dali, fn, types, DALIGenericIterator, LastBatchPolicy = _import_dali()

        self.files = files
        self.preset = preset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = device
        self.shard_id, self.num_shards = int(shard_id), int(num_shards)
        self.return_indices = bool(return_indices)
        sizes = [e - s for s, e in (shard_range(len(files), i, self.num_shards)
                                    for i in range(self.num_shards))]
        self.shard_size = sizes[self.shard_id]
        # What the reader does (pad_last_batch=True, checked in the tests): every shard reads its
        # files and then repeats its last file until it has read ceil(max shard / B) batches,
        # the same count on every shard, before the next epoch starts. Of those we hand out the
        # batches that are full of distinct files on *every* shard, floor(min shard / B), and
        # run and discard the rest, so each epoch starts on the reader's epoch boundary.
        self._reader_batches = -(-max(sizes) // self.batch_size)
        self._len = min(sizes) // self.batch_size
        self._pos = 0   # batches handed out in the current epoch

        if device == "gpu":
            import torch

            if not torch.cuda.is_available():
                raise InputError("device='gpu' needs a CUDA GPU that torch can see, and none is "
                                 "available here. Use device='cpu'.")
            device_id = torch.cuda.current_device() if device_id is None else int(device_id)
        else:
            device_id = None  # a CPU-only pipeline: DALI then never touches CUDA

        # Seeds. The shuffle seed depends on `seed` only: every shard must draw the same global
        # permutation, or the shards would overlap. The augmentation seeds also depend on the
        # shard, so data-parallel processes do not apply the same crops/angles in lockstep.
        shuffle_seed = int(np.random.SeedSequence(self.seed).generate_state(1)[0]) % _SEED_MOD
        aug = [int(s) % _SEED_MOD for s in
               np.random.SeedSequence([self.seed, self.shard_id]).generate_state(5)]

        p = preset
        pipe = dali.Pipeline(batch_size=self.batch_size, num_threads=int(num_threads),
                             device_id=device_id, seed=aug[0],
                             prefetch_queue_depth=int(prefetch_queue_depth))
        with pipe:
            # shuffle_after_epoch permutes the whole file list at every epoch (the first one
            # included) with the given seed, and each shard then reads its slice, so the shards
            # are disjoint within an epoch and see different files across epochs. The
            # alternative, random_shuffle=True, only shuffles inside a buffer of `initial_fill`
            # (1024) files -- local shuffling on exactly the large sets this loader is for -- and
            # pins each shard to the same files forever.
            # pad_last_batch=True: the reader finishes a shard's epoch by repeating its last
            # file instead of running on into the next epoch (see the batch counts above).
            # Without it (measured, with either shuffle) the last batch of an epoch takes files
            # of the next one, so the next epoch repeats some files and misses others.
            encoded, labels = fn.readers.file(
                files=[str(f) for f in files], shuffle_after_epoch=True,
                shuffle_after_epoch_seed=shuffle_seed, shard_id=self.shard_id,
                num_shards=self.num_shards, pad_last_batch=True, name=_READER)
            # "mixed" decodes JPEG (and JPEG 2000) on the GPU; other formats such as PNG are
            # decoded on the CPU by nvImageCodec and copied to the GPU.
            images = fn.decoders.image(
                encoded, device="mixed" if device == "gpu" else "cpu",
                output_type=types.GRAY if p.channels == 1 else types.RGB)
            # Linear with antialiasing: a triangle filter when shrinking (DALI has no area
            # filter), bilinear when enlarging. Both extents are given, so the aspect ratio is
            # not kept -- like cv2.resize to (size, size).
            images = fn.resize(images, size=[p.image_size, p.image_size],
                               interp_type=types.INTERP_LINEAR, antialias=True)
            if p.rotation > 0:
                angle = fn.random.uniform(range=[-float(p.rotation), float(p.rotation)], seed=aug[1])
                # No fill_value: DALI then clamps source coordinates, i.e. repeats the border
                # pixel like the CPU path's cv2.BORDER_REPLICATE. A constant fill would put dark
                # corners that read as object pixels on the bright-background classes.
                images = fn.rotate(images, angle=angle, keep_size=True,
                                   interp_type=types.INTERP_NN)  # nearest, as the authors rotate
            positions = _crop_positions(p.image_size, p.center_crop, p.crop)
            if positions is not None:
                # Separate seeds for x and y: the same seed would draw x == y every time.
                pos_y = fn.random.uniform(values=positions, seed=aug[2])
                pos_x = fn.random.uniform(values=positions, seed=aug[3])
                images = fn.crop(images, crop=[p.crop, p.crop], crop_pos_x=pos_x,
                                 crop_pos_y=pos_y, rounding="round")
            if p.vflip:
                images = fn.flip(images, vertical=fn.random.coin_flip(probability=0.5, seed=aug[4]),
                                 horizontal=0)
            pipe.set_outputs(images, labels)
        try:
            pipe.build()
        except RuntimeError as err:
            raise InputError(f"DALI could not build the training pipeline: {err}") from err
        self._pipe = pipe
        # The iterator is told the reader's padded epoch (`size`, FILL, last_batch_padded) and
        # not given reader_name: its own bookkeeping for sharded, padded readers with the DROP
        # policy loses track of the reader's epoch boundary when shard sizes are uneven (a whole
        # batch of one repeated file came out as the next epoch). We count batches ourselves.
        # prepare_first_batch=False: nothing is decoded before the first `for`, and a decoding
        # error surfaces there rather than in the constructor.
        # DALI warns that a manual size may miss or repeat samples: that is the general case;
        # here the size is the reader's padded epoch exactly, so the warning does not apply.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*set `reader_name`")
            self._iter = DALIGenericIterator(
                [pipe], ["images", "indices"], size=self._reader_batches * self.batch_size,
                last_batch_policy=LastBatchPolicy.FILL, last_batch_padded=True, auto_reset=True,
                prepare_first_batch=False)

    @staticmethod
    def _check_args(files: list[Path], preset: Preset, batch_size: int, seed: int, device: str,
                    shard_id: int, num_shards: int, num_threads: int) -> None:
        if not files:
            raise InputError("DaliTrainLoader got an empty file list; pass the training images, "
                             "e.g. nsa_fast.io.list_images(ROOT / CLASS / 'train' / 'good').")
        if not isinstance(preset, Preset):
            raise InputError(f"preset must be an nsa_fast.presets.Preset, got {type(preset).__name__}.")
        if preset.crop > preset.image_size or (
                preset.center_crop is not None and not preset.crop <= preset.center_crop <= preset.image_size):
            raise InputError(
                f"preset {preset.name!r}: need crop <= center_crop <= image_size, got crop={preset.crop}, "
                f"center_crop={preset.center_crop}, image_size={preset.image_size}; images are resized "
                "to image_size before cropping, so a larger crop cannot fit. Lower crop or raise image_size.")
        if preset.channels not in (1, 3):
            raise InputError(f"preset {preset.name!r}: channels must be 1 or 3, got {preset.channels}.")
        if device not in DEVICES:
            raise InputError(f"device must be one of {DEVICES}, got {device!r}.")
        for name, value in (("batch_size", batch_size), ("num_shards", num_shards),
                            ("num_threads", num_threads)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}.")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {seed!r}.")
        if isinstance(shard_id, bool) or not isinstance(shard_id, (int, np.integer)) \
                or not 0 <= shard_id < num_shards:
            raise InputError(f"shard_id must be an integer in 0..num_shards-1 = 0..{num_shards - 1}, "
                             f"got {shard_id!r}.")
        smallest = len(files) // num_shards   # the smallest shard sets the batches per epoch
        if smallest < batch_size:
            raise InputError(
                f"{len(files)} files in {num_shards} shard(s) leave {smallest} files in the smallest "
                f"shard, fewer than batch_size={batch_size}, so no full batch can be formed. Lower "
                "batch_size or num_shards.")
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise InputError(f"{len(missing)} of the {len(files)} image files do not exist, e.g. "
                             f"{str(missing[0])!r}. Pass existing files (nsa_fast.io.list_images).")

    def __len__(self) -> int:
        """Full batches per epoch, the same on every shard: (len(files) // num_shards) // B."""
        return self._len

    def _next(self):
        try:
            return next(self._iter)
        except RuntimeError as err:  # DALI reports decoding failures as RuntimeError
            raise InputError(
                f"DALI failed while reading or decoding a batch: {err}. A file in the list is "
                "probably corrupt or not an image; check it with nsa_fast.io.read_image. The "
                "pipeline cannot be used after this error: build a new loader.") from err

    def _finish_epoch(self) -> None:
        """Run and discard the reader's remaining batches of this epoch, then rewind the iterator."""
        for _ in range(self._reader_batches - self._pos):
            self._next()
        try:
            self._next()
        except StopIteration:  # the iterator's end of epoch; auto_reset rewinds it
            pass
        else:
            raise RuntimeError("internal error: the DALI iterator ran past the reader's epoch")
        self._pos = 0

    def __iter__(self) -> Iterator:
        import torch

        if self._pos >= self._len:   # the last epoch was consumed but not closed (e.g. islice)
            self._finish_epoch()
        while self._pos < self._len:
            out = self._next()[0]
            self._pos += 1
            if self.return_indices:
                yield out["images"], out["indices"].reshape(-1).to(torch.int64)
            else:
                yield out["images"]
        self._finish_epoch()

    def __repr__(self) -> str:
        return (f"DaliTrainLoader({len(self.files)} files, preset={self.preset.name!r}, "
                f"batch_size={self.batch_size}, device={self.device!r}, shard "
                f"{self.shard_id}/{self.num_shards}, {len(self)} batches per epoch)")
