import numpy as np
import pytest
from scipy.ndimage import median_filter

import torch

from _support import objects_on_background
from nsa_fast import labels
from nsa_fast.blend.batched import BatchedExecutor
from nsa_fast.blend.opencv import execute_plan
from nsa_fast.labels import LABEL_TYPES, Label, LabelType, get_label_type, make_label, reference_label
from nsa_fast.objects import object_mask
from nsa_fast.presets import get_preset
from nsa_fast.reference import reference_execute
from nsa_fast.sampler import get_task, sample_plan


def blank(h=64, w=64, c=3, value=100):
    return np.full((h, w, c), value, np.uint8)


def test_binary_threshold_is_strictly_above_one_grey_level_mean():
    orig = blank()
    res = orig.copy()
    res[10:30, 10:20] += np.array([1, 1, 1], np.uint8)   # mean change 1: not a change
    res[10:30, 30:40] += np.array([1, 1, 2], np.uint8)   # mean 4/3 > 1: a change
    region = np.zeros((64, 64), bool)
    region[5:40, 5:45] = True
    lab = make_label(res, orig, region, "binary")
    assert lab[20, 15] == 0 and lab[20, 35] == 1
    expected = median_filter((np.abs(res.astype(int) - orig).mean(-1) > 1).astype(np.uint8), 5, mode="nearest")
    np.testing.assert_array_equal(lab, expected)


def test_changes_outside_the_region_are_ignored():
    orig = blank()
    res = orig.copy()
    res[:, :] = 200
    region = np.zeros((64, 64), bool)
    region[20:40, 20:40] = True
    lab = make_label(res, orig, region, "binary")
    assert lab[30, 30] == 1 and lab[5, 5] == 0 and lab.sum() == 20 * 20 - 4 * 3  # 5x5 median rounds corners


def test_continuous_is_binary_times_factor():
    orig = blank()
    res = orig.copy()
    res[10:40, 10:40] = 180
    region = np.ones((64, 64), bool)
    b = make_label(res, orig, region, "binary")
    c = make_label(res, orig, region, "continuous", factor=0.37)
    np.testing.assert_array_equal(c, b * np.float32(0.37))


def test_intensity_and_logistic_values():
    orig = blank()
    res = orig.copy()
    res[10:50, 10:50] = orig[10:50, 10:50] + np.array([30, 0, 0], np.uint8)  # mean change 10
    region = np.ones((64, 64), bool)
    inten = make_label(res, orig, region, "intensity")
    assert inten[30, 30] == pytest.approx(10.0) and inten[2, 2] == 0
    k, y0 = 0.5, 10.0
    logi = make_label(res, orig, region, "logistic", logistic=(k, y0))
    assert logi[30, 30] == pytest.approx(0.5)  # at y0 the logistic is one half
    logi = make_label(res, orig, region, "logistic", logistic=(1.0, 4.0))
    assert logi[30, 30] == pytest.approx(1 / (1 + np.exp(-6.0)))


def test_grayscale_labels():
    orig = blank(c=1)
    res = orig.copy()
    res[10:40, 10:40] = 107
    lab = make_label(res, orig, np.ones((64, 64), bool), "intensity")
    assert lab.shape == (64, 64) and lab[25, 25] == 7.0


@pytest.mark.parametrize("mode", sorted(LABEL_TYPES))
@pytest.mark.parametrize("channels", [1, 3])
def test_equals_reference_formula_on_random_blends(mode, channels):
    rng = np.random.default_rng(3)
    for trial in range(12):
        h, w = rng.integers(40, 120, size=2)
        orig = rng.integers(0, 256, (h, w, channels)).astype(np.uint8)
        res = orig.copy()
        region = np.zeros((h, w), bool)
        boxes = []
        for _ in range(rng.integers(1, 4)):  # overlapping patches, some touching the border
            y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
            y1, x1 = min(y0 + rng.integers(8, 50), h), min(x0 + rng.integers(8, 50), w)
            noise = rng.integers(-40, 41, (y1 - y0, x1 - x0, channels))
            smooth = np.clip(res[y0:y1, x0:x1].astype(int) + noise * (rng.random() < 0.7), 0, 255)
            res[y0:y1, x0:x1] = smooth
            region[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.9
            boxes.append((y0, y1, x0, x1))
        # blends also change pixels just outside the label region (Poisson ROI)
        res[np.roll(region, 2, axis=0) & ~region] ^= 8
        kw = dict(factor=0.6, logistic=(1 / 3, 7.0))
        ref = reference_label(res, orig, region, mode, **kw)
        np.testing.assert_array_equal(make_label(res, orig, region, mode, **kw), ref)
        # confined to per-patch windows, as the executor does
        np.testing.assert_array_equal(make_label(res, orig, region, mode, boxes=np.array(boxes), **kw), ref)


def test_empty_region_gives_zero_label():
    lab = make_label(blank(), blank(value=0), np.zeros((64, 64), bool), "logistic")
    assert lab.dtype == np.float32 and not lab.any()


def test_unknown_mode():
    with pytest.raises(ValueError, match="label mode must be one of"):
        make_label(blank(), blank(), np.ones((64, 64), bool), "soft")


def test_the_registry_holds_the_papers_four_label_types_with_their_heads_and_scales():
    assert sorted(LABEL_TYPES) == ["binary", "continuous", "intensity", "logistic"]
    heads = {name: (k.head, k.vmax, k.uses_intensity) for name, k in LABEL_TYPES.items()}
    assert heads == {"binary": ("sigmoid", 1.0, False), "continuous": ("sigmoid", 1.0, False),
                     "intensity": ("relu", 255.0, True), "logistic": ("sigmoid", 1.0, True)}
    logits, target = torch.tensor([[-2.0, 0.5, 3.0]]), torch.tensor([[0.0, 0.2, 1.0]])
    assert torch.allclose(get_label_type("logistic").loss(logits, target),
                          torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits), target))
    assert torch.allclose(get_label_type("intensity").loss(logits, target),
                          ((logits.clamp(min=0) - target) ** 2).mean())
    assert torch.equal(get_label_type("intensity").activate(logits), logits.clamp(min=0))


def test_a_label_type_that_is_not_zero_away_from_the_patches_is_refused(monkeypatch):
    monkeypatch.setattr(labels, "LABEL_TYPES", dict(LABEL_TYPES))
    with pytest.raises(ValueError, match="not 0 where"):
        labels.register(LabelType("everywhere", lambda xp, b, i, f, lab: b + 0.1, lambda on, d, f, lab: on + 0.1))
    assert "everywhere" not in labels.label_names()


def test_a_toy_label_type_registered_in_one_place_runs_through_both_executors(monkeypatch):
    """Half the binary map where the intensity exceeds 10 grey levels: registered here only, it
    reaches the OpenCV executor, the batched executor and the literal reference, which agree."""
    monkeypatch.setattr(labels, "LABEL_TYPES", dict(LABEL_TYPES))
    labels.register(LabelType(
        "toy", finish=lambda xp, b, i, f, lab: 0.5 * b * (i > 10),
        reference=lambda on, d, f, lab: (0.5 * on * (d > 10)).astype(np.float32),
        uses_intensity=True, head="relu", loss=lambda lg, lb: (lg - lb).abs().mean(), vmax=0.5))
    preset = get_preset("bottle")
    imgs = objects_on_background(8, seed=4)
    dst, src = np.stack(imgs[:6]), np.stack(imgs[2:])
    so = [object_mask(s, preset.background) for s in src]
    do = [object_mask(d, preset.background) for d in dst]
    rng = np.random.default_rng(5)
    plans = [sample_plan(dst.shape[1:3], preset, get_task("nsa"), rng, so[i], do[i]) for i in range(6)]
    ours = [execute_plan(dst[i], src[i], plans[i], "toy", src_obj=so[i], dst_obj=do[i]) for i in range(6)]
    batch = BatchedExecutor()(torch.from_numpy(dst), torch.from_numpy(src), plans, Label.of("toy"),
                              src_obj=torch.from_numpy(np.stack(so)), dst_obj=torch.from_numpy(np.stack(do)))
    labelled = 0
    for i in range(6):
        lab = ours[i].label
        assert set(np.unique(lab)) <= {0.0, 0.5}
        labelled += int((lab > 0).sum())
        np.testing.assert_array_equal(batch.labels[i].numpy(), lab)
        ref = reference_execute(dst[i], src[i], plans[i], "toy", src_obj=so[i], dst_obj=do[i]).label
        on = (lab > 0) | (ref > 0)
        assert on.sum() == 0 or (lab[on] == ref[on]).mean() >= 0.999
    assert labelled > 1000
    # the trainer takes the type's loss and head, and its command line offers it
    from nsa_fast.train import loss_fn, parse_args

    assert loss_fn(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.0]), "toy").item() == pytest.approx(1.25)
    cfg = parse_args(["--data", "demo", "--category", "demo", "--label", "toy"])[0]
    assert cfg.label == "toy" and get_label_type(cfg.label).head == "relu"
    # a type made of lambdas still reaches spawned workers: it travels by name
    import pickle

    assert pickle.loads(pickle.dumps(Label.of("toy"))).kind is get_label_type("toy")


@pytest.mark.parametrize("name", sorted(LABEL_TYPES))
def test_every_label_type_survives_a_spawned_dataloader_worker(name):
    """Spawn and forkserver (macOS, Windows, Python 3.14's Linux default) pickle the dataset."""
    import pickle

    from nsa_fast.synthesis import SyntheticDataset

    imgs = objects_on_background(3, size=256)
    ds = SyntheticDataset(imgs, get_preset("bottle"), "nsa", name, seed=0)
    again = pickle.loads(pickle.dumps(ds))
    assert again.label.kind is get_label_type(name) and again.label == ds.label
    assert np.array_equal(again[(0, 1)]["label"], ds[(0, 1)]["label"])
