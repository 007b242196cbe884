"""A small CNN for 1x28x28 images (Fashion-MNIST), sized for full-data runs on a CPU.

Three 3x3 conv-BatchNorm-ReLU-maxpool stages (16, 32, 64 channels; 28 -> 14 -> 7 -> 3) and a
linear head on the flattened 64x3x3 map: about 29k parameters and 2 M multiply-adds per
image, so an epoch of the 60 000 training images at batch 128 takes 13-20 s on one thread of
a busy 2-core CPU (0.03 s a step; scripts/time_ood_cells.py). BatchNorm as in the paper's
CIFAR models, so MBT's searches see the same train-mode normalisation statistics (and their
restore after each trial) as there.
"""

from __future__ import annotations

from torch import nn

__all__ = ["FmnistCNN", "fmnist_cnn"]


def _stage(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.MaxPool2d(2)]


class FmnistCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(*_stage(in_channels, 16), *_stage(16, 32),
                                      *_stage(32, 64), nn.Flatten())
        self.linear = nn.Linear(64 * 3 * 3, num_classes)

    def forward(self, x):
        return self.linear(self.features(x))


def fmnist_cnn(num_classes: int = 10) -> FmnistCNN:
    return FmnistCNN(num_classes)
