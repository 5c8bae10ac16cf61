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


# -- added by mutation testing (docs/mutation-batch2.md) ------------------------------------

def test_sigmoid_heads_activate_with_the_sigmoid():
    logits = torch.tensor([[-3.0, -0.5, 0.0, 2.0]])
    for name in ("binary", "continuous", "logistic"):
        assert torch.equal(get_label_type(name).activate(logits), torch.sigmoid(logits))


def test_register_refuses_an_unknown_head_by_name(monkeypatch):
    monkeypatch.setattr(labels, "LABEL_TYPES", dict(LABEL_TYPES))
    with pytest.raises(ValueError, match="head must be 'sigmoid' or 'relu', got 'tanh'"):
        labels.register(LabelType("t", labels._binary, labels._binary_reference, head="tanh"))
    assert "t" not in labels.label_names()


@pytest.mark.parametrize("uses_intensity", [False, True])
def test_register_probes_finish_with_what_the_executors_pass(monkeypatch, uses_intensity):
    """finish(xp, B, I, f, label): numpy, 0/1 float maps, I None unless the type uses it, a factor
    the sampler can draw (U(0.05, 0.95)) and the type's Label (docs/reference.md section 1)."""
    monkeypatch.setattr(labels, "LABEL_TYPES", dict(LABEL_TYPES))
    seen = []

    def finish(xp, b, i, f, lab):
        seen.append((xp, b, i, f, lab))
        return b * f

    kind = labels.register(LabelType("probe", finish, labels._binary_reference, uses_intensity=uses_intensity))
    (xp, b, i, f, lab), = seen
    assert xp is np and isinstance(b, np.ndarray) and b.ndim == 2 and not b.any()
    assert (i is None) != uses_intensity
    if uses_intensity:
        assert isinstance(i, np.ndarray) and i.shape == b.shape and not i.any()
    assert 0.05 <= f <= 0.95
    assert isinstance(lab, Label) and lab.kind is kind


def test_the_papers_label_types_register_again_under_new_names(monkeypatch):
    """register runs each built-in finish on its zero probe (logistic reads xp.exp, k and y0; continuous
    the factor): the four pass the 'zero away from the patches' check."""
    monkeypatch.setattr(labels, "LABEL_TYPES", dict(LABEL_TYPES))
    for name, kind in list(LABEL_TYPES.items()):
        labels.register(LabelType(name + "2", kind.finish, kind.reference, uses_intensity=kind.uses_intensity,
                                  head=kind.head))
    assert {"binary2", "continuous2", "intensity2", "logistic2"} <= set(labels.label_names())


@pytest.mark.parametrize("mode", sorted(LABEL_TYPES))
def test_regions_one_pixel_thin_are_removed_by_the_median(mode):
    """A region one row high or one column wide: the 5x5 median switches none of it on (at most 5 of
    25 pixels are set), so the label is 0 everywhere, as in the authors' formula."""
    orig = blank()
    res = orig.copy()
    res[:, :] = 200
    row = np.zeros((64, 64), bool)
    row[30, 10:50] = True
    col = np.zeros((64, 64), bool)
    col[10:50, 30] = True
    for region in (row, col):
        lab = make_label(res, orig, region, mode)
        assert lab.dtype == np.float32 and not lab.any()
        np.testing.assert_array_equal(lab, reference_label(res, orig, region, mode))


@pytest.mark.parametrize("mode", sorted(LABEL_TYPES))
def test_the_reference_labels_are_float32(mode):
    orig = blank()
    res = orig.copy()
    res[10:40, 10:40] = 180
    assert reference_label(res, orig, np.ones((64, 64), bool), mode).dtype == np.float32


def test_a_refused_label_type_is_told_why(monkeypatch):
    monkeypatch.setattr(labels, "LABEL_TYPES", dict(LABEL_TYPES))
    with pytest.raises(ValueError, match="'everywhere' is not 0 where .* labels are computed near the patches only"):
        labels.register(LabelType("everywhere", lambda xp, b, i, f, lab: b + 1, lambda on, d, f, lab: on + 1))


def test_reference_label_takes_factor_1_and_the_tol_given():
    orig = blank()
    res = orig.copy()
    res[10:40, 10:40] += np.array([2, 2, 2], np.uint8)  # mean change 2: above tol 1, not above tol 2
    res[20:30, 20:30] += np.array([3, 3, 3], np.uint8)  # mean change 5 in the middle
    region = np.ones((64, 64), bool)
    # f defaults to 1: continuous is then the binary map
    np.testing.assert_array_equal(reference_label(res, orig, region, "continuous"),
                                  reference_label(res, orig, region, "binary"))
    np.testing.assert_array_equal(make_label(res, orig, region, "continuous"), make_label(res, orig, region, "binary"))
    for tol in (1, 2, 5):
        ref = reference_label(res, orig, region, "binary", tol=tol)
        np.testing.assert_array_equal(ref, make_label(res, orig, region, "binary", tol=tol))
        want = median_filter((np.abs(res.astype(int) - orig).mean(-1) > tol).astype(np.uint8), 5, mode="nearest")
        np.testing.assert_array_equal(ref, want)
    assert reference_label(res, orig, region, "binary", tol=2).sum() == 100 - 4 * 3
    assert not reference_label(res, orig, region, "binary", tol=5).any()


@pytest.mark.parametrize("uses_intensity", [False, True])
def test_the_reference_gets_d_only_for_types_that_use_intensity(monkeypatch, uses_intensity):
    monkeypatch.setattr(labels, "LABEL_TYPES", dict(LABEL_TYPES))
    seen = []
    labels.register(LabelType("probe", labels._binary, lambda on, d, f, lab: seen.append(d) or on.astype(np.float32),
                              uses_intensity=uses_intensity))
    orig = blank()
    res = orig.copy()
    res[10:40, 10:40] = 180
    reference_label(res, orig, np.ones((64, 64), bool), "probe")
    (d,), = [seen]
    if uses_intensity:
        assert d.shape == (64, 64) and d[25, 25] == 80.0
    else:
        assert d is None


def test_windows_merge_exactly_while_one_window_costs_no_more_than_two():
    """make_label's work windows (labels._merge): two boxes become their union when its area is at
    most the sum of theirs, and stay apart otherwise; _grow clips a margin to the image."""
    merge = labels._merge
    assert merge([(0, 10, 0, 10), (0, 10, 10, 20)]) == [(0, 10, 0, 20)]              # 200 <= 200
    assert merge([(0, 10, 0, 10), (0, 10, 11, 21)]) == [(0, 10, 0, 10), (0, 10, 11, 21)]  # 210 > 200
    assert merge([(0, 10, 0, 10), (2, 8, 2, 8)]) == [(0, 10, 0, 10)]                  # inside: 100 <= 136
    assert merge([(0, 10, 0, 10), (50, 60, 50, 60)]) == [(0, 10, 0, 10), (50, 60, 50, 60)]
    assert merge([(0, 10, 0, 10), (50, 60, 50, 60), (0, 10, 10, 20), (10, 20, 0, 20)]) == \
        [(0, 20, 0, 20), (50, 60, 50, 60)]
    assert merge([(3, 9, 4, 7)]) == [(3, 9, 4, 7)] and merge([]) == []
    assert labels._area((3, 9, 4, 7)) == 18
    assert labels._grow((3, 60, 1, 20), 5, 64, 64) == (0, 64, 0, 25)
    assert labels._grow((30, 40, 30, 40), 5, 64, 64) == (25, 45, 25, 45)


def test_label_for_preset_takes_the_presets_parameters():
    preset = get_preset("bottle").replace(logistic=(0.25, 10.0), label_tol=3)
    lab = Label.for_preset("logistic", preset)
    assert lab.kind is get_label_type("logistic") and lab.logistic == (0.25, 10.0) and lab.tol == 3


@pytest.mark.parametrize("uses_intensity", [False, True])
@pytest.mark.parametrize("uses_factor", [False, True])
def test_label_batch_looks_the_labels_up_in_a_table_of_finish(monkeypatch, uses_intensity, uses_factor):
    """label_batch: the disk median gets the int16 map dsum * B; the label of a pixel is the table
    entry of its sample (types that use the factor), its B and its median m, and the table holds
    finish(np, B, m / C, f) in float64 rounded to float32, as make_label computes it."""
    from nsa_fast.labels import label_batch, label_table
    from nsa_fast.median import disk_median

    monkeypatch.setattr(labels, "LABEL_TYPES", dict(LABEL_TYPES))
    seen = {}

    def finish(xp, b, i, f, lab):
        assert xp is np
        return b * (f if uses_factor else 0.7) * (1.0 if i is None else np.sqrt(i) / 3.0) + (0 if i is None else 0.001 * i)

    def median(x):
        seen["median_in"] = x
        return torch.from_numpy(np.stack([disk_median(m, 5) for m in x.numpy()]))

    kind = labels.register(LabelType("probe", finish, labels._binary_reference, uses_intensity=uses_intensity,
                                     uses_factor=uses_factor))
    table = label_table(Label(kind), np.array([0.5, 0.25], np.float32), 3)
    M = 766 if uses_intensity else 1
    assert table.dtype == np.float32 and table.shape == (2 if uses_factor else 1, 2, M)
    m = np.arange(M) / 3.0 if uses_intensity else None
    for row, f in enumerate([0.5, 0.25] if uses_factor else [1.0]):
        for b in (0, 1):
            want = np.broadcast_to(finish(np, np.float64(b), m, f, None), (M,)).astype(np.float32)
            assert want.any() == bool(b or uses_intensity)
            np.testing.assert_array_equal(table[row, b], want)
    orig = torch.full((2, 32, 32, 3), 100, dtype=torch.uint8)
    res = orig.clone()
    res[:, 5:25, 5:25] = 130   # change 30 per channel: dsum 90
    region = torch.ones((2, 32, 32), dtype=torch.bool)
    out = label_batch(res, orig, region, Label(kind), torch.from_numpy(table), median)
    assert out.dtype == torch.float32 and out.shape == (2, 32, 32)
    for i, f in enumerate((0.5, 0.25)):
        want = make_label(res[i].numpy(), orig[i].numpy(), region[i].numpy(), Label(kind), factor=f if uses_factor else 1.0)
        np.testing.assert_array_equal(out[i].numpy(), want)
    assert out[1, 15, 15] == np.float32(finish(np, 1.0, 30.0 if uses_intensity else None,
                                               0.25 if uses_factor else 1.0, None))
    if uses_intensity:
        x = seen["median_in"]
        assert x.dtype == torch.int16 and set(x.unique().tolist()) == {0, 90}
    else:
        assert "median_in" not in seen


def test_a_type_that_says_it_ignores_the_factor_must_ignore_it(monkeypatch):
    monkeypatch.setattr(labels, "LABEL_TYPES", dict(LABEL_TYPES))
    with pytest.raises(ValueError, match="'scaled' changes with the factor f; register it with uses_factor=True"):
        labels.register(LabelType("scaled", labels._continuous, labels._continuous_reference, uses_factor=False))
    assert "scaled" not in labels.label_names()
    assert [n for n, k in LABEL_TYPES.items() if k.uses_factor] == ["continuous"]


@pytest.mark.parametrize("uses_intensity", [False, True])
def test_make_label_passes_numpy_the_factor_and_the_label_to_finish(monkeypatch, uses_intensity):
    monkeypatch.setattr(labels, "LABEL_TYPES", dict(LABEL_TYPES))
    seen = []

    def finish(xp, b, i, f, lab):
        seen.append((xp, b.dtype, f, lab))
        return b * f

    kind = labels.register(LabelType("probe", finish, labels._binary_reference, uses_intensity=uses_intensity))
    seen.clear()
    orig = blank()
    res = orig.copy()
    res[10:40, 10:40] = 180
    lab = make_label(res, orig, np.ones((64, 64), bool), "probe", factor=0.3)
    assert seen and all(x is np and dt == np.float64 and f == 0.3 and la.kind is kind for x, dt, f, la in seen)
    assert lab[25, 25] == np.float32(0.3)
