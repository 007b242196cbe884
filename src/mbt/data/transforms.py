"""Normalization constants and the torchvision (PIL) transform pipelines.

The ``paper`` augmentation is the one in the authors' published code
(hank-nguyen/MBT-optimizer, ``utils.dataset``), kept in the same order because the
torchvision ops do not commute (crop pads with black, rotations cut the corners).
The device pipeline (:mod:`mbt.data.device_loader`) reads its parameters from here too,
so the two pipelines cannot drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torchvision import transforms as T

AUGMENTS = ("paper", "standard", "none")
NORMALIZES = ("code", "true")

# Paper augmentation parameters (authors' code): RandomCrop(32, padding=4),
# RandomHorizontalFlip(), RandomAffine(10), RandomRotation(20), ColorJitter(...).
CROP_SIZE = 32
CROP_PADDING = 4
FLIP_P = 0.5
AFFINE_DEGREES = 10.0
ROTATION_DEGREES = 20.0
JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.1, "hue": 0.1}

# normalize=code: the constants of the paper's code (inherited from kuangliu/pytorch-cifar and
# copied widely), used for CIFAR-10 *and* CIFAR-100. The std is not the per-channel std over
# all training pixels (it is close to the mean of per-image stds), which is why `true` exists.
CODE_MEAN = (0.4914, 0.4822, 0.4465)
CODE_STD = (0.2023, 0.1994, 0.2010)

# normalize=true: per-channel mean and std over ALL pixels of the full training set (50 000
# images, values scaled to [0, 1]), as widely cited for CIFAR-10/100. They cannot be recomputed
# offline (only a partial copy is available here); `channel_stats` computes the same statistic,
# and tests/test_data.py checks it lands within ~0.02 of these on the real cifar-head images.
TRUE_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    # Over all 47 040 000 pixels of the 60 000 training images, computed here from the
    # md5-checked files (tests/test_ood_data.py recomputes them when the files are installed).
    "fashion_mnist": ((0.2860,), (0.3530,)),
}
# The data sets the paper code's constants were written for.
CODE_DATASETS = ("cifar10", "cifar100")


def norm_stats(name: str, normalize: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel for dataset ``name`` under ``normalize`` (code | true)."""
    if normalize == "code":
        if name not in CODE_DATASETS:
            raise ValueError(f"normalize=code (the paper code's CIFAR constants) does not "
                             f"apply to {name}: use normalize=true")
        return CODE_MEAN, CODE_STD
    if normalize == "true":
        return TRUE_STATS[name]
    raise ValueError(f"normalize must be one of {NORMALIZES}, got {normalize!r}")


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) over all pixels of uint8 images, in [0, 1] units.

    Accepts (N, H, W, 3) HWC arrays (the layout of torchvision's ``.data``) or raw CIFAR
    rows (N, 3072) (channel planes). The std is the population std over every pixel of the
    set, i.e. the statistic behind ``TRUE_STATS`` (not the mean of per-image stds).
    """
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {a.dtype}")
    if a.ndim == 2 and a.shape[1] == 3072:
        a = a.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) or (N, 3072), got shape {a.shape}")
    # Exact int64 sums over chunks: no float copy of the whole set (1.2 GB for CIFAR train).
    s1 = np.zeros(3, dtype=np.int64)
    s2 = np.zeros(3, dtype=np.int64)
    for start in range(0, len(a), 4096):
        pix = a[start : start + 4096].reshape(-1, 3).astype(np.int64)
        s1 += pix.sum(axis=0)
        s2 += (pix * pix).sum(axis=0)
    n = a.size // 3
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    return tuple(float(m) / 255 for m in mean), tuple(float(s) / 255 for s in std)


def check_augment(augment: str) -> None:
    """The one check of an ``augment`` name, at the data API's boundaries (build_loaders,
    DeviceLoader, train_transform); the config checks it as an Enum before that."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")


def train_transform(augment: str, mean, std) -> T.Compose:
    """PIL -> normalized float tensor for training, with the chosen augmentation."""
    from torchvision import transforms as T  # lazily: see mbt.data.cifar.CifarSpec.tv_class

    if augment == "paper":
        aug = [
            T.RandomCrop(CROP_SIZE, padding=CROP_PADDING),
            T.RandomHorizontalFlip(FLIP_P),
            T.RandomAffine(AFFINE_DEGREES),
            T.RandomRotation(ROTATION_DEGREES),
            T.ColorJitter(**JITTER),
        ]
    elif augment == "standard":
        aug = [T.RandomCrop(CROP_SIZE, padding=CROP_PADDING), T.RandomHorizontalFlip(FLIP_P)]
    else:
        check_augment(augment)
        aug = []
    return T.Compose([*aug, T.ToTensor(), T.Normalize(mean, std)])


def eval_transform(mean, std) -> T.Compose:
    """PIL -> normalized float tensor, no augmentation (evaluation)."""
    from torchvision import transforms as T

    return T.Compose([T.ToTensor(), T.Normalize(mean, std)])
