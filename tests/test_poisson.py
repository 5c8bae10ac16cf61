"""The batched seamless clone against cv2.seamlessClone, on the CPU twin always and on CUDA when
present.

Tolerances are what was measured on 48+48 random cases (sides 8..180 px, RGB and gray, NORMAL and
MIXED, rectangle, blob and fractional masks, regions against the border), over the pixels either
side changed: every pixel within 1 grey level for both paths (no pixel ever differed by more);
the DST path equal on 99.993 % (OpenCV's float32 FFT puts values a hair either side of an
integer, and truncation turns that into 1 grey level), SOR equal on 99.4-99.6 % (stopped at
3n + 10 sweeps). The bounds below leave a margin over those figures.
"""
import re

import cv2
import numpy as np
import pytest
import torch

from _support import agreement, clone_cases
from nsa_fast.blend.poisson import seamless_clone_batch
from nsa_fast.blend.solvers import SOLVERS
from nsa_fast.errors import InputError

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
EXACT_AT_LEAST = {"dst": 0.9995, "sor": 0.99, "jacobi": 0.99}


def solver_for(name, device):
    if device == "cuda" and name != "dst":
        from nsa_fast.blend.cuda import CUDA_SOLVERS

        return CUDA_SOLVERS[name]
    return SOLVERS[name]


def run(cases, device, solver, **kw):
    t = {k: torch.from_numpy(cases[k]).to(device) for k in ("src", "dst", "mask")}
    out = seamless_clone_batch(t["src"], t["dst"], t["mask"], cases["centers"], cases["modes"],
                               sizes=cases["sizes"], solver=solver, **kw)
    return out.cpu().numpy()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("solver", ["dst", "sor"])
@pytest.mark.parametrize("channels", [3, 1])
def test_matches_opencv(device, solver, channels):
    cases, ref = clone_cases(np.random.default_rng(channels), 32, channels=channels)
    out = run(cases, device, solver_for(solver, device))
    within1, worst, n = agreement(out, ref, cases["dst"])
    assert n > 100_000 and worst <= 1 and within1 == 1.0
    changed = (out != cases["dst"]) | (ref != cases["dst"])
    exact = (out == ref)[changed].mean()
    assert exact >= EXACT_AT_LEAST[solver], f"{solver}: equal on {exact:.5f} of changed pixels"
    untouched = ~changed
    assert np.array_equal(out[untouched], cases["dst"][untouched])


@pytest.mark.parametrize("device", DEVICES)
def test_jacobi_matches_opencv_on_small_regions(device):
    # Jacobi needs ~2.5 n^2 sweeps: small regions only on the CPU.
    cases, ref = clone_cases(np.random.default_rng(7), 12, side=(8, 24))
    out = run(cases, device, solver_for("jacobi", device))
    within1, worst, _ = agreement(out, ref, cases["dst"])
    assert worst <= 1 and within1 == 1.0


def test_bucketing_does_not_change_the_result():
    cases, _ = clone_cases(np.random.default_rng(8), 20, side=(8, 90))
    a = run(cases, "cpu", SOLVERS["dst"], buckets=1)
    b = run(cases, "cpu", SOLVERS["dst"], buckets=7)
    np.testing.assert_array_equal(a, b)


def one(src, dst, mask, center, mode=cv2.NORMAL_CLONE):
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None]  # noqa: E731
    return seamless_clone_batch(t(src), t(dst), t(mask), np.array([center]), mode)[0].numpy()


def test_degenerate_masks():
    rng = np.random.default_rng(9)
    dst = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    src = rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)
    empty = np.zeros((20, 20), np.uint8)
    np.testing.assert_array_equal(one(src, dst, empty, (30, 30)), dst)  # OpenCV returns dst too
    for width in (1, 2):  # OpenCV fails on regions thinner than 3 pixels; so do we, but clearly
        line = np.zeros((20, 20), np.uint8)
        line[5:15, 9:9 + width] = 255
        with pytest.raises(cv2.error):
            cv2.seamlessClone(src, dst, line.copy(), (30, 30), cv2.NORMAL_CLONE)
        with pytest.raises(InputError, match=f"region is 10x{width} pixels"):
            one(src, dst, line, (30, 30))
    thin = np.zeros((20, 20), np.uint8)
    thin[5:15, 9:12] = 255  # 3 wide: one column of unknowns
    ours = one(src, dst, thin, (30, 30))
    ref = cv2.seamlessClone(src, dst, thin.copy(), (30, 30), cv2.NORMAL_CLONE)
    assert np.abs(ours.astype(int) - ref).max() <= 1
    full = np.full((20, 20), 255, np.uint8)  # covers the whole source: the frame is zeroed
    ours = one(src, dst, full, (30, 30), cv2.MIXED_CLONE)
    ref = cv2.seamlessClone(src, dst, full.copy(), (30, 30), cv2.MIXED_CLONE)
    assert np.abs(ours.astype(int) - ref).max() <= 1
    flat_s, flat_d = np.full((20, 20, 3), 77, np.uint8), np.full((64, 64, 3), 200, np.uint8)
    out = one(flat_s, flat_d, full, (30, 30))
    ref = cv2.seamlessClone(flat_s, flat_d, full.copy(), (30, 30), cv2.NORMAL_CLONE)
    assert np.isfinite(out).all() and np.abs(out.astype(int) - ref).max() <= 1


def test_region_outside_the_destination_is_refused_like_opencv():
    src = np.zeros((20, 20, 3), np.uint8)
    dst = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((20, 20), np.uint8)
    mask[1:-1, 1:-1] = 255
    with pytest.raises(cv2.error):
        cv2.seamlessClone(src, dst, mask.copy(), (5, 30), cv2.NORMAL_CLONE)
    with pytest.raises(InputError, match="does not fit in the 64x64 destination"):
        one(src, dst, mask, (5, 30))


@pytest.mark.parametrize("bad,match", [
    (dict(src=np.zeros((1, 8, 8, 3), np.float32)), "src: expected a uint8 tensor"),
    (dict(mask=np.zeros((1, 9, 8), np.uint8)), "must have the source's height and width"),
    (dict(dst=np.zeros((1, 32, 32, 1), np.uint8)), "channels must agree"),
    (dict(mode=5), "mode must be cv2.NORMAL_CLONE"),
])
def test_bad_inputs(bad, match):
    args = dict(src=np.zeros((1, 8, 8, 3), np.uint8), dst=np.zeros((1, 32, 32, 3), np.uint8),
                mask=np.full((1, 8, 8), 255, np.uint8), mode=cv2.NORMAL_CLONE)
    args.update(bad)
    mode = args.pop("mode")
    t = {k: torch.from_numpy(v) for k, v in args.items()}
    with pytest.raises(InputError, match=match):
        seamless_clone_batch(t["src"], t["dst"], t["mask"], np.array([[16, 16]]), mode)


@pytest.mark.cuda
def test_cuda_inputs_stay_on_the_device(monkeypatch):
    cases, _ = clone_cases(np.random.default_rng(10), 4, side=(8, 40))
    t = {k: torch.from_numpy(cases[k]).cuda() for k in ("src", "dst", "mask")}
    moved = []
    real_cpu, real_to = torch.Tensor.cpu, torch.Tensor.to

    def cpu(self, *a, **k):
        moved.append(self.numel())
        return real_cpu(self, *a, **k)

    def to(self, *a, **k):
        if self.is_cuda and any(str(x).startswith("cpu") for x in (*a, *k.values())):
            moved.append(self.numel())
        return real_to(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    monkeypatch.setattr(torch.Tensor, "to", to)
    before = t["dst"].clone()
    out = seamless_clone_batch(t["src"], t["dst"], t["mask"], cases["centers"], cases["modes"],
                               sizes=cases["sizes"])
    assert out.is_cuda and out.device == t["dst"].device
    assert torch.equal(t["dst"], before)  # the input is not modified
    # only which rows and columns hold mask pixels come to the host, in one copy, never image data
    B, Hs, Ws = t["mask"].shape
    assert moved == [B * (Hs + Ws)]
    moved.clear()
    box = np.zeros((4, 4), np.int64)  # with host ROIs from the caller, nothing moves at all
    for i in range(4):
        ys, xs = np.nonzero(cases["mask"][i])
        box[i] = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    seamless_clone_batch(t["src"], t["dst"], t["mask"], cases["centers"], cases["modes"],
                         sizes=cases["sizes"], roi_src=box)
    assert moved == []


def test_the_gpu_direct_solve_leaves_the_process_wide_matmul_settings_alone():
    # The prefetch thread solves while the main thread trains: a solver that flipped TF32 for the
    # process would race with it, and reading the legacy flag fails once the new API is used.
    from fake_device import DEVICE, FakeDevice

    saved = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"  # the API torch recommends now
    try:
        cases, ref = clone_cases(np.random.default_rng(11), 6, side=(8, 60))
        with FakeDevice():
            t = {k: torch.from_numpy(cases[k]).to(DEVICE) for k in ("src", "dst", "mask")}
            out = seamless_clone_batch(t["src"], t["dst"], t["mask"], cases["centers"], cases["modes"],
                                       sizes=cases["sizes"], solver=SOLVERS["dst"])
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    finally:
        torch.backends.cuda.matmul.fp32_precision = saved
    within1, worst, _ = agreement(out.elem.numpy(), ref, cases["dst"])
    assert worst <= 1 and within1 == 1.0


def test_modes_are_opencvs_flags_or_names():
    # the trap: this package's own codes put NORMAL at 2, which is cv2.MIXED_CLONE
    cases, ref = clone_cases(np.random.default_rng(12), 6, side=(20, 60))
    t = {k: torch.from_numpy(cases[k]) for k in ("src", "dst", "mask")}
    names = np.array(["normal" if m == cv2.NORMAL_CLONE else "mixed" for m in cases["modes"]])
    by_flag = seamless_clone_batch(t["src"], t["dst"], t["mask"], cases["centers"], cases["modes"], sizes=cases["sizes"])
    by_name = seamless_clone_batch(t["src"], t["dst"], t["mask"], cases["centers"], names, sizes=cases["sizes"])
    assert torch.equal(by_flag, by_name)
    assert np.abs(by_flag.numpy().astype(int) - ref).max() <= 1  # what cv2.seamlessClone does with those flags
    assert {cv2.NORMAL_CLONE, cv2.MIXED_CLONE} <= set(cases["modes"].tolist())
    mixed_list = ["normal" if i % 2 else cv2.MIXED_CLONE for i in range(6)]  # flags and names together
    both = seamless_clone_batch(t["src"], t["dst"], t["mask"], cases["centers"], mixed_list, sizes=cases["sizes"])
    single = [seamless_clone_batch(t["src"][i:i + 1], t["dst"][i:i + 1], t["mask"][i:i + 1], cases["centers"][i:i + 1],
                                   m, sizes=cases["sizes"][i:i + 1]) for i, m in enumerate(mixed_list)]
    assert torch.equal(both, torch.cat(single))
    for bad in (cv2.MONOCHROME_TRANSFER, 0, "poisson", [cv2.NORMAL_CLONE] * 2, 1.0, 2.0, True,
                torch.tensor(1), None, [cv2.NORMAL_CLONE, "poisson"] * 3):
        with pytest.raises(InputError, match="mode must be cv2.NORMAL_CLONE"):
            seamless_clone_batch(t["src"], t["dst"], t["mask"], cases["centers"], bad, sizes=cases["sizes"])


# --------------------------------------------------------------------------------------------
# non-square sources, ROIs given by the caller, masks only on the zeroed frame, input messages
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wide", [True, False])
def test_non_square_source_tensors_match_opencv(wide):
    rng = np.random.default_rng(13)
    dst = rng.integers(0, 256, (2, 80, 80, 3)).astype(np.uint8)
    src = rng.integers(0, 256, (2, 20, 34, 3)).astype(np.uint8)
    mask = np.zeros((2, 20, 34), np.uint8)
    mask[0, 3:15, 4:30] = 255
    mask[1, 6:18, 20:33] = 255
    if not wide:
        src, mask = np.ascontiguousarray(src.transpose(0, 2, 1, 3)), np.ascontiguousarray(mask.transpose(0, 2, 1))
    centers = np.array([[40, 30], [25, 40]])
    out = seamless_clone_batch(torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(mask), centers,
                               cv2.NORMAL_CLONE).numpy()
    for i in range(2):
        ref = cv2.seamlessClone(src[i], dst[i], mask[i].copy(), tuple(int(c) for c in centers[i]), cv2.NORMAL_CLONE)
        assert np.abs(out[i].astype(int) - ref).max() <= 1


def test_a_mask_only_on_the_frame_clones_nothing():
    rng = np.random.default_rng(14)
    dst = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    src = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)
    for rows, cols in ((slice(2, 12), 0), (slice(3, 9), -1), (0, slice(2, 20)), (-1, slice(5, 9))):
        frame = np.zeros((20, 24), np.uint8)
        frame[rows, cols] = 255          # OpenCV zeroes the mask's 1-pixel frame first
        np.testing.assert_array_equal(one(src, dst, frame, (30, 30)), dst)


def test_rois_from_the_caller_are_used_as_given():
    """With roi_src the mask is only read inside those boxes: the same as a mask zeroed outside them."""
    rng = np.random.default_rng(15)
    dst = rng.integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    src = rng.integers(0, 256, (2, 24, 24, 3)).astype(np.uint8)
    mask = np.zeros((2, 24, 24), np.uint8)
    mask[:, 2:22, 2:22] = 255
    box = np.array([[5, 15, 6, 18], [4, 20, 3, 12]])
    cropped = np.zeros_like(mask)
    for i, (y0, y1, x0, x1) in enumerate(box):
        cropped[i, y0:y1, x0:x1] = mask[i, y0:y1, x0:x1]
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    centers = np.array([[30, 30], [33, 28]])
    given = seamless_clone_batch(t(src), t(dst), t(mask), centers, "normal", roi_src=box)
    read = seamless_clone_batch(t(src), t(dst), t(cropped), centers, "normal")
    assert torch.equal(given, read)
    assert not torch.equal(given, seamless_clone_batch(t(src), t(dst), t(mask), centers, "normal"))
    # a list of host ints is accepted too
    assert torch.equal(given, seamless_clone_batch(t(src), t(dst), t(mask), centers, "normal", roi_src=box.tolist()))


@pytest.mark.parametrize("change, pattern", [
    (dict(src=np.zeros((1, 8, 8, 3), np.uint8)), r"^src: expected a uint8 tensor of rank 4, got ndarray\.$"),
    (dict(src=torch.zeros((1, 8, 8, 3))), r"^src: expected a uint8 tensor of rank 4, got torch\.float32 \(1, 8, 8, 3\)\.$"),
    (dict(dst=torch.zeros((32, 32, 3), dtype=torch.uint8)), r"^dst: expected a uint8 tensor of rank 4, got torch\.uint8 \(32, 32, 3\)\.$"),
    (dict(mask=torch.zeros((1, 8, 8, 1), dtype=torch.uint8)), r"^mask: expected a uint8 tensor of rank 3, got torch\.uint8 \(1, 8, 8, 1\)\.$"),
    (dict(dst=torch.zeros((1, 32, 32, 3), dtype=torch.uint8, device="meta")),
     r"^src, dst and mask must be on one device, got cpu, meta, cpu\.$"),
    (dict(mask=torch.zeros((1, 8, 8), dtype=torch.uint8, device="meta")),
     r"^src, dst and mask must be on one device, got cpu, cpu, meta\.$"),
    (dict(dst=torch.zeros((2, 32, 32, 3), dtype=torch.uint8)),
     r"^batch sizes and channels must agree: src \(1, 8, 8, 3\), dst \(2, 32, 32, 3\), mask \(1, 8, 8\)\.$"),
    (dict(mask=torch.zeros((2, 8, 8), dtype=torch.uint8)), r"^batch sizes and channels must agree: .* mask \(2, 8, 8\)\.$"),
    (dict(mask=torch.zeros((1, 8, 9), dtype=torch.uint8)),
     r"^mask \(8, 9\) must have the source's height and width \(8, 8\), as cv2\.seamlessClone requires\.$"),
    (dict(sizes=[[9, 8]]), r"^sizes must lie within the source tensor's \(8, 8\), got \[9, 8\]\.\.\[9, 8\]\.$"),
    (dict(sizes=[[4, 0]]), r"^sizes must lie within the source tensor's \(8, 8\), got \[4, 0\]\.\.\[4, 0\]\.$"),
    (dict(src=torch.zeros((1, 8, 12, 3), dtype=torch.uint8), mask=torch.zeros((1, 8, 12), dtype=torch.uint8),
          sizes=[[10, 12]]), r"^sizes must lie within the source tensor's \(8, 12\), got \[10, 12\]\.\.\[10, 12\]\.$"),
    (dict(mode=5), r"^mode must be .*, one or one per item \(1\); got 5\.$"),
    (dict(mode=[7, 8, 9, 10, 11]), r"^mode must be .*, one or one per item \(1\); got 7, 8, 9\.$"),
    (dict(mode=["normal", "mixed"]), r"^mode must be .*, one or one per item \(1\); got 2 modes\.$"),
])
def test_input_messages(change, pattern):
    args = dict(src=torch.zeros((1, 8, 8, 3), dtype=torch.uint8), dst=torch.zeros((1, 32, 32, 3), dtype=torch.uint8),
                mask=torch.full((1, 8, 8), 255, dtype=torch.uint8))
    change = dict(change)
    sizes = change.pop("sizes", None)
    mode = change.pop("mode", "normal")
    args.update(change)
    with pytest.raises(InputError, match=pattern):
        seamless_clone_batch(args["src"], args["dst"], args["mask"], np.array([[16, 16]]), mode, sizes=sizes)


def test_items_of_one_row_or_column_are_accepted_and_clone_nothing():
    rng = np.random.default_rng(16)
    src = torch.from_numpy(rng.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8))
    dst = torch.from_numpy(rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8))
    mask = torch.full((2, 8, 8), 255, dtype=torch.uint8)
    out = seamless_clone_batch(src, dst, mask, np.array([[16, 16], [10, 12]]), "normal", sizes=[[1, 8], [8, 1]])
    assert torch.equal(out, dst)


def test_the_given_solver_is_used():
    cases, _ = clone_cases(np.random.default_rng(17), 3, side=(12, 30))
    t = {k: torch.from_numpy(cases[k]) for k in ("src", "dst", "mask")}
    calls = []

    def no_sweep(rhs, guess, sizes):          # keeps the first guess: the destination's interior
        calls.append(rhs.shape)
        return SOLVERS["jacobi"](rhs, guess, sizes, iterations=0)

    out = seamless_clone_batch(t["src"], t["dst"], t["mask"], cases["centers"], cases["modes"],
                               sizes=cases["sizes"], solver=no_sweep, buckets=1)
    assert len(calls) == 1
    # the guess is the destination itself: nothing changes except by the clamp-and-truncate round trip
    np.testing.assert_array_equal(out.numpy(), cases["dst"])


# -- OpenCV's placement and refusals, on the layout alone (docs/mutation-batch3.md) -------------

def _layout(rois, centers, hw=(40, 50), modes=None):
    from nsa_fast.blend.poisson import layout_from_rois

    rois = np.asarray(rois, np.int64).reshape(-1, 4)
    modes = [2] * len(rois) if modes is None else modes
    return layout_from_rois(rois, np.asarray(centers, np.int64).reshape(-1, 2), hw, modes)


def test_the_destination_roi_is_centred_as_opencv_does():
    # (x, y) centre; top-left at (cx - w // 2, cy - h // 2); an empty item keeps a zero box
    lay = _layout([[1, 6, 2, 9], [0, 0, 0, 0], [1, 4, 1, 4]], [[10, 20], [999, 999], [1, 1]])
    assert lay.roi_dst.tolist() == [[18, 23, 7, 14], [0, 0, 0, 0], [0, 3, 0, 3]]
    assert (lay.n_rows, lay.n_cols) == (5, 7) and lay.items.tolist() == [0, 1, 2]
    assert lay.modes.tolist() == [2, 2, 2] and lay.modes.dtype == np.int64
    small = _layout([[1, 4, 1, 4]], [[5, 5]])
    assert (small.n_rows, small.n_cols) == (3, 3)
    none = _layout(np.zeros((0, 4)), np.zeros((0, 2)), modes=[])
    assert (none.n_rows, none.n_cols) == (3, 3) and none.roi_dst.shape == (0, 4)


@pytest.mark.parametrize("roi", [[0, 1, 0, 9], [0, 2, 0, 9], [0, 9, 0, 2], [0, 2, 0, 2]])
def test_regions_thinner_than_3_are_refused_by_name(roi):
    h, w = roi[1] - roi[0], roi[3] - roi[2]
    with pytest.raises(InputError, match=rf"^item 1: the mask's region is {h}x{w} pixels after its 1-pixel frame is "
                                         r"zeroed; cv2\.seamlessClone needs at least 3x3 \(it fails on thinner masks\)\. "
                                         r"Widen the mask\.$"):
        _layout([[0, 3, 0, 3], roi], [[20, 20], [20, 20]])


@pytest.mark.parametrize("center, fits", [
    ((3, 2), True),      # top-left corner at (0, 0)
    ((2, 2), False),     # one column left of the image
    ((3, 1), False),     # one row above
    ((46, 37), True),    # bottom-right corner at (39, 49)
    ((47, 37), False),   # one column past the right edge only
    ((46, 38), False),   # one row past the bottom only
])
def test_a_region_must_lie_inside_the_destination(center, fits):
    roi = [[0, 5, 0, 7]]  # 5 x 7
    if fits:
        assert _layout(roi, [center]).roi_dst.tolist()[0][::2] == [center[1] - 2, center[0] - 3]
        return
    y0, x0 = center[1] - 2, center[0] - 3
    with pytest.raises(InputError, match=re.escape(
            f"item 0: the clone region (5x7 at rows {y0}..{y0 + 4}, columns {x0}..{x0 + 6}) does not fit in the "
            "40x50 destination; cv2.seamlessClone refuses this too. Move the centre inwards or shrink the mask.")):
        _layout(roi, [center])


@pytest.mark.parametrize("mode", [cv2.NORMAL_CLONE, cv2.MIXED_CLONE])
def test_regions_against_every_edge_in_a_batch_of_mixed_sizes_match_opencv(mode):
    # full masks (their frame is nonzero in the tensor, zeroed by the rule) of four sizes in one
    # padded batch, each region against two edges of its destination. In one group (buckets=1,
    # as on a GPU) the padded grid of the smaller items reaches past their region and past the
    # image's last row and column; the CPU's size groups are checked too
    rng = np.random.default_rng(21)
    sizes = [(24, 30), (14, 18), (18, 12), (10, 16)]
    H = W = 64
    src = np.zeros((4, 24, 30, 3), np.uint8)
    mask = np.zeros((4, 24, 30), np.uint8)
    # unblurred noise: neighbouring rows and columns differ, so reading a boundary one pixel off shows
    dst = rng.integers(0, 256, (4, H, W, 3)).astype(np.uint8)
    centers, refs = [], []
    for i, (h, w) in enumerate(sizes):
        src[i, :h, :w] = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 1.5)
        mask[i, :h, :w] = 255
        hr, wr = h - 2, w - 2  # the region inside the zeroed frame
        top, left = i in (0, 2), i in (0, 3)
        cy = hr // 2 if top else H - hr + hr // 2
        cx = wr // 2 if left else W - wr + wr // 2
        centers.append((cx, cy))
        refs.append(cv2.seamlessClone(src[i, :h, :w].copy(), dst[i].copy(), mask[i, :h, :w].copy(), (cx, cy), mode))
    t = {k: torch.from_numpy(v) for k, v in (("src", src), ("dst", dst), ("mask", mask))}
    for buckets in (1, None):
        out = seamless_clone_batch(t["src"], t["dst"], t["mask"], np.array(centers), mode, sizes=np.array(sizes),
                                   buckets=buckets).numpy()
        for i in range(4):
            assert np.abs(out[i].astype(int) - refs[i]).max() <= 1, (buckets, i)
            assert (out[i] != dst[i]).any()


def test_split_layout_groups_items_of_similar_size_in_a_stable_order():
    from nsa_fast.blend.poisson import split_layout

    side = np.array([5, 3, 5, 3, 9, 5, 3, 9, 9, 5, 3, 5] * 5)  # 60 items, many equal sizes
    rois = np.stack([np.ones_like(side), 1 + side, np.ones_like(side), 1 + side], 1)
    lay = _layout(rois, np.tile([[20, 20]], (len(side), 1)))
    parts = split_layout(lay, 3)
    assert [len(p.items) for p in parts] == [20, 20, 20]
    want = np.argsort(side, kind="stable")  # smallest first; equal sizes keep their order
    assert np.concatenate([p.items for p in parts]).tolist() == want.tolist()
    assert [(p.n_rows, p.n_cols) for p in parts] == [(3, 3), (5, 5), (9, 9)]
    for p in parts:
        assert np.array_equal(p.roi_dst, lay.roi_dst[p.items]) and np.array_equal(p.modes, lay.modes[p.items])
    # one group, in the given order, when one is asked for or there is one item
    assert [p.items.tolist() for p in split_layout(lay, 1)] == [list(range(60))]
    assert [p.items.tolist() for p in split_layout(lay.select(np.array([7])), 4)] == [[7]]
    assert len(split_layout(lay.select(np.array([0, 4])), 2)) == 2
    assert split_layout(lay, 100)[0].items.tolist() == [want[0]]  # at most one group an item


def test_a_selection_is_padded_to_its_own_largest_roi():
    # ROIs away from the origin: the size is end - start, at least 3
    lay = _layout([[10, 17, 20, 31], [2, 6, 3, 7], [5, 8, 6, 9]], [[25, 25]] * 3)
    sub = lay.select(np.array([1, 2]))
    assert (sub.n_rows, sub.n_cols) == (4, 4) and sub.items.tolist() == [1, 2]
    assert (lay.select(np.array([2])).n_rows, lay.select(np.array([2])).n_cols) == (3, 3)
    none = lay.select(np.array([], np.int64))
    assert (none.n_rows, none.n_cols) == (3, 3) and len(none.items) == 0


def test_a_refused_mode_is_shown_as_the_user_wrote_it():
    from nsa_fast.blend.poisson import clone_modes

    with pytest.raises(InputError, match=r"one or one per item \(2\); got 0, 'poisson'\.$"):
        clone_modes([np.int64(0), np.str_("poisson")], 2)
    with pytest.raises(InputError, match=r"got 7, 8\.$"):
        clone_modes(np.array([7, 8]), 2)
