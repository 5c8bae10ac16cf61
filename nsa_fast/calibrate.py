"""python -m nsa_fast.calibrate: NSA's settings for a class, measured on its normal training images.

Reads only the normal training images (validation and test images are never looked at unless
--compare-real is given) and writes a preset file (TOML, commented: each decision says why) that
``python -m nsa_fast.train --preset FILE``, ``synth --preset FILE`` and ``NSA.from_preset(FILE)``
accept. It decides:
  kind          object or texture: whether a plain background separates from a foreground, and
                how much the content moves between images;
  background    the object-mask rule (b, t) of objects, checked on every training image;
  rotation, center_crop
                the rotation and shift ranges: none for an aligned object, the paper's for others;
  half_h, half_w, n_max, t_object
                patch half-size bounds from the object's extent, the number of patches, and the
                object share a patch needs;
  clone         mixed gradients for textures, as the paper; for objects, normal where the images
                have sharp contrast changes (the paper's reason), mixed where they have none (as the
                paper's chest X-rays);
  logistic      (k, y0) of the logistic label, fitted on sample anomalies of these settings so that
                labels reach 0.5 at the median intensity change and 0.95 at its 90th percentile;
  resize_bounds by kind, as the paper.
Beside the preset FILE.toml it writes FILE.calibration.png (synthetic anomalies: inputs, labels,
object masks) and FILE.calibration.json (the measurements and a statistics table), and prints the
preset beside the nearest built-in one.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import cli
from .calibration_report import Calibration, sample_anomalies
from .cli import Parser, positive_int, seed_int
from .errors import InputError
from .presets import Preset

MIN_IMAGES = 8          # fewer give no basis for the statistics below
SIDE = 256              # images are measured at the generic preset's size
RING = SIDE // 32       # the border ring where a background shows
UNIFORM_RING = 40.0     # grey levels between the ring's 10th and 90th percentile: a plain background
ALIGNED = 0.55          # per-pixel spread across images / overall spread, below which content stays put
STILL_PX = 3.0          # object centroids spread less than this (pixels): no shift needed
SHARP_STEP = 40.0       # grey levels between neighbouring pixels: a sharp contrast change
SHARP_SHARE = 0.001     # share of such steps above which mixed gradients smear objects' edges
LABEL_MID, LABEL_TOP = 50, 90  # percentiles of the intensity change where labels reach 0.5 and 0.95


def check_files(paths: list[Path], shapes: list[tuple]) -> None:
    """Enough images, and of one size (before any is resized)."""
    if len(paths) < MIN_IMAGES:
        raise InputError(f"calibration needs at least {MIN_IMAGES} normal training images, got {len(paths)} "
                         f"(e.g. {str(paths[0])!r}); add images of the product.")
    sizes: dict[tuple, int] = {}
    for s in shapes:
        sizes[s[:2]] = sizes.get(s[:2], 0) + 1
    if len(sizes) > 1:
        desc = ", ".join(f"{w}x{h} ({n})" for (h, w), n in sorted(sizes.items(), key=lambda kv: -kv[1]))
        raise InputError(f"the training images have different sizes (width x height: {desc}); calibration measures "
                         "positions and extents, so crop or resize them to one size first.")


def check_images(images: np.ndarray) -> None:
    """Photos, not noise: neighbouring pixels correlate."""
    g = images.mean(-1)
    a, b = g[:, :, :-1].reshape(-1), g[:, :, 1:].reshape(-1)
    r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
    if not r > 0.3:
        raise InputError(f"the training images look like noise (neighbouring pixels correlate at r={r:.2f}, photos "
                         "at 0.8 or more); calibration needs photos of the product.")


def measure(images: np.ndarray) -> dict:
    """What the decisions rest on: background level and spread in the border ring, how far each
    pixel varies across images, and (with a background) the objects' masks."""
    from .objects import object_mask

    g = images.mean(-1)
    ring_px = g[:, border_ring(g.shape[1:])]
    b = float(np.median(ring_px))
    spread = float(np.median(np.percentile(ring_px, 90, axis=1) - np.percentile(ring_px, 10, axis=1)))
    t = float(np.clip(np.percentile(np.abs(ring_px - b), 99.5), 10, 120))
    masks = np.stack([object_mask(img, (b, t)) for img in images])
    share, good = masks.mean((1, 2)), masks_pass(masks)
    region = masks.any(0) if good.mean() >= 0.8 else np.ones(g.shape[1:], bool)
    steps = np.maximum(np.abs(np.diff(g, axis=2))[:, :-1], np.abs(np.diff(g, axis=1))[:, :, :-1])
    per_pixel = float(g.std(0)[region].mean())
    overall = float(g[:, region].std()) or 1.0
    return {"background_level": b, "ring_spread": spread, "threshold": t, "masks": masks,
            "object_share": share, "mask_ok": good, "aligned_ratio": per_pixel / overall,
            "sharp_share": float((steps > SHARP_STEP).mean())}


def border_ring(shape: tuple[int, int]) -> np.ndarray:
    ring = np.zeros(shape, bool)
    ring[:RING], ring[-RING:], ring[:, :RING], ring[:, -RING:] = True, True, True, True
    return ring


def masks_pass(masks: np.ndarray) -> np.ndarray:
    """Per image, whether its object mask is plausible: it covers 2-90 % of the image and under
    5 % of the border ring."""
    share, ring_share = masks.mean((1, 2)), masks[:, border_ring(masks.shape[1:])].mean(1)
    return (share > 0.02) & (share < 0.9) & (ring_share < 0.05)


def mask_check(images: np.ndarray, background: tuple[float, float]) -> float:
    """The share of images whose object mask under ``background`` passes."""
    from .objects import object_mask

    return float(masks_pass(np.stack([object_mask(img, background) for img in images])).mean())


def _extent(mask: np.ndarray) -> tuple[float, float, float, tuple[float, float]]:
    ys, xs = np.nonzero(mask)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    return h / mask.shape[0], w / mask.shape[1], len(ys) / (h * w), (ys.mean(), xs.mean())


def sizes(kind: str, native: int) -> dict:
    """The paper's sizes (objects 256 -> 230 -> 224, textures 264 -> 256) where the images are that
    large; smaller images keep their own size (no upscaling) with a crop a multiple of 32 below it."""
    if kind == "texture":
        crop = 256 if native >= 264 else max(32, (native - 8) // 32 * 32)
        return {"image_size": crop + 8, "crop": crop}
    if native >= 256:
        return {"image_size": 256, "center_crop": 230, "crop": 224}
    crop = max(32, int(native * 0.875) // 32 * 32)
    return {"image_size": native, "center_crop": min(native, crop + 6), "crop": crop}


def decide(images: np.ndarray, name: str, native: int = SIDE) -> tuple[Preset, dict[str, str], dict]:
    """The preset's fields from the images (measured at SIDE x SIDE; ``native``: their own side)."""
    m = measure(images)
    reasons: dict[str, str] = {}
    plain = m["ring_spread"] <= UNIFORM_RING
    ok_share = float(m["mask_ok"].mean())
    separates = plain and ok_share >= 0.8
    aligned = m["aligned_ratio"] < ALIGNED
    base = Preset(name=name)
    measured = {"background_level": round(m["background_level"], 1), "ring_spread": round(m["ring_spread"], 1),
                "mask_threshold": round(m["threshold"], 1), "mask_ok_share": round(ok_share, 3),
                "aligned_ratio": round(m["aligned_ratio"], 3), "sharp_share": round(m["sharp_share"], 5)}
    if separates or aligned:
        p = replace(base, kind="object", **sizes("object", native))
        reasons["kind"] = ("object: " + (f"a plain background (border spread {m['ring_spread']:.0f} grey levels) "
                                         f"separates from a foreground in {100 * ok_share:.0f} % of the images"
                                         if separates else
                                         f"the content stays in place (per-pixel / overall spread "
                                         f"{m['aligned_ratio']:.2f} < {ALIGNED})"))
    else:
        p = replace(base, kind="texture", n_max=4, clone="mixed", resize_bounds=(0.5, 2.0), center_crop=None,
                    vflip=True, **sizes("texture", native))
        reasons["kind"] = (f"texture: no plain background (border spread {m['ring_spread']:.0f} > {UNIFORM_RING:.0f} "
                           f"grey levels, or masks fit {100 * ok_share:.0f} % of images) and the content moves "
                           f"(per-pixel / overall spread {m['aligned_ratio']:.2f} >= {ALIGNED})")
    if p.kind == "object" and separates:
        b, t = round(m["background_level"], 1), round(m["threshold"], 1)
        fails = int((~m["mask_ok"]).sum())
        p = replace(p, background=(b, t))
        reasons["background"] = (f"object where the channel mean differs from {b:g} by more than {t:g} (the border "
                                 f"ring's level and its 99.5th percentile deviation); the mask misses or spills in "
                                 f"{fails} of {len(images)} images ({100 * fails / len(images):.0f} %)")
        ext = [_extent(mk) for mk, okay in zip(m["masks"], m["mask_ok"]) if okay]
        eh, ew, fill = (float(np.median([e[i] for e in ext])) for i in range(3))
        cy, cx = np.array([e[3] for e in ext]).T
        hh, hw = (round(float(np.clip(0.5 * e, 0.06, 0.40)), 2) for e in (eh, ew))
        t_obj = 0.7 if fill > 0.6 else 0.5 if fill > 0.3 else 0.25
        p = replace(p, half_h=(0.03, hh), half_w=(0.03, hw), t_object=t_obj)
        reasons["half_h, half_w"] = (f"at most half the object's extent (height {100 * eh:.0f} %, width {100 * ew:.0f} % "
                                     f"of the image), within 6-40 %")
        reasons["t_object"] = f"the object fills {100 * fill:.0f} % of its bounding box"
        shift = float(max(cy.std(), cx.std()))
        measured.update(object_extent=[round(eh, 3), round(ew, 3)], object_fill=round(fill, 3),
                        centroid_spread_px=round(shift, 2))
    else:
        shift = 0.0 if aligned else float("inf")
        if p.kind == "object":
            reasons["background"] = (f"none: no plain background (border spread {m['ring_spread']:.0f} grey levels, "
                                     f"masks fit {100 * ok_share:.0f} % of images); patches go anywhere")
    if p.kind == "object":
        still = aligned and shift < STILL_PX
        p = replace(p, rotation=0.0 if aligned else 5.0, center_crop=p.crop if still else p.center_crop)
        reasons["rotation, center_crop"] = (
            "no rotation or shift: the object is aligned (centroids spread "
            f"{shift:.1f} px)" if still else
            ("no rotation; shift +-3 px (the paper's random crop): content aligned, centroids spread "
             f"{shift:.1f} px" if aligned else "rotation +-5 degrees and shift +-3 px, as the paper's unaligned objects: "
             f"the content moves (spread ratio {m['aligned_ratio']:.2f})"))
        sharp = f"{100 * m['sharp_share']:.2f} % of neighbouring pixels differ by more than {SHARP_STEP:.0f} grey levels"
        if m["sharp_share"] >= SHARP_SHARE:
            reasons["clone"] = (f"normal, as the paper's objects: {sharp}, and mixed gradients smear such sharp "
                                "contrast changes near a patch's edge")
        else:
            p = replace(p, clone="mixed")
            reasons["clone"] = (f"mixed, not the paper's normal for objects: the data argues otherwise, since only "
                                f"{sharp} (under {100 * SHARP_SHARE:g} %), so there are no sharp contrast changes for "
                                "mixed gradients to smear (as the paper's chest X-rays)")
    else:
        reasons["rotation, center_crop"] = "none, vertical flips instead (the paper's textures)"
        reasons["clone"] = "mixed gradients, as the paper's textures"
    reasons["resize_bounds"] = f"{p.resize_bounds[0]:g}-{p.resize_bounds[1]:g}, the paper's for {p.kind}s"
    papers = (264, 256) if p.kind == "texture" else (256, 224)
    reasons["image_size, crop"] = (f"{p.image_size} px, crop {p.crop}: " +
                                   ("the paper's" if (p.image_size, p.crop) == papers else
                                    f"the images' own {native} px (no upscaling), crop a multiple of 32"))
    reasons["n_max"] = f"{p.n_max} patches at most, the paper's for {p.kind}s"
    return p, reasons, measured


def fit_logistic(images: np.ndarray, preset: Preset, n: int, seed: int) -> tuple[tuple[float, float], str, np.ndarray]:
    """(k, y0): the label reaches 0.5 at the median and 0.95 at the 90th percentile of the
    intensity change inside n sample anomalies' patches."""
    items, _ = sample_anomalies(images, preset, n, seed, "intensity")
    change = np.concatenate([it["label"][it["label"] > 0] for it in items])
    if change.size == 0:
        raise InputError(f"none of {n} sample anomalies changed the image: every patch was skipped. Check the "
                         "images (see the .calibration.json file) or give the preset by hand.")
    y0, top = (float(v) for v in np.percentile(change, (LABEL_MID, LABEL_TOP)))
    k = math.log(19) / max(top - y0, 1.0)
    k, y0 = float(f"{k:.3g}"), round(y0, 1)
    why = (f"labels reach 0.5 at {y0:g} and 0.95 at {top:.1f} grey levels, the {LABEL_MID}th and {LABEL_TOP}th "
           f"percentiles of the change in {n} sample anomalies")
    return (k, y0), why, change


def calibrate(images: np.ndarray, name: str, n: int = 300, seed: int = 0, native: int = SIDE) -> Calibration:
    preset, reasons, measured = decide(images, name, native)
    if images.shape[-1] == 1:
        preset = replace(preset, channels=1, normalize="none")
    logistic, reasons["logistic"], change = fit_logistic(images, preset, n, seed)
    preset = preset.replace(logistic=logistic)
    items, st = sample_anomalies(images, preset, n, seed, "logistic")
    labels = np.stack([it["label"] for it in items])
    area = (labels > 0).mean((1, 2))
    stats = {"samples": n, "patch_area_pct": _summary(100 * area), "label_mean_in_patches":
             round(float(labels[labels > 0].mean()), 3) if (labels > 0).any() else 0.0,
             "intensity_change": _summary(change), "tried": st.tried, "accepted": st.accepted,
             "skipped_pct": {r: round(100 * c / max(st.tried, 1), 1) for r, c in st.skipped.items()},
             "empty_labels": st.empty_labels}
    return Calibration(preset, reasons, measured, stats)


def _summary(v: np.ndarray) -> dict:
    return {k: round(float(f(v)), 2) for k, f in (("mean", np.mean), ("p10", lambda x: np.percentile(x, 10)),
                                                  ("median", np.median), ("p90", lambda x: np.percentile(x, 90)))}


def main(argv=None) -> int:
    return cli.run(_main, argv)


def _main(argv) -> int:
    from .calibration_report import figure, nearest_preset, side_by_side, to_toml
    from .data import load_images
    from .demo import resolve_root
    from .io import output_folder, raw_pixels, write_image, write_text_atomic
    from .layouts import add_layout_arg, open_dataset

    ap = Parser(prog="python -m nsa_fast.calibrate", description=__doc__)
    ap.add_argument("--data", required=True, help="dataset root (see --layout) or 'demo'")
    ap.add_argument("--category", required=True, help="class folder under --data")
    add_layout_arg(ap)
    ap.add_argument("--out", help="preset file to write (.toml); FILE.calibration.png and FILE.calibration.json go "
                                  "beside it (default: calibrated/CATEGORY.toml)")
    ap.add_argument("--samples", type=positive_int, default=300, help="sample anomalies the label is fitted on")
    ap.add_argument("--seed", type=seed_int, default=0, help="seeds the sample anomalies")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing preset file")
    ap.add_argument("--compare-real", action="store_true",
                    help="also compare the synthetic anomalies with the real defects of the test set (test/ with "
                         "ground_truth/), per defect type")
    a = ap.parse_args(argv)
    out = Path(a.out or f"calibrated/{a.category}.toml")
    if out.suffix.lower() != ".toml":
        ap.error(f"--out must name a .toml file, got {str(out)!r}")
    figure_path, table_path = out.with_suffix(".calibration.png"), out.with_suffix(".calibration.json")
    there = [p for p in (out, figure_path, table_path) if p.exists()]
    if there and not a.overwrite:
        raise InputError(f"{str(there[0])!r} exists; pass --overwrite to replace it, or another --out.")
    root = resolve_root(a.data)
    ds = open_dataset(root, a.category, a.layout)
    files = ds.train
    raw = [raw_pixels(f) for f in files]
    channels = {1 if r.ndim == 2 else r.shape[2] for r in raw}
    loader = Preset(name="load", channels=1 if channels == {1} else 3, normalize="none", image_size=SIDE,
                    center_crop=None, crop=SIDE)
    check_files(files, [r.shape for r in raw])
    images = load_images(files, loader, SIDE)
    check_images(images)
    cal = calibrate(images, f"{a.category}-calibrated", a.samples, a.seed, native=min(raw[0].shape[:2]))
    if ds.validation and cal.preset.background is not None:  # normal images never trained on check the rule
        held = load_images(ds.validation, loader, SIDE)
        ok = mask_check(held, cal.preset.background)
        cal.measured["validation_mask_ok_share"] = round(ok, 3)
        cal.reasons["background"] += (f"; on the {len(held)} validation images it fails in "
                                      f"{100 * (1 - ok):.0f} %")
    header = [f"nsa_fast preset for {a.category!r}, calibrated from its {len(files)} normal training images",
              f"(python -m nsa_fast.calibrate --data {a.data} --category {a.category}; {ds.layout} layout).",
              "Edit freely: python -m nsa_fast.train --preset FILE checks every field."]
    output_folder(out.parent)
    write_text_atomic(out, to_toml(cal, header))
    write_image(figure_path, figure(images, cal, a.seed))
    report = {"preset": str(out), "images": len(files), "measured": cal.measured, "reasons": cal.reasons,
              "statistics": cal.stats}
    if a.compare_real:
        from .compare_real import compare, compare_lines

        samples, _ = sample_anomalies(images, cal.preset, a.samples, a.seed, "logistic")
        report["compare_real"] = comparison = compare(root, a.category, a.layout, samples, images, loader)
    write_text_atomic(table_path, json.dumps(report, indent=2))
    near = nearest_preset(cal.preset)
    print(f"Calibrated {a.category!r} from {len(files)} normal training images ({ds.layout} layout):")
    for fields, why in cal.reasons.items():
        print(f"  {fields}: {why}")
    print(side_by_side(cal.preset, near))
    s = cal.stats
    area = s["patch_area_pct"]
    print(f"Sample anomalies of this preset ({s['samples']}):\n"
          f"  patch area       {area['median']:.1f} % of the image (median; 10-90 %: {area['p10']:.1f}-{area['p90']:.1f})\n"
          f"  label mean       {s['label_mean_in_patches']:.2f} inside the patches\n"
          f"  patches skipped  " + (", ".join(f"{r} {v:.1f} %" for r, v in s["skipped_pct"].items() if v) or "none") +
          f" of {s['tried']} tried")
    if a.compare_real:
        print("\n".join(compare_lines(comparison)))
    print(f"Wrote {out}, {figure_path} and {table_path}. Train with (the paper's {cal.preset.epochs} epochs at "
          f"{cal.preset.image_size} px; --epochs and --set image_size=... for less): python -m nsa_fast.train "
          f"--data {a.data} --category {a.category} --preset {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
