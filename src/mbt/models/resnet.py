"""ResNet-18 for 32x32 images, after kuangliu/pytorch-cifar ``models/resnet.py``.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
The CIFAR form swaps the ImageNet stem (7x7 stride-2 conv + max-pool) for one 3x3 stride-1
conv, so the four stages work at 32, 16, 8 and 4 pixels. 11,173,962 parameters for 10 classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Stage widths and first-block strides shared by the ResNet-like models (ResNet, PreAct, SENet).
STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 'same' conv without bias (a BatchNorm nearby makes a bias redundant)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def make_stage(
    block: type[nn.Module], in_ch: int, out_ch: int, depth: int, stride: int
) -> nn.Sequential:
    """``depth`` blocks; only the first one changes resolution and width."""
    blocks = [block(in_ch, out_ch, stride)]
    blocks += [block(out_ch, out_ch, 1) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


def pool_features(out: torch.Tensor) -> torch.Tensor:
    """Global average pool to a (N, C) matrix.

    Same result as kuangliu's ``avg_pool2d(out, 4)`` at 32x32 input (the map is 4x4 there), but
    it also works for other input sizes.
    """
    return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus a shortcut; post-activation (BN and ReLU after each conv)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        # Projection shortcut (1x1 conv + BN, the paper's option B) only where the shape changes.
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # Out-of-place add: keeps autograd safe if a caller hooks intermediate tensors.
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """The CIFAR ResNet family: 3x3 stem (conv-BN-ReLU, or a bare conv when ``stem_bn`` is
    False, as pre-activation nets have), four stages of ``block``, global average pool,
    linear head. ResNet, PreActResNet and SENet differ only in the block and the stem."""

    def __init__(self, depths: tuple[int, ...], num_classes: int = 10, *,
                 block: type[nn.Module] = BasicBlock, stem_bn: bool = True):
        super().__init__()
        self.conv1 = conv3x3(3, STAGE_WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0]) if stem_bn else None
        stages, in_ch = [], STAGE_WIDTHS[0]
        for width, depth, stride in zip(STAGE_WIDTHS, depths, STAGE_STRIDES, strict=True):
            stages.append(make_stage(block, in_ch, width, depth, stride))
            in_ch = width
        self.layers = nn.Sequential(*stages)
        self.linear = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.bn1 is not None:
            out = F.relu(self.bn1(out))
        out = self.layers(out)
        return self.linear(pool_features(out))


def resnet18(num_classes: int = 10) -> ResNet:
    """ResNet-18: two BasicBlocks per stage."""
    return ResNet((2, 2, 2, 2), num_classes)
