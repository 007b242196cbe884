"""DenseNet-121 for 32x32 images, after kuangliu/pytorch-cifar ``models/densenet.py``.

Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks",
arXiv:1608.06993. DenseNet-BC with growth rate 32, blocks (6, 12, 24, 16) and compression 0.5;
the CIFAR form replaces the 7x7 stride-2 stem + max-pool by one 3x3 stride-1 conv to 2k = 64
channels, so the dense blocks work at 32, 16, 8 and 4 pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (to 4k, the 'B' bottleneck) -> BN-ReLU-3x3 conv (to k); output is the
    k new channels concatenated in front of the input."""

    def __init__(self, in_ch: int, growth_rate: int):
        super().__init__()
        inner = 4 * growth_rate
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, inner, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        # New features first, as kuangliu: the channel order is what later layers' weights see.
        return torch.cat([out, x], dim=1)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv (compression, the 'C') then 2x2 average pool between dense blocks."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    """CIFAR DenseNet-BC: 3x3 stem, dense blocks joined by transitions, BN-ReLU, global pool."""

    def __init__(
        self,
        block_sizes: tuple[int, ...],
        growth_rate: int = 32,
        reduction: float = 0.5,
        num_classes: int = 10,
    ):
        super().__init__()
        ch = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, ch, kernel_size=3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(block_sizes):
            # Layer j sees the block input plus the j * growth_rate channels added before it.
            layers = [DenseLayer(ch + j * growth_rate, growth_rate) for j in range(n)]
            stages.append(nn.Sequential(*layers))
            ch += n * growth_rate
            if i < len(block_sizes) - 1:  # no transition after the last dense block
                out_ch = math.floor(ch * reduction)
                stages.append(Transition(ch, out_ch))
                ch = out_ch
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(ch)
        self.linear = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.conv1(x))
        out = F.relu(self.bn(out))
        # kuangliu: avg_pool2d(out, 4), the same as a global pool at 32x32 input.
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def densenet121(num_classes: int = 10) -> DenseNet:
    """DenseNet-121 (k = 32, blocks 6-12-24-16) in kuangliu's CIFAR form."""
    return DenseNet((6, 12, 24, 16), growth_rate=32, num_classes=num_classes)
