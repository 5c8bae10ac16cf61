"""The network is the authors' encoder-decoder: its size, its layers and its initial weights."""
import pytest
import torch
from torch import nn

from nsa_fast.model import EncoderDecoder


def test_parameter_count_is_the_authors():
    # no bias in the two 1x1 bottleneck convolutions nor in the final 7x7 transposed convolution
    m = EncoderDecoder()
    assert sum(p.numel() for p in m.parameters()) == 11_497_712
    assert m.bottleneck[0].bias is None and m.bottleneck[2].bias is None and m.final.bias is None
    assert sum(p.numel() for p in EncoderDecoder(in_channels=1).parameters()) == 11_497_712 - 2 * 7 * 7 * 64


def test_transposed_convolutions_keep_pytorchs_initialisation():
    # Kaiming (fan_out) for nn.Conv2d only: a transposed convolution's default init has std
    # 1/sqrt(3 fan_in) (kaiming_uniform with a = sqrt 5), 0.024 for the first decoder block
    torch.manual_seed(0)
    m = EncoderDecoder()
    w = m.decoder[0].conv1.weight  # ConvTranspose2d(128, 64, 3): fan_in = 64 * 9
    assert w.std().item() == pytest.approx(1 / (3 * 64 * 9) ** 0.5, rel=0.05)
    c = m.decoder[0].conv2.weight  # Conv2d(64, 64, 3), Kaiming fan_out: std sqrt(2 / (64 * 9))
    assert c.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)


def test_upsampling_is_bilinear_with_aligned_corners():
    m = EncoderDecoder()
    assert isinstance(m.upsample, nn.UpsamplingBilinear2d)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    want = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    assert torch.equal(m.upsample(x), want)
    assert m(torch.zeros(2, 3, 64, 96)).shape == (2, 1, 64, 96)
