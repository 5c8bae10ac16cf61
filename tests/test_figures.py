"""Figures people can read alone (issue 18, point 7): predict's heatmaps at the input's own size
with a colour bar and a caption, training grids with the prediction on its own scale and
captions per sample, and the central crop's border in object maps marked in the figure only."""
import csv

import cv2
import numpy as np
import pytest
import torch

from nsa_fast import heatmaps, viz
from nsa_fast.viz import GAP, LABEL_W, LINE_H, SCORE_BAR_W, label_to_rgb

INFERNO_TOP = label_to_rgb(np.ones((1, 1)), 1.0)[0, 0]
INFERNO_BOTTOM = label_to_rgb(np.zeros((1, 1)), 1.0)[0, 0]


def find_tile(fig: np.ndarray, tile: np.ndarray, x: int) -> list[int]:
    """The rows y at which ``tile`` appears exactly in ``fig`` with its left edge at column x."""
    h, w = tile.shape[:2]
    return [y for y in range(fig.shape[0] - h + 1) if np.array_equal(fig[y:y + h, x:x + w], tile)]


def runs(flags: np.ndarray) -> int:
    """How many separate runs of True a 1-D bool array holds."""
    return int(np.sum(np.diff(np.concatenate([[0], flags.astype(int)])) == 1))


# predict's heatmap figure

@pytest.mark.parametrize("H, W, zoom", [(60, 90, 1), (820, 810, 2)])
def test_heatmap_figure_shows_the_input_at_its_own_size_beside_a_colour_bar(H, W, zoom):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    amap = np.tile(np.linspace(0, 0.5, W, dtype=np.float32), (H, 1))
    fig = heatmaps.heatmap_figure(image, amap, 0.5, heatmaps.score_caption("a.png", 0.25, 0.5))
    assert heatmaps.text_zoom(H, W) == zoom
    assert fig.dtype == np.uint8 and fig.shape[1] == 2 * W + 2 * GAP + zoom * SCORE_BAR_W
    band = fig.shape[0] - H  # the caption band: whole lines of text, at least name, score and scale
    assert band % zoom == 0 and (band // zoom - GAP) % LINE_H == 0 and (band // zoom - GAP) // LINE_H >= 3
    bare = heatmaps.heatmap_figure(image, amap, 0.5, [])
    assert fig.shape[0] - bare.shape[0] == zoom * 2 * LINE_H  # the caption's two lines are in the band
    np.testing.assert_array_equal(fig[:H, :W], image)  # the input itself, not resized
    # the colour bar: a ramp from the scale's top colour to its bottom colour beside the panels
    ramp = fig[:H, 2 * W + 2 * GAP + zoom * 10]
    coloured = np.flatnonzero((ramp != 255).any(1))
    assert len(coloured) > H // 2
    # (a zoomed bar is resized: its end rows are blended with the white around it)
    near = lambda rows, colour: np.abs(ramp[rows].astype(int) - colour).max(1).min()  # noqa: E731
    assert near(coloured[:3 * zoom], INFERNO_TOP) <= 3 and near(coloured[-3 * zoom:], INFERNO_BOTTOM) <= 3
    assert len({tuple(p) for p in ramp[coloured]}) > 20
    # the scale's name is written beside the ramp (dark pixels in the bar's last column strip)
    assert (fig[:H, -zoom * (LINE_H + GAP):] < 128).any()


def test_caption_names_the_file_and_writes_the_scores_as_scores_csv_does():
    lines = heatmaps.score_caption("good/000.png", 0.123456789123, 0.98765432109)
    assert lines[0] == "good/000.png"
    assert "0.123456789" in lines[1] and "0.987654321" in lines[1]
    assert not any("decision" in line for line in lines)  # no threshold, no decision
    assert heatmaps.score_caption("a.png", 0.3, 0.9, threshold=0.2)[-1].startswith("decision: defective")
    assert heatmaps.score_caption("a.png", 0.1, 0.9, threshold=0.2)[-1].startswith("decision: good")
    assert heatmaps.score_caption("a.png", 0.2, 0.9, threshold=0.2)[-1].startswith("decision: good")  # above only
    assert "threshold 0.2 " in heatmaps.score_caption("a.png", 0.1, 0.9, threshold=0.2)[-1]
    assert heatmaps.score_caption("a.png", 0.1, 0.9, 0.2, 0.25)[-1].endswith("normalised score 0.250)")
    notes = heatmaps.figure_notes(0.5, heatmaps.SCORE_LABEL, boxed=False)
    assert heatmaps.SCORE_LABEL in notes[0] and "0.5" in notes[0] and viz.CROP_NOTE not in notes


# the central crop's border: marked and masked in figures, the maps themselves untouched

def test_seen_box_is_the_protocols_central_crop():
    from nsa_fast.data import eval_input
    from nsa_fast.presets import get_preset

    bottle = get_preset("bottle")
    assert viz.seen_box(bottle, 256) == (16, 240, 16, 240)
    _, off = eval_input(np.zeros((1, 256, 256, 3), np.uint8), bottle)
    assert off == 16
    assert viz.seen_box(get_preset("carpet"), 256) is None  # textures: the network sees everything


def test_heatmap_figure_masks_the_map_outside_the_crop_and_draws_its_border():
    H, W, box = 64, 96, (8, 56, 12, 84)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    amap = rng.random((H, W)).astype(np.float32)
    before = amap.copy()
    fig = heatmaps.heatmap_figure(image, amap, 1.0, ["a.png"], box)
    np.testing.assert_array_equal(amap, before)  # display only: the map is not changed
    panel = fig[:H, W + GAP:2 * W + GAP].astype(int)
    inside = viz.crop_region(box, (H, W))
    cyan = (panel == viz.BOX_COLOUR).all(-1)
    # outside the crop: grey (the map's colours are gone) or the dashed line, which lies just outside
    grey = (panel[..., 0] == panel[..., 1]) & (panel[..., 1] == panel[..., 2])
    assert (grey | cyan)[~inside].all()
    assert not cyan[inside].any()
    assert cyan[box[0] - 1, box[2]:box[3]].any() and cyan[box[1], box[2]:box[3]].any()
    assert cyan[box[0]:box[1], box[2] - 1].any() and cyan[box[0]:box[1], box[3]].any()
    assert not cyan[box[0] - 1, box[2]:box[3]].all()  # dashed, not solid
    # outside does not depend on the map there; inside it does
    other = amap.copy()
    other[~inside] = 0.0
    other[inside] = 1.0 - other[inside]
    panel2 = heatmaps.heatmap_figure(image, other, 1.0, ["a.png"], box)[:H, W + GAP:2 * W + GAP].astype(int)
    assert (panel2 == panel)[~inside].all() and not (panel2 == panel)[inside].all()
    # the caption explains the box, and a figure without a box has neither box nor note
    assert viz.CROP_NOTE in heatmaps.figure_notes(1.0, heatmaps.SCORE_LABEL, boxed=True)
    plain = heatmaps.heatmap_figure(image, amap, 1.0, ["a.png"])
    assert not (plain[:H, W + GAP:2 * W + GAP] == viz.BOX_COLOUR).all(-1).any()
    assert plain.shape[0] < fig.shape[0]  # the note's lines are missing


def test_examples_figure_marks_the_crop_only_when_asked():
    S, n = 40, 3
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (n, S, S, 3)).astype(np.uint8)
    masks = np.zeros((n, S, S), bool)
    maps = rng.random((n, S, S)).astype(np.float32)
    args = (images, masks, maps, maps.mean((1, 2)), ["a", "b", "c"], [0, 1, 2], 1.0)
    plain = viz.examples_figure(*args)
    boxed = viz.examples_figure(*args, box=(5, 35, 5, 35))
    assert boxed.shape[1] == plain.shape[1] and boxed.shape[0] > plain.shape[0]  # the note below
    np.testing.assert_array_equal(boxed[:2 * (S + GAP)], plain[:2 * (S + GAP)])  # inputs, ground truth
    tile = boxed[2 * (S + GAP):2 * (S + GAP) + S, LABEL_W:LABEL_W + S]
    assert (tile == viz.BOX_COLOUR).all(-1)[4, 5:35].any()
    assert (tile[:3, :3] == 200).all()  # washed out outside the crop
    np.testing.assert_array_equal(tile[5:35, 5:35], label_to_rgb(maps[0], 1.0)[5:35, 5:35])
    assert not (plain == viz.BOX_COLOUR).all(-1).any()


# training grids

def test_training_grid_draws_the_prediction_on_its_own_scale_with_its_own_bar():
    n, S = 3, 32
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (n, S, S, 3)).astype(np.uint8)
    labels = np.zeros((n, S, S), np.float32)
    labels[:, 8:24, 8:24] = np.linspace(0.3, 1.0, 16, dtype=np.float32)
    preds = (rng.random((n, S, S)) * 0.1).astype(np.float32)  # an early network: everything below 0.1
    preds[:, 0, 0] = 0.1
    fig = viz.training_grid(images, labels, preds, 1.0, 3, 0.25)
    assert viz.prediction_max(preds) == pytest.approx(0.1)
    assert len(find_tile(fig, label_to_rgb(labels[0], 1.0), LABEL_W)) == 1  # the label on its scale
    own = find_tile(fig, label_to_rgb(preds[0], 0.1), LABEL_W)
    assert len(own) == 1  # the prediction on 0..0.1
    assert not find_tile(fig, label_to_rgb(preds[0], 1.0), LABEL_W)  # not on the label's 0..1
    # a colour bar beside the label row and another beside the prediction row, none beside the input
    top = own[0] - 2 * (S + GAP)  # the input row's top
    coloured = (fig[top:own[0] + S, -SCORE_BAR_W + 10] != 255).any(1)
    assert runs(coloured) == 2 and not coloured[:S].any()
    assert coloured[S + GAP:2 * S + GAP].any() and coloured[2 * (S + GAP):].any()
    # text under every sample
    below = fig[own[0] + S + GAP:, LABEL_W:LABEL_W + n * (S + GAP)]
    for c in range(n):
        assert (below[:, c * (S + GAP):c * (S + GAP) + S] < 128).any(), c


def test_training_grid_captions_each_sample():
    labels = np.zeros((2, 10, 10), np.float32)
    labels[0, :5] = 0.5  # half of the pixels
    preds = np.full((2, 10, 10), 0.0123, np.float32)
    caps = viz.sample_captions(labels, preds, patches=[1, 3])
    assert caps[0] == ["sample 0", "1 patch", "label area 50.0 %", "label max 0.5", "pred max 0.0123"]
    assert caps[1][:3] == ["sample 1", "3 patches", "label area 0.0 %"]
    assert viz.sample_captions(labels, preds)[1][1] == "label area 0.0 %"  # no patch counts given


def test_write_training_grid_keeps_its_old_call_and_takes_the_new_arguments(tmp_path):
    images = torch.randint(0, 256, (10, 32, 32, 3), dtype=torch.uint8)
    labels, preds = torch.rand(10, 32, 32), torch.rand(10, 32, 32) * 0.2
    viz.write_training_grid(tmp_path / "a.png", images, labels, preds, 1.0, 5, 0.1)  # train.py's call
    viz.write_training_grid(tmp_path / "b.png", images, labels, preds, 255.0, 5, 0.1, "intensity",
                            torch.arange(10) % 4 + 1)
    a, b = cv2.imread(str(tmp_path / "a.png")), cv2.imread(str(tmp_path / "b.png"))
    assert a.shape[1] == b.shape[1] == LABEL_W + 8 * (32 + GAP) - GAP + SCORE_BAR_W  # 8 samples of 10
    assert b.shape[0] == a.shape[0] + LINE_H  # one more caption line: the patch count


# predict, end to end on a briefly trained object-style model

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A one-step object-style model (image 80, centre crop 72, crop 64) on 6 made-up images."""
    from nsa_fast.train import main as train_main

    root = tmp_path_factory.mktemp("data")
    good = root / "blobs" / "train" / "good"
    good.mkdir(parents=True)
    rng = np.random.default_rng(4)
    for i in range(6):
        img = cv2.GaussianBlur(rng.integers(0, 256, (80, 80, 3)).astype(np.uint8), (0, 0), 3)
        cv2.imwrite(str(good / f"{i:03d}.png"), img)
    out = tmp_path_factory.mktemp("run")
    rc = train_main(["--data", str(root), "--category", "blobs", "--preset", "generic", "--out", str(out),
                     "--set", "image_size=80", "--set", "center_crop=72", "--set", "crop=64", "--epochs", "1",
                     "--steps-per-epoch", "1", "--batch-size", "4", "--workers", "0", "--no-eval"])
    assert rc == 0
    return out / "last.pt"


def test_predict_heatmaps_are_at_the_inputs_size_with_the_csv_scores_in_the_caption(tiny_model, tmp_path,
                                                                                    monkeypatch):
    from nsa_fast.predict import predict

    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(5)
    sizes = {"wide.png": (90, 150), "small.png": (48, 48)}  # (H, W): not square; smaller than 80
    for name, (h, w) in sizes.items():
        cv2.imwrite(str(inputs / name), rng.integers(0, 256, (h, w, 3)).astype(np.uint8))
    made = {}
    real = heatmaps.heatmap_figure

    def spy(image, amap, vmax, caption, box=None, scale_label=heatmaps.SCORE_LABEL):
        fig = real(image, amap, vmax, caption, box, scale_label)
        made[caption[0]] = (image, amap, box, caption, scale_label, fig)
        return fig

    monkeypatch.setattr(heatmaps, "heatmap_figure", spy)
    predict(tiny_model, [str(inputs)], tmp_path / "out", torch.device("cpu"))
    rows = {r["path"]: r for r in csv.DictReader((tmp_path / "out" / "scores.csv").read_text().splitlines())}
    assert set(made) == set(sizes)
    for name, (h, w) in sizes.items():
        image, amap, box, caption, scale_label, fig = made[name]
        row = rows[str((inputs / name).resolve())]
        assert image.shape[:2] == amap.shape == (h, w)  # the map on the input's own grid
        assert caption[0] == name and row["score"] in caption[1] and row["max"] in caption[1]
        assert scale_label == "anomaly score (model output, 0-1)"
        # the central 64 of 80 (offset 8) on the input's grid; the map is 0 outside it
        assert box == (round(8 * h / 80), round(72 * h / 80), round(8 * w / 80), round(72 * w / 80))
        assert not amap[:box[0] - 1].any() and not amap[:, box[3] + 1:].any()
        written = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / row["heatmap"])), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(written, fig)
        assert written.shape[1] == 2 * w + 2 * GAP + SCORE_BAR_W
        np.testing.assert_array_equal(written[:h, :w], cv2.cvtColor(cv2.imread(str(inputs / name)),
                                                                    cv2.COLOR_BGR2RGB))
