"""Each blend operation is written once for numpy images and torch batches: both agree, and each
follows the authors' rule (the clone centre, the Poisson mask's zeroed frame, FPI's floor)."""
import numpy as np
import pytest
import torch

from nsa_fast.blend import ops


def test_clone_centre_puts_odd_widths_one_pixel_right_on_numpy_and_torch():
    boxes = np.array([[10, 20, 30, 40], [10, 21, 30, 41], [0, 5, 0, 7]])
    x, y = ops.clone_center(boxes)
    # the authors' centre: x = x1 - (x1 - x0) // 2, y = y0 + (y1 - y0) // 2
    assert x.tolist() == [35, 36, 4] and y.tolist() == [15, 15, 2]
    tx, ty = ops.clone_center(torch.from_numpy(boxes))
    assert tx.tolist() == x.tolist() and ty.tolist() == y.tolist()


def test_poisson_mask_is_the_rectangle_with_its_frame_zeroed_on_numpy_and_torch():
    hw, value = np.array([[5, 7], [3, 3], [8, 4]]), np.array([255, 9, 128])
    m = ops.poisson_mask(hw, value, 8, 9)
    assert m.dtype == np.uint8 and m.shape == (3, 8, 9)
    assert (m[0, 1:4, 1:6] == 255).all() and m[0].sum() == 255 * 3 * 5
    assert m[1, 1, 1] == 9 and m[1].sum() == 9
    assert (m[2, 1:7, 1:3] == 128).all() and m[2].sum() == 128 * 12
    t = ops.poisson_mask(torch.from_numpy(hw), torch.from_numpy(value).to(torch.uint8), 8, 9)
    assert t.dtype == torch.uint8 and np.array_equal(t.numpy(), m)


def test_paste_and_interpolate_agree_on_numpy_and_torch():
    rng = np.random.default_rng(0)
    before = rng.integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    patch = rng.integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    inside = rng.random((4, 16, 16)) < 0.6
    pasted = ops.paste(before, patch, inside)
    assert np.array_equal(pasted[inside], patch[inside]) and np.array_equal(pasted[~inside], before[~inside])
    assert np.array_equal(ops.paste(*map(torch.from_numpy, (before, patch, inside))).numpy(), pasted)
    fm = 0.37 * inside[..., None]
    mixed = ops.interpolate(before, patch, fm)
    want = np.floor(before * (1 - fm) + fm * patch + 1e-9)  # the convex mix, floored
    assert np.abs(mixed.astype(int) - want).max() <= 1 and np.array_equal(mixed[~inside], before[~inside])
    assert np.array_equal(ops.interpolate(torch.from_numpy(before), torch.from_numpy(patch),
                                          torch.from_numpy(fm)).numpy(), mixed)


@pytest.mark.parametrize("channels", [1, 3])
def test_seamless_clone_takes_the_sampler_codes_and_keeps_grey_images_grey(channels):
    import cv2

    rng = np.random.default_rng(1)
    dst = rng.integers(0, 256, (64, 64, channels)).astype(np.uint8)
    patch = rng.integers(0, 256, (20, 24, channels)).astype(np.uint8)
    mask = ops.poisson_mask(np.array([[20, 24]]), np.array([255]), 20, 24)[0]
    for code, flag in ops.CV_FLAGS.items():
        out = ops.seamless_clone(patch, dst, mask, (30, 30), code)
        assert out.shape == dst.shape
        pad = lambda a: np.concatenate([a] + [np.zeros_like(a[..., :1])] * (3 - channels), axis=2)  # noqa: E731
        want = cv2.seamlessClone(pad(patch), pad(dst), mask.copy(), (30, 30), flag)[..., :channels]
        assert np.array_equal(out, want)
    assert ops.CV_FLAGS == {2: cv2.NORMAL_CLONE, 3: cv2.MIXED_CLONE}


# -- added by mutation testing (docs/mutation-batch2.md) ------------------------------------

def test_interpolate_returns_bytes_computed_in_float64():
    """The authors' operation order in float64, floored to uint8: numpy with the float64 factor map
    the OpenCV executor passes, torch also with a float32 one (the batch's tensors go to float64)."""
    rng = np.random.default_rng(2)
    before = rng.integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    patch = rng.integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    fm = rng.uniform(0.05, 0.95, (4, 64, 64, 1)).astype(np.float32)
    f64, b64 = fm.astype(np.float64), before.astype(np.float64)
    want = np.floor(b64 - f64 * b64 + f64 * patch).astype(np.uint8)
    got = ops.interpolate(before, patch, f64)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    for f in (fm, f64):
        t = ops.interpolate(torch.from_numpy(before), torch.from_numpy(patch), torch.from_numpy(f))
        assert t.dtype == torch.uint8 and np.array_equal(t.numpy(), want)


def test_grey_seamless_clone_uses_the_mask_it_is_given():
    """A disc mask, not a rectangle: channel 0 of OpenCV's clone of the zero-padded images with
    that very mask (the authors' grayscale rule), and the caller's mask is left as it was."""
    import cv2

    rng = np.random.default_rng(3)
    dst = rng.integers(0, 256, (64, 64, 1)).astype(np.uint8)
    patch = rng.integers(0, 256, (24, 24, 1)).astype(np.uint8)
    yy, xx = np.mgrid[:24, :24]
    mask = (((yy - 11.5) ** 2 + (xx - 11.5) ** 2) < 8 ** 2).astype(np.uint8) * 255
    keep = mask.copy()
    pad = lambda a: np.concatenate([a, np.zeros_like(a), np.zeros_like(a)], axis=2)  # noqa: E731
    for code, flag in ops.CV_FLAGS.items():
        want = cv2.seamlessClone(pad(patch), pad(dst), mask.copy(), (32, 32), flag)[..., :1]
        assert np.array_equal(ops.seamless_clone(patch, dst, mask, (32, 32), code), want)
        assert np.array_equal(mask, keep)


def test_poisson_mask_is_uint8_on_the_device_of_its_sizes():
    from fake_device import DEVICE, FakeDevice, host_data

    hw, value = np.array([[5, 7], [3, 3]]), np.array([255, 9])
    want = ops.poisson_mask(hw, value, 6, 8)
    got = ops.poisson_mask(torch.from_numpy(hw), torch.from_numpy(value), 6, 8)  # int64 values
    assert got.dtype == torch.uint8 and np.array_equal(got.numpy(), want)
    with FakeDevice():
        dev = ops.poisson_mask(torch.from_numpy(hw).to(DEVICE), torch.from_numpy(value).to(DEVICE), 6, 8)
        assert dev.device == DEVICE and dev.dtype == torch.uint8
    assert np.array_equal(host_data(dev).numpy(), want)


def test_a_pointwise_operation_added_in_one_place_runs_through_both_executors(monkeypatch):
    """A toy operation (the patch's pixels halved where the region is set), registered here only
    under a new mode code: the OpenCV executor and the batched executor apply it alike."""
    import dataclasses

    from _support import objects_on_background
    from nsa_fast.blend.batched import BatchedExecutor
    from nsa_fast.blend.opencv import execute_plan
    from nsa_fast.presets import get_preset
    from nsa_fast.sampler import get_task, sample_plan

    toy = 9
    monkeypatch.setitem(ops.POINT_OPS, toy, lambda before, patch, region, factor: ops.paste(before, patch // 2, region))
    preset = get_preset("carpet")
    imgs = objects_on_background(8, size=224, seed=2)
    dst, src = np.stack(imgs[:4]), np.stack(imgs[4:])
    rng = np.random.default_rng(3)
    plans = [sample_plan((224, 224), preset, get_task("nsa-swap"), rng) for _ in range(4)]
    plans = [dataclasses.replace(p, mode=np.full(p.n_patches, toy, np.int8)) for p in plans]
    assert sum(p.n_patches for p in plans) >= 4
    ours = [execute_plan(dst[i], src[i], plans[i], "binary") for i in range(4)]
    batch = BatchedExecutor()(torch.from_numpy(dst), torch.from_numpy(src), plans, "binary")
    for i, p in enumerate(plans):
        assert np.array_equal(batch.images[i].numpy(), ours[i].image)
        y0, y1, x0, x1 = p.dst_box[-1]
        assert ours[i].image[y0:y1, x0:x1].max() <= 127  # the last patch, halved, is on top


def test_interpolation_in_float32_would_change_pixels():
    """Why FPI's interpolation keeps float64 on the device (blend.ops.FACTOR_OPS): the authors
    floor float64 products, and the same formula in float32 floors some pixels one grey level
    off. The factor is a float32 draw of U(0.05, 0.95), as the sampler stores it; it was found by
    scanning 4000 such draws over every pair of grey levels (1063 pixels differed in all)."""
    from nsa_fast.blend.ops import interpolate

    f = np.float32(0.13422817)
    b = torch.arange(256, dtype=torch.uint8)[:, None].expand(256, 256)
    p = torch.arange(256, dtype=torch.uint8)[None, :].expand(256, 256)
    want = interpolate(b, p, torch.full((256, 256), float(f), dtype=torch.float64))
    bf, pf, ff = b.float(), p.float(), torch.tensor(f)
    in32 = torch.floor(bf - ff * bf + ff * pf).to(torch.uint8)
    differ = in32 != want
    assert differ.any() and (in32.int() - want.int()).abs().max() == 1
    ref = np.floor(b.numpy() - np.float64(f) * b.numpy() + np.float64(f) * p.numpy())  # the authors' float64
    np.testing.assert_array_equal(want.numpy(), ref)
