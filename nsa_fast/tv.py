"""NSA as a torchvision ``transforms.v2`` transform: synthetic anomalies for a batch of normal
images, on the batch's device, for training code built on torchvision (a DRAEM-style model that
takes a Perlin generator, anomalib, your own loop).

    import torch
    from torchvision.transforms import v2
    from nsa_fast import NSATransform

    augment = v2.Compose([NSATransform("bottle", seed=0), v2.ToDtype(torch.float32, scale=True)])
    for batch in loader:                          # uint8 (N, C, H, W) normal images
        image, mask = augment(batch.to(device))   # tv_tensors Image and Mask, on that device

Each call is one ``NSA.batch`` over the batch it is given: the batch is the image set, every image
is a destination in order, sources are drawn from the same batch, and the call's ``epoch`` keys
the randomness (``NSA.rng(seed, epoch, index)``, index = position in the batch). Calls count the
epoch up from the one given, so no two batches draw alike and a run with the same seed, batches
and start epoch draws the same anomalies.
"""
from __future__ import annotations

from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2._utils import is_pure_tensor

from .api import NSA, _whole
from .errors import InputError, warn
from .presets import Preset

_NOT_IMAGES = (tv_tensors.Mask, tv_tensors.BoundingBoxes, tv_tensors.Video,
               *((tv_tensors.KeyPoints,) if hasattr(tv_tensors, "KeyPoints") else ()))  # KeyPoints: newer torchvision
_BATCH = "a batch of normal images as a uint8 tensor (N, C, H, W) (tv_tensors.Image or a plain tensor)"


class _Made(tuple):
    """What the image of a sample becomes: (image, mask) or (image, mask, original); ``forward``
    spreads it into the sample's tuple or dict."""


class NSATransform(v2.Transform):
    """Natural Synthetic Anomalies for a batch, as a torchvision v2 transform.

    ``NSATransform(preset, task="nsa", label=None, *, seed=0, epoch=0, originals=False,
    solver="auto", mask_key="mask", original_key="original", **overrides)``: ``preset`` is a
    preset name (``"bottle"``, ..., ``"generic"`` for your own data) or a ``Preset``, with fields
    overridden by keyword (``crop=64, center_crop=None, image_size=64`` keeps 64-pixel images at
    their size); ``task`` and ``label`` are those of ``NSA.from_preset``; ``seed`` is the run's
    seed; ``epoch`` is the ``NSA.batch`` epoch the first call draws, and every call adds one (the
    attribute ``epoch`` is the next call's: save it to resume, set it to replay a draw);
    ``originals=True`` also returns the destinations as transformed before blending (the clean
    target a reconstruction model such as DRAEM learns to restore); ``solver`` is ``NSA.batch``'s
    Poisson solver; ``mask_key`` and ``original_key`` are the keys the mask and the original get
    in a dict sample. The attributes ``preset`` (the ``Preset``), ``task``, ``label``, ``seed``
    and ``nsa`` (the ``NSA`` generator it calls) say what it draws.

    Input: a batch of normal images, uint8 (N, C, H, W), as a ``tv_tensors.Image`` or a plain
    tensor (after a DataLoader's collate), on any device, at least the preset's crop on each side
    (its ``center_crop``, if set). Output, on the same device:

    - the synthetic images: ``tv_tensors.Image`` uint8 (N, C, crop, crop): the preset's training
      transform (random crop, rotation, flip) is part of NSA's draw, so the side is
      ``preset.crop`` (set ``crop`` to H, ``center_crop=None``, ``rotation=0`` and
      ``vflip=False`` to keep the input's geometry);
    - the pixel-wise labels: ``tv_tensors.Mask`` float32 (N, 1, crop, crop): 0 where normal, up to 1
      (labels ``binary``, ``continuous``, ``logistic``) or in grey levels (``intensity``);
    - with ``originals=True``, the unblended destinations: ``tv_tensors.Image`` like the first.

    Sample structure: an image alone gives ``(image, mask)`` (``(image, mask, original)`` with
    ``originals``); in a tuple or list the mask (and original) follow the image, so ``(x, y)``
    gives ``(image, mask, y)``; in a dict the image keeps its key and the mask (original) is added
    under ``mask_key`` (``original_key``). Other entries pass through untouched. As in every v2
    transform, the image is the one ``tv_tensors.Image``, else the first plain tensor. The
    preset's ``normalize`` is not applied: follow with ``v2.ToDtype`` and ``v2.Normalize``.

    Seeding: the k-th call (from 0) on a batch ``x`` of N images gives exactly what
    ``NSA.batch(x.permute(0, 2, 3, 1).contiguous(), range(N), seed=seed, epoch=epoch + k)`` gives
    (its ``images`` and ``originals`` as (N, C, h, w), its ``labels`` as (N, 1, h, w)). Use it on
    the loader's batches in the main process: DataLoader workers would each count their own calls.
    On CUDA the labels that use the intensity map (``logistic``, ``intensity``) need CuPy (the
    ``gpu`` extra), as ``NSA.batch`` does there.
    """

    def __init__(self, preset: str | Preset, task: str = "nsa", label: str | None = None, *, seed: int = 0,
                 epoch: int = 0, originals: bool = False, solver: str = "auto", mask_key: str = "mask",
                 original_key: str = "original", **overrides):
        from .blend.pick import SOLVER_NAMES

        super().__init__()
        if isinstance(preset, Preset):
            self.nsa = NSA(preset.replace(**overrides) if overrides else preset, task, label)
        elif isinstance(preset, str):
            self.nsa = NSA.from_preset(preset, task, label, **overrides)
        else:
            raise InputError(f"preset: expected a preset name (e.g. 'bottle', 'generic') or a nsa_fast.Preset, "
                             f"got {type(preset).__name__}.")
        if solver not in SOLVER_NAMES:
            raise InputError(f"solver: expected one of {SOLVER_NAMES}, got {solver!r}.")
        self.preset, self.task, self.label = self.nsa.preset, self.nsa.task.name, self.nsa.label
        self.seed, self.epoch = _whole(seed, "seed"), _whole(epoch, "epoch")
        self.originals, self.solver = bool(originals), solver
        self.mask_key, self.original_key = mask_key, original_key

    def extra_repr(self) -> str:
        return (f"{self.preset.name!r}, task={self.task!r}, label={self.label!r}, seed={self.seed}, "
                f"epoch={self.epoch}, originals={self.originals}, solver={self.solver!r}")

    def forward(self, *inputs: Any) -> Any:
        """v2's dispatch (``make_params``, ``transform``), then the mask (and original) spread into
        the sample as the class docstring says."""
        sample = inputs if len(inputs) > 1 else inputs[0]
        if isinstance(sample, dict):
            for key in (self.mask_key, self.original_key) if self.originals else (self.mask_key,):
                if key in sample:
                    raise InputError(f"the sample already has a {key!r} entry, where NSATransform would put its "
                                     f"output. Drop that entry, or pass mask_key=/original_key= to NSATransform.")
        return _spread(super().forward(*inputs), self)

    def check_inputs(self, flat_inputs: list[Any]) -> None:
        for inpt in flat_inputs:
            if isinstance(inpt, PIL.Image.Image):
                raise InputError(f"expected {_BATCH}, got a PIL image. NSATransform works on batches: convert "
                                 "each image with v2.PILToTensor(), stack them (a DataLoader's collate does), "
                                 "then apply it.")
            if isinstance(inpt, _NOT_IMAGES):
                raise InputError(f"expected {_BATCH}, got a {type(inpt).__name__} beside it. NSATransform makes the "
                                 "mask itself and crops the images (the preset's training transform): pass the "
                                 "normal images without masks, boxes, keypoints or videos.")
        n_images = sum(isinstance(x, tv_tensors.Image) for x in flat_inputs)
        if n_images > 1:
            raise InputError(f"expected one batch of images (one tv_tensors.Image), got {n_images}. Stack them into "
                             "one (N, C, H, W) batch.")
        if not n_images and not any(is_pure_tensor(x) for x in flat_inputs):
            kinds = sorted({type(x).__name__ for x in flat_inputs}) or ["nothing"]
            raise InputError(f"expected {_BATCH}, got {', '.join(kinds)}.")

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """The draw's key: seed, epoch (then the next call's epoch is one more) and indices."""
        images = flat_inputs[0]
        self._check(images)
        if torch.utils.data.get_worker_info() is not None:
            warn("NSATransform runs in a DataLoader worker: each worker counts calls on its own copy, from the "
                 "main process's epoch at every loader epoch, so batches repeat draws. Apply it to the loader's "
                 "batches in the main process.")
        epoch = _whole(self.epoch, "epoch")
        self.epoch = epoch + 1
        return {"seed": self.seed, "epoch": epoch, "indices": list(range(images.shape[0]))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """The batch's synthetic images, labels (and originals), made by ``NSA.batch``."""
        b = self.nsa.batch(inpt.permute(0, 2, 3, 1).contiguous(), params["indices"], seed=params["seed"],
                           epoch=params["epoch"], solver=self.solver)
        made = [tv_tensors.Image(b.images.permute(0, 3, 1, 2).contiguous()), tv_tensors.Mask(b.labels[:, None])]
        if self.originals:
            made.append(tv_tensors.Image(b.originals.permute(0, 3, 1, 2).contiguous()))
        return _Made(made)

    # torchvision before 0.21 calls the same three methods by their private names
    _check_inputs, _get_params, _transform = check_inputs, make_params, transform

    def _check(self, images) -> None:
        """dtype, rank, channels and size of the batch, before the epoch counts up."""
        what = f"{type(images).__name__} {getattr(images, 'dtype', '')} {tuple(getattr(images, 'shape', ()))}"
        if images.dtype != torch.uint8:
            raise InputError(f"images: expected {_BATCH}, got {what}. Convert with v2.ToDtype(torch.uint8, "
                             "scale=True) (floats in 0..1), and put float conversion after NSATransform.")
        if images.ndim != 4:
            hint = (" Add the batch dimension (x[None]), or better apply NSATransform to a DataLoader's batches: "
                    "sources are drawn from the other images of the batch." if images.ndim == 3 else "")
            raise InputError(f"images: expected {_BATCH}, got {what}.{hint}")
        n, c = images.shape[:2]
        if n < 1:
            raise InputError(f"images: expected at least one image in the batch, got {what}.")
        want = self.preset.channels
        if c != want:
            if images.shape[-1] == want:
                hint = " It looks channels-last (N, H, W, C): pass x.permute(0, 3, 1, 2)."
            elif c == 1:
                hint = (" Convert them (v2.Grayscale(num_output_channels=3)), or build the transform for grey "
                        "images: NSATransform(..., channels=1, normalize='none').")
            else:
                hint = f" Convert them to {want} channels (drop an alpha channel with x[:, :3])."
            raise InputError(f"images: preset {self.preset.name!r} takes {want}-channel images (N, {want}, H, W), got "
                             f"{c} channel(s) in {what}.{hint}")
        need, (h, w) = self.preset.center_crop or self.preset.crop, images.shape[2:]
        if h < need or w < need:
            raise InputError(f"images: preset {self.preset.name!r} crops {need}x{need} pixels, got images of {w}x{h} "
                             f"(width x height). Resize them first (v2.Resize({need})), or lower the crop: "
                             f"NSATransform(..., crop={min(h, w)}, center_crop=None).")


def _spread(out: Any, t: NSATransform) -> Any:
    """The made (image, mask[, original]) spread into the sample's top-level tuple, list or dict."""
    if isinstance(out, _Made):
        return tuple(out)
    if isinstance(out, dict):
        key = next((k for k, v in out.items() if isinstance(v, _Made)), None)
        if key is None:
            return out
        made = out[key]  # out is tree_unflatten's new dict: filled in place
        out[key], out[t.mask_key] = made[0], made[1]
        if len(made) > 2:
            out[t.original_key] = made[2]
        return out
    if isinstance(out, (tuple, list)) and not hasattr(out, "_fields"):
        for i, v in enumerate(out):
            if isinstance(v, _Made):
                return type(out)([*out[:i], *v, *out[i + 1:]])
    return out  # deeper in the sample (or a named tuple): the image's place holds the tuple
