"""SENet-18 for 32x32 images, after kuangliu/pytorch-cifar ``models/senet.py``.

Hu, Shen & Sun, "Squeeze-and-Excitation Networks", arXiv:1709.01507. kuangliu's SENet18 is a
pre-activation ResNet-18 whose blocks rescale their residual branch channel-wise by a learned
gate (reduction 16), with a post-activation stem (conv-BN-ReLU) and no final BN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .preact_resnet import PreActBlock
from .resnet import ResNet

SE_REDUCTION = 16


class SEPreActBlock(PreActBlock):
    """Pre-activation basic block with a squeeze-and-excitation gate on the residual branch."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__(in_ch, out_ch, stride)
        # The gate's two FC layers, as 1x1 convs (with bias) so they act on (N, C, 1, 1) directly.
        self.fc1 = nn.Conv2d(out_ch, out_ch // SE_REDUCTION, kernel_size=1)
        self.fc2 = nn.Conv2d(out_ch // SE_REDUCTION, out_ch, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, shortcut = self.branch(x)
        # Squeeze: per-channel global mean; excite: bottleneck MLP -> sigmoid gate in (0, 1).
        w = F.adaptive_avg_pool2d(out, 1)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return out * w + shortcut


class SENet(ResNet):
    """CIFAR SENet: conv-BN-ReLU stem, four stages of SE blocks, global average pool, linear."""

    def __init__(self, depths: tuple[int, ...], num_classes: int = 10):
        super().__init__(depths, num_classes, block=SEPreActBlock, stem_bn=True)


def senet18(num_classes: int = 10) -> SENet:
    """SENet-18: two SE pre-activation blocks per stage."""
    return SENet((2, 2, 2, 2), num_classes)
