"""MobileNetV2 for 32x32 images, after kuangliu/pytorch-cifar ``models/mobilenetv2.py``.

Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", arXiv:1801.04381. kuangliu's CIFAR changes, kept here: stride 1 (not 2) in the
stem conv and in the second stage, so the last feature map is 4x4 instead of 1x1; and every
stride-1 block is residual, with a 1x1 conv + BN projection where the width changes (the paper
has no shortcut there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (expansion t, output channels c, blocks n, first-block stride s), the paper's Table 2 with
# the second row's stride lowered to 1 for 32x32 inputs.
CFG = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CH = 32
HEAD_CH = 1280


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection (no ReLU: keeps low-dim info)."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int):
        super().__init__()
        hidden = expansion * in_ch
        self.conv1 = nn.Conv2d(in_ch, hidden, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(
            hidden, hidden, kernel_size=3, stride=stride, padding=1, groups=hidden, bias=False
        )
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, out_ch, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        # Residual only at stride 1 (shapes must match); projected when the width changes.
        self.residual = stride == 1
        self.shortcut: nn.Module = nn.Identity()
        if self.residual and in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.residual else out


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2 (width 1.0): 3x3 stride-1 stem, 17 inverted residuals, 1x1 conv to
    1280 channels, global average pool, linear head. Plain ReLU, as kuangliu (paper: ReLU6)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM_CH, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CH)
        blocks, in_ch = [], STEM_CH
        for expansion, out_ch, n, stride in CFG:
            for i in range(n):
                blocks.append(InvertedResidual(in_ch, out_ch, expansion, stride if i == 0 else 1))
                in_ch = out_ch
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(in_ch, HEAD_CH, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(HEAD_CH)
        self.linear = nn.Linear(HEAD_CH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.relu(self.bn2(self.conv2(out)))
        # kuangliu pools with avg_pool2d(out, 4) (the map is 4x4 at 32x32 input); adaptive is the
        # same there and also works at other sizes.
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def mobilenetv2(num_classes: int = 10) -> MobileNetV2:
    """MobileNetV2 (width multiplier 1.0) in kuangliu's CIFAR form."""
    return MobileNetV2(num_classes)
