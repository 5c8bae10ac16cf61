"""The built-in demo dataset: MVTec layout, exact masks, recognisable and bounded defects,
determinism, a versioned cache, licences."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from nsa_fast import demo


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return demo.ensure_demo(tmp_path_factory.mktemp("demo_a"))


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def read_raw(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def test_layout_is_complete(demo_root):
    d = demo_root / demo.DEMO
    assert demo.DEFECTS == ("scratch", "stain", "missing")
    assert len(pngs(d / "train" / "good")) == demo.N_TRAIN == 40
    assert len(pngs(d / "test" / "good")) == demo.N_TEST_GOOD == 10
    assert sorted(p.name for p in (d / "test").iterdir()) == sorted(("good",) + demo.DEFECTS)
    assert sorted(p.name for p in (d / "ground_truth").iterdir()) == sorted(demo.DEFECTS)
    assert not (d / "ground_truth" / "good").exists()  # MVTec: good images have no masks
    for kind in demo.DEFECTS:
        images = pngs(d / "test" / kind)
        assert len(images) == demo.N_PER_DEFECT == 7
        masks = pngs(d / "ground_truth" / kind)
        assert [m.name for m in masks] == [f"{p.stem}_mask.png" for p in images]
    assert (d / "README.txt").is_file()
    # Nothing stray (such as temporary files) is left, and the layout lists exactly what is there.
    on_disk = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    assert on_disk == sorted(demo.demo_layout())
    assert demo.demo_layout()[-1] == "README.txt"  # written last: it marks a complete folder


def test_images_are_uint8_rgb_256(demo_root):
    d = demo_root / demo.DEMO
    for path in d.glob("test/*/*.png"):
        img = read_raw(path)
        assert img.dtype == np.uint8 and img.shape == (256, 256, 3), path
    for path in pngs(d / "train" / "good"):
        img = read_raw(path)
        assert img.dtype == np.uint8 and img.shape == (256, 256, 3), path
        b, g, r = img.reshape(-1, 3).mean(0)
        assert r > g + 20 > b + 20  # terracotta, a real colour image, not gray in RGB


def test_masks_are_binary_and_defect_areas_bounded(demo_root):
    d = demo_root / demo.DEMO
    fractions = []
    for kind in demo.DEFECTS:
        for path in pngs(d / "ground_truth" / kind):
            mask = read_raw(path)
            assert mask.dtype == np.uint8 and mask.shape == (256, 256), path  # single channel
            assert set(np.unique(mask)) <= {0, 255}, path
            frac = np.count_nonzero(mask) / mask.size
            assert demo.MIN_AREA <= frac <= demo.MAX_AREA, (path, frac)
            fractions.append(frac)
    assert len(fractions) == len(demo.DEFECTS) * demo.N_PER_DEFECT
    assert (demo.MIN_AREA, demo.MAX_AREA) == (0.01, 0.08)  # large enough to see at 96 px, as README.txt says


@pytest.mark.parametrize("kind", demo.DEFECTS)
def test_masks_cover_exactly_the_changed_pixels(kind):
    for base, img, mask in demo.defect_images(kind):
        inside = mask > 0
        changed = (img != base).any(axis=2)
        assert not (changed & ~inside).any()  # nothing changed outside the mask
        # ... nearly every masked pixel changes, and clearly.
        assert changed[inside].mean() > 0.95
        diff = np.abs(img.astype(np.int16) - base.astype(np.int16)).max(axis=2)
        assert diff[inside].mean() > 40


def spread(pixels: np.ndarray) -> float:
    """Mean spread of the colour channels: 0 for gray, large for a saturated colour."""
    return float((pixels.max(1) - pixels.min(1)).mean())


def test_defects_look_like_what_they_are_called():
    # scratch: pale lines (brighter, less saturated than the terracotta), thin: a large share of
    # its pixels lies on its outline
    for base, img, mask in demo.defect_images("scratch"):
        inside = mask > 0
        assert img[inside].mean() > base[inside].mean() + 50
        assert spread(img[inside].astype(int)) < spread(base[inside].astype(int))
        eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=2)
        assert np.count_nonzero(eroded) < 0.5 * np.count_nonzero(mask)
    # stain: a solid blob whose colour moves away from the terracotta, darker on average
    hues = set()
    for base, img, mask in demo.defect_images("stain"):
        inside = mask > 0
        shift = img[inside].astype(int).mean(0) - base[inside].astype(int).mean(0)
        assert np.abs(shift).max() > 20
        hues.add(int(np.argmax(img[inside].astype(int).mean(0))))  # the strongest channel
    assert len(hues) >= 2  # more than one kind of stain (oil, moss, paint)
    # missing: a dark, grey hole (the rubble under the surface)
    for base, img, mask in demo.defect_images("missing"):
        inside = mask > 0
        assert img[inside].mean() < base[inside].mean() - 30
        assert spread(img[inside].astype(int)) < 0.5 * spread(base[inside].astype(int))


def test_defect_images_match_the_files(demo_root):
    d = demo_root / demo.DEMO
    for kind in demo.DEFECTS:
        for i, (_, img, mask) in enumerate(demo.defect_images(kind)):
            assert np.array_equal(cv2.cvtColor(read_raw(d / "test" / kind / f"{i:03d}.png"),
                                               cv2.COLOR_BGR2RGB), img)
            assert np.array_equal(read_raw(d / "ground_truth" / kind / f"{i:03d}_mask.png"), mask)


def test_test_good_and_validation_images_are_not_training_images(demo_root):
    d = demo_root / demo.DEMO
    train = [read_raw(p) for p in pngs(d / "train" / "good")]
    assert len(pngs(d / "validation" / "good")) == demo.N_VALIDATION
    for path in pngs(d / "test" / "good") + pngs(d / "validation" / "good"):
        img = read_raw(path)
        assert not any(np.array_equal(img, t) for t in train), path


def test_generation_is_deterministic(demo_root, tmp_path):
    other = demo.ensure_demo(tmp_path / "b")
    for rel in demo.demo_layout():
        a = (demo_root / demo.DEMO / rel).read_bytes()
        assert a == (other / demo.DEMO / rel).read_bytes(), rel


def test_the_pixels_are_those_of_this_version():
    # A cache is reused when its README.txt names this version (demo.VERSION), so the generator
    # must keep making these pixels until VERSION is bumped. Changed the demo on purpose? Bump
    # demo.VERSION, then take the new digests:
    #   files = demo.build_demo(); {k: digest(files[k]) for k in DIGESTS}
    import hashlib

    def digest(a: np.ndarray) -> str:
        return hashlib.sha256(a.tobytes()).hexdigest()[:16]

    files = demo.build_demo()
    got = {k: digest(files[k]) for k in DIGESTS}
    assert demo.VERSION == 3 and got == DIGESTS


DIGESTS = {
    "train/good/000.png": "91266b87d0be99e3",
    "validation/good/000.png": "c18d22dd8e8fb5e7",
    "test/good/000.png": "2e70f8313fa027b4",
    "test/scratch/000.png": "68b19bbafa52a266",
    "test/stain/000.png": "788e50aba99c8d27",
    "test/missing/000.png": "78b11627f1e12117",
    "ground_truth/missing/000_mask.png": "c5909250bb6fd402",
}


def test_ensure_demo_is_idempotent(tmp_path, monkeypatch):
    root = demo.ensure_demo(tmp_path)
    stamps = {rel: (root / demo.DEMO / rel).stat().st_mtime_ns for rel in demo.demo_layout()}
    calls = []
    monkeypatch.setattr(demo, "build_demo", lambda: calls.append(1) or {})
    assert demo.ensure_demo(tmp_path) == root
    assert not calls  # a complete cache is not regenerated
    assert {rel: (root / demo.DEMO / rel).stat().st_mtime_ns for rel in demo.demo_layout()} == stamps


def test_ensure_demo_repairs_a_partial_cache_of_this_version(demo_root, tmp_path):
    ref = demo_root / demo.DEMO
    root = demo.ensure_demo(tmp_path)
    d = root / demo.DEMO
    # Lost: a training image, a whole defect folder, and the mask of a kept test image.
    (d / "train" / "good" / "007.png").unlink()
    for p in (d / "test" / "scratch").iterdir():
        p.unlink()
    (d / "test" / "scratch").rmdir()
    (d / "ground_truth" / "stain" / "003_mask.png").unlink()
    keep = (d / "train" / "good" / "000.png").stat().st_mtime_ns
    demo.ensure_demo(tmp_path)
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) == sorted(demo.demo_layout())
    for rel in demo.demo_layout():
        assert (d / rel).read_bytes() == (ref / rel).read_bytes(), rel
    assert (d / "train" / "good" / "000.png").stat().st_mtime_ns == keep  # present files are kept


def test_a_cache_of_another_version_is_rewritten_whole(demo_root, tmp_path):
    # The 0.1 demo: gravel images (here: noise) of the same names, a 'patch' defect that no longer
    # exists, a README.txt without this version; and an older cache still, with training images only.
    ref = demo_root / demo.DEMO
    for name, readme in (("v1", "nsa_fast demo dataset (MVTec AD folder layout)\n...\n"), ("v0", None)):
        d = tmp_path / name / demo.DEMO
        noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), np.uint8)
        for rel in ("train/good/000.png", "test/good/000.png", "test/patch/000.png"):
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(d / rel), noise)
        if readme is not None:
            (d / "README.txt").write_text(readme)
        assert not demo.is_current(d)
        demo.ensure_demo(tmp_path / name)
        assert demo.is_current(d)
        assert sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) == sorted(demo.demo_layout())
        assert not (d / "test" / "patch").exists()  # an evaluation would count it as a defect type
        for rel in demo.demo_layout():
            assert (d / rel).read_bytes() == (ref / rel).read_bytes(), rel


def test_an_interrupted_first_write_is_finished_on_the_next_use(demo_root, tmp_path, monkeypatch):
    real = demo._write_atomic
    written = []

    def crash_at_the_tenth(path, content):
        if len(written) == 10:
            raise KeyboardInterrupt
        written.append(path)
        real(path, content)

    monkeypatch.setattr(demo, "_write_atomic", crash_at_the_tenth)
    with pytest.raises(KeyboardInterrupt):
        demo.ensure_demo(tmp_path)
    monkeypatch.setattr(demo, "_write_atomic", real)
    d = tmp_path / demo.DEMO
    assert not (d / "README.txt").exists() and not demo.is_current(d)
    demo.ensure_demo(tmp_path)
    for rel in demo.demo_layout():
        assert (d / rel).read_bytes() == (demo_root / demo.DEMO / rel).read_bytes(), rel


def test_resolve_root_uses_the_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NSA_FAST_CACHE", str(tmp_path / "cache"))
    assert demo.cache_dir() == tmp_path / "cache"
    root = demo.resolve_root("demo")
    assert root == tmp_path / "cache" / "data"
    assert len(pngs(root / "demo" / "train" / "good")) == demo.N_TRAIN
    assert len(pngs(root / "demo" / "ground_truth" / "scratch")) == demo.N_PER_DEFECT
    other = tmp_path / "elsewhere"
    assert demo.resolve_root(str(other)) == other and not other.exists()  # a folder: untouched


def test_readme_names_sources_licences_and_version(demo_root):
    text = (demo_root / demo.DEMO / "README.txt").read_text(encoding="utf-8")
    for word in ("brick", "gravel", "CC0", "scikit-image", "BSD", "MVTec", f"version {demo.VERSION}",
                 *demo.DEFECTS, f"{demo.N_TRAIN} normal images", f"{demo.CROP_MIN}-{demo.CROP_MAX} px"):
        assert word in text, word
    assert "grass" not in text  # no longer a source: the README lists exactly what was used


def test_readme_names_every_photo_the_generator_reads(monkeypatch):
    from skimage import data

    read = set()
    for name in ("brick", "gravel", "grass", "camera", "coins", "moon", "text", "page"):
        real = getattr(data, name)
        monkeypatch.setattr(data, name, lambda real=real, name=name: read.add(name) or real())
    demo.build_demo()
    assert read == {"brick", "gravel"}
    for name in read:
        assert f"skimage.data.{name}()" in demo.README


def test_examples_figure_shows_every_defect_type(demo_root):
    from nsa_fast.data import test_items
    from nsa_fast.viz import example_picks

    items = test_items(demo_root, demo.DEMO)
    labels = np.array([i.label for i in items])
    for picks in (example_picks(labels), example_picks(labels, defects=[i.defect for i in items])):
        assert len(picks) == 8 and len(set(picks)) == 8
        assert {items[i].defect for i in picks} == set(demo.DEFECTS) | {"good"}
        assert [items[i].label for i in picks] == [1] * 6 + [0] * 2


def test_size_is_small(demo_root):
    # 150 normal images (40 for training, 100 validation images: enough for a 1 % false-reject threshold) and
    # 21 defects at about 110 kB each
    total = sum(p.stat().st_size for p in (demo_root / demo.DEMO).rglob("*") if p.is_file())
    assert total < 20 * 2 ** 20


def test_no_temporary_files_left_after_a_failed_write(tmp_path, monkeypatch):
    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(demo.os, "replace", fail)  # fails after the temporary file is written
    with pytest.raises(demo.NsaError, match=r"cannot write the demo data to .* \(disk full\); set NSA_FAST_CACHE"):
        demo.ensure_demo(tmp_path)
    leftovers = [p for p in (tmp_path / demo.DEMO).rglob("*") if p.is_file()]
    assert leftovers == []  # neither a temporary nor a final file of the failed write
