"""The paper's evaluation protocol as ``evaluate`` itself applies it (docs/reference.md section 4).

``evaluate`` runs for real on the demo's test set; only the network is replaced by a stand-in
whose map is a known function of the pixels it is given, and which records its inputs. Every
expected value is computed here from the image files, the paper's constants written out and
small reference computations of this file (nothing of nsa_fast computes them):

* input size: objects are evaluated at the preset's image_size, textures at their crop;
* the network sees the central crop of an object image (224 of 256, offset 16), a texture whole,
  in RGB order with the ImageNet normalisation;
* the map is zero-padded back to the full image; the image score is the mean of the full map;
* pixel AUROC over every pixel of the padded maps; AU-PRO up to a false positive rate of 0.3;
* F1-max over the image scores, with the lowest score that reaches it (``score >= t``).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

import nsa_fast.evaluate as ev
from nsa_fast.demo import ensure_demo
from nsa_fast.presets import get_preset

# The paper's protocol, restated rather than imported.
PAPER_SIZE, PAPER_CROP, PAPER_OFFSET = 256, 224, 16   # objects: central 224 of 256
PRO_FPR_LIMIT = 0.3
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])   # ImageNet, RGB

# The stand-in's map: a fixed, non-monotone value for each red level of the input pixel.
LUT = (np.random.default_rng(7).permutation(256) / 255).astype(np.float32)


class StandIn:
    """Records each batch it is fed and answers LUT[red level] per pixel (or ones with ``ones``)."""

    def __init__(self, ones: bool = False):
        self.inputs: list[torch.Tensor] = []
        self.ones = ones

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().cpu().clone())
        if self.ones:
            return torch.ones(x.shape[0], x.shape[2], x.shape[3])
        red = x[:, 0].double() * STD[0] + MEAN[0]
        return torch.from_numpy(LUT)[torch.round(red * 255).long().clamp(0, 255)]

    def fed(self) -> np.ndarray:
        """Everything fed, as (N, C, H, W) float64."""
        return torch.cat(self.inputs).double().numpy()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return ensure_demo(tmp_path_factory.mktemp("protocol-demo"))


def run_evaluate(monkeypatch, tmp_path, root, preset, model) -> tuple[dict, list[dict]]:
    state = {"config": {"category": "demo"}, "epoch": 0}
    monkeypatch.setattr(ev, "load_model", lambda ckpt, device: (model, preset, state))
    out = tmp_path / "eval"
    metrics = ev.evaluate(tmp_path / "standin.pt", root, "demo", out, torch.device("cpu"))
    assert json.loads((out / "metrics.json").read_text()) == metrics
    return metrics, list(csv.DictReader((out / "scores.csv").read_text().splitlines()))


def files_of(rows) -> tuple[np.ndarray, np.ndarray]:
    """The test images (N, 256, 256, 3) RGB and their masks (N, 256, 256) bool, read from disk
    (MVTec layout: ground_truth/<defect>/<name>_mask.png)."""
    images, masks = [], []
    for r in rows:
        path = Path(r["path"])
        images.append(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
        mask = np.zeros(images[-1].shape[:2], bool)
        if r["label"] == "1":
            gt = path.parents[2] / "ground_truth" / path.parent.name / f"{path.stem}_mask.png"
            mask = cv2.imread(str(gt), cv2.IMREAD_GRAYSCALE) > 0
        masks.append(mask)
    return np.stack(images), np.stack(masks)


def normalised(images: np.ndarray) -> np.ndarray:
    return ((images / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)


# ------------------------------------------------------------------------------------------
# small references
# ------------------------------------------------------------------------------------------

def levels(scores: np.ndarray) -> tuple[int, np.ndarray]:
    """The number of distinct values and each score's rank among them (the stand-in's maps take
    at most 257 values: LUT's and the padding's 0, found without sorting millions of pixels)."""
    values = np.unique(np.append(LUT, np.float32(0))) if scores.dtype == np.float32 else np.unique(scores)
    level = np.searchsorted(values, scores)
    assert (values[level] == scores).all()
    return values.size, level


def ref_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(positive scores above negative) + half the ties, from per-value counts."""
    n, level = levels(scores)
    pos = np.bincount(level[positive], minlength=n).astype(np.float64)
    neg = np.bincount(level[~positive], minlength=n).astype(np.float64)
    below = np.cumsum(neg) - neg
    return float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum()))


def ref_pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MVTec's PRO curve, one point per distinct map value (all pixels of a value enter together):
    8-connected regions per image, PRO = mean of the regions' covered shares."""
    n, level = levels(maps)
    regions = []
    for lev, mask in zip(level, masks):
        labelled, k = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [np.bincount(lev[labelled == r], minlength=n) for r in range(1, k + 1)]
    normal = np.bincount(level[~masks], minlength=n)
    # thresholds from the highest value down: the pixels at or above it are positive
    fpr = np.concatenate([[0.0], np.cumsum(normal[::-1]) / normal.sum()])
    pro = np.concatenate([[0.0], np.mean([np.cumsum(h[::-1]) / h.sum() for h in regions], axis=0)])
    return fpr, pro


def ref_au_pro(fpr: np.ndarray, pro: np.ndarray, limit: float) -> float:
    """The trapezoid up to ``limit`` with linear interpolation there, divided by ``limit``."""
    area = 0.0
    for x0, x1, y0, y1 in zip(fpr[:-1], fpr[1:], pro[:-1], pro[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1, x1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0), limit
        area += 0.5 * (y0 + y1) * (x1 - x0)
    return area / limit


def ref_f1_max(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    best = (-1.0, 0.0)
    for t in np.unique(scores):            # increasing: a tie keeps the lowest threshold
        called = scores >= t
        tp = np.sum(called & (labels == 1))
        f1 = 2 * tp / (called.sum() + labels.sum())
        if f1 > best[0]:
            best = (f1, t)
    return best


# ------------------------------------------------------------------------------------------
# the protocol through evaluate
# ------------------------------------------------------------------------------------------

def test_objects_paper_protocol(demo, tmp_path, monkeypatch):
    """Preset bottle (256, centre crop 224): the network sees pixels 16..239 of the 256 image,
    normalised; the map is zero outside; every metric follows from that map."""
    preset = get_preset("bottle")
    model = StandIn()
    metrics, rows = run_evaluate(monkeypatch, tmp_path, demo, preset, model)
    images, masks = files_of(rows)
    assert images.shape[1:3] == (PAPER_SIZE, PAPER_SIZE)  # the demo's files: no resize on the way
    N, c, o = len(rows), PAPER_CROP, PAPER_OFFSET
    assert all(x.shape[1:] == (3, c, c) for x in model.inputs)
    np.testing.assert_allclose(model.fed(), normalised(images[:, o:o + c, o:o + c]), atol=1e-5)

    maps = np.zeros((N, PAPER_SIZE, PAPER_SIZE), np.float32)
    maps[:, o:o + c, o:o + c] = LUT[images[:, o:o + c, o:o + c, 0]]
    scores = np.array([float(r["score"]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    np.testing.assert_allclose(scores, maps.reshape(N, -1).astype(np.float64).mean(1), rtol=1e-6)

    assert metrics["image_auroc"] == pytest.approx(ref_auroc(scores, labels == 1), abs=1e-12)
    assert metrics["pixel_auroc"] == pytest.approx(ref_auroc(maps, masks), abs=1e-9)
    curve = ref_pro_curve(maps, masks)
    want = ref_au_pro(*curve, PRO_FPR_LIMIT)
    assert metrics["au_pro_0.3"] == pytest.approx(want, abs=1e-9)
    # the case tells the limit apart: another limit gives another area
    assert min(abs(ref_au_pro(*curve, lim) - want) for lim in (0.2, 0.25, 0.35, 0.4)) > 1e-3
    f1, at = ref_f1_max(scores, labels)
    assert metrics["f1_max"] == pytest.approx(f1, abs=1e-12)
    assert metrics["f1_max_threshold"] == pytest.approx(at, rel=1e-7)
    assert metrics["threshold"] is None  # no thresholds file beside the stand-in checkpoint


def test_textures_are_fed_whole_at_their_crop_size(demo, tmp_path, monkeypatch):
    """Preset carpet (image_size 264, crop 256): evaluated at 256, the whole image fed, nothing padded."""
    preset = get_preset("carpet")
    assert (preset.image_size, preset.crop) == (264, 256)
    model = StandIn()
    _, rows = run_evaluate(monkeypatch, tmp_path, demo, preset, model)
    images, _ = files_of(rows)
    assert all(x.shape[1:] == (3, 256, 256) for x in model.inputs)
    np.testing.assert_allclose(model.fed(), normalised(images), atol=1e-5)
    scores = np.array([float(r["score"]) for r in rows])
    np.testing.assert_allclose(scores, LUT[images[..., 0]].reshape(len(rows), -1).astype(np.float64).mean(1),
                               rtol=1e-6)


@pytest.mark.parametrize("kind, fields, fed, score", [
    # objects: evaluated at image_size 128, the central 96 fed; a map of ones padded with zeros
    ("bottle", {"image_size": 128, "center_crop": 112, "crop": 96}, 96, (96 / 128) ** 2),
    # textures: evaluated at their crop, 96, fed whole
    ("carpet", {"image_size": 128, "crop": 96}, 96, 1.0),
])
def test_sizes_follow_the_preset(demo, tmp_path, monkeypatch, kind, fields, fed, score):
    model = StandIn(ones=True)
    _, rows = run_evaluate(monkeypatch, tmp_path, demo, get_preset(kind).replace(**fields), model)
    assert sum(x.shape[0] for x in model.inputs) == len(rows)
    assert all(x.shape[1:] == (3, fed, fed) for x in model.inputs)
    assert [float(r["score"]) for r in rows] == [pytest.approx(score, rel=1e-6)] * len(rows)
