"""The ResNet-18 encoder-decoder of the NSA paper (docs/reference.md section 4).

Encoder: torchvision's ResNet-18 without its pooling and classifier, trained from scratch.
Bottleneck: 1x1 convolutions 512 -> 256 -> 128. Decoder: three residual transposed-convolution
blocks 128 -> 64 -> 32 -> 16, each doubling the resolution, a bilinear x2, and a 7x7 stride-2
transposed convolution to one channel: a 224x224 input gives a 224x224 map. No skip connections.
The network returns logits; ``head`` says how they become a map (sigmoid for bounded labels,
ReLU for the raw intensity label).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18


class UpBlock(nn.Module):
    """A basic residual block whose first convolution is a stride-2 transposed convolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 1, stride=2, output_padding=1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class EncoderDecoder(nn.Module):
    """(B, C, H, W) float image, H and W multiples of 32 -> (B, 1, H, W) logits."""

    def __init__(self, in_channels: int = 3, head: str = "sigmoid"):
        super().__init__()
        if head not in ("sigmoid", "relu"):
            raise ValueError(f"head must be 'sigmoid' or 'relu', got {head!r}")
        self.head = head
        enc = resnet18(weights=None)
        if in_channels != 3:
            enc.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.encoder = nn.Sequential(enc.conv1, enc.bn1, enc.relu, enc.maxpool,
                                     enc.layer1, enc.layer2, enc.layer3, enc.layer4)
        # As the authors' network: no bias in the bottleneck's 1x1 convolutions nor in the final
        # transposed convolution (11,497,712 parameters), bilinear upsampling with aligned
        # corners (nn.UpsamplingBilinear2d), and Kaiming initialisation of the nn.Conv2d layers
        # only, so the transposed convolutions keep PyTorch's default initialisation.
        self.bottleneck = nn.Sequential(nn.Conv2d(512, 256, 1, bias=False), nn.ReLU(inplace=True),
                                        nn.Conv2d(256, 128, 1, bias=False), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(UpBlock(128, 64), UpBlock(64, 32), UpBlock(32, 16))
        self.upsample = nn.UpsamplingBilinear2d(scale_factor=2)
        self.final = nn.ConvTranspose2d(16, 1, 7, stride=2, padding=3, output_padding=1, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.upsample(self.decoder(self.bottleneck(self.encoder(x)))))

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H, W) map: probabilities for a sigmoid head, grey levels for ReLU."""
        logits = self(x)[:, 0]
        return torch.sigmoid(logits) if self.head == "sigmoid" else F.relu(logits)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


_STATS: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 1, 1) mean and std on ``device``, copied there once rather than every step."""
    if device not in _STATS:
        _STATS[device] = (torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1),
                          torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1))
    return _STATS[device]


def normalize(images: torch.Tensor, mode: str) -> torch.Tensor:
    """uint8 (B, H, W, C) -> float (B, C, H, W) in 0..1, then ImageNet statistics if mode says so.

    Normalisation comes after the synthetic anomaly, as in the reference.
    """
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if mode == "imagenet":
        if x.shape[1] != 3:
            raise ValueError(f"ImageNet normalisation needs 3 channels, got {x.shape[1]}; "
                             "use --set normalize=none for grayscale data.")
        mean, std = _imagenet_stats(x.device)
        x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last)
