"""A whole batch of synthetic anomalies on one device: resize, blend, label.

The CPU draws the plans (``nsa_fast.sampler``); this executes a batch of them on torch tensors,
on CUDA or on the CPU (the twin): all source patches are cropped and resized in one gather, the
patches are blended in as many rounds as the sample with the most patches needs, and the labels
(5x5 median of the binary map, radius-5 disk median of the intensity map) are computed on the
device. There is no loop over samples or pixels in Python, and no host synchronisation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..presets import LABEL_MODES
from ..sampler import INTERPOLATE, PASTE, POISSON_MODES, Plan, stack_plans
from .poisson import seamless_clone_batch
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


def resize_patches(images: torch.Tensor, items: torch.Tensor, boxes: np.ndarray, sizes: np.ndarray,
                   n_rows: int, n_cols: int) -> torch.Tensor:
    """Crop boxes (P, 4) ``(y0, y1, x0, x1)`` of images[items] (uint8 (N, H, W, C)) and resize
    each to sizes (P, 2), bit-exactly as cv2.resize(INTER_LINEAR) does for uint8.

    The arithmetic is that of OpenCV's SIMD path: 11-bit horizontal weights, then
    ((b0 * (h0 >> 4)) >> 16) + ((b1 * (h1 >> 4)) >> 16) + 2 >> 2 vertically (tests/test_batched.py
    holds it equal to cv2.resize). Returns (P, n_rows, n_cols, C) uint8, each patch in its top-left
    corner; beyond it, clamped repeats.
    """
    dev = images.device
    b = torch.as_tensor(np.asarray(boxes, np.int64), device=dev)
    s = torch.as_tensor(np.asarray(sizes, np.int64), device=dev)
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


def place(patches: torch.Tensor, boxes: np.ndarray, H: int, W: int):
    """Canvases (P, H, W, ...) holding each patch at its destination box, and the (P, H, W) box masks."""
    dev = patches.device
    b = torch.as_tensor(np.asarray(boxes, np.int64), device=dev)
    y = torch.arange(H, device=dev)[None, :] - b[:, 0, None]
    x = torch.arange(W, device=dev)[None, :] - b[:, 2, None]
    iny = (y >= 0) & (y < (b[:, 1] - b[:, 0])[:, None])
    inx = (x >= 0) & (x < (b[:, 3] - b[:, 2])[:, None])
    yy = y.clamp(0, patches.shape[1] - 1)
    xx = x.clamp(0, patches.shape[2] - 1)
    p = torch.arange(len(b), device=dev)[:, None, None]
    return patches[p, yy[:, :, None], xx[:, None, :]], iny[:, :, None] & inx[:, None, :]


def box_median_binary(on: torch.Tensor, k: int) -> torch.Tensor:
    """k x k median of a (B, H, W) 0/1 map with replicated border (cv2.medianBlur): a count."""
    x = F.pad(on[:, None].float(), (k // 2,) * 4, mode="replicate")
    counts = F.avg_pool2d(x, k, stride=1, divisor_override=1)[:, 0]
    return counts > (k * k) // 2


def object_mask_batch(images: torch.Tensor, background) -> torch.Tensor | None:
    """``sampler.object_mask`` for a (B, H, W, C) uint8 batch on any device: (B, H, W) bool."""
    if background is None:
        return None
    b, t = background
    C = images.shape[-1]
    mean = images.to(torch.float64).sum(-1) / C
    return box_median_binary((mean - b).abs() > t, 7)


class BatchedExecutor:
    """Executes plans for a batch of (destination, source) images on their device.

    solver: a Poisson solver for tensors on that device (default: the direct DST solve).
    disk_median: a function of (B, H, W) int16 maps; default: the CUDA kernel on CUDA tensors,
    ``nsa_fast.median.disk_median`` per map on the CPU.
    """

    def __init__(self, solver=dst_solve, disk_median=None):
        self.solver = solver
        self.disk_median = disk_median

    def __call__(self, dst: torch.Tensor, src: torch.Tensor, plans: list[Plan], label_mode: str, *,
                 logistic=(1 / 12, 24.0), label_tol: int = 1, src_obj: torch.Tensor | None = None,
                 dst_obj: torch.Tensor | None = None, n_max: int | None = None) -> Batch:
        """dst, src: (B, H, W, C) uint8 on one device; plans: B plans; object masks (B, H, W) bool."""
        if label_mode not in LABEL_MODES:
            raise InputError(f"label mode must be one of {LABEL_MODES}, got {label_mode!r}.")
        if dst.shape != src.shape or dst.dtype != torch.uint8 or dst.ndim != 4 or len(plans) != dst.shape[0]:
            raise InputError(f"expected dst and src uint8 (B, H, W, C) of one shape and B plans, got "
                             f"{tuple(dst.shape)} {dst.dtype}, {tuple(src.shape)} and {len(plans)} plans.")
        B, H, W, C = dst.shape
        dev = dst.device
        st = stack_plans(plans)
        cur = dst.clone()
        region = torch.zeros(B, H, W, dtype=torch.bool, device=dev)
        P = len(st["mode"])
        if P:
            dsz = np.stack([st["dst_box"][:, 1] - st["dst_box"][:, 0], st["dst_box"][:, 3] - st["dst_box"][:, 2]], 1)
            n_rows, n_cols = int(dsz[:, 0].max()), int(dsz[:, 1].max())
            items = torch.as_tensor(st["sample"], device=dev)
            patches = resize_patches(src, items, st["src_box"], dsz, n_rows, n_cols)
            inside = None
            if src_obj is not None:
                obj = resize_patches(src_obj[..., None].to(torch.uint8), items, st["src_box"], dsz, n_rows, n_cols)
                inside = obj[..., 0] > 0
            for r in range(int(st["round"].max()) + 1):
                sel = np.flatnonzero(st["round"] == r)
                self._blend_round(cur, region, patches, inside, dst_obj, st, sel, dsz)
        labels = self._labels(cur, dst, region, label_mode, st, logistic, label_tol)
        boxes = np.full((B, n_max or max(1, max((p.n_patches for p in plans), default=1)), 4), -1, np.int32)
        for i, p in enumerate(plans):  # host metadata only
            boxes[i, :p.n_patches] = p.dst_box
        return Batch(cur, labels, torch.as_tensor(boxes, device=dev))

    def _blend_round(self, cur, region, patches, inside, dst_obj, st, sel, dsz) -> None:
        dev = cur.device
        B, H, W, C = cur.shape
        samples = st["sample"][sel]
        si = torch.as_tensor(samples, device=dev)
        pi = torch.as_tensor(sel, device=dev)
        canvas, boxmask = place(patches[pi], st["dst_box"][sel], H, W)
        reg = boxmask
        if inside is not None:
            obj_canvas, _ = place(inside[pi][..., None], st["dst_box"][sel], H, W)
            reg = boxmask & (obj_canvas[..., 0] | dst_obj[si])
        modes = st["mode"][sel]
        poisson = np.isin(modes, POISSON_MODES)
        if poisson.any():
            k = np.flatnonzero(poisson)
            kk = torch.as_tensor(k, device=dev)
            h, w = dsz[sel[k], 0], dsz[sel[k], 1]
            mask = torch.zeros(len(k), patches.shape[1], patches.shape[2], dtype=torch.uint8, device=dev)
            rr = torch.arange(patches.shape[1], device=dev)[None, :, None]
            cc = torch.arange(patches.shape[2], device=dev)[None, None, :]
            th, tw = torch.as_tensor(h, device=dev), torch.as_tensor(w, device=dev)
            inner = (rr >= 1) & (rr < (th - 1)[:, None, None]) & (cc >= 1) & (cc < (tw - 1)[:, None, None])
            value = torch.as_tensor(st["mask_value"][samples[k]], device=dev).to(torch.uint8)
            mask = torch.where(inner, value[:, None, None], mask)
            y0, y1, x0, x1 = st["dst_box"][sel[k]].T
            centers = np.stack([x1 - (x1 - x0) // 2, y0 + (y1 - y0) // 2], 1)
            roi = np.stack([np.ones_like(h), h - 1, np.ones_like(w), w - 1], 1)
            out = seamless_clone_batch(patches[pi[kk]], cur[si[kk]], mask, centers, modes[k],
                                       sizes=np.stack([h, w], 1), roi_src=roi, solver=self.solver)
            cur[si[kk]] = out
        paste = torch.as_tensor(modes == PASTE, device=dev)
        if paste.any():
            m = (reg & paste[:, None, None])[..., None]
            cur[si] = torch.where(m, canvas, cur[si])
        interp = torch.as_tensor(modes == INTERPOLATE, device=dev)
        if interp.any():
            f = torch.as_tensor(st["factor"][samples], device=dev, dtype=torch.float64)
            fm = (f[:, None, None] * (reg & interp[:, None, None]))[..., None]
            before = cur[si].to(torch.float64)
            mixed = torch.floor(before - fm * before + fm * canvas.to(torch.float64)).to(torch.uint8)
            cur[si] = torch.where((interp[:, None, None] & boxmask)[..., None], mixed, cur[si])
        region[si] = torch.where(boxmask, reg, region[si])  # a later patch overwrites

    def _labels(self, cur, orig, region, mode, st, logistic, tol) -> torch.Tensor:
        B, H, W, C = cur.shape
        dsum = (cur.to(torch.int16) - orig.to(torch.int16)).abs().sum(-1)
        binary = box_median_binary((dsum > tol * C) & region, 5)
        if mode == "binary":
            return binary.float()
        if mode == "continuous":
            f = torch.as_tensor(st["factor"], device=cur.device)
            return binary.float() * f[:, None, None]
        masked = (dsum * binary).to(torch.int16)
        med = self._disk_median(masked).to(torch.float64) / C
        if mode == "intensity":
            return med.float()
        k, y0 = logistic
        return (binary / (1.0 + torch.exp(-k * (med - y0)))).float()

    def _disk_median(self, x: torch.Tensor) -> torch.Tensor:
        if self.disk_median is not None:
            return self.disk_median(x)
        if x.is_cuda:
            from .cuda import disk_median_cuda

            return disk_median_cuda(x)
        from ..median import disk_median

        return torch.from_numpy(np.stack([disk_median(m, 5) for m in x.numpy()]))
