"""The ResNet-18 encoder-decoder of the NSA paper (docs/reference.md section 4).

Encoder: torchvision's ResNet-18 without its pooling and classifier, trained from scratch.
Bottleneck: 1x1 convolutions 512 -> 256 -> 128. Decoder: three residual transposed-convolution
blocks 128 -> 64 -> 32 -> 16, each doubling the resolution, a bilinear x2, and a 7x7 stride-2
transposed convolution to one channel: a 224x224 input gives a 224x224 map. No skip connections.
The network returns logits; ``head`` says how they become a map (sigmoid for bounded labels,
ReLU for the raw intensity label).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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


def _aligned_corners_weights(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float32: bilinear interpolation with aligned corners as a matrix, with the
    source coordinates and weights rounded to float32 as PyTorch's own kernel rounds them."""
    scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
    src = scale * np.arange(n_out, dtype=np.float32)
    x0 = np.minimum(src.astype(np.int64), n_in - 1)
    x1 = np.minimum(x0 + 1, n_in - 1)
    w1 = src - x0.astype(np.float32)
    a = np.zeros((n_out, n_in), np.float32)
    np.add.at(a, (np.arange(n_out), x0), np.float32(1) - w1)
    np.add.at(a, (np.arange(n_out), x1), w1)
    return torch.from_numpy(a)


class MatmulUpsample(nn.Module):
    """nn.UpsamplingBilinear2d(scale_factor=2) as two matrix products, rows then columns.

    The same map up to float rounding (4.8e-7 on values of magnitude 4), but its backward is a
    matrix product too, which is deterministic on CUDA, where the bilinear kernel's backward
    accumulates with atomics and ``torch.use_deterministic_algorithms`` refuses it. Used by
    ``--deterministic``; it has no parameters, so checkpoints are the same either way.
    """

    def __init__(self):
        super().__init__()
        self._weights: dict[tuple, torch.Tensor] = {}

    def _matrix(self, n: int, like: torch.Tensor) -> torch.Tensor:
        key = (n, like.device, like.dtype)
        if key not in self._weights:  # one copy per size, device and dtype, not one a step
            self._weights[key] = _aligned_corners_weights(n, 2 * n).to(like.device, like.dtype)
        return self._weights[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        # In float32 whatever autocast says: bf16 weights would round the interpolation itself.
        with torch.autocast(x.device.type, enabled=False):
            y = x.float()
            return (self._matrix(H, y) @ y @ self._matrix(W, y).T).to(x.dtype)


class EncoderDecoder(nn.Module):
    """(B, C, H, W) float image, H and W multiples of 32 -> (B, 1, H, W) logits."""

    def __init__(self, in_channels: int = 3, head: str = "sigmoid"):
        super().__init__()
        if head not in ("sigmoid", "relu"):
            raise ValueError(f"head must be 'sigmoid' or 'relu', got {head!r}")
        self.head = head
        # Imported here: torchvision's package import costs seconds (it loads torch._dynamo), which
        # every command's --help and argument errors would otherwise pay.
        from torchvision.models import resnet18

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

    def use_deterministic_upsampling(self) -> None:
        """Swap the bilinear upsampling for ``MatmulUpsample``, whose backward is deterministic
        on CUDA (``--deterministic``)."""
        self.upsample = MatmulUpsample()

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
        stats = torch.tensor([IMAGENET_MEAN, IMAGENET_STD]).to(device)  # one copy, once per device
        _STATS[device] = (stats[0].view(1, 3, 1, 1), stats[1].view(1, 3, 1, 1))
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
