"""CIFAR-sized image classifiers (32x32 input), after kuangliu/pytorch-cifar.

All five use a 3x3 stride-1 stem with no max-pool and end in a global average pool and a linear
layer; ``build_model(name, num_classes)`` is the one entry point the training code needs.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral

from torch import nn

from .densenet import DenseNet, densenet121
from .mobilenetv2 import MobileNetV2, mobilenetv2
from .preact_resnet import PreActResNet, preact_resnet18
from .resnet import ResNet, resnet18
from .senet import SENet, senet18

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "resnet18": resnet18,
    "preact_resnet18": preact_resnet18,
    "mobilenetv2": mobilenetv2,
    "senet18": senet18,
    "densenet121": densenet121,
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """A freshly initialised ``name`` (one of ``MODEL_NAMES``) with ``num_classes`` outputs.

    Initialisation is PyTorch's default, so it is reproducible under ``torch.manual_seed``.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    # bool is an Integral too; reject it so a config typo like `num_classes: true` fails loudly.
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return MODELS[name](int(num_classes))


__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "DenseNet",
    "MobileNetV2",
    "PreActResNet",
    "ResNet",
    "SENet",
    "build_model",
    "densenet121",
    "mobilenetv2",
    "preact_resnet18",
    "resnet18",
    "senet18",
]
