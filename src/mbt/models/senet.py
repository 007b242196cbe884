"""SENet-18 for 32x32 images, after kuangliu/pytorch-cifar ``models/senet.py``.

Hu, Shen & Sun, "Squeeze-and-Excitation Networks", arXiv:1709.01507. kuangliu's SENet18 is a
pre-activation ResNet-18 whose blocks rescale their residual branch channel-wise by a learned
gate (reduction 16), with a post-activation stem (conv-BN-ReLU) and no final BN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import STAGE_STRIDES, STAGE_WIDTHS, conv3x3, make_stage, pool_features

SE_REDUCTION = 16


class SEPreActBlock(nn.Module):
    """Pre-activation basic block with a squeeze-and-excitation gate on the residual branch."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)
        # The gate's two FC layers, as 1x1 convs (with bias) so they act on (N, C, 1, 1) directly.
        self.fc1 = nn.Conv2d(out_ch, out_ch // SE_REDUCTION, kernel_size=1)
        self.fc2 = nn.Conv2d(out_ch // SE_REDUCTION, out_ch, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        # Squeeze: per-channel global mean; excite: bottleneck MLP -> sigmoid gate in (0, 1).
        w = F.adaptive_avg_pool2d(out, 1)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return out * w + shortcut


class SENet(nn.Module):
    """CIFAR SENet: conv-BN-ReLU stem, four stages of SE blocks, global average pool, linear."""

    def __init__(self, depths: tuple[int, ...], num_classes: int = 10):
        super().__init__()
        self.conv1 = conv3x3(3, STAGE_WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        stages, in_ch = [], STAGE_WIDTHS[0]
        for width, depth, stride in zip(STAGE_WIDTHS, depths, STAGE_STRIDES, strict=True):
            stages.append(make_stage(SEPreActBlock, in_ch, width, depth, stride))
            in_ch = width
        self.layers = nn.Sequential(*stages)
        self.linear = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return self.linear(pool_features(out))


def senet18(num_classes: int = 10) -> SENet:
    """SENet-18: two SE pre-activation blocks per stage."""
    return SENet((2, 2, 2, 2), num_classes)
