"""Synthetic anomalies against a class's real defects (``calibrate --compare-real``).

Per defect type of the test set (images with masks) and for the calibrated synthetic anomalies,
three measures taken the same way on both: the defect's area (share of the image), its contrast
(the mean grey level inside the defect against a ring 5 pixels wide around it, in grey levels)
and its position (the centre of the defect as a share of the image's height and width). Where a
real type lies outside the synthetic 10-90 % range, it says which preset field to move.
"""
from __future__ import annotations

import cv2
import numpy as np

RING_PX = 5


def measures(images: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """images uint8 (N, S, S, C), masks bool (N, S, S): area, contrast and centre per image."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * RING_PX + 1, 2 * RING_PX + 1))
    area, contrast, cy, cx = [], [], [], []
    for img, m in zip(images, masks):
        if not m.any():
            continue
        g = img.mean(-1)
        ring = cv2.dilate(m.astype(np.uint8), kernel).astype(bool) & ~m
        ys, xs = np.nonzero(m)
        area.append(m.mean())
        contrast.append(abs(g[m].mean() - g[ring].mean()) if ring.any() else 0.0)
        cy.append(ys.mean() / m.shape[0])
        cx.append(xs.mean() / m.shape[1])
    return {k: np.asarray(v, float) for k, v in (("area", area), ("contrast", contrast), ("cy", cy), ("cx", cx))}


def _row(m: dict[str, np.ndarray]) -> dict:
    def q(v, p):
        return round(float(np.percentile(v, p)), 4) if len(v) else None
    return {"n": len(m["area"]), **{f"{k}_{p}": q(m[k], p) for k in ("area", "contrast") for p in (10, 50, 90)},
            "centre": [q(m["cy"], 50), q(m["cx"], 50)]}


def advice(real: dict, synth: dict) -> list[str]:
    out = []
    if real["area_50"] < synth["area_10"]:
        out.append("real defects are smaller than most synthetic ones: lower the upper bounds of half_h/half_w")
    elif real["area_50"] > synth["area_90"]:
        out.append("real defects are larger than most synthetic ones: raise the upper bounds of half_h/half_w")
    if real["contrast_50"] < synth["contrast_10"]:
        out.append("real defects are fainter: lower the logistic label's y0 so that faint changes are labelled")
    elif real["contrast_50"] > synth["contrast_90"]:
        out.append("real defects are stronger: raise the logistic label's y0 so that faint changes count less")
    return out


def compare(root, category: str, layout: str, samples: list[dict], images: np.ndarray, loader) -> dict:
    """{defect type: real measures, synthetic: measures, advice per type}; ``samples``: the
    calibrated preset's synthetic anomalies (dicts with "image" and "label")."""
    from .data import load_images, load_masks, test_items

    size = images.shape[1]
    items = [i for i in test_items(root, category, layout) if i.label]
    real_images = load_images([i.path for i in items], loader, size)
    real_masks = load_masks(items, size)
    s_img = np.stack([cv2.resize(it["image"], (size, size)).reshape(size, size, -1) for it in samples])
    s_mask = np.stack([cv2.resize((it["label"] > 0).astype(np.uint8), (size, size),
                                  interpolation=cv2.INTER_NEAREST) > 0 for it in samples])
    synth = _row(measures(s_img, s_mask))
    out = {"synthetic": synth, "types": {}}
    for defect in sorted({i.defect for i in items}):
        keep = np.array([i.defect == defect for i in items])
        real = _row(measures(real_images[keep], real_masks[keep]))
        if real["n"]:
            out["types"][defect] = {**real, "advice": advice(real, synth)}
    return out


def compare_lines(c: dict) -> list[str]:
    s = c["synthetic"]
    head = ("Real defects against synthetic anomalies (median, 10-90 %; area in % of the image, contrast in grey "
            "levels against a ring around the defect, centre as (row, column) share):")
    lines = [head, _line("synthetic", s)]
    for defect, r in c["types"].items():
        lines.append(_line(defect, r) + f"  n={r['n']}")
        lines += [f"    -> {a}" for a in r["advice"]] or ["    -> within the synthetic range"]
    return lines


def _line(name: str, r: dict) -> str:
    return (f"  {name:<14} area {100 * r['area_50']:5.1f} % ({100 * r['area_10']:.1f}-{100 * r['area_90']:.1f})"
            f"  contrast {r['contrast_50']:5.1f} ({r['contrast_10']:.1f}-{r['contrast_90']:.1f})  centre {r['centre']}")
