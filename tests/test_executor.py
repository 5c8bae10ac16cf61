import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import nsa_fast.blend.opencv as ocv
from nsa_fast.blend.opencv import execute_plan
from nsa_fast.errors import InputError
from nsa_fast.presets import Preset, get_preset
from nsa_fast.reference import reference_execute
from nsa_fast.objects import object_mask
from nsa_fast.sampler import NORMAL, get_task, sample_plan, sample_rng
from nsa_fast.synthesis import SyntheticDataset, synthesize


def make_plan(preset, task, shape, seed, src_obj=None, dst_obj=None):
    return sample_plan(shape, preset, get_task(task), np.random.default_rng(seed), src_obj, dst_obj)


def test_calls_opencv_with_reference_mask_border_and_centre(monkeypatch, textures):
    calls = []
    real = cv2.seamlessClone

    def spy(src, dst, mask, center, flag):
        calls.append((src.copy(), dst.shape, mask.copy(), center, flag))
        return real(src, dst, mask, center, flag)

    monkeypatch.setattr(ocv.cv2, "seamlessClone", spy)
    dst, src = textures[0], textures[1]
    for task, preset in (("nsa", get_preset("bottle").replace(background=None, n_max=4)),
                         ("fpi-poisson", get_preset("carpet"))):
        for seed in range(8):
            calls.clear()
            plan = make_plan(preset, task, dst.shape[:2], seed)
            execute_plan(dst, src, plan, "binary")
            assert len(calls) == plan.n_patches
            for (patch, dshape, mask, center, flag), sbox, dbox in zip(calls, plan.src_box, plan.dst_box):
                y0, y1, x0, x1 = dbox
                h, w = y1 - y0, x1 - x0
                assert patch.shape == (h, w, 3) and mask.shape == (h, w) and dshape == dst.shape
                expected_patch = cv2.resize(src[sbox[0]:sbox[1], sbox[2]:sbox[3]], (w, h))
                np.testing.assert_array_equal(patch, expected_patch)
                # rectangle at the mask value with a zero 1-pixel frame
                assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
                assert np.all(mask[1:-1, 1:-1] == plan.mask_value)
                assert center == (x1 - (x1 - x0) // 2, y0 + (y1 - y0) // 2)
                assert flag == (cv2.NORMAL_CLONE if plan.mode[0] == NORMAL else cv2.MIXED_CLONE)
            if task == "fpi-poisson" and plan.n_patches:
                assert plan.mask_value == int(np.ceil(255 * plan.factor)) < 255


@pytest.mark.parametrize("task,preset_name,label", [
    ("nsa", "bottle", "logistic"), ("nsa", "carpet", "intensity"), ("nsa-swap", "pill", "logistic"),
    ("cutpaste", "hazelnut", "binary"), ("fpi", "screw", "continuous"), ("fpi-poisson", "wood", "continuous"),
])
def test_fast_executor_equals_reference_code(task, preset_name, label, textures):
    preset = get_preset(preset_name)
    for seed in range(6):
        dst, src = textures[seed % 7], textures[(seed + 3) % 7]
        if task == "cutpaste":
            src = dst
        so, do = object_mask(src, preset.background), object_mask(dst, preset.background)
        plan = make_plan(preset, task, dst.shape[:2], seed, so, do)
        kw = dict(logistic=preset.logistic, src_obj=so, dst_obj=do)
        ours = execute_plan(dst, src, plan, label, **kw)
        ref = reference_execute(dst, src, plan, label, **kw)
        np.testing.assert_array_equal(ours.image, ref.image)
        np.testing.assert_array_equal(ours.label, ref.label)


def test_later_patch_label_overwrites_earlier_one():
    dst = np.full((64, 64, 3), 100, np.uint8)
    src = np.full((64, 64, 3), 100, np.uint8)
    src[:, :32] = 200  # the left half differs from dst, the right half does not
    from nsa_fast.sampler import PASTE, Plan, Stats
    # patch 1 pastes a changing patch at [10:40, 10:40]; patch 2 pastes an unchanged patch over part of it
    plan = Plan(src_box=np.array([[0, 30, 0, 30], [0, 20, 40, 60]], np.int32),
                dst_box=np.array([[10, 40, 10, 40], [15, 35, 15, 35]], np.int32),
                mode=np.array([PASTE, PASTE], np.int8), factor=0.5, mask_value=255, stats=Stats(),
                half_draws=np.zeros((2, 2)), scale_draws=np.full(2, np.nan))
    out = execute_plan(dst, src, plan, "binary")
    assert out.label[12, 12] == 1         # only the first patch covers it
    assert out.label[25, 25] == 0         # the second patch made no change here and overwrote the label
    assert out.image[25, 25, 0] == 100


def test_grayscale_in_grayscale_out(textures):
    gray = [cv2.cvtColor(t, cv2.COLOR_RGB2GRAY)[..., None] for t in textures[:2]]
    preset = get_preset("chest_xray").replace(background=None)
    plan = make_plan(preset, "nsa", (256, 256), 5)
    out = execute_plan(gray[0], gray[1], plan, "logistic", logistic=preset.logistic)
    assert out.image.shape == (256, 256, 1) and out.label.shape == (256, 256)
    assert out.label.any()
    # the same as padding to three zero channels and keeping channel 0, as the reference does
    pad = [np.concatenate([g, np.zeros_like(g), np.zeros_like(g)], axis=2) for g in gray]
    ref = execute_plan(pad[0], pad[1], plan, "binary")
    np.testing.assert_array_equal(out.image[..., 0], ref.image[..., 0])
    # 2-D input is taken as one channel
    assert execute_plan(gray[0][..., 0], gray[1][..., 0], plan, "binary").image.shape == (256, 256, 1)


@pytest.mark.parametrize("dst,src,match", [
    (np.zeros((64, 64, 3), np.float32), np.zeros((64, 64, 3), np.uint8), "expected dtype uint8"),
    (np.zeros((2, 64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8), r"expected shape \(H, W\)"),
    (np.zeros((64, 64, 4), np.uint8), np.zeros((64, 64, 4), np.uint8), "alpha"),
    (np.zeros((64, 64, 3), np.uint8), np.zeros((64, 80, 3), np.uint8), "same shape"),
    (np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 1), np.uint8), "same shape"),
])
def test_bad_images_are_refused(dst, src, match):
    plan = make_plan(Preset("t"), "nsa", (64, 64), 0)
    with pytest.raises(InputError, match=match):
        execute_plan(dst, src, plan, "binary")


def test_image_smaller_than_crop_is_refused(textures):
    small = [cv2.resize(t, (200, 200)) for t in textures[:2]]
    with pytest.raises(InputError, match="smaller than the 230-pixel crop"):
        SyntheticDataset(small, get_preset("bottle"))


def test_all_background_images_give_counted_skips_not_errors():
    white = np.full((256, 256, 3), 255, np.uint8)
    ds = SyntheticDataset([white, white.copy()], get_preset("bottle"), seed=0)
    item = ds[0]
    assert not item["label"].any() and (item["boxes"] == -1).all()
    assert ds.stats.skipped["source_object"] == ds.stats.tried >= 1


def test_ensure_label_retries_and_counts(textures):
    flat = np.full((256, 256, 3), 90, np.uint8)
    preset = get_preset("carpet").replace(ensure_label=3)
    # pasting a flat image into an identical one changes nothing, so every retry fails and is
    # counted (Poisson blending would: OpenCV truncates 89.99 to 89)
    out, stats = synthesize(flat, flat.copy(), preset, get_task("nsa-swap"), "binary", np.random.default_rng(0))
    assert not out.label.any() and stats.label_retries == 3 and stats.empty_labels == 1 and stats.samples == 1
    out, stats = synthesize(textures[0], textures[1], preset, get_task("nsa"), "binary", np.random.default_rng(0))
    assert out.label.any() and stats.empty_labels == 0


def test_same_seed_same_bytes_for_any_number_of_workers(textures):
    ds = SyntheticDataset(textures, get_preset("bottle"), seed=11)
    results = []
    for workers in (0, 1, 2):
        loader = DataLoader(ds, batch_size=3, num_workers=workers, shuffle=False)
        batches = list(loader)
        results.append((torch.cat([b["image"] for b in batches]), torch.cat([b["label"] for b in batches])))
    for img, lab in results[1:]:
        assert torch.equal(img, results[0][0]) and torch.equal(lab, results[0][1])
    assert results[0][1].sum() > 0
    other = SyntheticDataset(textures, get_preset("bottle"), seed=12)
    assert not np.array_equal(other[0]["image"], results[0][0][0].numpy())


def test_sample_rng_streams_differ_by_epoch_and_index():
    a = sample_rng(1, 0, 5).random(4)
    assert np.array_equal(a, sample_rng(1, 0, 5).random(4))
    assert not np.array_equal(a, sample_rng(1, 1, 5).random(4))
    assert not np.array_equal(a, sample_rng(1, 0, 6).random(4))


# -- added by mutation testing (docs/mutation-batch2.md) ------------------------------------

def _one_paste(box=(10, 40, 12, 42)):
    from nsa_fast.sampler import PASTE, Plan, Stats

    return Plan(src_box=np.array([box], np.int32), dst_box=np.array([box], np.int32),
                mode=np.array([PASTE], np.int8), factor=0.5, mask_value=255, stats=Stats(),
                half_draws=np.zeros((1, 2)), scale_draws=np.full(1, np.nan))


def test_the_executor_labels_with_the_label_tol_given():
    """A pasted patch 2 grey levels brighter: a change above tol 1, not above tol 2 (strictly)."""
    dst = np.full((64, 64, 3), 100, np.uint8)
    src = np.full((64, 64, 3), 102, np.uint8)
    plan = _one_paste()
    on = execute_plan(dst, src, plan, "binary", label_tol=1).label
    assert on.sum() == 30 * 30 - 4 * 3 and on[25, 25] == 1
    assert not execute_plan(dst, src, plan, "binary", label_tol=2).label.any()
    from nsa_fast.labels import Label

    assert not execute_plan(dst, src, plan, Label.of("binary", tol=2)).label.any()
    assert execute_plan(dst, src, plan, Label.of("binary", tol=2), label_tol=1).label.sum() == on.sum()


@pytest.mark.parametrize("which", ["source", "destination"])
def test_a_misshapen_object_mask_is_refused_by_name(which):
    dst = np.full((64, 64, 3), 100, np.uint8)
    good, bad = np.ones((64, 64), bool), np.ones((32, 64), bool)
    kw = {"src_obj": bad, "dst_obj": good} if which == "source" else {"src_obj": good, "dst_obj": bad}
    with pytest.raises(InputError, match=rf"^{which} object mask: expected shape \(64, 64\)"):
        execute_plan(dst, dst.copy(), _one_paste(), "binary", **kw)
