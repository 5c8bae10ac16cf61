import numpy as np
import pytest
from scipy import stats as st

from nsa_fast.errors import InputError
from nsa_fast.presets import Preset, get_preset
from nsa_fast.objects import object_mask, resized_object_mask
from nsa_fast.sampler import MIXED, NORMAL, PASTE, TASKS, PlanBatch, get_task, sample_plan

from _support import disc_object

N = 3000


def plans(preset, task="nsa", shape=(224, 224), n=N, seed=1, src_obj=None, dst_obj=None):
    rng = np.random.default_rng(seed)
    return [sample_plan(shape, preset, get_task(task), rng, src_obj, dst_obj) for _ in range(n)]


@pytest.mark.parametrize("n_max", [3, 4])
def test_patch_count_is_one_plus_binomial(n_max):
    preset = Preset("t", n_max=n_max)
    tried = np.array([p.stats.tried for p in plans(preset, "cutpaste")])
    observed = np.bincount(tried - 1, minlength=n_max)
    expected = st.binom.pmf(np.arange(n_max), n_max - 1, 0.5) * len(tried)
    assert observed.sum() == len(tried) and tried.min() >= 1 and tried.max() <= n_max
    assert st.chisquare(observed, expected).pvalue > 1e-3


def test_half_widths_follow_offset_gamma():
    draws = np.concatenate([p.half_draws for p in plans(Preset("t"), "cutpaste")])
    assert len(draws) > 3000
    for column in draws.T:
        assert st.kstest(column, st.gamma(2, loc=0.03, scale=0.05).cdf).pvalue > 1e-3
    # and a wrong hypothesis is rejected, so the test has power
    assert st.kstest(draws[:, 0], st.gamma(2, loc=0.03, scale=0.06).cdf).pvalue < 1e-3


def test_source_boxes_are_clipped_half_widths():
    preset = Preset("t", half_h=(0.05, 0.2), half_w=(0.03, 0.1))
    for p in plans(preset, "cutpaste", shape=(200, 300), n=500):
        for (y0, y1, x0, x1), (dh, dw) in zip(p.src_box, p.half_draws):
            half_h, half_w = int(np.clip(dh * 200, 10, 40)), int(np.clip(dw * 300, 9, 30))
            # the box is [c - half, c + half) clipped to the image
            assert y1 - y0 <= 2 * half_h and x1 - x0 <= 2 * half_w
            assert (y1 - y0 == 2 * half_h) or y0 == 0 or y1 == 200
            assert (x1 - x0 == 2 * half_w) or x0 == 0 or x1 == 300


def test_resized_sizes_respect_code_clip():
    preset = get_preset("bottle").replace(background=None)
    lo, hi = round(0.03 * 224), round(0.40 * 224)  # 7, 90: HALF-width bounds bound the full size
    sizes = np.concatenate([np.diff(p.dst_box[:, :2]).ravel() for p in plans(preset)] +
                           [np.diff(p.dst_box[:, 2:]).ravel() for p in plans(preset)])
    assert sizes.min() >= lo and sizes.max() <= hi
    assert sizes.max() == hi  # the clip is reached: large patches exist and are cut to 90


def test_resized_sizes_respect_paper_clip():
    preset = get_preset("bottle").replace(background=None, resize_clip="paper")
    lo, hi = 2 * round(0.03 * 224), 2 * round(0.40 * 224)  # full-width bounds of eq. (9)
    ps = plans(preset)
    sizes = np.concatenate([np.concatenate([np.diff(p.dst_box[:, :2]), np.diff(p.dst_box[:, 2:])])
                            for p in ps]).ravel()
    assert sizes.min() >= lo - 1 and sizes.max() <= hi
    assert sizes.max() > round(0.40 * 224)  # larger than the code clip allows
    for p in ps[:300]:  # one scale for both sides: the aspect ratio is kept to rounding
        sh, sw = np.diff(p.src_box[:, :2]).ravel(), np.diff(p.src_box[:, 2:]).ravel()
        dh, dw = np.diff(p.dst_box[:, :2]).ravel(), np.diff(p.dst_box[:, 2:]).ravel()
        assert np.all(np.abs(dh / sh - dw / sw) <= 1 / sh + 1 / sw + 1e-9)


def test_accepted_patches_satisfy_object_and_overlap_conditions():
    preset = get_preset("bottle")
    shape = (224, 224)
    src_obj = disc_object(shape, (100, 120), 70)
    dst_obj = disc_object(shape, (130, 100), 60)
    ps = plans(preset, shape=shape, n=800, src_obj=src_obj, dst_obj=dst_obj)
    n = 0
    for p in ps:
        for sbox, dbox in zip(p.src_box, p.dst_box):
            y0, y1, x0, x1 = sbox
            assert src_obj[y0:y1, x0:x1].mean() > preset.t_object
            h, w = dbox[1] - dbox[0], dbox[3] - dbox[2]
            s = resized_object_mask(src_obj, sbox, h, w)
            assert s.mean() > preset.t_object
            d = dst_obj[dbox[0]:dbox[1], dbox[2]:dbox[3]]
            assert (d & s).sum() / s.sum() > preset.t_overlap
            n += 1
    assert n > 800
    total = sum(p.stats.rejected_source_tries for p in ps)
    assert total > 0  # the disc leaves room for rejections, so the condition was exercised


def test_destination_box_lies_inside_with_reference_centre_range():
    preset = get_preset("carpet")
    for p in plans(preset, shape=(256, 256), n=500):
        for y0, y1, x0, x1 in p.dst_box:
            h, w = y1 - y0, x1 - x0
            cy, cx = y0 + h // 2, x0 + w // 2
            assert h // 2 + 1 <= cy < 256 - h // 2 - 1 and w // 2 + 1 <= cx < 256 - w // 2 - 1
        assert np.all(p.mode == MIXED)


def test_modes_and_tasks():
    bottle = get_preset("bottle").replace(background=None)
    assert np.all(plans(bottle, n=5)[0].mode == NORMAL)
    fpi = plans(bottle, "fpi", n=50)
    assert all(np.array_equal(p.src_box, p.dst_box) for p in fpi)  # FPI: same place, same size
    fp = plans(bottle, "fpi-poisson", n=50)
    assert all(p.mask_value == int(np.ceil(255 * p.factor)) and np.all(p.mode == MIXED) for p in fp)
    cp = plans(bottle, "cutpaste", n=50)
    assert all(np.all(p.mode == PASTE) for p in cp)
    assert all(np.array_equal(np.diff(p.src_box)[:, ::2], np.diff(p.dst_box)[:, ::2]) for p in cp)


def test_all_background_is_skipped_and_counted():
    preset = get_preset("bottle")
    empty = np.zeros((224, 224), bool)
    ps = plans(preset, n=20, src_obj=empty, dst_obj=empty)
    assert all(p.n_patches == 0 for p in ps)
    assert sum(p.stats.skipped["source_object"] for p in ps) == sum(p.stats.tried for p in ps) > 20
    assert sum(p.stats.rejected_source_tries for p in ps) == 200 * sum(p.stats.tried for p in ps)


def test_object_mask_thresholds_and_median():
    img = np.full((64, 64, 3), 230, np.uint8)  # bright background
    img[20:40, 20:40] = 100                     # object: mean < 140
    img[5, 5] = 0                               # a speck the 7x7 median removes
    m = object_mask(img, (200, 60))
    assert m[30, 30] and not m[5, 5] and not m[0, 0]
    # 7x7 median: a corner pixel keeps (4+i)(4+j) of 49 neighbours, so 5 pixels per corner go
    assert m.sum() == 20 * 20 - 4 * 5
    assert object_mask(img, None) is None


def test_plan_batch_concatenates_in_order():
    ps = plans(Preset("t"), n=10)
    s = PlanBatch.stack(ps)
    assert len(s.sample) == sum(p.n_patches for p in ps) and s.rounds == max(p.n_patches for p in ps)
    for i, p in enumerate(ps):
        np.testing.assert_array_equal(s.dst_box[s.sample == i], p.dst_box)
        np.testing.assert_array_equal(s.src_box[s.sample == i], p.src_box)
        np.testing.assert_array_equal(s.round[s.sample == i], np.arange(p.n_patches))
        np.testing.assert_array_equal(s.dst_size[s.sample == i],
                                      np.stack([p.dst_box[:, 1] - p.dst_box[:, 0], p.dst_box[:, 3] - p.dst_box[:, 2]], 1))
    assert s.factor.tolist() == [np.float32(p.factor) for p in ps]
    empty = PlanBatch.stack([])
    assert empty.sample.shape == (0,) and empty.dst_box.shape == (0, 4) and empty.rounds == 0


def test_same_generator_state_gives_same_plan():
    a, b = plans(get_preset("screw").replace(background=None), n=30, seed=7), \
        plans(get_preset("screw").replace(background=None), n=30, seed=7)
    assert all(np.array_equal(x.dst_box, y.dst_box) and x.factor == y.factor for x, y in zip(a, b))


def test_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="too small"):
        sample_plan((10, 10), Preset("t"), TASKS["nsa"], rng)
    with pytest.raises(InputError, match=r"expected shape \(64, 64\)"):
        sample_plan((64, 64), get_preset("bottle"), TASKS["nsa"], rng, np.ones((32, 32)), np.ones((64, 64)))
    with pytest.raises(InputError, match="both source and destination"):
        sample_plan((64, 64), get_preset("bottle"), TASKS["nsa"], rng, np.ones((64, 64)), None)


def test_thin_poisson_patches_are_skipped_as_opencv_would_refuse_them():
    # at 128 px the half-width minimum is 4 px, so 4-px-wide patches are drawn; OpenCV fails on them
    preset = get_preset("carpet").replace(image_size=136, crop=128)
    ps = plans(preset, shape=(128, 128), n=2000)
    sizes = np.concatenate([np.concatenate([np.diff(p.dst_box[:, :2]), np.diff(p.dst_box[:, 2:])]) for p in ps])
    assert sizes.min() >= 5
    assert sum(p.stats.skipped["thin_mask"] for p in ps) > 0


def test_resize_scale_is_normal_1_05_clipped_to_the_bounds():
    preset = get_preset("bottle").replace(background=None)  # code clip, bounds (0.7, 1.3)
    ps = plans(preset, n=2000)
    draws = np.concatenate([p.scale_draws for p in ps])
    assert len(draws) > 3000
    assert st.kstest(draws, st.norm(1.0, 0.5).cdf).pvalue > 1e-3
    assert st.kstest(draws, st.norm(1.0, 0.45).cdf).pvalue < 1e-3  # the test has the power to see 0.45
    lo, hi = round(0.03 * 224), round(0.40 * 224)
    n_checked = 0
    for p in ps:  # the authors' clip, written out: scale clipped, full size to the half-width bounds
        for (y0, y1, x0, x1), d, draw in zip(p.src_box, p.dst_box, p.scale_draws):
            h, w = int(y1 - y0), int(x1 - x0)
            s = min(max(draw, 0.7), 1.3)
            new_h = min(max(s * h, lo), hi)
            new_w = min(max(int(new_h / h * w), lo), hi)
            new_h = min(max(int(new_w / w * h), lo), hi)
            assert (d[1] - d[0], d[3] - d[2]) == (new_h, new_w)
            n_checked += 1
    assert n_checked > 3000
    assert np.isnan(np.concatenate([p.scale_draws for p in plans(preset, "cutpaste", n=20)])).all()


def test_interpolation_factor_is_uniform_005_095():
    factors = np.array([p.factor for p in plans(Preset("t"), "fpi", n=N)])
    assert st.kstest(factors, st.uniform(0.05, 0.90).cdf).pvalue > 1e-3
    assert st.kstest(factors, st.uniform(0.05, 0.85).cdf).pvalue < 1e-3
    assert st.kstest(factors, st.uniform(0.10, 0.85).cdf).pvalue < 1e-3


def test_poisson_masks_under_50_pixels_are_skipped_and_50_is_enough():
    # OpenCV's mask is the patch inside its zeroed 1-pixel frame: (h - 2)(w - 2) pixels
    preset = Preset("t", half_h=(0.03, 0.06), half_w=(0.03, 0.12), clone="mixed", n_max=4)
    ps = plans(preset, "nsa", shape=(200, 200), n=4000)
    products = [(d[1] - d[0] - 2) * (d[3] - d[2] - 2) for p in ps for d in p.dst_box]
    assert min(products) == 50  # the boundary is accepted, nothing below it
    assert sum(p.stats.skipped["small_mask"] for p in ps) > 20


def _counts(ps):
    out = {r: sum(p.stats.skipped[r] for p in ps) for r in ps[0].stats.skipped}
    for p in ps:  # every tried patch is accepted or skipped for exactly one reason
        assert p.stats.tried == p.stats.accepted + sum(p.stats.skipped.values())
        assert p.n_patches == p.stats.accepted
    return out


def test_every_skip_reason_is_counted_where_it_happens():
    full, empty = np.ones((128, 128), bool), np.zeros((128, 128), bool)
    # the source has object pixels everywhere, the destination none: no overlap anywhere
    ps = plans(get_preset("bottle"), shape=(128, 128), n=50, src_obj=full, dst_obj=empty)
    c = _counts(ps)
    assert c["destination_object"] == sum(p.stats.tried for p in ps) and c["source_object"] == 0
    assert sum(p.stats.rejected_destination_tries for p in ps) == 200 * c["destination_object"]
    # patches nearly as tall as the image cannot be placed inside it
    big = Preset("t", half_h=(0.3, 0.49), half_w=(0.3, 0.49), resize_clip="paper", resize_bounds=(1.5, 2.0))
    assert _counts(plans(big, shape=(64, 64), n=200))["too_large"] > 20
    # thin and small masks
    small = Preset("t", half_h=(0.01, 0.03), half_w=(0.01, 0.3), n_max=4, clone="mixed")
    c = _counts(plans(small, shape=(128, 128), n=3000))
    assert c["thin_mask"] > 0 and c["small_mask"] > 0
    # outside_image guards OpenCV's refusal of a clone region past the image; with the boxes the
    # sampler draws (inside the image, the reference's centre) the region ends at the box's end at
    # most, so it is never counted
    c = _counts(plans(Preset("t", n_max=4), "fpi-poisson", shape=(128, 128), n=1000))
    assert c["outside_image"] == 0


# -- added by mutation testing (docs/mutation-batch2.md) ------------------------------------

def test_the_source_is_any_other_image_uniformly():
    from nsa_fast.sampler import pick_source

    rng = np.random.default_rng(0)
    for n, index in ((5, 2), (5, 0), (5, 4), (2, 0), (2, 1)):
        got = np.array([pick_source(rng, index, n, False) for _ in range(400 * (n - 1))])
        others = [j for j in range(n) if j != index]
        counts = np.bincount(got, minlength=n)
        assert counts[index] == 0 and counts.sum() == len(got) and set(np.flatnonzero(counts)) == set(others)
        if len(others) > 1:
            assert st.chisquare(counts[others]).pvalue > 1e-3
    # a single image, or a same-image task (CutPaste): the destination itself, no draw
    assert pick_source(rng, 0, 1, False) == 0 and pick_source(rng, 3, 5, True) == 3
    state = rng.bit_generator.state
    pick_source(rng, 0, 1, False)
    assert rng.bit_generator.state == state


def _distinct_stats():
    from nsa_fast.sampler import SKIP_REASONS, Stats

    return Stats(samples=1, tried=2, accepted=3, rejected_source_tries=4, rejected_destination_tries=5,
                 skipped={r: 10 + i for i, r in enumerate(SKIP_REASONS)}, empty_labels=20, label_retries=21)


def test_stats_cross_as_arrays_field_by_field():
    from nsa_fast.sampler import STATS_LEN, SKIP_REASONS, Stats

    s = _distinct_stats()
    a = s.to_array()
    assert a.dtype == np.int64 and a.shape == (STATS_LEN,)
    assert a.tolist() == [1, 2, 3, 4, 5, *range(10, 10 + len(SKIP_REASONS)), 20, 21]
    assert Stats.from_array(a) == s
    # a batch of them (leading axes) sums, as += does
    total = Stats()
    for _ in range(6):
        total += s
    assert Stats.from_array(np.stack([a] * 6).reshape(2, 3, STATS_LEN)) == total
    # a Stats whose skipped dict names only some reasons: the others count 0
    part = Stats(samples=1, skipped={"too_large": 2})
    assert part.to_array().tolist() == [1, 0, 0, 0, 0] + [2 if r == "too_large" else 0 for r in SKIP_REASONS] + [0, 0]


def test_the_summary_names_the_skip_reasons_that_occurred():
    from nsa_fast.sampler import Stats

    s = Stats(samples=3, tried=5, accepted=2, skipped={"too_large": 1, "small_mask": 2})
    text = s.summary()
    assert "patches tried 5, accepted 2, skipped 3 (too_large 1, small_mask 2)" in text
    assert "skipped 0 (none)" in Stats(samples=1).summary()


def test_stats_add_reasons_missing_on_the_left():
    from nsa_fast.sampler import Stats

    s = Stats(skipped={})
    s += Stats(samples=2, skipped={"too_large": 3, "thin_mask": 1})
    s += Stats(samples=1, skipped={"too_large": 2})
    assert s.samples == 3 and s.skipped == {"too_large": 5, "thin_mask": 1}


def test_draw_pair_draws_source_then_destination_then_source_transform():
    """The documented order: source index, destination transform, then the source's own transform,
    unless the source is the destination (CutPaste, or a single image), which shares it."""
    from nsa_fast.sampler import draw_pair, pick_source
    from nsa_fast.transforms import draw_augment

    preset = get_preset("bottle")
    for seed in range(20):
        j, dst_aug, src_aug = draw_pair(np.random.default_rng(seed), 3, 8, (256, 256), preset, False)
        rng = np.random.default_rng(seed)
        assert j == pick_source(rng, 3, 8, False) != 3
        assert dst_aug == draw_augment(preset, (256, 256), rng) and src_aug == draw_augment(preset, (256, 256), rng)
        assert src_aug != dst_aug
        j, dst_aug, src_aug = draw_pair(np.random.default_rng(seed), 3, 8, (256, 256), preset, True)
        assert j == 3 and src_aug is dst_aug
        j, dst_aug, src_aug = draw_pair(np.random.default_rng(seed), 0, 1, (256, 256), preset, False)
        assert j == 0 and src_aug is dst_aug
    assert draw_pair(np.random.default_rng(0), 3, 8, (256, 256), preset, True, augment=False) == (3, None, None)


def test_plan_batch_fields_have_the_documented_dtypes_and_shapes_even_when_empty():
    """int64 integer arrays, float32 factors; an empty batch has zero rows in every field."""
    for ps in (plans(Preset("t"), n=4), []):
        s = PlanBatch.stack(ps)
        p = sum(x.n_patches for x in ps)
        for name, shape in (("sample", (p,)), ("round", (p,)), ("src_box", (p, 4)), ("dst_box", (p, 4)),
                            ("mode", (p,)), ("mask_value", (len(ps),)), ("n_patches", (len(ps),))):
            a = getattr(s, name)
            assert a.dtype == np.int64 and a.shape == shape, name
        assert s.factor.dtype == np.float32 and s.factor.shape == (len(ps),)


# -- exact rules, drawn from a scripted generator ------------------------------------------

class Scripted:
    """A stand-in numpy Generator that returns the draws it is given, in order, and records what
    each draw was asked for (the sampler's ranges). The order of a sample's draws is a contract,
    not an accident: it is what makes a seed reproduce the same samples on every pipeline (see
    the sampler's docstring and test_randomness.py), so these tests may rely on it."""

    def __init__(self, uniform=(0.5,), integers=(), gamma=(), normal=()):
        self.queues = {"uniform": list(uniform), "integers": list(integers), "gamma": list(gamma),
                       "normal": list(normal)}
        self.calls = []

    def _next(self, name, args):
        self.calls.append((name, tuple(int(a) if isinstance(a, (int, np.integer)) else a for a in args)))
        return self.queues[name].pop(0)

    def uniform(self, *a): return self._next("uniform", a)
    def integers(self, *a): return self._next("integers", a)
    def normal(self, *a): return self._next("normal", a)
    def gamma(self, *a, size=None): return np.asarray(self._next("gamma", a), np.float64)


def _half(half_px, side, preset):
    """The Gamma draw that gives a half size of half_px pixels on a side of `side` pixels."""
    return (half_px + 0.5) / side - preset.gamma[2]


def test_centres_are_drawn_from_the_documented_ranges():
    # source centre: [hb0, H - hb0) x [wb0, W - wb0); destination centre of an h x w patch:
    # [h//2 + 1, H - h//2 - 1) x [w//2 + 1, W - w//2 - 1) (the reference's range)
    preset = Preset("t", n_max=1, resize_bounds=(0.5, 2.0), resize_clip="paper")
    H, W = 200, 240
    rng = Scripted(gamma=[[_half(10, H, preset), _half(12, W, preset)]], integers=[100, 120, 90, 110],
                   normal=[1.05])
    p = sample_plan((H, W), preset, get_task("nsa"), rng)
    h, w = 21, 25  # 20 x 24 resized by 1.05: odd sizes, where h // 2 and h / 2 differ
    assert p.dst_box.tolist() == [[90 - 10, 90 + 11, 110 - 12, 110 + 13]]
    assert [c for c in rng.calls if c[0] == "integers"] == [
        ("integers", (6, H - 6)), ("integers", (7, W - 7)),  # hb0 = round(0.03 * 200), wb0 = round(0.03 * 240)
        ("integers", (h // 2 + 1, H - h // 2 - 1)), ("integers", (w // 2 + 1, W - w // 2 - 1))]
    assert rng.calls[0] == ("uniform", (0.05, 0.95)) and ("normal", (1.0, 0.5)) in rng.calls


def _fpi(preset, H, W, patches, coins=()):
    """A plan of fpi-poisson (no resize, no shift: the source box is the patch) from scripted
    half sizes and centres; coins: the draws that decide further patches."""
    gamma = [[_half(hh, H, preset), _half(hw, W, preset)] for hh, hw, _, _ in patches]
    ints = []
    for k, (_, _, cy, cx) in enumerate(patches):
        if k:
            ints.append(coins[k - 1] if coins else 1)
        ints += [cy, cx]
    return sample_plan((H, W), preset, get_task("fpi-poisson"), Scripted(gamma=gamma, integers=ints))


def test_five_pixels_wide_is_enough_and_four_is_thin():
    # half widths of 3 px at the left edge give 5 and 4 px wide boxes (clipped at 0);
    # 20 and 40 px tall: (20 - 2)(5 - 2) = 54 and (40 - 2)(4 - 2) = 76 interior pixels, above
    # the 50-pixel rule
    preset = Preset("t", half_w=(0.01, 0.4), n_max=1)
    p = _fpi(preset, 200, 200, [(10, 3, 100, 2)])
    assert p.src_box.tolist() == [[90, 110, 0, 5]] and p.stats.skipped["thin_mask"] == 0
    p = _fpi(preset, 200, 200, [(20, 3, 100, 1)])
    assert p.n_patches == 0 and p.stats.skipped["thin_mask"] == 1


@pytest.mark.parametrize("reason", ["small_mask", "thin_mask", "source_object"])
def test_a_skipped_patch_does_not_end_the_sample(reason):
    preset = Preset("t", half_w=(0.01, 0.4), n_max=2, max_tries=1, min_mask_pixels=200)
    good = (10, 10, 100, 100)  # 20 x 20: 324 interior pixels
    bad = {"small_mask": (7, 7, 50, 50), "thin_mask": (51, 3, 100, 1), "source_object": (10, 10, 30, 30)}[reason]
    masks = {}
    if reason == "source_object":
        obj = np.ones((200, 200), bool)
        obj[:60, :60] = False
        masks = dict(src_obj=obj, dst_obj=obj)
    gamma = [[_half(h, 200, preset), _half(w, 200, preset)] for h, w, _, _ in (bad, good)]
    rng = Scripted(gamma=gamma, integers=[bad[2], bad[3], 1, good[2], good[3]])
    p = sample_plan((200, 200), preset, get_task("fpi-poisson"), rng, **masks)
    assert p.stats.tried == 2 and p.stats.skipped[reason] == 1
    assert p.src_box.tolist() == [[90, 110, 90, 110]]


def test_a_patch_without_a_destination_does_not_end_the_sample():
    # the first patch finds no destination object to overlap (left half), the second does
    preset = Preset("t", n_max=2, max_tries=1)
    src, dst = np.ones((200, 200), bool), np.zeros((200, 200), bool)
    dst[:, 100:] = True
    gamma = [[_half(10, 200, preset), _half(10, 200, preset)]] * 2
    rng = Scripted(gamma=gamma, integers=[100, 100, 60, 50, 1, 100, 100, 60, 150], normal=[1.0, 1.0])
    p = sample_plan((200, 200), preset, get_task("nsa"), rng, src, dst)
    assert p.stats.tried == 2 and p.stats.skipped["destination_object"] == 1
    assert p.dst_box.tolist() == [[50, 70, 140, 160]]


def test_a_clone_region_past_the_image_is_skipped():
    # a task that resizes in place (a custom one: the paper's tasks that resize also move the
    # patch) can make the clone region end past the image: OpenCV would refuse it. An odd width
    # is placed 1 px right by the reference's centre.
    from nsa_fast.sampler import MIXED, Task

    task = Task("resize-in-place", False, False, True, "mixed", False, "logistic")
    preset = Preset("t", n_max=3, resize_clip="paper", resize_bounds=(0.5, 2.0))
    g = [_half(10, 200, preset), _half(10, 200, preset)]

    def plan(scales, centres):
        ints = []
        for k, cx in enumerate(centres):
            ints += ([1] if k else []) + [100, cx]
        ints += [0] * (preset.n_max - len(centres))  # no further patches
        return sample_plan((200, 200), preset, task, Scripted(gamma=[g] * len(centres), integers=ints,
                                                              normal=scales))
    # x0 = 180, width 21 (20 x 1.05): 180 + 21 - 1 + 1 = 201 > 200; twice, then one that fits
    p = plan([1.05, 1.05, 1.05], [190, 190, 100])
    assert p.stats.skipped["outside_image"] == 2 and p.src_box.tolist() == [[90, 110, 90, 110]]
    assert p.mode.tolist() == [MIXED]
    # x0 = 179, width 22 (20 x 1.1): 179 + 22 - 1 = 200 ends at the border and is taken
    assert plan([1.1], [189]).stats.skipped["outside_image"] == 0


def test_an_object_share_exactly_at_the_threshold_is_not_enough():
    # "more than t_object": 280 of 400 pixels is exactly 0.7 and is refused; 281 is taken
    preset = Preset("t", n_max=1, max_tries=1)
    for n_object, taken in ((280, False), (281, True)):
        obj = np.zeros((200, 200), bool)
        obj[90:110, 90:110].flat[:n_object] = True
        rng = Scripted(gamma=[[_half(10, 200, preset), _half(10, 200, preset)]], integers=[100, 100])
        p = sample_plan((200, 200), preset, get_task("fpi-poisson"), rng, obj, obj)
        assert p.n_patches == int(taken) and p.stats.skipped["source_object"] == int(not taken), n_object


def test_an_overlap_exactly_at_the_threshold_is_not_enough():
    # "more than t_overlap" of the resized source object must land on the destination's object
    preset = Preset("t", n_max=1, max_tries=1)
    src = np.ones((200, 200), bool)
    for cols, taken in ((5, False), (6, True)):  # 5 of 20 columns: exactly 0.25
        dst = np.zeros((200, 200), bool)
        dst[:, 40:40 + cols] = True
        rng = Scripted(gamma=[[_half(10, 200, preset), _half(10, 200, preset)]], integers=[100, 100, 60, 50],
                       normal=[1.0])
        p = sample_plan((200, 200), preset, get_task("nsa"), rng, src, dst)
        assert p.n_patches == int(taken), cols
        if taken:
            assert p.dst_box.tolist() == [[50, 70, 40, 60]]
        else:
            assert p.stats.skipped["destination_object"] == 1 and p.stats.rejected_destination_tries == 1


def test_a_source_without_enough_object_after_resizing_costs_every_destination_try():
    # the reference redraws the destination max_tries times although no draw can succeed
    from nsa_fast.sampler import Stats, _destination

    preset = Preset("t", max_tries=7)
    stats = Stats()
    empty = np.zeros((200, 200), bool)
    for _ in range(2):
        assert _destination(20, 20, 200, 200, (90, 110, 90, 110), preset, Scripted(), empty, empty, stats) is None
    assert stats.rejected_destination_tries == 14 and stats.skipped["destination_object"] == 2


def test_object_mask_errors_name_the_mask():
    rng = np.random.default_rng(0)
    bottle, nsa, ok = get_preset("bottle"), TASKS["nsa"], np.ones((64, 64))
    with pytest.raises(InputError, match=r"^source object mask: expected shape \(64, 64\)"):
        sample_plan((64, 64), bottle, nsa, rng, np.ones((32, 32)), ok)
    with pytest.raises(InputError, match=r"^destination object mask: expected shape \(64, 64\)"):
        sample_plan((64, 64), bottle, nsa, rng, ok, np.ones((32, 32)))
    with pytest.raises(InputError, match=r"^pass object masks for both source and destination, or for neither\.$"):
        sample_plan((64, 64), bottle, nsa, rng, None, ok)


@pytest.mark.parametrize("half_h, half_w, shape, too_small", [
    ((0.03, 0.40), (0.03, 0.40), (200, 240), False),
    ((0.002, 0.40), (0.03, 0.40), (200, 240), True),   # minimum half-height rounds to 0 px
    ((0.03, 0.40), (0.002, 0.40), (200, 240), True),   # minimum half-width rounds to 0 px
    ((0.49, 0.49), (0.03, 0.40), (2, 240), True),      # no room for a centre: H - hb0 <= hb0 (1 <= 1)
    ((0.03, 0.40), (0.49, 0.49), (240, 2), True),
    ((0.49, 0.49), (0.49, 0.49), (3, 3), False),       # hb0 = 1: one row and one column of centres
    ((0.49, 0.49), (0.49, 0.49), (200, 240), False),
])
def test_images_too_small_for_the_preset_are_refused_by_each_rule(half_h, half_w, shape, too_small):
    preset = Preset("t", half_h=half_h, half_w=half_w)
    rng = np.random.default_rng(0)
    if too_small:
        with pytest.raises(InputError, match="too small for preset"):
            sample_plan(shape, preset, TASKS["nsa"], rng)
    else:
        assert sample_plan(shape, preset, TASKS["nsa"], rng).stats.samples == 1


def test_plan_fields_have_their_documented_types():
    for task, mask_value in (("nsa", 255), ("fpi", 255), ("fpi-poisson", None)):
        for p in plans(Preset("t"), task, n=20, seed=3):
            assert p.stats.samples == 1
            assert p.src_box.dtype == p.dst_box.dtype == np.int32 and p.mode.dtype == np.int8
            assert p.half_draws.dtype == p.scale_draws.dtype == np.float64
            assert p.mask_value == (mask_value or int(np.ceil(p.factor * 255)))


def test_code_clip_keeps_the_aspect_inside_both_bounds():
    # a tall thin patch: the width is raised to its minimum, and the height that keeps the
    # aspect is then clipped again to the height bounds
    from nsa_fast.sampler import _resized_size

    code = Preset("t", resize_clip="code", resize_bounds=(0.5, 2.0))
    assert _resized_size(100, 10, (10, 60), (20, 60), code, 1.0) == (60, 20)
    paper = code.replace(resize_clip="paper")
    # eq. (9): one scale s = max(lower bounds, min(drawn, upper bounds)); 1.2 lies inside
    assert _resized_size(40, 30, (5, 60), (5, 60), paper, 1.2) == (48, 36)
    assert _resized_size(40, 30, (5, 60), (5, 60), paper, 9.0) == (80, 60)  # drawn 2.0 (clipped), then 2*60/30


def test_unknown_task_lists_the_known_ones():
    from nsa_fast.errors import PresetError

    with pytest.raises(PresetError, match=r"^unknown task 'cut'; known tasks are \['cutpaste', 'fpi', "
                                          r"'fpi-poisson', 'nsa', 'nsa-swap'\]\.$"):
        get_task("cut")


def test_crop_offsets_range_over_the_image_when_there_is_no_centre_crop():
    from nsa_fast.sampler import draw_pair

    preset = Preset("t", image_size=300, center_crop=None, crop=256)
    offsets = set()
    for seed in range(200):
        _, dst_aug, src_aug = draw_pair(np.random.default_rng(seed), 0, 5, (300, 300), preset, False)
        offsets |= {dst_aug.y, src_aug.y, dst_aug.x, src_aug.x}
    assert max(offsets) == 300 - 256 and min(offsets) == 0
