"""Figures people look at: labelled image grids (the paper's Figures 1b and 2, training grids), ROC
and PRO curves, and the runner's chart; the parts ``heatmaps`` (predict's figures) shares with
them: colour bars, wrapped captions, the dashed box around the central crop the network sees.

Image grids are composed pixel by pixel (tiles, caption bands written with OpenCV's fonts, a
colour bar), so their layout is exact and the same at every size; curves and charts are drawn
with matplotlib (Agg backend, nothing needs a display).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

GAP = 4                 # white pixels between tiles
LABEL_W = 110           # the row-label column
LINE_H = 15             # one caption line at FONT_SCALE
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.4
WHITE, INK = 255, (20, 20, 20)


def label_to_rgb(label: np.ndarray, vmax: float) -> np.ndarray:
    """A float map as an RGB heatmap (inferno), 0..vmax; uint8 (H, W, 3)."""
    scaled = np.clip(label / max(vmax, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def as_rgb(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 1 or 3) as (H, W, 3)."""
    return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img


def display_max(maps: np.ndarray) -> float:
    """The heatmap colour scale's top: the 99.9th percentile of all maps, so that faint maps (a
    logistic label on dark images rarely nears 1) still show their structure."""
    return max(float(np.quantile(maps, 0.999)), 1e-6)


def _text(canvas: np.ndarray, text: str, x: int, y: int, width: int) -> None:
    """Write one line at (x, baseline y), shortened with '...' to fit ``width`` pixels."""
    while text and cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0] > width:
        text = text[:-4] + "..." if len(text) > 4 else ""
    cv2.putText(canvas, text, (x, y), FONT, FONT_SCALE, INK, 1, cv2.LINE_AA)


def caption_band(lines: list[str], width: int) -> np.ndarray:
    """A white band holding ``lines`` of text, (len * LINE_H + GAP, width, 3) uint8."""
    band = np.full((len(lines) * LINE_H + GAP, width, 3), WHITE, np.uint8)
    for k, line in enumerate(lines):
        _text(band, line, 2, (k + 1) * LINE_H - 3, width - 4)
    return band


def colour_bar(vmax: float, height: int, label: str) -> np.ndarray:
    """A vertical inferno scale from 0 (bottom) to vmax (top) with tick values, (height, 80, 3)."""
    bar = np.full((height, 80, 3), WHITE, np.uint8)
    top, bottom = LINE_H + 6, height - LINE_H
    ramp = np.linspace(vmax, 0.0, max(bottom - top, 2))[:, None].repeat(14, 1)
    bar[top:bottom, 4:18] = label_to_rgb(ramp, vmax)
    for frac in (0.0, 0.5, 1.0):
        y = int(bottom - frac * (bottom - top - 1))
        _text(bar, f"{frac * vmax:.3g}", 22, min(max(y + 4, LINE_H), height - 2), 56)
    _text(bar, label, 2, LINE_H - 4, 78)
    return bar


def labelled_grid(rows: list[tuple[str, list[np.ndarray]]], captions: list[list[str]] | None,
                  vmax: float, scale_label: str) -> np.ndarray:
    """Rows of equally sized tiles with their labels on the left, a caption band under each
    column (``captions[c]``: lines), and a colour bar for the heatmap rows on the right."""
    tile_h, tile_w = rows[0][1][0].shape[:2]
    ncol = len(rows[0][1])
    body = []
    for name, tiles in rows:
        label = np.full((tile_h, LABEL_W, 3), WHITE, np.uint8)
        for k, word in enumerate(name.split("\n")):
            _text(label, word, 4, tile_h // 2 + k * LINE_H, LABEL_W - 6)
        parts = [label]
        for t in tiles:
            parts += [as_rgb(t), np.full((tile_h, GAP, 3), WHITE, np.uint8)]
        body += [np.concatenate(parts[:-1], 1), np.full((GAP, LABEL_W + ncol * (tile_w + GAP) - GAP, 3), WHITE, np.uint8)]
    grid = np.concatenate(body[:-1], 0)
    if captions:
        n_lines = max(len(c) for c in captions)
        bands = [np.full((n_lines * LINE_H + GAP, LABEL_W, 3), WHITE, np.uint8)]
        for c in captions:
            bands += [caption_band(c + [""] * (n_lines - len(c)), tile_w),
                      np.full((n_lines * LINE_H + GAP, GAP, 3), WHITE, np.uint8)]
        grid = np.concatenate([grid, np.concatenate(bands[:-1], 1)], 0)
    return np.concatenate([grid, colour_bar(vmax, grid.shape[0], scale_label)], 1)


def synthetic_grid(originals, synthetics, labels, vmax: float, scale_label: str = "label") -> np.ndarray:
    """The paper's Figure 1b: per column a sample's original, synthetic image and label."""
    return labelled_grid([("original", list(originals)), ("synthetic", list(synthetics)),
                          ("label", [label_to_rgb(lab, vmax) for lab in labels])],
                         [[f"sample {i}"] for i in range(len(labels))], vmax, scale_label)


def prediction_max(preds) -> float:
    """The top of the training grid's prediction scale: the largest value shown, so that an early
    network's faint output (all below 0.1, say) still shows its structure."""
    return max(float(np.max(preds)), 1e-6)


def sample_captions(labels, preds, patches=None) -> list[list[str]]:
    """Per training sample: its index in the batch, its patch count (when ``patches`` is given),
    the share of its pixels the label marks (label > 0), and the label's and prediction's maxima."""
    caps = []
    for i, (lab, pred) in enumerate(zip(labels, preds)):
        cap = [f"sample {i}", f"label area {100 * float(np.mean(lab > 0)):.1f} %",
               f"label max {lab.max():.3g}", f"pred max {pred.max():.3g}"]
        if patches is not None:
            cap.insert(1, f"{int(patches[i])} patch{'es' if int(patches[i]) != 1 else ''}")
        caps.append(cap)
    return caps


def training_grid(images, labels, preds, vmax: float, epoch: int, loss: float | None = None,
                  scale_label: str = "label", patches=None) -> np.ndarray:
    """Up to 8 samples of a training batch: synthetic input, label, prediction (uint8 RGB out).

    The label row is drawn on the label type's scale 0..``vmax`` (``scale_label`` names it), the
    prediction row on its own scale 0..(largest prediction shown); each row has its colour bar
    (``score_bar``) beside it. Under each sample, ``sample_captions``: its index in the batch, the
    share of its pixels the label marks, the label's and the prediction's maxima, and its patch
    count when ``patches`` (one int per sample) is given. A title band above names the epoch and
    the loss and both scales.
    """
    n = min(8, len(images))
    pvmax = prediction_max(preds[:n])
    caps = sample_captions(labels[:n], preds[:n], None if patches is None else patches[:n])
    grid = labelled_grid([("synthetic\ninput", list(images[:n])),
                          ("label", [label_to_rgb(x, vmax) for x in labels[:n]]),
                          ("prediction\n(own scale)", [label_to_rgb(x, pvmax) for x in preds[:n]])],
                         caps, vmax, scale_label)
    tile_h, tile_w = images.shape[1:3]
    grid = grid[:, :LABEL_W + n * (tile_w + GAP) - GAP]  # without the grid's one bar: a bar per row instead
    scales = [score_bar(vmax, tile_h, scale_label), score_bar(pvmax, tile_h, "prediction")]  # fit 32-px tiles
    bars = np.full((grid.shape[0], scales[0].shape[1], 3), WHITE, np.uint8)
    for row, bar in enumerate(scales, start=1):  # beside the label row and the prediction row
        bars[row * (tile_h + GAP):row * (tile_h + GAP) + tile_h] = bar
    body = np.concatenate([grid, bars], 1)
    title = f"epoch {epoch}" + (f", loss {loss:.4f}" if loss is not None else "") + \
        f"; label on its scale 0-{vmax:.3g}, prediction on its own 0-{pvmax:.3g}"
    return np.concatenate([caption_band([title], body.shape[1]), body], 0)


def example_picks(labels: np.ndarray, n: int = 8, defects=None) -> list[int]:
    """Test images to show: up to n - 2 anomalous ones, then 2 good ones.

    The anomalous ones cover every defect type (up to n - 2 types): with ``defects`` (each test
    image's defect type) they are taken in turns, the first image of each type, then the second,
    and so on; without it they are spread evenly over the anomalous images, which the test set
    lists folder by folder (``data.test_items``), so every type of similar count shows.
    """
    bad, good = np.flatnonzero(labels == 1), [int(i) for i in np.flatnonzero(labels == 0)[:2]]
    k = min(n - 2, len(bad))
    if k <= 0:
        return good
    if defects is not None:
        groups: dict = {}
        for i in bad:
            groups.setdefault(defects[i], []).append(int(i))
        turns = [g[r] for r in range(max(len(g) for g in groups.values())) for g in groups.values() if r < len(g)]
        return sorted(turns[:k]) + good
    return [int(bad[j]) for j in np.round(np.linspace(0, len(bad) - 1, k)).astype(int)] + good


def examples_figure(images, masks, maps, scores, names: list[str], picks: list[int], vmax: float,
                    box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The paper's Figure 2: per column a test image, its ground truth and anomaly map, with the
    image score and file name under it and the map's colour scale beside. With ``box`` (the
    central crop the network sees, ``seen_box``), the maps are washed out outside it, a dashed line
    marks it, and a note under the figure says why (display only: the maps are not changed)."""
    gt = [np.repeat((masks[i] * 255).astype(np.uint8)[..., None], 3, axis=-1) for i in picks]
    heat = [label_to_rgb(maps[i], vmax) for i in picks]
    if box is not None:
        outside = ~crop_region(box, maps.shape[1:3])
        for h in heat:
            h[outside] = 200
            draw_dashed_box(h, box, thickness=max(1, min(maps.shape[1:3]) // 160))
    grid = labelled_grid([("input", [images[i] for i in picks]), ("ground truth", gt), ("anomaly map", heat)],
                         [[f"score {scores[i]:.4g}", names[i]] for i in picks], vmax, "anomaly")
    if box is None:
        return grid
    return np.concatenate([grid, caption_band(wrap([CROP_NOTE], grid.shape[1]), grid.shape[1])], 0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_figure(path: Path, scores, labels, maps, masks, aurocs: tuple[float, float]) -> None:
    """Image-level and pixel-level ROC curves in one plot, AUROC in the legend."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    fi, ti, _ = roc_curve(labels, scores)
    fp, tp, _ = roc_curve(masks.reshape(-1), maps.reshape(-1), drop_intermediate=True)
    ax.plot(fi, ti, label=f"image (AUROC {100 * aurocs[0]:.1f} %)")
    ax.plot(fp, tp, label=f"pixel (AUROC {100 * aurocs[1]:.1f} %)")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title="ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def pro_figure(path: Path, fpr: np.ndarray, pro: np.ndarray, limit: float, au_pro: float) -> None:
    """The PRO curve (mean per-region overlap against the pixel false positive rate) up to ``limit``."""
    plt = _pyplot()
    keep = fpr <= limit
    end = np.interp(limit, fpr, pro)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot(np.append(fpr[keep], limit), np.append(pro[keep], end), label=f"AU-PRO@{limit:g} {100 * au_pro:.1f} %")
    ax.set(xlabel="false positive rate", ylabel="per-region overlap (PRO)", xlim=(0, limit), ylim=(0, 1.01),
           title=f"PRO curve up to FPR {limit:g}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def runner_chart(path: Path, rows: list[dict], metrics: tuple[str, ...], names: dict[str, str],
                 paper: dict[str, tuple[float, ...]]) -> None:
    """Per class, the measured mean (with its standard error) of each metric beside the paper's
    figure when the class is in the paper."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 4.2), dpi=100, squeeze=False)
    cats = [r["category"] for r in rows]
    x = np.arange(len(cats))
    for k, (ax, m) in enumerate(zip(axes[0], metrics)):
        ax.bar(x - 0.2, [100 * r[m] for r in rows], 0.4, yerr=[100 * r[m + "_se"] for r in rows], capsize=3,
               label="measured")
        known = [i for i, c in enumerate(cats) if c in paper]
        if known:
            ax.bar(x[known] + 0.2, [paper[cats[i]][k] for i in known], 0.4, label="paper (NSA logistic)")
        ax.set_xticks(x, cats, rotation=45, ha="right")
        ax.set(title=names[m], ylim=(0, 100), ylabel="%")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_training_grid(path: Path, images, labels, preds, vmax: float, epoch: int, loss: float,
                        scale_label: str = "label", patches=None) -> None:
    """``training_grid`` of up to 8 samples of a batch of torch tensors on any device, as a PNG;
    ``scale_label`` names the label's scale (the label type's ``scale_name``), ``patches`` the
    samples' patch counts (optional)."""
    from .io import write_image

    n = min(8, len(images))
    host = [t[:n].float().cpu().numpy() for t in (labels, preds)]  # device -> host: a few samples
    write_image(path, training_grid(images[:n].cpu().numpy(), *host, vmax, epoch, loss, scale_label,
                                    None if patches is None else list(patches)[:n]))


# colour bars with their name beside them, and the central crop the network sees (object presets)

BOX_COLOUR = (0, 255, 255)      # cyan: apart from every colour of the inferno scale and from grey
SCORE_BAR_W = 80 + LINE_H + GAP  # ramp and ticks as colour_bar, then the scale's name written upwards
CROP_NOTE = ("dashed box: the central crop, all the network sees; outside it the map is 0 by the paper's "
             "protocol (zero padding) and is shown washed out; a bright dotted rim just inside the box is the "
             "network's response to its own input's edge, not a defect")


def wrap(lines: list[str], width: int) -> list[str]:
    """Lines broken at spaces so that each fits ``width`` pixels at the caption font (a word longer
    than that stays whole and is shortened where it is written)."""
    out = []
    for line in lines:
        cur = ""
        for word in line.split(" "):
            if cur and cv2.getTextSize(f"{cur} {word}", FONT, FONT_SCALE, 1)[0][0] > width - 4:
                out.append(cur)
                cur = word
            else:
                cur = f"{cur} {word}" if cur else word
        out.append(cur)
    return out


def score_bar(vmax: float, height: int, label: str) -> np.ndarray:
    """A vertical inferno scale 0 (bottom) .. vmax (top) with tick values, and ``label`` written
    upwards beside it; (height, SCORE_BAR_W, 3) uint8."""
    bar = np.full((height, SCORE_BAR_W, 3), WHITE, np.uint8)
    top, bottom = LINE_H // 2, height - LINE_H // 2
    ramp = np.linspace(vmax, 0.0, max(bottom - top, 2))[:, None].repeat(14, 1)
    bar[top:top + len(ramp), 4:18] = label_to_rgb(ramp, vmax)
    for frac in (0.0, 0.5, 1.0) if height < 6 * LINE_H else (0.0, 0.25, 0.5, 0.75, 1.0):
        y = int(bottom - frac * (bottom - top - 1))
        _text(bar, f"{frac * vmax:.3g}", 22, min(max(y + 4, LINE_H - 4), height - 2), 56)
    bar[:, 80:] = np.rot90(caption_band([label], height))  # reads bottom to top
    return bar


def seen_box(preset, size: int) -> tuple[int, int, int, int] | None:
    """The region (y0, y1, x0, x1), half-open, of a size x size evaluation image that the network
    sees: the central crop of object presets as ``data.eval_input`` takes it (the paper's protocol),
    None where it sees the whole image (textures)."""
    from .data import eval_input

    crop, off = eval_input(np.zeros((1, size, size, 1), np.uint8), preset)
    side = crop.shape[1]
    return None if side == size else (off, off + side, off, off + side)


def crop_region(box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """The evaluated region (y0, y1, x0, x1), half-open, as a bool map of ``shape``."""
    inside = np.zeros(shape, bool)
    y0, y1, x0, x1 = box
    inside[y0:y1, x0:x1] = True
    return inside


def draw_dashed_box(img: np.ndarray, box: tuple[int, int, int, int], thickness: int = 1, dash: int = 6,
                    colour=BOX_COLOUR) -> np.ndarray:
    """Draw the border of the region (y0, y1, x0, x1) as a dashed line just outside it (so that
    the map inside stays visible), in place; returns ``img``."""
    H, W = img.shape[:2]
    y0, y1, x0, x1 = box
    for t in range(thickness):
        for y in (y0 - 1 - t, y1 + t):
            if 0 <= y < H:
                xs = np.arange(max(x0 - thickness, 0), min(x1 + thickness, W))
                img[y, xs[(np.arange(len(xs)) // dash) % 2 == 0]] = colour
        for x in (x0 - 1 - t, x1 + t):
            if 0 <= x < W:
                ys = np.arange(max(y0 - thickness, 0), min(y1 + thickness, H))
                img[ys[(np.arange(len(ys)) // dash) % 2 == 0], x] = colour
    return img
