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
