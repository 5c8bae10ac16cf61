"""The training recipe of the paper, piece by piece (fast): the loss of each label mode, Adam, and
the cosine schedule's end points."""
import math

import numpy as np
import pytest
import torch

from nsa_fast.presets import get_preset
from nsa_fast.train import TrainConfig, build_model, loss_fn


def _bce(logits, y):
    p = 1 / (1 + np.exp(-logits))
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


@pytest.mark.parametrize("mode", ["binary", "continuous", "logistic"])
def test_bounded_labels_train_with_bce_on_the_sigmoid(mode):
    rng = np.random.default_rng(0)
    logits, y = rng.normal(0, 2, (2, 8, 8)), rng.uniform(0, 1, (2, 8, 8))
    got = loss_fn(torch.tensor(logits, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), mode)
    assert float(got) == pytest.approx(_bce(logits, y), rel=1e-5)
    # not MSE on the sigmoid: the two differ by far more than rounding here
    assert abs(float(got) - float(np.mean((1 / (1 + np.exp(-logits)) - y) ** 2))) > 0.1


def test_intensity_labels_train_with_mse_after_relu():
    logits = torch.tensor([[[-3.0, 0.5], [2.0, 40.0]]])
    y = torch.tensor([[[0.0, 1.5], [2.0, 30.0]]])
    want = ((0.0 - 0.0) ** 2 + (0.5 - 1.5) ** 2 + 0.0 + (40.0 - 30.0) ** 2) / 4  # ReLU zeroes -3
    assert float(loss_fn(logits, y, "intensity")) == pytest.approx(want)


def test_adam_and_the_cosine_schedule_from_1e_3_to_1e_6():
    cfg = TrainConfig(data="d", category="c", out="o", epochs=10)
    model, opt, sched = build_model(cfg, get_preset("demo"), torch.device("cpu"))
    assert isinstance(opt, torch.optim.Adam)
    g = opt.param_groups[0]
    assert g["lr"] == 1e-3 and g["betas"] == (0.9, 0.999) and g["weight_decay"] == 0
    assert sum(p.numel() for p in g["params"]) == sum(p.numel() for p in model.parameters())
    lrs = []
    for _ in range(10):  # stepped once an epoch
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    cosine = [1e-6 + (1e-3 - 1e-6) * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(10)]
    assert lrs == pytest.approx(cosine, rel=1e-9)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6, rel=1e-9)  # the floor after the last epoch


def test_the_initial_weights_follow_the_seed():
    cfg = TrainConfig(data="d", category="c", out="o", seed=5)
    a = build_model(cfg, get_preset("demo"), torch.device("cpu"))[0].state_dict()
    b = build_model(cfg, get_preset("demo"), torch.device("cpu"))[0].state_dict()
    c = build_model(TrainConfig(data="d", category="c", out="o", seed=6), get_preset("demo"),
                    torch.device("cpu"))[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["encoder.0.weight"], c["encoder.0.weight"])


# -- added by mutation testing (docs/mutation-batch2.md) ------------------------------------

def test_the_optimizer_and_schedule_take_the_configured_rates():
    cfg = TrainConfig(data="d", category="c", out="o", epochs=4, lr=3e-4, lr_min=2e-5)
    model, opt, sched = build_model(cfg, get_preset("demo"), torch.device("cpu"))
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    cosine = [2e-5 + (3e-4 - 2e-5) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert lrs == pytest.approx(cosine, rel=1e-9) and opt.param_groups[0]["lr"] == pytest.approx(2e-5, rel=1e-9)


@pytest.mark.parametrize("label,head", [("binary", "sigmoid"), ("logistic", "sigmoid"), ("intensity", "relu")])
def test_the_network_head_follows_the_label_type(label, head):
    """Sigmoid for labels in [0, 1], ReLU for raw intensities (docs/reference.md section 4)."""
    cfg = TrainConfig(data="d", category="c", out="o", label=label)
    model = build_model(cfg, get_preset("demo"), torch.device("cpu"))[0]
    assert model.head == head


def test_the_network_is_placed_on_the_given_device_in_channels_last():
    cfg = TrainConfig(data="d", category="c", out="o")
    model, opt, _ = build_model(cfg, get_preset("demo"), torch.device("meta"))  # no data: any device will do
    assert {p.device.type for p in model.parameters()} == {"meta"}
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    model = build_model(cfg, get_preset("demo"), torch.device("cpu"))[0]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)
