"""A whole batch of synthetic anomalies on one device: resize, blend, label.

The CPU draws the plans (``nsa_fast.sampler``); this executes a batch of them on torch tensors,
on CUDA or on the CPU (the twin): all source patches are cropped and resized in one gather, the
patches are blended in as many rounds as the sample with the most patches needs, and the labels
(5x5 median of the binary map, radius-5 disk median of the intensity map) are computed on the
device. There is no loop over samples or pixels in Python. Everything the device needs of the
plans is decided on the host and sent in one packed copy (``HostPack``); nothing is read back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..labels import Label, label_batch
from ..sampler import POISSON_MODES, Plan, PlanBatch
from ..transfer import DevicePack, HostPack
from . import ops
from .poisson import CPU_BUCKETS, Layout, clone_on_device, layout_from_rois, split_layout
from .solvers import dst_solve


@dataclass(frozen=True)
class Batch:
    """images (B, H, W, C) uint8, labels (B, H, W) float32, boxes (B, n_max, 4) int32 (-1 padded),
    all on the executor's device."""

    images: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor


def _linear_taps(n_out: int, lo: torch.Tensor, hi: torch.Tensor, size: torch.Tensor, clamp: bool):
    """Source indices and 11-bit weights of cv2.INTER_LINEAR along one axis, per patch.

    OpenCV computes the coordinate in double and rounds it to float, takes 1 - frac times 2048
    rounded to the nearest integer as the first weight, and clamps the fraction to 0 outside the
    source only along x (rows just fetch clamped neighbours with the unclamped weights).
    """
    dev = lo.device
    i = torch.arange(n_out, device=dev, dtype=torch.float64)[None]
    n_in = (hi - lo)[:, None]
    scale = 1.0 / (size.to(torch.float64)[:, None] / n_in.to(torch.float64))
    coord = ((i + 0.5) * scale - 0.5).to(torch.float32)
    i0 = coord.floor()
    frac = coord - i0
    i0 = i0.to(torch.int64)
    if clamp:
        frac = torch.where((i0 < 0) | (i0 >= n_in - 1), torch.zeros_like(frac), frac)
    w0 = torch.round((1.0 - frac) * 2048.0).to(torch.int32)
    r0 = lo[:, None] + i0.clamp(min=0).minimum(n_in - 1)
    r1 = lo[:, None] + (i0 + 1).clamp(min=0).minimum(n_in - 1)
    return r0, r1, w0, 2048 - w0


def resize_patches(images: torch.Tensor, items: torch.Tensor, boxes, sizes, n_rows: int, n_cols: int) -> torch.Tensor:
    """Crop boxes (P, 4) ``(y0, y1, x0, x1)`` of images[items] (uint8 (N, H, W, C)) and resize
    each to sizes (P, 2), bit-exactly as cv2.resize(INTER_LINEAR) does for uint8. boxes and sizes:
    int64 tensors on the images' device (host arrays are copied there).

    The arithmetic is that of OpenCV's SIMD path: 11-bit horizontal weights, then
    ((b0 * (h0 >> 4)) >> 16) + ((b1 * (h1 >> 4)) >> 16) + 2 >> 2 vertically (tests/test_batched.py
    holds it equal to cv2.resize). Returns (P, n_rows, n_cols, C) uint8, each patch in its top-left
    corner; beyond it, clamped repeats.
    """
    b, s = _on(boxes, images.device), _on(sizes, images.device)
    r0, r1, by0, by1 = _linear_taps(n_rows, b[:, 0], b[:, 1], s[:, 0], clamp=False)
    c0, c1, ax0, ax1 = _linear_taps(n_cols, b[:, 2], b[:, 3], s[:, 1], clamp=True)
    it = items[:, None, None]

    def row(r):
        left = images[it, r[:, :, None], c0[:, None, :]].to(torch.int32)
        right = images[it, r[:, :, None], c1[:, None, :]].to(torch.int32)
        return left * ax0[:, None, :, None] + right * ax1[:, None, :, None]

    top = (by0[:, :, None, None] * (row(r0) >> 4)) >> 16
    bottom = (by1[:, :, None, None] * (row(r1) >> 4)) >> 16
    return ((top + bottom + 2) >> 2).clamp(0, 255).to(torch.uint8)


def _on(x, device: torch.device) -> torch.Tensor:
    """Host arrays of the public helpers to the device; device tensors pass through."""
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, np.int64), device=device)


def place(patches: torch.Tensor, boxes, H: int, W: int):
    """Canvases (P, H, W, ...) holding each patch at its destination box (P, 4) int64, and the
    (P, H, W) box masks."""
    dev = patches.device
    b = _on(boxes, dev)
    y = torch.arange(H, device=dev)[None, :] - b[:, 0, None]
    x = torch.arange(W, device=dev)[None, :] - b[:, 2, None]
    iny = (y >= 0) & (y < (b[:, 1] - b[:, 0])[:, None])
    inx = (x >= 0) & (x < (b[:, 3] - b[:, 2])[:, None])
    yy = y.clamp(0, patches.shape[1] - 1)
    xx = x.clamp(0, patches.shape[2] - 1)
    p = torch.arange(len(b), device=dev)[:, None, None]
    return patches[p, yy[:, :, None], xx[:, None, :]], iny[:, :, None] & inx[:, None, :]


@dataclass(frozen=True)
class _Round:
    """Host facts of one blending round: which patches, and which kinds of blend occur."""

    sel: np.ndarray              # patch rows of this round
    poisson: np.ndarray          # positions within sel of the Poisson patches
    layouts: list[Layout]        # their clone layouts, in size buckets
    point: tuple[int, ...]       # the pointwise operations (ops.POINT_OPS codes) that occur


class BatchedExecutor:
    """Executes plans for a batch of (destination, source) images on their device.

    solver: a Poisson solver for tensors on that device (default: the direct DST solve).
    disk_median: a function of (B, H, W) int16 maps; default: the CUDA kernel on CUDA tensors,
    ``nsa_fast.median.disk_median`` per map on the CPU.
    """

    def __init__(self, solver=dst_solve, disk_median=None):
        self.solver = solver
        self.disk_median = disk_median

    def __call__(self, dst: torch.Tensor, src: torch.Tensor, plans: list[Plan], label: str | Label, *,
                 logistic=None, label_tol: int | None = None, src_obj: torch.Tensor | None = None,
                 dst_obj: torch.Tensor | None = None, n_max: int | None = None) -> Batch:
        """dst, src: (B, H, W, C) uint8 on one device; plans: B plans; object masks (B, H, W) bool;
        label: a label name or a ``labels.Label`` (logistic and label_tol override its parameters)."""
        label = Label.of(label, logistic, label_tol)
        if dst.shape != src.shape or dst.dtype != torch.uint8 or dst.ndim != 4 or len(plans) != dst.shape[0]:
            raise InputError(f"expected dst and src uint8 (B, H, W, C) of one shape and B plans, got "
                             f"{tuple(dst.shape)} {dst.dtype}, {tuple(src.shape)} and {len(plans)} plans.")
        B, H, W, C = dst.shape
        pb = PlanBatch.stack(plans)
        buckets = 1 if dst.is_cuda else CPU_BUCKETS
        pack = HostPack()
        rounds = self._plan_rounds(pb, (H, W), buckets, pack)
        n_max = n_max or max(1, pb.rounds)
        boxes = np.full((B, n_max, 4), -1, np.int64)
        boxes[pb.sample, pb.round] = pb.dst_box
        pack.add("boxes", boxes)
        pack.add("factor", pb.factor)
        packed = pack.send(dst.device)  # host -> device: the one copy of the batch's plan metadata
        cur = dst.clone()
        region = torch.zeros(B, H, W, dtype=torch.bool, device=dst.device)
        if len(pb.sample):
            dsz = pb.dst_size
            n_rows, n_cols = int(dsz[:, 0].max()), int(dsz[:, 1].max())
            items = packed.get("sample", torch.int64)
            src_box, size = packed.get("src_box", torch.int64), packed.get("dst_size", torch.int64)
            patches = resize_patches(src, items, src_box, size, n_rows, n_cols)
            inside = None
            if src_obj is not None:
                obj = resize_patches(src_obj[..., None].to(torch.uint8), items, src_box, size, n_rows, n_cols)
                inside = obj[..., 0] > 0
            for r, rnd in enumerate(rounds):
                self._blend_round(cur, region, patches, inside, dst_obj, packed, f"r{r}.", rnd)
        labels = label_batch(cur, dst, region, label, packed.get("factor", torch.float32), self._disk_median)
        return Batch(cur, labels, packed.get("boxes", torch.int32))

    @staticmethod
    def _plan_rounds(pb: PlanBatch, dst_hw: tuple[int, int], buckets: int, pack: HostPack) -> list[_Round]:
        """Decide every round on the host and put its device metadata into ``pack``."""
        pack.add("sample", pb.sample)
        pack.add("src_box", pb.src_box)
        pack.add("dst_box", pb.dst_box)
        pack.add("dst_size", pb.dst_size)
        rounds = []
        for r in range(pb.rounds):
            sel = np.flatnonzero(pb.round == r)
            modes, samples = pb.mode[sel], pb.sample[sel]
            k = np.flatnonzero(np.isin(modes, POISSON_MODES))
            pre = f"r{r}."
            pack.add(pre + "sel", sel)
            pack.add(pre + "samples", samples)
            point = tuple(c for c in ops.POINT_OPS if (modes == c).any())
            for c in point:
                pack.add(f"{pre}op{c}", modes == c)
            pack.add(pre + "factor", pb.factor[samples].astype(np.float64))
            layouts = []
            if len(k):
                h, w = pb.dst_size[sel[k], 0], pb.dst_size[sel[k], 1]
                pack.add(pre + "k", k)
                pack.add(pre + "hw", np.stack([h, w], 1))
                pack.add(pre + "value", pb.mask_value[samples[k]])
                layouts = split_layout(_clone_layout(pb.dst_box[sel[k]], h, w, modes[k], dst_hw), buckets)
                for j, lay in enumerate(layouts):
                    lay.add_to(pack, f"{pre}b{j}.")
            rounds.append(_Round(sel, k, layouts, point))
        return rounds

    def _blend_round(self, cur, region, patches, inside, dst_obj, packed: DevicePack, pre: str,
                     rnd: _Round) -> None:
        B, H, W, C = cur.shape
        si = packed.get(pre + "samples", torch.int64)
        pi = packed.get(pre + "sel", torch.int64)
        canvas, boxmask = place(patches[pi], packed.get("dst_box", torch.int64)[pi], H, W)
        reg = boxmask
        if inside is not None:
            obj_canvas, _ = place(inside[pi][..., None], packed.get("dst_box", torch.int64)[pi], H, W)
            reg = boxmask & (obj_canvas[..., 0] | dst_obj[si])
        if len(rnd.poisson):
            kk = packed.get(pre + "k", torch.int64)
            mask = ops.poisson_mask(packed.get(pre + "hw", torch.int64), packed.get(pre + "value", torch.uint8),
                                    patches.shape[1], patches.shape[2])
            parts = [lay.on_device(packed, f"{pre}b{j}.") for j, lay in enumerate(rnd.layouts)]
            cur[si[kk]] = clone_on_device(patches[pi[kk]], cur[si[kk]], mask, parts, self.solver)
        if rnd.point:
            f = packed.get(pre + "factor", torch.float64)[:, None, None]
        for code in rnd.point:  # each sample has one patch a round: the operations touch disjoint rows
            this = packed.get(f"{pre}op{code}", torch.bool)[:, None, None]
            cur[si] = ops.paste(cur[si], ops.POINT_OPS[code](cur[si], canvas, reg, f), this & boxmask)
        region[si] = torch.where(boxmask, reg, region[si])  # a later patch overwrites

    def _disk_median(self, x: torch.Tensor) -> torch.Tensor:
        if self.disk_median is not None:
            return self.disk_median(x)
        if x.is_cuda:
            from .cuda import disk_median_cuda

            return disk_median_cuda(x)
        from ..median import disk_median

        return torch.from_numpy(np.stack([disk_median(m, 5) for m in x.cpu().numpy()])).to(x.device)


def _clone_layout(dst_box: np.ndarray, h: np.ndarray, w: np.ndarray, modes: np.ndarray, dst_hw) -> Layout:
    """The seamless-clone layout of NSA's rectangle masks, from the plans alone: the ROI is the
    mask inside its zeroed frame, and the reference's clone centre places it in the box (odd
    widths one pixel right)."""
    centers = np.stack(ops.clone_center(dst_box), 1)
    roi = np.stack([np.ones_like(h), h - 1, np.ones_like(w), w - 1], 1)
    return layout_from_rois(roi, centers, dst_hw, modes)
