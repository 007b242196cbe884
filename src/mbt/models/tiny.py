"""A CIFAR-shaped network of a few thousand parameters, for plumbing tests and demos.

Not a model of the paper: it exists so that tests of resume, the ledger, sweeps, W&B and
reports run in seconds on a CPU while going through the same code path as ResNet18
(convolutions, BatchNorm, global pooling, a linear head).
"""

from __future__ import annotations

from torch import nn

__all__ = ["TinyNet", "tiny"]


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.linear = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.linear(self.features(x))


def tiny(num_classes: int = 10) -> TinyNet:
    return TinyNet(num_classes)
