"""Batched seamless cloning: what ``cv2.seamlessClone`` computes, for many items at once.

Device-agnostic torch: the same code runs on CPU tensors (the CPU twin) and on CUDA tensors.
Items of one call have different region sizes; they are laid out on one padded grid, and the
Poisson problems are solved together, by a direct DST solve (batched matrix products) or by the
iterative solvers of ``nsa_fast.blend.solvers``.

OpenCV's algorithm (docs/reference.md section 2): zero the mask's 1-pixel frame; ROI = bounding box of the
non-zero mask; destination ROI at (cx - w/2, cy - h/2); source pixels outside the mask are zeroed;
forward differences for gradients, backward differences for the divergence, both float32; the
mask is eroded 3 times by 3x3 (one 7x7 erosion, the zero frame included) and weights the source
(m/255) and destination ((255-m)/255) gradients; MIXED takes the source pair where
|sgx - sgy| > |dgx - dgy|; the 5-point Poisson equation is solved on the ROI with the destination
ROI border as Dirichlet boundary; values are clamped to 0..255 and truncated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..sampler import MIXED, NORMAL
from ..transfer import DevicePack, HostPack
from .solvers import Interior

CLONE_MODES = {"normal": NORMAL, "mixed": MIXED}
ERODE = 7             # 3 x (3x3) erosion == one 7x7 erosion
CPU_BUCKETS = 8       # measured on 64 NSA-sized items: 8 groups cut the padded work about 3x


@dataclass(frozen=True)
class Layout:
    """Host-side geometry of a batch: ROIs in source and destination, padded grid size, modes.

    roi_src, roi_dst: (B, 4) int64 ``(y0, y1, x0, x1)``; empty items have y1 == y0.
    modes: (B,) NORMAL/MIXED; items: (B,) the batch entries these rows describe.
    """

    roi_src: np.ndarray
    roi_dst: np.ndarray
    n_rows: int  # padded ROI rows (max over items)
    n_cols: int
    modes: np.ndarray
    items: np.ndarray

    def select(self, idx: np.ndarray) -> "Layout":
        rs, rd = self.roi_src[idx], self.roi_dst[idx]
        return Layout(rs, rd, max(int((rs[:, 1] - rs[:, 0]).max(initial=0)), 3),
                      max(int((rs[:, 3] - rs[:, 2]).max(initial=0)), 3), self.modes[idx], self.items[idx])

    @property
    def sizes(self) -> np.ndarray:
        return np.stack([self.roi_src[:, 1] - self.roi_src[:, 0], self.roi_src[:, 3] - self.roi_src[:, 2]], 1)

    def add_to(self, pack: HostPack, prefix: str) -> None:
        """Everything the device needs of this layout, into a pack sent in one copy."""
        pack.add(prefix + "roi_src", self.roi_src)
        pack.add(prefix + "roi_dst", self.roi_dst)
        pack.add(prefix + "items", self.items)
        pack.add(prefix + "normal", self.modes == NORMAL)
        Interior.add_to(pack, prefix, interior_sizes(self))

    def on_device(self, packed: DevicePack, prefix: str) -> "DeviceLayout":
        return DeviceLayout(self, packed.get(prefix + "roi_src", torch.int64),
                            packed.get(prefix + "roi_dst", torch.int64), packed.get(prefix + "items", torch.int64),
                            packed.get(prefix + "normal", torch.bool),
                            Interior.from_pack(interior_sizes(self), packed, prefix))


@dataclass(frozen=True)
class DeviceLayout:
    """A Layout with its arrays on the device (from one packed copy)."""

    host: Layout
    roi_src: torch.Tensor
    roi_dst: torch.Tensor
    items: torch.Tensor
    normal: torch.Tensor
    interior: Interior


def _mask_rois(mask: torch.Tensor, sizes: np.ndarray) -> np.ndarray:
    """Bounding boxes of the non-zero mask after each item's 1-pixel frame is zeroed; (B, 4) host.

    sizes: (B, 2) each item's own source height and width (the tensor may be padded beyond).
    One device-to-host copy of which rows and columns hold mask pixels: the padded layout must be
    known on the host.
    """
    on = mask != 0
    rows, cols = on.any(dim=2), on.any(dim=1)
    both = torch.cat([rows, cols], 1).cpu().numpy()  # sync: the host needs the ROIs
    rows, cols = both[:, :mask.shape[1]], both[:, mask.shape[1]:]
    box = np.zeros((len(sizes), 4), np.int64)
    for i, (h, w) in enumerate(np.asarray(sizes, np.int64)):
        r = np.flatnonzero(rows[i, 1:h - 1]) + 1  # inside the zeroed frame of the item's own size
        c = np.flatnonzero(cols[i, 1:w - 1]) + 1
        if r.size and c.size:
            box[i] = r[0], r[-1] + 1, c[0], c[-1] + 1
    return box


def plan_layout(mask: torch.Tensor, centers, dst_hw: tuple[int, int], sizes: np.ndarray, modes: np.ndarray,
                roi_src: np.ndarray | None = None) -> Layout:
    """Place every item's ROI in the destination as OpenCV does; refuse what OpenCV refuses.

    centers: (B, 2) host ints (x, y). sizes: (B, 2) host source sizes. roi_src: (B, 4) host ROIs
    when the caller knows them (the plan executor does), which saves the only host
    synchronisation of a blend.
    """
    roi = _mask_rois(mask, sizes) if roi_src is None else np.asarray(roi_src, np.int64).reshape(-1, 4)
    return layout_from_rois(roi, np.asarray(centers, np.int64).reshape(-1, 2), dst_hw, modes)


def layout_from_rois(roi: np.ndarray, centers: np.ndarray, dst_hw: tuple[int, int], modes) -> Layout:
    """The destination ROI at (cx - w/2, cy - h/2), as OpenCV places it; its refusals as errors."""
    h, w = roi[:, 1] - roi[:, 0], roi[:, 3] - roi[:, 2]
    y0, x0 = centers[:, 1] - h // 2, centers[:, 0] - w // 2
    dst = np.stack([y0, y0 + h, x0, x0 + w], 1)
    small = (h > 0) & ((h < 3) | (w < 3))
    if small.any():
        i = int(np.flatnonzero(small)[0])
        raise InputError(
            f"item {i}: the mask's region is {h[i]}x{w[i]} pixels after its 1-pixel frame is "
            "zeroed; cv2.seamlessClone needs at least 3x3 (it fails on thinner masks). Widen the mask.")
    H, W = dst_hw
    bad = (h > 0) & ((y0 < 0) | (x0 < 0) | (y0 + h > H) | (x0 + w > W))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"item {i}: the clone region ({h[i]}x{w[i]} at rows {y0[i]}..{y0[i] + h[i] - 1}, "
            f"columns {x0[i]}..{x0[i] + w[i] - 1}) does not fit in the {H}x{W} destination; "
            "cv2.seamlessClone refuses this too. Move the centre inwards or shrink the mask.")
    dst[h == 0] = 0
    return Layout(roi, dst, max(int(h.max(initial=0)), 3), max(int(w.max(initial=0)), 3),
                  np.asarray(modes, np.int64).reshape(-1), np.arange(len(roi)))


def _grid(images: torch.Tensor, items: torch.Tensor, box: torch.Tensor, n_rows: int, n_cols: int):
    """Gather (B, n_rows, n_cols, C) windows of images[items] at box origins, and their validity."""
    dev = images.device
    r = torch.arange(n_rows, device=dev)
    c = torch.arange(n_cols, device=dev)
    valid = (r[None, :, None] < (box[:, 1] - box[:, 0])[:, None, None]) & \
            (c[None, None, :] < (box[:, 3] - box[:, 2])[:, None, None])
    rows = (box[:, 0, None] + r).clamp(0, images.shape[1] - 1)
    cols = (box[:, 2, None] + c).clamp(0, images.shape[2] - 1)
    return images[items[:, None, None], rows[:, :, None], cols[:, None, :]], valid


def _fwd(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Forward difference x[i+1] - x[i]; the last entry is unused by the interior equations."""
    return F.pad(x.diff(dim=dim), (0, 1) if dim == -1 else (0, 0, 0, 1))


def _bwd(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Backward difference x[i] - x[i-1]; the first entry is unused by the interior equations."""
    return F.pad(x.diff(dim=dim), (1, 0) if dim == -1 else (0, 0, 1, 0))


def erode(m: torch.Tensor) -> torch.Tensor:
    """7x7 erosion (min) of (B, 1, R, K) with zeros outside, separably: rows then columns."""
    neg = -F.pad(m, (ERODE // 2,) * 4)
    return -F.max_pool2d(F.max_pool2d(neg, (ERODE, 1), stride=1), (1, ERODE), stride=1)


def poisson_system(src, dst, mask, part: DeviceLayout):
    """The right-hand side, boundary and first guess of every item's Poisson problem.

    src (N, Hs, Ws, C), dst (N, H, W, C) uint8; mask (N, Hs, Ws) uint8; ``part`` says which
    entries (``items``) with which ROIs and modes. Returns rhs (B, C, R, K) float32 on the
    interior grid (R = n_rows - 2, K = n_cols - 2; zero outside each item's interior), guess
    (B, C, R, K) (the destination's interior values) and dst_roi (B, C, n_rows, n_cols) float32.
    """
    dev = src.device
    items, rs, rd = part.items, part.roi_src, part.roi_dst
    n_rows, n_cols = part.host.n_rows, part.host.n_cols
    s_img, valid = _grid(src, items, rs, n_rows, n_cols)
    d_img, _ = _grid(dst, items, rd, n_rows, n_cols)
    m, _ = _grid(mask[..., None], items, rs, n_rows, n_cols)
    m = m[..., 0].float() * valid  # outside the ROI is the zeroed frame (or beyond it)
    s = (s_img.float() * (m > 0)[..., None]).permute(0, 3, 1, 2)
    d = (d_img.float() * valid[..., None]).permute(0, 3, 1, 2)
    eroded = erode(m[:, None])
    w_src = eroded / 255.0
    w_dst = (255.0 - eroded) / 255.0
    sgx, sgy, dgx, dgy = _fwd(s, -1), _fwd(s, -2), _fwd(d, -1), _fwd(d, -2)
    if (part.host.modes == NORMAL).all():  # host-side metadata: skip the MIXED rule when no item needs it
        px, py = sgx, sgy
    else:
        take_src = part.normal.reshape(-1, 1, 1, 1) | ((sgx - sgy).abs() > (dgx - dgy).abs())
        px, py = torch.where(take_src, sgx, dgx), torch.where(take_src, sgy, dgy)
    gx = px * w_src + dgx * w_dst
    gy = py * w_src + dgy * w_dst
    lap = _bwd(gx, -1) + _bwd(gy, -2)
    # Dirichlet boundary: the ROI's outer ring keeps the destination; its values move to the rhs.
    h = rs[:, 1] - rs[:, 0]
    w = rs[:, 3] - rs[:, 2]
    r = torch.arange(n_rows, device=dev)[None, :, None]
    c = torch.arange(n_cols, device=dev)[None, None, :]
    interior = (r >= 1) & (r < (h - 1)[:, None, None]) & (c >= 1) & (c < (w - 1)[:, None, None])
    ring = d * (valid & ~interior)[:, None]
    ring_pad = F.pad(ring, (1, 1, 1, 1))
    neighbours = (ring_pad[..., :-2, 1:-1] + ring_pad[..., 2:, 1:-1] +
                  ring_pad[..., 1:-1, :-2] + ring_pad[..., 1:-1, 2:])
    inner = interior[:, None, 1:-1, 1:-1]
    rhs = ((lap - neighbours)[..., 1:-1, 1:-1] * inner).contiguous()
    guess = (d[..., 1:-1, 1:-1] * inner).contiguous()
    return rhs, guess, d


def interior_sizes(layout: Layout) -> np.ndarray:
    """(B, 2) rows and columns of each item's unknowns (ROI minus its ring), at least 0."""
    return np.maximum(layout.sizes - 2, 0)


def to_uint8(u: torch.Tensor) -> torch.Tensor:
    """OpenCV's output rule: clamp to 0..255, then truncate (not round)."""
    return u.clamp(0, 255).to(torch.uint8)


def seamless_clone_batch(src: torch.Tensor, dst: torch.Tensor, mask: torch.Tensor, centers, mode,
                         *, sizes=None, solver=None, roi_src: np.ndarray | None = None,
                         buckets: int | None = None) -> torch.Tensor:
    """Batched ``cv2.seamlessClone(src_i, dst[i], mask_i, centers[i], mode[i])``.

    src (B, Hs, Ws, C), dst (B, H, W, C) uint8 and mask (B, Hs, Ws) uint8 (fractional values
    allowed) on one device; item i's source and mask are ``src[i, :h_i, :w_i]`` and
    ``mask[i, :h_i, :w_i]`` with sizes (B, 2) host ints (h_i, w_i) (default: the whole tensor).
    centers (B, 2) host ints (x, y); mode: ``cv2.NORMAL_CLONE``/``cv2.MIXED_CLONE`` or "normal"/
    "mixed" (one, or (B,) on the host), as cv2.seamlessClone takes them. solver: a
    callable from ``nsa_fast.blend.solvers`` or ``nsa_fast.blend.cuda`` (default: the direct DST
    solve). roi_src: (B, 4) host ROIs when the caller knows them; otherwise they are read from
    the mask (one device-to-host copy). buckets: groups of similar size solved one after another
    (default 1 on CUDA, CPU_BUCKETS elsewhere). The host metadata reaches the device in one copy.
    Returns (B, H, W, C) uint8 on the input device; the inputs are not modified.
    """
    _check(src, dst, mask)
    B = src.shape[0]
    modes = clone_modes(mode, B)
    if B == 0:
        return dst.clone()
    if sizes is None:
        sizes = np.tile(np.asarray(src.shape[1:3], np.int64), (B, 1))
    sizes = np.asarray(sizes, np.int64).reshape(B, 2)
    if (sizes > np.asarray(src.shape[1:3])).any() or (sizes < 1).any():
        raise InputError(f"sizes must lie within the source tensor's {tuple(src.shape[1:3])}, got "
                         f"{sizes.min(0).tolist()}..{sizes.max(0).tolist()}.")
    layout = plan_layout(mask, centers, dst.shape[1:3], sizes, modes, roi_src)
    parts = split_layout(layout, buckets if buckets is not None else (1 if src.is_cuda else CPU_BUCKETS))
    pack = HostPack()
    for j, part in enumerate(parts):
        part.add_to(pack, f"{j}.")
    packed = pack.send(src.device)
    return clone_on_device(src, dst, mask, [p.on_device(packed, f"{j}.") for j, p in enumerate(parts)], solver)


def clone_modes(mode, B: int) -> np.ndarray:
    """OpenCV's clone flags (cv2.NORMAL_CLONE, cv2.MIXED_CLONE) or "normal"/"mixed", one or one
    per item (a list, tuple or numpy array), as (B,) of this package's mode codes. Anything else
    is refused: floats, bools, tensors, and cv2.MONOCHROME_TRANSFER, which is not a Poisson clone
    this solver computes."""
    import cv2

    flags = {cv2.NORMAL_CLONE: NORMAL, cv2.MIXED_CLONE: MIXED}

    def code(m):
        if isinstance(m, (str, np.str_)):
            return CLONE_MODES.get(str(m))
        if isinstance(m, (int, np.integer)) and not isinstance(m, (bool, np.bool_)):
            return flags.get(int(m))
        return None

    if isinstance(mode, (list, tuple)):
        given = list(mode)
    elif isinstance(mode, np.ndarray):
        given = list(mode.ravel())
    else:
        given = [mode]
    codes = [code(m) for m in given]
    bad = [m for m, c in zip(given, codes) if c is None]
    if bad or len(given) not in (1, B):
        got = ", ".join(repr(m.item() if isinstance(m, np.generic) else m) for m in bad[:3]) or f"{len(given)} modes"
        raise InputError(f"mode must be cv2.NORMAL_CLONE ({cv2.NORMAL_CLONE}), cv2.MIXED_CLONE ({cv2.MIXED_CLONE}), "
                         f"'normal' or 'mixed', one or one per item ({B}); got {got}.")
    return np.broadcast_to(np.asarray(codes, np.int64), (B,)).copy()


def split_layout(layout: Layout, buckets: int) -> list[Layout]:
    """The layout in groups of similar ROI size (see ``_buckets``)."""
    return [layout.select(idx) for idx in _buckets(layout, buckets)]


def clone_on_device(src, dst, mask, parts: list[DeviceLayout], solver=None) -> torch.Tensor:
    """The device half of ``seamless_clone_batch``: no host data and no synchronisation."""
    if solver is None:
        from .solvers import dst_solve as solver
    out = dst.clone()
    for part in parts:
        rhs, guess, _ = poisson_system(src, dst, mask, part)
        u = solver(rhs, guess, part.interior)
        write_interior(out, to_uint8(u), part)
    return out


def _buckets(layout: Layout, k: int) -> list[np.ndarray]:
    """Split items into k groups of similar ROI size, so that little of the padded grid is wasted.

    One group is best on a GPU (fewest launches); on a CPU every padded pixel costs time.
    """
    B = len(layout.roi_src)
    if k <= 1 or B <= 1:
        return [np.arange(B)]
    order = np.argsort(layout.sizes.max(axis=1), kind="stable")
    return [g for g in np.array_split(order, min(k, B)) if len(g)]


def write_interior(out: torch.Tensor, values: torch.Tensor, part: DeviceLayout) -> None:
    """Write (B, C, R, K) interior values into out[items] (N, H, W, C) at each item's ROI interior.

    A ROI interior never includes image row 0, so padding entries are all sent to pixel (0, 0)
    of their item, which is restored afterwards: no mask selection, no host synchronisation.
    """
    N, H, W, C = out.shape
    items, rd = part.items, part.roi_dst
    R, K = values.shape[-2:]
    ok = part.interior.mask(R, K)[:, 0]
    r = torch.arange(R, device=out.device)[None, :, None]
    c = torch.arange(K, device=out.device)[None, None, :]
    pos = (rd[:, 0, None, None] + 1 + r) * W + rd[:, 2, None, None] + 1 + c
    pos = torch.where(ok, pos, 0).reshape(len(items), -1)
    flat = out.view(N, H * W, C)
    corner = flat[items, 0].clone()
    flat.index_put_((items[:, None], pos), values.permute(0, 2, 3, 1).reshape(len(items), -1, C))
    flat[items, 0] = corner


def _check(src, dst, mask) -> None:
    for name, t, nd in (("src", src, 4), ("dst", dst, 4), ("mask", mask, 3)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.ndim != nd:
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"{name}: expected a uint8 tensor of rank {nd}, got {got}.")
    if src.device != dst.device or mask.device != src.device:
        raise InputError(f"src, dst and mask must be on one device, got {src.device}, {dst.device}, {mask.device}.")
    if src.shape[0] != dst.shape[0] or mask.shape[0] != src.shape[0] or src.shape[3] != dst.shape[3]:
        raise InputError(f"batch sizes and channels must agree: src {tuple(src.shape)}, dst {tuple(dst.shape)}, "
                         f"mask {tuple(mask.shape)}.")
    if mask.shape[1:] != src.shape[1:3]:
        raise InputError(f"mask {tuple(mask.shape[1:])} must have the source's height and width "
                         f"{tuple(src.shape[1:3])}, as cv2.seamlessClone requires.")
