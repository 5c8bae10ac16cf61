"""A calibration's record and what it shows a person: the sample anomalies it is measured on, the
preset as commented TOML, a side-by-side table with the nearest built-in preset, and a figure of
synthetic anomalies with their labels and object masks."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .presets import PRESETS, Preset


@dataclass
class Calibration:
    preset: Preset
    reasons: dict[str, str]      # field(s) -> one line why
    measured: dict[str, float | str | list]
    stats: dict[str, float | dict]


def sample_anomalies(images: np.ndarray, preset: Preset, n: int, seed: int, label: str):
    import cv2

    from .synthesis import SyntheticDataset, sample_keys

    s = preset.image_size
    if images.shape[1] != s:  # textures train at crop + 8
        images = np.stack([cv2.resize(x, (s, s), interpolation=cv2.INTER_LINEAR).reshape(s, s, x.shape[-1])
                           for x in images])
    ds = SyntheticDataset(list(images), preset, "nsa", label, seed)
    return [ds[k] for k in sample_keys(n, len(ds))], ds.stats


def nearest_preset(p: Preset) -> Preset:
    """The built-in preset closest to ``p`` (same kind first, then patch bounds, label, rules)."""
    def dist(q: Preset) -> float:
        return (10 * (q.kind != p.kind) + 5 * abs(q.half_h[1] - p.half_h[1]) + 5 * abs(q.half_w[1] - p.half_w[1])
                + abs(math.log(q.logistic[0] / p.logistic[0])) + abs(q.logistic[1] - p.logistic[1]) / 10
                + ((q.background is None) != (p.background is None)) + abs(q.rotation - p.rotation) / 5
                + (q.clone != p.clone))
    return min((q for q in PRESETS.values() if q.name not in ("demo",)), key=dist)


SHOWN = ("kind", "background", "t_object", "half_h", "half_w", "n_max", "rotation", "center_crop", "crop", "clone",
         "resize_bounds", "logistic")


def _fmt(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return ", ".join(f"{x:g}" for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def side_by_side(p: Preset, q: Preset) -> str:
    rows = [("field", "calibrated", f"nearest built-in: {q.name}")] + [(f, _fmt(getattr(p, f)), _fmt(getattr(q, f)))
                                                                       for f in SHOWN]
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    return "\n".join(f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)


def to_toml(cal: Calibration, header: list[str]) -> str:
    """The preset as TOML a person can edit: every field, the decisions' reasons as comments."""
    lines = [f"# {h}" for h in header] + [""]
    why_of = {f.strip(): why for fields, why in cal.reasons.items() for f in fields.split(",")}
    for key, value in cal.preset.to_dict().items():
        if key in why_of:
            lines.append(f"# {key}: {why_of[key]}")
        if value is None:
            text = '"none"'
        elif isinstance(value, (tuple, list)):
            text = "[" + ", ".join(repr(float(x)) for x in value) + "]"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = json.dumps(value)
        else:
            text = repr(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def figure(images: np.ndarray, cal: Calibration, seed: int, columns: int = 8) -> np.ndarray:
    from .labels import get_label_type
    from .objects import object_mask
    from .viz import label_to_rgb, labelled_grid

    items, _ = sample_anomalies(images, cal.preset, columns, seed, "logistic")
    rgb = [np.repeat(it["image"], 3, -1) if it["image"].shape[-1] == 1 else it["image"] for it in items]
    vmax = get_label_type("logistic").vmax
    rows = [("input", rgb), ("label", [label_to_rgb(it["label"], vmax) for it in items])]
    if cal.preset.background is not None:  # a texture has none: every pixel may take a patch
        rows.append(("object\nmask", [np.repeat((object_mask(it["original"], cal.preset.background)[..., None] * 255)
                                                 .astype(np.uint8), 3, -1) for it in items]))
    captions = [[f"sample {i}", f"area {100 * (it['label'] > 0).mean():.1f} %"] for i, it in enumerate(items)]
    return labelled_grid(rows, captions, vmax, "label")
