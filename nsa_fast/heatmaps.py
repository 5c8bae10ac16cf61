"""predict's figure of one image: the input at its own size beside the anomaly map over it, a
colour bar that names what it measures, and a caption with the file name, the score and the map's
maximum as scores.csv writes them (and the decision, once a threshold is given). For object
presets a dashed box marks the central crop the network sees; outside it the map is 0 by the
paper's protocol and is shown washed out (display only: the maps and metrics are not changed).

Composed pixel by pixel like the grids of ``viz``, so the size is exact: (H + caption band,
2 W + 2 GAP + colour bar) for an H x W input.
"""
from __future__ import annotations

import cv2
import numpy as np

from .viz import (CROP_NOTE, GAP, SCORE_BAR_W, WHITE, as_rgb, caption_band, crop_region, draw_dashed_box,
                  label_to_rgb, score_bar, wrap)

SCORE_LABEL = "anomaly score (model output, 0-1)"


def score_text(value: float) -> str:
    """A score as scores.csv writes it (9 significant digits), so captions and the file agree."""
    return f"{value:.9g}"


def score_caption(name: str, score: float, max_value: float, threshold: float | None = None,
                  normalised: float | None = None) -> list[str]:
    """Caption lines for one predicted image: its file name; its score (the map's mean, the image
    score of the evaluation) and the map's maximum, written as in scores.csv; and, when a
    ``threshold`` on the score is given, the decision (score above the threshold: defective) with
    the normalised score (0.5 at the threshold) when that is given."""
    lines = [name, f"score (mean of the map) {score_text(score)}, max of the map {score_text(max_value)}"]
    if threshold is not None:
        verdict = "defective" if score > threshold else "good"
        norm = "" if normalised is None else f", normalised score {normalised:.3f}"
        lines.append(f"decision: {verdict} (threshold {score_text(threshold)} on the score{norm})")
    return lines


def text_zoom(height: int, width: int) -> int:
    """How much larger than on a 256-pixel image captions and the colour bar are drawn beside an
    image of this size, so that they stay readable when the figure is shown whole."""
    return max(1, min(height, width) // 400)


def _zoomed(part: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return part if part.shape[:2] == shape else cv2.resize(part, shape[::-1], interpolation=cv2.INTER_LINEAR)


def map_over_image(image: np.ndarray, amap: np.ndarray, vmax: float,
                   box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The map in colour over the image in grey (so that every colour is the map's), (H, W, 3)
    uint8; the higher the map, the more opaque its colour (30 % at 0, 90 % at vmax), so that the
    image stays visible where the map is low. With ``box`` (the region the network saw, y0, y1,
    x0, x1), the map is shown only inside it: outside, the image is washed out and uncoloured, and
    a dashed line marks the border."""
    grey = np.repeat(cv2.cvtColor(as_rgb(image), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1).astype(np.float32)
    alpha = (0.3 + 0.6 * np.clip(amap / max(vmax, 1e-6), 0.0, 1.0))[..., None]
    out = ((1 - alpha) * grey + alpha * label_to_rgb(amap, vmax)).astype(np.uint8)
    if box is not None:
        outside = ~crop_region(box, amap.shape)
        out[outside] = (0.6 * grey[outside] + 0.4 * WHITE).astype(np.uint8)
        draw_dashed_box(out, box, thickness=max(1, min(amap.shape) // 160))
    return out


def figure_notes(vmax: float, scale_label: str, boxed: bool) -> list[str]:
    """The lines under a heatmap's own caption: what the colours measure, and what the dashed box
    means when there is one."""
    scale = (f"colours: {scale_label}, 0 to {vmax:.3g} (the same scale in every heatmap of this run); "
             "brighter = more anomalous")
    return [scale, CROP_NOTE] if boxed else [scale]


def heatmap_figure(image: np.ndarray, amap: np.ndarray, vmax: float, caption: list[str],
                   box: tuple[int, int, int, int] | None = None, scale_label: str = SCORE_LABEL) -> np.ndarray:
    """predict's figure of one image, uint8 RGB: the input as it is (H, W) on the left, the map
    over it on the right, the colour scale 0..vmax named ``scale_label`` beside them, and the
    caption lines (``score_caption``) in a band below, with a note on the dashed box when ``box``
    (the region the network saw, y0, y1, x0, x1 in the input's pixels) is given.

    image: uint8 (H, W, 1 or 3) RGB; amap: float (H, W), the anomaly map at the input's size.
    Size: (H + k * (lines * LINE_H + GAP), 2 W + 2 GAP + k * SCORE_BAR_W) with k = text_zoom(H, W).
    """
    H, W = amap.shape
    if image.shape[:2] != (H, W):
        raise ValueError(f"image {image.shape[:2]} and map {amap.shape} differ in size")
    k = text_zoom(H, W)
    gap = np.full((H, GAP, 3), WHITE, np.uint8)
    bar = _zoomed(score_bar(vmax, -(-H // k), scale_label), (H, k * SCORE_BAR_W))
    top = np.concatenate([as_rgb(image), gap, map_over_image(image, amap, vmax, box), gap, bar], 1)
    lines = [*caption, *figure_notes(vmax, scale_label, box is not None)]
    width = -(-top.shape[1] // k)
    band = caption_band(wrap(lines, width), width)
    return np.concatenate([top, _zoomed(band, (k * band.shape[0], top.shape[1]))], 0)
