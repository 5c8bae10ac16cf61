"""Pixel-wise labels of a synthetic sample, one registry entry per label type.

Every label type starts from the same maps (docs/reference.md section 1, the paper's eqs.
(11)-(13)): d, the sum over channels of |result - original| (integers, so the medians are exact;
the authors' float value is d / C); the binary map B, the 5x5 median of (d > tol * C) inside the
patches' region; and, for the types that need it, the intensity I, the radius-5 disk median of
d * B, divided by C. A label type says what it makes of (B, I, f), in float64 numpy (``finish``),
and once more literally as the authors' float64 code does (``reference``); it also names the
network head, the loss and the colour scale it implies. The three computations (numpy on one
image, torch on a batch on any device, the literal reference) live here side by side.

On a device the label is looked up, not computed: B is 0 or 1, I is one of the 255 C + 1 values
m / C, and f is one number per sample, so ``label_table`` evaluates ``finish`` on the host, in
float64 as the numpy path does, for every (B, m) and sample, and the device gathers from that
float32 table. The batch's labels then equal the numpy path's bit for bit, and the device runs
no float64 (1/32 of the float32 rate on a GTX 1080) and no transcendental function.

Adding a label type is ``register(LabelType(...))``; the executors, the trainer and the command
lines read the registry. A type registered by a script reaches the command lines that script
calls (``nsa_fast.train.main([...])``), not a new ``python -m nsa_fast.train`` process; register it
at import time of a module, so that DataLoader workers started by spawn find it too.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .errors import InputError
from .filters import binary_median
from .median import disk_median

DISK_RADIUS = 5      # the intensity map's median footprint: skimage.morphology.disk(5)
BINARY_MEDIAN = 5    # the binary map's square median (cv2.medianBlur)


def bce_with_logits(logits, labels):
    """The loss of labels in [0, 1]: binary cross-entropy on the sigmoid of the logits."""
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits.float(), labels)


def mse_after_relu(logits, labels):
    """The loss of raw grey-level labels: mean squared error of ReLU(logits)."""
    import torch.nn.functional as F

    return F.mse_loss(F.relu(logits.float()), labels)


@dataclass(frozen=True)
class LabelType:
    """A label type.

    finish(xp, B, I, f, label) -> the label map, element-wise, for xp = numpy: B 0/1 and I float64
    arrays that broadcast together, I None unless ``uses_intensity``, f a float (the sample's
    factor). It must give 0 where B and I are 0 (the label is 0 away from the patches), and not
    depend on f unless ``uses_factor`` (``register`` checks both).
    reference(on, d, f, label) -> float32: the authors' formula on their float64 maps (on uint8
    0/1, d float64 or None), written out apart from ``finish`` so the tests compare two codes.
    head: the network's output activation, "sigmoid" (labels in [0, 1]) or "relu" (grey levels);
    loss(logits, labels); vmax and scale_name: the colour scale of figures.
    """

    name: str
    finish: Callable
    reference: Callable
    uses_intensity: bool = False
    uses_factor: bool = True
    head: str = "sigmoid"
    loss: Callable = bce_with_logits
    vmax: float = 1.0
    scale_name: str = "label"

    def __reduce__(self):
        # by name: a DataLoader worker started by spawn or forkserver finds the type in its own
        # registry (built-in, or registered when the worker imports the user's module)
        return get_label_type, (self.name,)

    def activate(self, logits):
        """The network's map from its logits: probabilities or grey levels."""
        import torch
        import torch.nn.functional as F

        return torch.sigmoid(logits) if self.head == "sigmoid" else F.relu(logits)


@dataclass(frozen=True)
class Label:
    """A label type with the parameters the label formulas read: logistic (k, y0) and tol, the
    mean change in grey levels a pixel must exceed to be labelled."""

    kind: LabelType
    logistic: tuple[float, float] = (1 / 12, 24.0)
    tol: int = 1

    @property
    def name(self) -> str:
        return self.kind.name

    @classmethod
    def of(cls, label: "str | Label", logistic=None, tol=None) -> "Label":
        """A Label from a name or a Label, with the parameters given overriding its own."""
        out = label if isinstance(label, Label) else cls(get_label_type(label))
        if logistic is not None:
            out = replace(out, logistic=tuple(logistic))
        if tol is not None:
            out = replace(out, tol=int(tol))
        return out

    @classmethod
    def for_preset(cls, name: str, preset) -> "Label":
        """The label ``name`` with a class preset's parameters."""
        return cls(get_label_type(name), tuple(preset.logistic), int(preset.label_tol))


LABEL_TYPES: dict[str, LabelType] = {}


def register(kind: LabelType) -> LabelType:
    """Add a label type to the registry (replacing one of the same name)."""
    if kind.head not in ("sigmoid", "relu"):
        raise ValueError(f"head must be 'sigmoid' or 'relu', got {kind.head!r}")
    zero = np.zeros((3, 3))
    if np.any(kind.finish(np, zero, zero if kind.uses_intensity else None, 0.5, Label(kind))):
        raise ValueError(f"label type {kind.name!r} is not 0 where the binary map and the intensity are 0; "
                         "labels are computed near the patches only")
    if not kind.uses_factor:
        probe = np.arange(8.0).reshape(2, 4)
        b, i = (probe > 3).astype(np.float64), (probe * 7 if kind.uses_intensity else None)
        if not np.array_equal(kind.finish(np, b, i, 0.05, Label(kind)), kind.finish(np, b, i, 0.95, Label(kind))):
            raise ValueError(f"label type {kind.name!r} changes with the factor f; register it with uses_factor=True")
    LABEL_TYPES[kind.name] = kind
    return kind


def label_names() -> tuple[str, ...]:
    return tuple(LABEL_TYPES)


def get_label_type(name: str) -> LabelType:
    try:
        return LABEL_TYPES[name]
    except (KeyError, TypeError):
        raise InputError(f"label mode must be one of {label_names()}, got {name!r}.") from None


# The paper's four label types (eqs. (11)-(13)); ``*_reference`` are the authors' formulas as
# written in their code.

def _binary(xp, binary, intensity, factor, label):
    return binary


def _binary_reference(on, d, factor, label):
    return on.astype(np.float32)


def _continuous(xp, binary, intensity, factor, label):
    return binary * factor


def _continuous_reference(on, d, factor, label):
    return (on * factor).astype(np.float32)


def _intensity(xp, binary, intensity, factor, label):
    return intensity


def _intensity_reference(on, d, factor, label):
    return d.astype(np.float32)


def _logistic(xp, binary, intensity, factor, label: Label):
    k, y0 = label.logistic
    return binary / (1.0 + xp.exp(-k * (intensity - y0)))


def _logistic_reference(on, d, factor, label: Label):
    k, y0 = label.logistic
    return (on / (1 + np.exp(-k * (d - y0)))).astype(np.float32)


register(LabelType("binary", _binary, _binary_reference, uses_factor=False))
register(LabelType("continuous", _continuous, _continuous_reference))
register(LabelType("intensity", _intensity, _intensity_reference, uses_intensity=True, uses_factor=False,
                   head="relu", loss=mse_after_relu, vmax=255.0, scale_name="intensity"))
register(LabelType("logistic", _logistic, _logistic_reference, uses_intensity=True, uses_factor=False))


# -- numpy: one sample, confined to windows around its patches ------------------------------

Box = tuple[int, int, int, int]


def _grow(box: Box, margin: int, H: int, W: int) -> Box:
    y0, y1, x0, x1 = box
    return max(y0 - margin, 0), min(y1 + margin, H), max(x0 - margin, 0), min(x1 + margin, W)


def _area(b: Box) -> int:
    return (b[1] - b[0]) * (b[3] - b[2])


def _merge(boxes: list[Box]) -> list[Box]:
    """Merge windows while one window around two costs no more than the two apart."""
    boxes = list(boxes)
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                u = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                if _area(u) <= _area(a) + _area(b):
                    boxes[i] = u
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _region_boxes(region: np.ndarray) -> list[Box]:
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(region.any(axis=0))
    return [(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)]


def make_label(result: np.ndarray, original: np.ndarray, region: np.ndarray, label: str | Label, *,
               boxes: np.ndarray | None = None, factor: float = 1.0,
               logistic: tuple[float, float] | None = None, tol: int | None = None) -> np.ndarray:
    """The label of one synthetic sample.

    result, original: uint8 (H, W, C) synthetic and original destination image.
    region: (H, W) bool, the union of the patches' label regions (later patches overwrite earlier
    ones before this call). boxes: optional (P, 4) ``(y0, y1, x0, x1)`` boxes that hold the region
    (the patches' destination boxes), to confine the work; default: the region's bounding box.
    label: a registered name (binary, continuous, intensity, logistic, ...) or a Label; logistic
    and tol override its parameters. Returns float32 (H, W).
    """
    lab = Label.of(label, logistic, tol)
    H, W, C = result.shape
    out = np.zeros((H, W), np.float32)
    base = _region_boxes(region) if boxes is None else [tuple(int(v) for v in b) for b in boxes]
    if not base:
        return out
    # The binary median switches pixels on at most 2 px outside the region.
    near = _merge([_grow(b, BINARY_MEDIAN // 2, H, W) for b in base])
    dsum = np.zeros((H, W), np.uint16)
    for y0, y1, x0, x1 in near:
        diff = np.abs(result[y0:y1, x0:x1].astype(np.int16) - original[y0:y1, x0:x1])
        dsum[y0:y1, x0:x1] = diff.sum(axis=-1, dtype=np.uint16)
    on = ((dsum > lab.tol * C) & region).astype(np.uint8)
    # Over the whole image, so that the image border is replicated as OpenCV's median does.
    binary = binary_median(on, BINARY_MEDIAN)
    if not lab.kind.uses_intensity:
        return np.asarray(lab.kind.finish(np, binary.astype(np.float64), None, factor, lab), np.float32)
    masked = dsum * binary
    # Output windows reach 5 px past the binary map; input windows 5 px further, so every output
    # pixel reads its true neighbours and the image border is replicated ('nearest').
    for win in _merge([_grow(b, DISK_RADIUS, H, W) for b in near]):
        i0, i1, j0, j1 = _grow(win, DISK_RADIUS, H, W)
        med = disk_median(masked[i0:i1, j0:j1], DISK_RADIUS)
        m0, m1, n0, n1 = win
        intensity = med[m0 - i0:m1 - i0, n0 - j0:n1 - j0] / float(C)  # the authors' channel mean
        out[m0:m1, n0:n1] = lab.kind.finish(np, binary[m0:m1, n0:n1].astype(np.float64), intensity, factor, lab)
    return out


# -- torch: a batch on its device -----------------------------------------------------------

def label_table(label: Label, factors, channels: int) -> np.ndarray:
    """The label of every (sample, B, m) as float32 (S, 2, M): ``finish`` at B in {0, 1} and
    I = m / C for m < M = 255 C + 1 (M = 1 for types without the intensity), in float64 as
    ``make_label`` computes it. S = len(factors) for types that use the factor (the factors: (B,)
    host floats, one per sample), else 1."""
    kind = label.kind
    M = 255 * channels + 1 if kind.uses_intensity else 1
    b = np.array([[0.0], [1.0]])
    i = (np.arange(M) / float(channels))[None, :] if kind.uses_intensity else None
    rows = [float(f) for f in np.asarray(factors).reshape(-1)] if kind.uses_factor else [1.0]
    return np.stack([np.broadcast_to(kind.finish(np, b, i, f, label), (2, M)) for f in rows or [1.0]]
                    ).astype(np.float32)


def label_batch(result, original, region, label: Label, table, disk_median_batch):
    """The labels of a batch: result, original uint8 (B, H, W, C), region bool (B, H, W) and
    table float32 ``label_table(label, factors, C)``, all on one device; disk_median_batch: the
    radius-5 disk median of (B, H, W) int16 maps on that device. Returns float32 (B, H, W)
    there, equal to ``make_label`` per sample; integer maps and one gather, no float arithmetic."""
    import torch

    B, C = result.shape[0], result.shape[-1]
    dsum = (result.to(torch.int16) - original.to(torch.int16)).abs().sum(-1)
    binary = binary_median((dsum > label.tol * C) & region, BINARY_MEDIAN)
    M = table.shape[-1]
    index = binary.long() * M
    if label.kind.uses_intensity:
        index = index + disk_median_batch((dsum * binary).to(torch.int16)).long()
    if table.shape[0] > 1:  # one row of the table per sample
        index = index + (torch.arange(B, device=index.device) * (2 * M))[:, None, None]
    return table.reshape(-1)[index]


# -- the authors' code, literally -----------------------------------------------------------

def reference_label(result, original, region, label: str | Label, *, factor=1.0, logistic=None, tol=None):
    """The authors' label: float64 maps over the whole image, cv2.medianBlur for the binary map
    and skimage's disk median (scipy's median filter, mode 'nearest') for the intensity."""
    import cv2
    from skimage.filters import median
    from skimage.morphology import disk

    lab = Label.of(label, logistic, tol)
    m = region.astype(np.uint8)[..., None]
    on = (np.mean(np.abs(1.0 * m * original - 1.0 * m * result), axis=-1) > lab.tol).astype(np.uint8)
    on = cv2.medianBlur(on, 5)
    d = None
    if lab.kind.uses_intensity:
        lm = on[..., None]
        d = median(np.mean(np.abs(lm * original * 1.0 - lm * result * 1.0), axis=-1), disk(5))
    return lab.kind.reference(on, d, factor, lab)
