"""Pre-activation ResNet-18 for 32x32 images, after kuangliu/pytorch-cifar
``models/preact_resnet.py``.

He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual Networks", arXiv:1603.05027.
As in kuangliu's version, the stem is a bare 3x3 conv and there is no BN-ReLU after the last
block (the paper has one); we keep that so weights and parameter counts match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import ResNet, conv3x3


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; the residual path is a clean identity (hence 'pre-activation')."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        # Bare 1x1 projection (no BN): it acts on the already normalised input.
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)

    def branch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(residual branch, shortcut) of ``x``."""
        out = F.relu(self.bn1(x))
        # The projection sees the activated input, the identity sees the raw one (paper Fig. 4e).
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        return self.conv2(F.relu(self.bn2(out))), shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, shortcut = self.branch(x)
        return out + shortcut


class PreActResNet(ResNet):
    """CIFAR pre-activation ResNet: bare 3x3 stem, four stages, global average pool, linear."""

    def __init__(self, depths: tuple[int, ...], num_classes: int = 10):
        super().__init__(depths, num_classes, block=PreActBlock, stem_bn=False)


def preact_resnet18(num_classes: int = 10) -> PreActResNet:
    """PreActResNet-18: two PreActBlocks per stage."""
    return PreActResNet((2, 2, 2, 2), num_classes)
