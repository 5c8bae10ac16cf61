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
from ..labels import Label, label_batch, label_table
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


def linear_taps(n_out: int, lo: np.ndarray, hi: np.ndarray, size: np.ndarray, clamp: bool):
    """Source indices and 11-bit weights of cv2.INTER_LINEAR along one axis, per patch, on the host.

    lo, hi (P,): the source range along the axis; size (P,): the output length. OpenCV computes
    the coordinate in double and rounds it to float, takes 1 - frac times 2048 rounded to the
    nearest integer as the first weight, and clamps the fraction to 0 outside the source only
    along x (rows just fetch clamped neighbours with the unclamped weights). The double
    arithmetic stays on the host: a GPU computes float64 at 1/32 of its float32 rate. Returns
    int32 (P, n_out) first and second source index and first weight.
    """
    i = np.arange(n_out, dtype=np.float64)[None]
    n_in = (np.asarray(hi, np.int64) - np.asarray(lo, np.int64))[:, None]
    scale = 1.0 / (np.asarray(size, np.float64)[:, None] / n_in.astype(np.float64))
    coord = ((i + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(coord)
    frac = coord - i0
    i0 = i0.astype(np.int64)
    if clamp:
        frac = np.where((i0 < 0) | (i0 >= n_in - 1), np.float32(0), frac)
    w0 = np.round((np.float32(1) - frac) * np.float32(2048)).astype(np.int32)
    lo = np.asarray(lo, np.int64)[:, None]
    r0 = lo + np.minimum(np.maximum(i0, 0), n_in - 1)
    r1 = lo + np.minimum(np.maximum(i0 + 1, 0), n_in - 1)
    return r0.astype(np.int32), r1.astype(np.int32), w0


def add_resize(pack: HostPack, prefix: str, boxes: np.ndarray, sizes: np.ndarray, n_rows: int, n_cols: int) -> None:
    """The taps that resize boxes (P, 4) ``(y0, y1, x0, x1)`` to sizes (P, 2), into a pack."""
    b, s = np.asarray(boxes, np.int64).reshape(-1, 4), np.asarray(sizes, np.int64).reshape(-1, 2)
    for axis, (n, lo, hi, clamp) in enumerate(((n_rows, b[:, 0], b[:, 1], False), (n_cols, b[:, 2], b[:, 3], True))):
        for name, taps in zip(("i0", "i1", "w0"), linear_taps(n, lo, hi, s[:, axis], clamp)):
            pack.add(f"{prefix}{'yx'[axis]}{name}", taps)


def resize_on_device(images: torch.Tensor, items: torch.Tensor, packed: DevicePack, prefix: str = "") -> torch.Tensor:
    """images[items] (uint8 (N, H, W, C)) cropped and resized with the taps of ``add_resize``,
    bit-exactly as cv2.resize(INTER_LINEAR) does for uint8, in integers: the arithmetic of
    OpenCV's SIMD path, 11-bit horizontal weights, then
    ((b0 * (h0 >> 4)) >> 16) + ((b1 * (h1 >> 4)) >> 16) + 2 >> 2 vertically. Returns
    (P, n_rows, n_cols, C) uint8, each patch in its top-left corner; beyond it, clamped repeats."""
    tap = {k: packed.get(prefix + k, torch.int32) for k in ("yi0", "yi1", "yw0", "xi0", "xi1", "xw0")}
    ax0 = tap["xw0"][:, None, :, None]
    ax1 = 2048 - ax0
    it = items[:, None, None]

    def row(r):
        left = images[it, r[:, :, None], tap["xi0"][:, None, :]].to(torch.int32)
        right = images[it, r[:, :, None], tap["xi1"][:, None, :]].to(torch.int32)
        return left * ax0 + right * ax1

    by0 = tap["yw0"][:, :, None, None]
    top = (by0 * (row(tap["yi0"]) >> 4)) >> 16
    bottom = ((2048 - by0) * (row(tap["yi1"]) >> 4)) >> 16
    return ((top + bottom + 2) >> 2).clamp(0, 255).to(torch.uint8)


def resize_patches(images: torch.Tensor, items: torch.Tensor, boxes, sizes, n_rows: int, n_cols: int) -> torch.Tensor:
    """Crop host boxes (P, 4) ``(y0, y1, x0, x1)`` of images[items] (uint8 (N, H, W, C), items
    int64 on the images' device) and resize each to host sizes (P, 2), bit-exactly as
    cv2.resize(INTER_LINEAR) does for uint8; the taps reach the device in one copy. Returns
    (P, n_rows, n_cols, C) uint8, each patch in its top-left corner; beyond it, clamped repeats."""
    pack = HostPack()
    add_resize(pack, "", boxes, sizes, n_rows, n_cols)
    return resize_on_device(images, items, pack.send(images.device))


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
    ``nsa_fast.median.disk_median`` per map on the CPU. buckets: groups of similar patch size
    blended one after another; default: 1 on CUDA (fewest launches), ``CPU_BUCKETS`` elsewhere
    (every padded pixel costs CPU time).
    """

    def __init__(self, solver=dst_solve, disk_median=None, buckets: int | None = None):
        self.solver = solver
        self.disk_median = disk_median
        self.buckets = buckets

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
        buckets = self.buckets or (1 if dst.is_cuda else CPU_BUCKETS)
        pack = HostPack()
        rounds = self._plan_rounds(pb, (H, W), buckets, pack)
        n_max = n_max or max(1, pb.rounds)
        boxes = np.full((B, n_max, 4), -1, np.int32)
        boxes[pb.sample, pb.round] = pb.dst_box
        pack.add("boxes", boxes)
        pack.add("label_table", label_table(label, pb.factor, C))
        if len(pb.sample):
            dsz = pb.dst_size
            add_resize(pack, "resize.", pb.src_box, dsz, int(dsz[:, 0].max()), int(dsz[:, 1].max()))
        packed = pack.send(dst.device)  # host -> device: the one copy of the batch's plan metadata
        cur = dst.clone()
        region = torch.zeros(B, H, W, dtype=torch.bool, device=dst.device)
        if len(pb.sample):
            items = packed.get("sample", torch.int64)
            patches = resize_on_device(src, items, packed, "resize.")
            inside = None
            if src_obj is not None:
                inside = resize_on_device(src_obj[..., None].to(torch.uint8), items, packed, "resize.")[..., 0] > 0
            for r, rnd in enumerate(rounds):
                self._blend_round(cur, region, patches, inside, dst_obj, packed, f"r{r}.", rnd)
        labels = label_batch(cur, dst, region, label, packed.get("label_table", torch.float32), self._disk_median)
        return Batch(cur, labels, packed.get("boxes", torch.int32))

    @staticmethod
    def _plan_rounds(pb: PlanBatch, dst_hw: tuple[int, int], buckets: int, pack: HostPack) -> list[_Round]:
        """Decide every round on the host and put its device metadata into ``pack``."""
        pack.add("sample", pb.sample)
        pack.add("dst_box", pb.dst_box)
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
            if set(point) & ops.FACTOR_OPS:
                pack.add(pre + "factor", pb.factor[samples].astype(np.float64))  # see ops.FACTOR_OPS
            layouts = []
            if len(k):
                h, w = pb.dst_size[sel[k], 0], pb.dst_size[sel[k], 1]
                pack.add(pre + "k", k)
                pack.add(pre + "hw", np.stack([h, w], 1))
                pack.add(pre + "value", pb.mask_value[samples[k]].astype(np.uint8))
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
        f = None
        if set(rnd.point) & ops.FACTOR_OPS:
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
