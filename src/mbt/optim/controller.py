"""The epoch-level interface between an optimizer and the train loop.

Some optimizers need more than ``step``: MBT searches a learning rate before every epoch
(Sec. 3.5.2), the LR-range test sets one before the first, SLS needs the number of batches
per epoch, schedule-free optimizers switch their parameters between a training and an
averaged point. :class:`EpochController` is what the loop calls around every epoch for
every optimizer, so the loop never asks which optimizer it holds. The base does nothing;
:func:`controller_for` picks the adapter a plain optimizer needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sized
from typing import Any, Protocol, cast

import torch
from torch import nn

__all__ = ["EpochController", "ModeSwitchController", "SLSController", "controller_for"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class EpochController:
    """Hooks the train loop calls, in this order, each epoch::

        prepare(loader)                  # once, before the first epoch
        on_epoch_start(epoch, ...)       # may search and set the lr; returns its report
        train_mode(); <training steps>
        eval_mode(); <evaluation, checkpoint>
        on_epoch_end(train_loss, test_acc)
        should_stop                      # checked after the checkpoint

    and ``state_dict``/``load_state_dict`` around checkpoints. Every hook is a no-op here.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def prepare(self, train_batches: Iterable) -> None:
        """Once, with the training loader, before the first epoch."""

    def on_epoch_start(self, epoch: int, model: nn.Module, loss_fn: LossFn,
                       train_batches: Iterable, dataset_size: int | None = None,
                       batch_size: int | None = None) -> Any | None:
        """Before the epoch's steps; a search's report (``lr``, ``mean_lr``,
        ``func_evals``) or None."""
        return None

    def on_epoch_end(self, train_loss: float, test_acc: float | None = None) -> None:
        """After the epoch's evaluation (``test_acc`` None when it was skipped)."""

    @property
    def should_stop(self) -> bool:
        """True to end training after this epoch (an early-stopping policy)."""
        return False

    def train_mode(self) -> None:
        """Before the training steps of an epoch."""

    def eval_mode(self) -> None:
        """Before evaluation and the checkpoint."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore; ``None`` (a checkpoint of a run without a controller) is accepted."""

    def set_lr(self, lr: float) -> None:
        """Write ``lr`` into every param group (ratios between groups are not kept)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def adopt(self, report: Any) -> None:
        """Train at a search's result: its lr, with momentum buffers restarted."""
        self.optimizer.state.clear()
        self.set_lr(report.lr)


class SLSController(EpochController):
    """SLS resets its step size with the number of batches per epoch (Vaswani et al. 2019,
    Alg. 2): taken from the loader when the config leaves it unset."""

    def prepare(self, train_batches: Iterable) -> None:
        if not isinstance(train_batches, Sized):  # SLS then uses the code's default
            return
        for group in self.optimizer.param_groups:
            if group.get("n_batches_per_epoch") is None:
                group["n_batches_per_epoch"] = len(train_batches)


class ModeSwitchController(EpochController):
    """Schedule-free optimizers (Defazio et al. 2024) train at one point and evaluate and
    checkpoint at the averaged one: ``optimizer.train()`` / ``optimizer.eval()``."""

    def train_mode(self) -> None:
        cast(_ModeSwitching, self.optimizer).train()

    def eval_mode(self) -> None:
        cast(_ModeSwitching, self.optimizer).eval()


class _ModeSwitching(Protocol):
    def train(self) -> None: ...

    def eval(self) -> None: ...


def controller_for(optimizer: torch.optim.Optimizer) -> EpochController:
    """The controller a plain optimizer needs (built without one by its config)."""
    if callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None)):
        return ModeSwitchController(optimizer)
    if any("n_batches_per_epoch" in group for group in optimizer.param_groups):
        return SLSController(optimizer)
    return EpochController(optimizer)
