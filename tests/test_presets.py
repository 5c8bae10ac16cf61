import argparse
import json

import pytest

from nsa_fast.errors import PresetError
from nsa_fast.presets import OBJECTS, PRESETS, TEXTURES, add_preset_args, get_preset, resolve_preset


def parse(argv):
    ap = argparse.ArgumentParser()
    add_preset_args(ap)
    return resolve_preset(ap.parse_args(argv))


def test_all_classes_present():
    assert set(PRESETS) == set(OBJECTS) | set(TEXTURES) | {"chest_xray", "demo"}
    assert len(OBJECTS) == 10 and len(TEXTURES) == 5


@pytest.mark.parametrize("name,half_h,half_w,n_max,k,y0,bg,t_obj,epochs,clone", [
    ("bottle", (0.03, 0.40), (0.03, 0.40), 3, 1 / 12, 24, (200, 60), 0.70, 320, "normal"),
    ("cable", (0.05, 0.40), (0.05, 0.40), 3, 1 / 12, 24, None, None, 320, "normal"),
    ("capsule", (0.03, 0.15), (0.03, 0.40), 3, 1 / 2, 4, (200, 60), 0.70, 320, "normal"),
    ("hazelnut", (0.03, 0.35), (0.03, 0.35), 3, 1 / 12, 24, (20, 20), 0.70, 560, "normal"),
    ("metal_nut", (0.03, 0.40), (0.03, 0.40), 3, 1 / 3, 7, (20, 20), 0.50, 560, "normal"),
    ("pill", (0.03, 0.20), (0.03, 0.40), 3, 1 / 3, 7, (20, 20), 0.70, 320, "normal"),
    ("screw", (0.03, 0.12), (0.03, 0.12), 4, 1, 3, (200, 60), 0.50, 560, "normal"),
    ("toothbrush", (0.03, 0.40), (0.03, 0.20), 3, 1 / 6, 15, (20, 20), 0.25, 320, "normal"),
    ("transistor", (0.03, 0.40), (0.03, 0.40), 3, 1 / 6, 15, None, None, 320, "normal"),
    ("zipper", (0.03, 0.40), (0.03, 0.20), 4, 1 / 6, 15, (200, 60), 0.70, 320, "normal"),
    ("carpet", (0.03, 0.40), (0.03, 0.40), 4, 1 / 3, 7, None, None, 320, "mixed"),
    ("wood", (0.03, 0.40), (0.03, 0.40), 4, 1 / 6, 15, None, None, 320, "mixed"),
    ("chest_xray", (0.03, 0.40), (0.03, 0.40), 3, 1 / 2, 4, (0, 20), 0.70, 240, "mixed"),
])
def test_table_rows(name, half_h, half_w, n_max, k, y0, bg, t_obj, epochs, clone):
    p = get_preset(name)
    assert p.half_h == half_h and p.half_w == half_w and p.n_max == n_max
    assert p.logistic == pytest.approx((k, y0))
    assert p.background == (None if bg is None else tuple(map(float, bg)))
    if t_obj is not None:
        assert p.t_object == t_obj
    assert p.epochs == epochs and p.clone == clone


def test_transforms_follow_the_class_kind():
    for name in TEXTURES:
        p = PRESETS[name]
        assert (p.image_size, p.crop, p.center_crop, p.vflip, p.rotation) == (264, 256, None, True, 0)
        assert p.resize_bounds == (0.5, 2.0)
    for name in OBJECTS:
        p = PRESETS[name]
        assert (p.image_size, p.center_crop, p.crop, p.vflip) == (256, 230, 224, False)
        assert p.rotation == (5.0 if name in ("bottle", "hazelnut", "metal_nut", "screw") else 0.0)
        assert p.resize_bounds == (0.7, 1.3)
    x = PRESETS["chest_xray"]
    assert (x.channels, x.normalize, x.rotation, x.t_overlap, x.gamma) == (1, "none", 3.0, 0.70, (2.0, 0.03, 0.05))


def test_texture_bounds_do_not_leak_into_other_classes():
    # The authors' code shared a mutable default; the table keeps every row independent.
    assert PRESETS["wood"].resize_bounds == (0.5, 2.0)
    assert PRESETS["chest_xray"].resize_bounds == (0.7, 1.3)


def test_overrides_from_command_line_json_and_yaml(tmp_path):
    p = parse(["--category", "bottle", "--set", "n_max=5", "--set", "half_w=0.05,0.3", "--resize-clip", "paper"])
    assert (p.n_max, p.half_w, p.resize_clip) == (5, (0.05, 0.3), "paper")
    f = tmp_path / "o.json"
    f.write_text(json.dumps({"logistic": [0.5, 3], "background": None, "epochs": 10}))
    p = parse(["--category", "bottle", "--preset-file", str(f), "--set", "epochs=12"])
    assert p.logistic == (0.5, 3.0) and p.background is None and p.epochs == 12  # --set wins
    y = tmp_path / "o.yaml"
    y.write_text("clone: mixed\nt_object: 0.4\n")
    p = parse(["--category", "pill", "--preset-file", str(y)])
    assert (p.clone, p.t_object, p.name) == ("mixed", 0.4, "pill")


def test_unknown_category_falls_back_to_generic_and_preset_flag_wins():
    assert parse(["--category", "tire"]).name == "generic"
    assert parse(["--category", "tire", "--preset", "carpet"]).clone == "mixed"


@pytest.mark.parametrize("argv,match", [
    (["--category", "x", "--preset", "bottel"], "unknown preset 'bottel'"),
    (["--category", "bottle", "--set", "nmax=3"], r"unknown preset field\(s\) \['nmax'\]"),
    (["--category", "bottle", "--set", "n_max=three"], "n_max"),
    (["--category", "bottle", "--set", "clone=poisson"], "clone must be one of"),
    (["--category", "bottle", "--set", "half_h=0.3,0.1"], "half_h must satisfy"),
    (["--category", "bottle", "--set", "n_max"], "field=value"),
])
def test_bad_overrides_raise_clear_errors(argv, match):
    with pytest.raises(PresetError, match=match):
        parse(argv)


def test_preset_file_errors(tmp_path):
    with pytest.raises(PresetError, match="does not exist"):
        parse(["--category", "bottle", "--preset-file", str(tmp_path / "missing.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(PresetError, match="expected a mapping"):
        parse(["--category", "bottle", "--preset-file", str(bad)])
