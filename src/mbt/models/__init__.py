"""CIFAR-sized image classifiers (32x32 input), after kuangliu/pytorch-cifar, and two models
beyond the paper (fmnist_cnn: 1x28x28 images; char_transformer: a byte language model).

All five use a 3x3 stride-1 stem with no max-pool and end in a global average pool and a linear
layer; ``build_model(name, num_classes)`` is the one entry point the training code needs.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral

import torch
from torch import nn

from .char_transformer import CharTransformer, char_transformer
from .densenet import DenseNet, densenet121
from .fmnist_cnn import FmnistCNN, fmnist_cnn
from .mobilenetv2 import MobileNetV2, mobilenetv2
from .preact_resnet import PreActResNet, preact_resnet18
from .resnet import ResNet, resnet18
from .senet import SENet, senet18
from .tiny import TinyNet, tiny

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "resnet18": resnet18,
    "preact_resnet18": preact_resnet18,
    "mobilenetv2": mobilenetv2,
    "senet18": senet18,
    "densenet121": densenet121,
    "tiny": tiny,  # plumbing tests only; not a model of the paper
    # Beyond the paper (issue 25): Fashion-MNIST and a character language model.
    "fmnist_cnn": fmnist_cnn,
    "char_transformer": char_transformer,
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
# The input each model takes (mbt.data.DATA_INPUTS names what each data set yields);
# mbt.config refuses a pairing that differs before any data are read.
MODEL_INPUTS: dict[str, str] = {name: "rgb32" for name in MODELS}
MODEL_INPUTS.update(fmnist_cnn="grey28", char_transformer="bytes")
# BatchNorm weight (gamma) initialisation. PyTorch <= 1.1 (the published code is from early
# 2019) drew gamma ~ U(0, 1) in ``_BatchNorm.reset_parameters`` (the 1.1.0 docs of
# BatchNorm2d say so); pytorch/pytorch#12259 / PR #12325 changed it to ones, first released
# in 1.2.0. Bias was 0 in both, and Conv/Linear inits did not change.
BN_INITS: tuple[str, ...] = ("torch", "legacy")
# Offset so the legacy gamma draw is not the first numbers of the run seed's stream.
_BN_SEED_OFFSET = 0x5EED_B417


def init_batchnorm_legacy(model: nn.Module, seed: int) -> nn.Module:
    """gamma ~ U(0, 1), beta = 0 for every BatchNorm layer, as PyTorch < 1.2 initialised them.

    Draws from a generator of its own seeded from ``seed``, so every other weight of the
    model is the same as under the ``torch`` init of the same seed: only gamma differs."""
    gen = torch.Generator().manual_seed(int(seed) + _BN_SEED_OFFSET)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen))
                m.bias.zero_()
    return model


def build_model(name: str, num_classes: int = 10, *, bn_init: str = "torch",
                seed: int = 0) -> nn.Module:
    """A freshly initialised ``name`` (one of ``MODEL_NAMES``) with ``num_classes`` outputs.

    Initialisation is PyTorch's default, so it is reproducible under ``torch.manual_seed``;
    ``bn_init="legacy"`` then redraws every BatchNorm gamma the pre-1.2 way from ``seed``
    (:func:`init_batchnorm_legacy`; docs/fidelity.md, Table 1).
    """
    if bn_init not in BN_INITS:
        raise ValueError(f"unknown bn_init {bn_init!r}; choose one of: {', '.join(BN_INITS)}")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    # bool is an Integral too; reject it so a config typo like `num_classes: true` fails loudly.
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    model = MODELS[name](int(num_classes))
    return init_batchnorm_legacy(model, seed) if bn_init == "legacy" else model


__all__ = [
    "BN_INITS",
    "MODELS",
    "MODEL_INPUTS",
    "MODEL_NAMES",
    "CharTransformer",
    "DenseNet",
    "FmnistCNN",
    "MobileNetV2",
    "PreActResNet",
    "ResNet",
    "SENet",
    "TinyNet",
    "build_model",
    "char_transformer",
    "densenet121",
    "fmnist_cnn",
    "init_batchnorm_legacy",
    "mobilenetv2",
    "preact_resnet18",
    "resnet18",
    "senet18",
    "tiny",
]
