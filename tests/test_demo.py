"""The built-in demo dataset: MVTec layout, exact masks, bounded defect sizes, determinism, cache."""
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
    assert len(pngs(d / "train" / "good")) == demo.N_TRAIN == 40
    assert len(pngs(d / "test" / "good")) == demo.N_TEST_GOOD
    assert sorted(p.name for p in (d / "test").iterdir()) == sorted(("good",) + demo.DEFECTS)
    assert sorted(p.name for p in (d / "ground_truth").iterdir()) == sorted(demo.DEFECTS)
    assert not (d / "ground_truth" / "good").exists()  # MVTec: good images have no masks
    for kind in demo.DEFECTS:
        images = pngs(d / "test" / kind)
        assert len(images) == demo.N_PER_DEFECT
        masks = pngs(d / "ground_truth" / kind)
        assert [m.name for m in masks] == [f"{p.stem}_mask.png" for p in images]
    assert (d / "README.txt").is_file()
    # Nothing stray (such as temporary files) is left, and the layout lists exactly what is there.
    on_disk = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    assert on_disk == sorted(demo.demo_layout())


def test_images_are_uint8_rgb_256(demo_root):
    d = demo_root / demo.DEMO
    for path in d.glob("test/*/*.png"):
        img = read_raw(path)
        assert img.dtype == np.uint8 and img.shape == (256, 256, 3), path
    for path in pngs(d / "train" / "good"):
        img = read_raw(path)
        assert img.dtype == np.uint8 and img.shape == (256, 256, 3), path
        assert not (img[..., 0] == img[..., 2]).all()  # a real colour image, not gray in RGB


def test_masks_are_binary_and_defect_areas_bounded(demo_root):
    d = demo_root / demo.DEMO
    fractions = []
    for kind in demo.DEFECTS:
        for path in pngs(d / "ground_truth" / kind):
            mask = read_raw(path)
            assert mask.dtype == np.uint8 and mask.shape == (256, 256), path  # single channel
            assert set(np.unique(mask)) <= {0, 255}, path
            frac = np.count_nonzero(mask) / mask.size
            assert 0.002 <= frac <= 0.05, (path, frac)
            fractions.append(frac)
    assert len(fractions) == len(demo.DEFECTS) * demo.N_PER_DEFECT


@pytest.mark.parametrize("kind", demo.DEFECTS)
def test_masks_cover_exactly_the_changed_pixels(kind):
    for base, img, mask in demo.defect_images(kind):
        inside = mask > 0
        changed = (img != base).any(axis=2)
        assert not (changed & ~inside).any()  # nothing changed outside the mask
        # ... nearly every masked pixel changes (a patch pixel may match by chance), and clearly.
        assert changed[inside].mean() > 0.95
        diff = np.abs(img.astype(np.int16) - base.astype(np.int16)).max(axis=2)
        assert diff[inside].mean() > 15


def test_defect_images_match_the_files(demo_root):
    d = demo_root / demo.DEMO
    for kind in demo.DEFECTS:
        for i, (_, img, mask) in enumerate(demo.defect_images(kind)):
            assert np.array_equal(cv2.cvtColor(read_raw(d / "test" / kind / f"{i:03d}.png"),
                                               cv2.COLOR_BGR2RGB), img)
            assert np.array_equal(read_raw(d / "ground_truth" / kind / f"{i:03d}_mask.png"), mask)


def test_test_good_images_are_not_training_images(demo_root):
    d = demo_root / demo.DEMO
    train = [read_raw(p) for p in pngs(d / "train" / "good")]
    for path in pngs(d / "test" / "good"):
        img = read_raw(path)
        assert not any(np.array_equal(img, t) for t in train), path


def test_generation_is_deterministic(demo_root, tmp_path):
    other = demo.ensure_demo(tmp_path / "b")
    for rel in demo.demo_layout():
        a = (demo_root / demo.DEMO / rel).read_bytes()
        assert a == (other / demo.DEMO / rel).read_bytes(), rel


def test_training_images_unchanged_from_older_caches():
    # Caches written by earlier releases keep their train/good images (ensure_demo only adds what
    # is missing), so today's generator must make the same pixels. These digests were taken from
    # nsa_fast 0.1's images; regenerate them only on purpose:
    #   [hashlib.sha256(i.tobytes()).hexdigest()[:16] for i in demo.normal_images(3, 0)]
    import hashlib

    files = demo.build_demo()
    want = ["848858d658371725", "a9fe4cd0ac36a7d1", "ed2e2ad6edb99bae"]
    assert [hashlib.sha256(files[f"train/good/{i:03d}.png"].tobytes()).hexdigest()[:16] for i in range(3)] == want


def test_ensure_demo_is_idempotent(tmp_path, monkeypatch):
    root = demo.ensure_demo(tmp_path)
    stamps = {rel: (root / demo.DEMO / rel).stat().st_mtime_ns for rel in demo.demo_layout()}
    calls = []
    monkeypatch.setattr(demo, "build_demo", lambda: calls.append(1) or {})
    assert demo.ensure_demo(tmp_path) == root
    assert not calls  # a complete cache is not regenerated
    assert {rel: (root / demo.DEMO / rel).stat().st_mtime_ns for rel in demo.demo_layout()} == stamps


def test_ensure_demo_repairs_a_partial_cache(demo_root, tmp_path):
    ref = demo_root / demo.DEMO
    root = demo.ensure_demo(tmp_path)
    d = root / demo.DEMO
    # An older cache that held only the training images ...
    for sub in ("test", "ground_truth"):
        for p in sorted((d / sub).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        (d / sub).rmdir()
    (d / "README.txt").unlink()
    # ... and, besides, a lost training image and a lost mask of a kept test image.
    (d / "train" / "good" / "007.png").unlink()
    (d / "test" / "stain").mkdir(parents=True)
    (d / "test" / "stain" / "003.png").write_bytes((ref / "test" / "stain" / "003.png").read_bytes())
    keep = (d / "train" / "good" / "000.png").stat().st_mtime_ns
    demo.ensure_demo(tmp_path)
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) == sorted(demo.demo_layout())
    for rel in demo.demo_layout():
        assert (d / rel).read_bytes() == (ref / rel).read_bytes(), rel
    assert (d / "train" / "good" / "000.png").stat().st_mtime_ns == keep  # present files are kept


def test_resolve_root_uses_the_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NSA_FAST_CACHE", str(tmp_path / "cache"))
    assert demo.cache_dir() == tmp_path / "cache"
    root = demo.resolve_root("demo")
    assert root == tmp_path / "cache" / "data"
    assert len(pngs(root / "demo" / "train" / "good")) == demo.N_TRAIN
    assert len(pngs(root / "demo" / "ground_truth" / "scratch")) == demo.N_PER_DEFECT
    other = tmp_path / "elsewhere"
    assert demo.resolve_root(str(other)) == other and not other.exists()  # a folder: untouched


def test_readme_names_sources_and_licences(demo_root):
    text = (demo_root / demo.DEMO / "README.txt").read_text(encoding="utf-8")
    for word in ("gravel", "grass", "brick", "CC0", "scikit-image", "MVTec"):
        assert word in text


def test_size_is_small(demo_root):
    total = sum(p.stat().st_size for p in (demo_root / demo.DEMO).rglob("*") if p.is_file())
    assert total < 8 * 2 ** 20  # the gravel photo is nearly noise: ~105 kB a PNG


def test_no_temporary_files_left_after_a_failed_write(tmp_path, monkeypatch):
    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(demo.os, "replace", fail)  # fails after the temporary file is written
    with pytest.raises(demo.NsaError, match=r"cannot write the demo data to .* \(disk full\); set NSA_FAST_CACHE"):
        demo.ensure_demo(tmp_path)
    leftovers = [p for p in (tmp_path / demo.DEMO).rglob("*") if p.is_file()]
    assert leftovers == []  # neither a temporary nor a final file of the failed write
