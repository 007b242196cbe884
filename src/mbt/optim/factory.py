"""Build the optimizer a config names, so that the train loop never branches on names.

Every ``conf/optim/*.yaml`` holds ``lr`` and a Hydra ``builder`` node; the builder is
called as ``builder(params=..., lr=...)`` and returns either an ``Optimizer`` (stock
torch optimizers, the backtracking line searches) or an ``(Optimizer, controller)``
pair (MBT-GD/MMT/NAG, whose controller runs the per-epoch search; see
:mod:`mbt.optim.mbt_schedule`). Every optimizer leaves here with an
:class:`~mbt.optim.controller.EpochController`, the one interface the train loop calls.

On CUDA, torch's SGD (MBT-GD/MMT/NAG and the SGD baselines) takes its fused kernel (one
launch per step for all parameters, :func:`use_fused_kernels`), decided here at build time
from where the parameters live: the config, and so the run key, does not change.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .controller import EpochController, controller_for

__all__ = ["build_optimizer", "build_scheduler", "use_fused_kernels"]

# Only SGD: its update has no normalisation, so the fused kernel's rounding stays at
# rounding level. Adam's divides by sqrt(v), which blows rounding up wherever a gradient is
# itself rounding noise (10 CPU steps: 28 % on a BatchNorm weight); on CUDA it keeps torch's
# default (foreach).
_FUSED = (torch.optim.SGD,)


def use_fused_kernels(optimizer: torch.optim.Optimizer,
                      device_types: tuple[str, ...] = ("cuda",)) -> bool:
    """Switch a stock ``torch.optim.SGD`` whose parameters all live on ``device_types`` to
    its fused kernel, unless foreach/fused/differentiable was asked for explicitly; returns
    whether it did. The maths is the default's (foreach on CUDA), up to rounding inside the
    kernel."""
    if type(optimizer) not in _FUSED:
        return False
    groups = optimizer.param_groups
    params = [p for g in groups for p in g["params"]]
    if not params or any(p.device.type not in device_types or not p.is_floating_point()
                         for p in params):
        return False
    if any(g.get("foreach") is not None or g.get("fused") or g.get("differentiable")
           for g in groups):
        return False
    for g in groups:
        g["fused"] = True
    return True


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
    use_fused_kernels(optimizer)
    return optimizer, controller if controller is not None else controller_for(optimizer)


def build_scheduler(optim_cfg: DictConfig | dict, optimizer: torch.optim.Optimizer):
    """The per-epoch lr scheduler ``optim.scheduler`` names (e.g. cosine), or None."""
    node = optim_cfg.get("scheduler")
    if not node:
        return None
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    return instantiate(node, optimizer=optimizer)
