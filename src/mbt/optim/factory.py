"""Build the optimizer a config names, so that the train loop never branches on names.

Every ``conf/optim/*.yaml`` holds ``lr`` and a Hydra ``builder`` node; the builder is
called as ``builder(params=..., lr=...)`` and returns either an ``Optimizer`` (stock
torch optimizers, the backtracking line searches) or an ``(Optimizer, controller)``
pair (MBT-GD/MMT/NAG, whose controller runs the per-epoch search; see
:mod:`mbt.optim.mbt_schedule`). Every optimizer leaves here with an
:class:`~mbt.optim.controller.EpochController`, the one interface the train loop calls.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .controller import EpochController, controller_for

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(
    optim_cfg: DictConfig | dict, params: Iterable[torch.nn.Parameter]
) -> tuple[torch.optim.Optimizer, EpochController]:
    """``(optimizer, controller)`` for ``optim_cfg`` (``name``, ``lr``, ``builder``)."""
    builder = optim_cfg["builder"]
    if isinstance(builder, DictConfig):
        builder = OmegaConf.to_container(builder, resolve=True)
    made = instantiate(builder, params=params, lr=float(optim_cfg["lr"]))
    optimizer, controller = made if isinstance(made, tuple) else (made, None)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optim {optim_cfg['name']!r} built {type(optimizer).__name__}, "
                        "not a torch.optim.Optimizer")
    return optimizer, controller if controller is not None else controller_for(optimizer)


def build_scheduler(optim_cfg: DictConfig | dict, optimizer: torch.optim.Optimizer):
    """The per-epoch lr scheduler ``optim.scheduler`` names (e.g. cosine), or None."""
    node = optim_cfg.get("scheduler")
    if not node:
        return None
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    return instantiate(node, optimizer=optimizer)
