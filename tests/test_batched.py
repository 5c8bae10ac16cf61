"""The batched executor (whole synthetic batch on one device) against the OpenCV executor."""
import cv2
import numpy as np
import pytest
import torch

from _support import objects_on_background
from nsa_fast.blend.batched import BatchedExecutor, resize_patches
from nsa_fast.blend.opencv import execute_plan
from nsa_fast.presets import get_preset
from nsa_fast.objects import object_mask
from nsa_fast.sampler import get_task, sample_plan

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def test_resize_is_bit_exact_with_opencv():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 100, 120, 3)).astype(np.uint8)
    boxes, sizes, refs = [], [], []
    for i in range(60):  # shrinking, enlarging, one-pixel sources, unchanged sizes
        y0, x0 = rng.integers(0, 60, size=2)
        h, w = rng.integers(1, 40, size=2)
        H, W = (h, w) if i % 5 == 0 else rng.integers(1, 90, size=2)
        boxes.append((y0, y0 + h, x0, x0 + w))
        sizes.append((H, W))
        refs.append(cv2.resize(img[i % 3, y0:y0 + h, x0:x0 + w], (int(W), int(H)), interpolation=cv2.INTER_LINEAR))
    out = resize_patches(torch.from_numpy(img), torch.arange(60) % 3, np.array(boxes), np.array(sizes), 90, 90).numpy()
    for i, (H, W) in enumerate(sizes):
        np.testing.assert_array_equal(out[i, :H, :W], refs[i].reshape(H, W, 3))


def test_object_masks_on_the_device_equal_the_cpu_ones():
    imgs = objects_on_background(4)
    got = object_mask(torch.from_numpy(np.stack(imgs)), (200, 60)).numpy()
    for g, im in zip(got, imgs):
        np.testing.assert_array_equal(g, object_mask(im, (200, 60)))


CASES = [("nsa", "bottle", "logistic"), ("nsa", "carpet", "intensity"), ("nsa", "screw", "binary"),
         ("cutpaste", "hazelnut", "binary"), ("fpi", "pill", "continuous"),
         ("fpi-poisson", "wood", "continuous"), ("nsa-swap", "zipper", "logistic")]


def run_both(task, preset_name, label, device, channels=3, B=12, seed=0):
    preset = get_preset(preset_name)
    imgs = objects_on_background(B + 3, seed=seed)
    if channels == 1:
        imgs = [im.mean(axis=2, keepdims=True).astype(np.uint8) for im in imgs]
    dst = np.stack(imgs[:B])
    src = dst.copy() if task == "cutpaste" else np.stack(imgs[3:B + 3])
    so = [object_mask(s, preset.background) for s in src]
    do = [object_mask(d, preset.background) for d in dst]
    rng = np.random.default_rng(seed)
    plans = [sample_plan(dst.shape[1:3], preset, get_task(task), rng, so[i], do[i]) for i in range(B)]
    ref = [execute_plan(dst[i], src[i], plans[i], label, logistic=preset.logistic, src_obj=so[i], dst_obj=do[i])
           for i in range(B)]
    t = lambda a: None if a[0] is None else torch.from_numpy(np.stack(a)).to(device)  # noqa: E731
    out = BatchedExecutor()(
        torch.from_numpy(dst).to(device), torch.from_numpy(src).to(device), plans, label,
        logistic=preset.logistic, src_obj=t(so), dst_obj=t(do), n_max=preset.n_max)
    return plans, ref, out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("task,preset_name,label", CASES)
def test_batched_labels_equal_the_opencv_executor(task, preset_name, label, device):
    plans, ref, out = run_both(task, preset_name, label, device)
    labels, images = out.labels.cpu().numpy(), out.images.cpu().numpy()
    want_l = np.stack([r.label for r in ref])
    want_i = np.stack([r.image for r in ref])
    # measured: labels equal on >= 99.988 % of the pixels either executor labelled (the rest are
    # a Poisson pixel one grey level apart), images within 1 grey level everywhere. Counted over
    # labelled pixels: over all pixels the empty background would hide dozens of wrong ones.
    labelled = (labels > 0) | (want_l > 0)
    assert labelled.sum() > 5000 and (labels == want_l)[labelled].mean() >= 0.9995
    assert np.abs(images.astype(int) - want_i).max() <= 1
    assert sum(p.n_patches for p in plans) > 0 and want_l.any()
    boxes = out.boxes.cpu().numpy()
    for i, p in enumerate(plans):
        np.testing.assert_array_equal(boxes[i, :p.n_patches], p.dst_box)
        assert (boxes[i, p.n_patches:] == -1).all()


def test_batched_grayscale():
    plans, ref, out = run_both("nsa", "chest_xray", "logistic", "cpu", channels=1)
    assert out.images.shape[-1] == 1
    assert (out.labels.numpy() == np.stack([r.label for r in ref])).mean() >= 0.9999


def test_empty_plans_leave_the_images_alone():
    imgs = np.stack(objects_on_background(2))
    empty = np.zeros((224, 224), bool)
    plans = [sample_plan((224, 224), get_preset("bottle"), get_task("nsa"), np.random.default_rng(0), empty, empty)
             for _ in range(2)]
    out = BatchedExecutor()(torch.from_numpy(imgs), torch.from_numpy(imgs), plans, "logistic")
    assert torch.equal(out.images, torch.from_numpy(imgs)) and not out.labels.any()


@pytest.mark.cuda
@pytest.mark.parametrize("task,preset_name,label", CASES[:3])
def test_cuda_batch_equals_cpu_twin(task, preset_name, label):
    _, _, cpu = run_both(task, preset_name, label, "cpu")
    _, _, gpu = run_both(task, preset_name, label, "cuda")
    assert gpu.images.is_cuda and gpu.labels.is_cuda
    # same solver formulas; cuBLAS and CPU matmuls round differently, so a pixel may flip by 1
    assert np.abs(gpu.images.cpu().numpy().astype(int) - cpu.images.numpy()).max() <= 1
    assert (gpu.labels.cpu().numpy() == cpu.labels.numpy()).mean() >= 0.9999


# -- added by mutation testing (docs/mutation-batch2.md) ------------------------------------

def test_resize_is_bit_exact_with_opencv_for_every_size_pair_up_to_48():
    """Each (source, target) length pair 1..48 along rows and along columns, against cv2.resize."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (1, 64, 64, 3)).astype(np.uint8)
    for axis in (0, 1):
        boxes, sizes, refs = [], [], []
        for n_in in range(1, 49):
            for n_out in range(1, 49):
                h, w, H, W = (n_in, 3, n_out, 3) if axis == 0 else (3, n_in, 3, n_out)
                boxes.append((5, 5 + h, 7, 7 + w))
                sizes.append((H, W))
                refs.append(cv2.resize(img[0, 5:5 + h, 7:7 + w], (W, H), interpolation=cv2.INTER_LINEAR).reshape(H, W, 3))
        out = resize_patches(torch.from_numpy(img), torch.zeros(len(boxes), dtype=torch.int64), np.array(boxes),
                             np.array(sizes), 48 if axis == 0 else 3, 3 if axis == 0 else 48).numpy()
        for o, (H, W), ref in zip(out, sizes, refs):
            np.testing.assert_array_equal(o[:H, :W], ref)


def _paste_plans(box=(10, 40, 12, 42), mode=None, n=1):
    from nsa_fast.sampler import PASTE, Plan, Stats

    mode = PASTE if mode is None else mode
    return [Plan(src_box=np.array([box], np.int32), dst_box=np.array([box], np.int32),
                 mode=np.array([mode], np.int8), factor=0.5, mask_value=255, stats=Stats(),
                 half_draws=np.zeros((1, 2)), scale_draws=np.full(1, np.nan)) for _ in range(n)]


def test_the_batched_executor_labels_with_the_label_tol_given():
    from nsa_fast.labels import Label

    dst = torch.full((2, 64, 64, 3), 100, dtype=torch.uint8)
    src = torch.full((2, 64, 64, 3), 102, dtype=torch.uint8)  # a change of 2 grey levels
    plans = _paste_plans(n=2)
    out = BatchedExecutor()(dst, src, plans, "binary", label_tol=1)
    on = out.labels
    assert (on.sum((1, 2)) == 30 * 30 - 4 * 3).all()
    assert out.boxes.dtype == torch.int32 and out.boxes.shape == (2, 1, 4) and out.boxes[:, 0].tolist() == [[10, 40, 12, 42]] * 2  # one round
    assert not BatchedExecutor()(dst, src, plans, "binary", label_tol=2).labels.any()
    assert BatchedExecutor()(dst, src, plans, Label.of("binary", tol=2), label_tol=1).labels.sum() == on.sum()


def test_the_batched_executor_refuses_each_bad_input_alone():
    from nsa_fast.errors import InputError

    ok = torch.zeros((2, 64, 64, 3), dtype=torch.uint8)
    plans = _paste_plans(n=2)
    bad = [(ok, torch.zeros((2, 64, 48, 3), dtype=torch.uint8), plans),   # shapes differ (both uint8, 4-D)
           (ok.float(), ok.float(), plans),                                 # not uint8
           (ok[0], ok[0], _paste_plans(n=64)),                              # 3-D, as many plans as rows
           (ok, ok, plans[:1])]                                             # one plan for two images
    for dst, src, ps in bad:
        with pytest.raises(InputError, match="expected dst and src uint8"):
            BatchedExecutor()(dst, src, ps, "binary")


def test_the_batched_executor_calls_the_solver_and_disk_median_it_is_given():
    from nsa_fast.blend.solvers import dst_solve
    from nsa_fast.median import disk_median
    from nsa_fast.sampler import NORMAL

    calls = []

    def solver(*a, **k):
        calls.append("solver")
        return dst_solve(*a, **k)

    def median(x):
        calls.append(("median", tuple(x.shape)))
        return torch.from_numpy(np.stack([disk_median(m, 5) for m in x.numpy()]))

    rng = np.random.default_rng(4)
    dst = torch.from_numpy(rng.integers(0, 256, (2, 64, 64, 3)).astype(np.uint8))
    src = torch.from_numpy(rng.integers(0, 256, (2, 64, 64, 3)).astype(np.uint8))
    plans = _paste_plans((8, 48, 20, 36), NORMAL, n=2)  # a tall Poisson patch: 40 rows, 16 columns
    out = BatchedExecutor(solver, median)(dst, src, plans, "logistic")
    assert "solver" in calls and calls[-1] == ("median", (2, 64, 64))
    default = BatchedExecutor()(dst, src, plans, "logistic")
    assert torch.equal(out.images, default.images) and torch.equal(out.labels, default.labels)
    for i in range(2):  # the whole 40 x 16 clone region, as OpenCV clones it
        ref = execute_plan(dst[i].numpy(), src[i].numpy(), plans[i], "logistic")
        assert np.abs(out.images[i].numpy().astype(int) - ref.image).max() <= 1
        assert (out.labels[i].numpy() == ref.label).mean() > 0.999


def test_the_public_helpers_take_host_boxes_for_device_images():
    """resize_patches and place copy host boxes and sizes to the images' device (tests/fake_device.py
    refuses host data mixed into device ops), and the default disk median returns to that device."""
    from fake_device import DEVICE, FakeDevice, host_data
    from nsa_fast.blend.batched import place

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    boxes, sizes = np.array([[0, 10, 2, 14], [5, 25, 5, 9]]), np.array([[12, 8], [6, 6]])
    want = resize_patches(torch.from_numpy(img), torch.tensor([0, 1]), boxes, sizes, 12, 8)
    canvas_want, mask_want = place(want, np.array([[3, 15, 4, 12], [20, 26, 0, 6]]), 32, 32)
    dst = torch.from_numpy(img)
    plans = _paste_plans((4, 20, 6, 30), n=2)
    lab_want = BatchedExecutor()(dst, dst.flip(0), plans, "logistic").labels
    with FakeDevice():
        dev_img = torch.from_numpy(img).to(DEVICE)
        got = resize_patches(dev_img, torch.tensor([0, 1]).to(DEVICE), boxes, sizes, 12, 8)
        canvas, mask = place(got, np.array([[3, 15, 4, 12], [20, 26, 0, 6]]), 32, 32)
        labels = BatchedExecutor()(dev_img, dev_img.flip(0), plans, "logistic").labels
        assert got.device == canvas.device == mask.device == labels.device == DEVICE
    assert torch.equal(host_data(got), want) and torch.equal(host_data(canvas), canvas_want)
    assert torch.equal(host_data(mask), mask_want) and torch.equal(host_data(labels), lab_want)


def test_without_a_given_median_cuda_maps_go_to_the_cuda_kernel(monkeypatch):
    # (the kernel itself runs through the stand-in CuPy in tests/test_standin_cupy.py)
    from nsa_fast.blend import cuda

    class OnGpu(torch.Tensor):
        @property
        def is_cuda(self):
            return True

    seen = []
    monkeypatch.setattr(cuda, "disk_median_cuda", lambda x: seen.append(x) or "median")
    x = torch.zeros(2, 5, 5, dtype=torch.int16).as_subclass(OnGpu)
    assert BatchedExecutor()._disk_median(x) == "median" and seen == [x]
    assert BatchedExecutor(disk_median=lambda m: "given")._disk_median(x) == "given"
