"""MBT-GD, MBT-MMT and MBT-NAG: the per-epoch learning-rate policy (paper Sec. 3.5.2).

The optimizer is a stock ``torch.optim.SGD``; an :class:`MBTController` decides at
each epoch boundary whether to run an MBT search (:mod:`mbt.optim.mbt_finder`) and
sets the SGD learning rate from it. The API is three calls and a checkpoint pair::

    optimizer, controller = build_mbt("nag", model.parameters(), lr=1e-2)
    for epoch in range(epochs):
        if controller.should_stop:          # optional early stop (off by default)
            break
        controller.on_epoch_start(epoch, model, loss_fn, train_loader)
        train_loss = train_one_epoch(model, optimizer, ...)   # plain SGD steps
        test_acc = evaluate(model, ...)
        controller.on_epoch_end(train_loss, test_acc)
    # checkpoint: controller.state_dict() next to optimizer.state_dict()

A training loop that supports other optimizers needs no branch on names: it calls
the three hooks when a controller exists. ``controller.last_report`` (a
:class:`~mbt.optim.mbt_finder.SearchReport`) holds the last search for logging.

Policy, as the published code's ``model_main.py`` ``train()`` does it:

* ``variant="gd"``: plain SGD, one search at the first epoch (code:
  ``once_only = True``); ``"mmt"`` / ``"nag"``: SGD with momentum 0.9 (Nesterov for
  NAG), a search at the start of every epoch. After every search the momentum
  buffers are cleared (code: ``optimizer.state = defaultdict(dict)``) and the lr set.
  Every search starts from ``lr`` (unless ``carry_start_bug``). ``reset_momentum=False``
  (beyond the paper) keeps the buffers across searches: with few steps per epoch the
  reset leaves a large share of training rebuilding momentum (``results/mbt_gap.md``).
* Plateau: ``patience = min(epochs since the training loss improved, epochs since
  the test accuracy improved)``, measured at the start of an epoch. When it exceeds
  ``plateau_patience`` (5) the controller switches to ``alpha = plateau_alpha``
  (0.5) and turns momentum off (plain SGD), and searches at the start of that epoch
  and of every later epoch while ``patience > 5`` (for MMT/NAG: every epoch anyway).
  The switch is permanent, as in the code (``alpha`` and ``optimizer`` are globals
  that are never switched back), even after the loss or accuracy improves again.
  The text (Sec. 3.5.2) says "no loss decreasing in 5 consecutive epochs"; the code
  requires both signals to stall for more than 5 epochs, which is what we do.
  Improvement: training loss ``<=`` the best so far (a NaN loss never improves;
  ``model_main.py`` would take NaN as the new best), test accuracy ``>`` the best so
  far (starting from 0, as the code). Without a test accuracy only the training
  loss counts.
* Early stop (``early_stop_patience``, default None = off; the code uses 50):
  ``should_stop`` turns true when the patience measured at the start of the last
  epoch reached it -- the code's ``if patient < 50`` reads the value computed inside
  the previous ``train()``, so it stops one epoch later than a fresh count would;
  we keep that.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .base import check_range
from .controller import EpochController
from .mbt_finder import LossFn, MBTFinder, MBTSearchConfig, SearchReport
from .ranks import world_size

__all__ = ["MBT_VARIANTS", "MBTController", "build_mbt"]

logger = logging.getLogger(__name__)

MBT_VARIANTS = ("gd", "mmt", "nag")


def _check_patience(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"Invalid {name}: {value!r} (expected int >= 0"
                         f"{' or None' if allow_none else ''})")


class MBTController(EpochController):
    """Epoch-level MBT policy around a ``torch.optim.SGD`` (see the module docstring).

    Args:
        optimizer: the SGD that trains the model; its ``momentum`` / ``nesterov``
            must match ``variant`` (0 for ``"gd"``, > 0 for ``"mmt"``, Nesterov for
            ``"nag"``). The controller writes ``lr`` (and, on a plateau,
            ``momentum = 0``) into every param group and clears its state.
        variant: ``"gd"``, ``"mmt"`` or ``"nag"``.
        lr: start eta of every search (Table 2: 1e-2).
        config: search hyper-parameters (:class:`MBTSearchConfig`); ``**search_kwargs``
            override single fields.
        plateau_patience: the plateau rule fires when patience exceeds this (5).
        plateau_alpha: Armijo constant after the plateau switch (0.5).
        early_stop_patience: ``should_stop`` once patience reaches this; None = never.
        reset_momentum: clear the momentum buffers after every search, as the code
            (True); False keeps them (beyond the paper).
    """

    def __init__(
        self,
        optimizer: torch.optim.SGD,
        variant: str,
        *,
        lr: float = 1e-2,
        config: MBTSearchConfig | None = None,
        plateau_patience: int = 5,
        plateau_alpha: float = 0.5,
        early_stop_patience: int | None = None,
        reset_momentum: bool = True,
        **search_kwargs: Any,
    ) -> None:
        if not isinstance(optimizer, torch.optim.SGD):
            raise ValueError(f"MBT needs a torch.optim.SGD, got {type(optimizer).__name__}")
        if variant not in MBT_VARIANTS:
            raise ValueError(f"Invalid variant: {variant!r} (expected one of {MBT_VARIANTS})")
        for group in optimizer.param_groups:
            momentum, nesterov = group.get("momentum", 0.0), group.get("nesterov", False)
            if variant == "gd" and momentum != 0:
                raise ValueError("variant 'gd' needs an SGD without momentum")
            if variant == "mmt" and (momentum <= 0 or nesterov):
                raise ValueError("variant 'mmt' needs SGD with momentum > 0 and nesterov=False")
            if variant == "nag" and not nesterov:
                raise ValueError("variant 'nag' needs SGD with nesterov=True")
        _check_patience("plateau_patience", plateau_patience)
        _check_patience("early_stop_patience", early_stop_patience, allow_none=True)
        check_range("plateau_alpha", plateau_alpha, 0.0, 1.0)
        if not isinstance(reset_momentum, bool):
            raise ValueError(f"Invalid reset_momentum: {reset_momentum!r} (expected a bool)")
        self.finder = MBTFinder(config, **search_kwargs)
        cfg = self.finder.config
        if not (isinstance(lr, (int, float)) and cfg.lr_min <= lr <= cfg.lr_max):
            raise ValueError(f"Invalid lr: {lr!r} (expected a start value in "
                             f"[lr_min={cfg.lr_min}, lr_max={cfg.lr_max}])")
        super().__init__(optimizer)
        self.variant = variant
        self.lr_start = float(lr)
        self.plateau_patience = plateau_patience
        self.plateau_alpha = float(plateau_alpha)
        self.early_stop_patience = early_stop_patience
        self.reset_momentum = reset_momentum

        self.alpha = cfg.alpha  # the Armijo constant of the next search
        self.plateaued = False  # sticky: alpha = plateau_alpha, momentum off
        self.searched = False  # code: ``apply`` (cleared after MBT-GD's first search)
        self.best_loss = math.inf
        self.best_acc = 0.0
        self.epochs_no_loss_gain = 0  # code: patient_train
        self.epochs_no_acc_gain = 0  # code: patient_test
        self.patience = 0  # code: patient = min(patient_test, patient_train)
        self.last_report: SearchReport | None = None
        self.last_search_epoch: int | None = None
        self.num_searches = 0

    @property
    def config(self) -> MBTSearchConfig:
        return self.finder.config

    @property
    def should_stop(self) -> bool:
        """True once the early-stop patience is reached (never when it is None)."""
        return self.early_stop_patience is not None and self.patience >= self.early_stop_patience

    def _momentum_off(self) -> None:
        # The code replaces the optimizer by ``optim.SGD(net.parameters(), lr=...)``.
        for group in self.optimizer.param_groups:
            group["momentum"] = 0.0
            group["nesterov"] = False

    def on_epoch_start(self, epoch: int, model: nn.Module, loss_fn: LossFn,
                       train_batches: Iterable, dataset_size: int | None = None,
                       batch_size: int | None = None) -> SearchReport | None:
        """Search if due, then set the SGD lr and clear momentum; returns the report or None.

        ``dataset_size`` / ``batch_size`` default to ``len(loader.dataset)`` and
        ``loader.batch_size`` of a DataLoader ``train_batches``. Under DDP every rank calls
        this with its own loader; the search averages over the ranks, so all set one lr.
        """
        self.patience = min(self.epochs_no_loss_gain, self.epochs_no_acc_gain)
        stalled = self.patience > self.plateau_patience
        due = self.variant != "gd" or not self.searched or stalled
        if not due:
            return None
        if stalled and not self.plateaued:
            self.plateaued = True
            self.alpha = self.plateau_alpha
            self._momentum_off()
            logger.info("MBT epoch %d: no gain for %d epochs -> alpha=%g, momentum off",
                        epoch, self.patience, self.alpha)
        report = self.finder.find(
            model, loss_fn, train_batches, lr=self.lr_start, dataset_size=dataset_size,
            batch_size=batch_size, alpha=self.alpha,
        )
        if self.reset_momentum:
            self.adopt(report)  # momentum buffers restart with the new lr
        else:
            self.set_lr(report.lr)
        self.searched = True
        self.last_report = report
        self.last_search_epoch = epoch
        self.num_searches += 1
        return report

    def on_epoch_end(self, train_loss: float, test_acc: float | None = None) -> None:
        """Update the plateau counters (code: end of ``train()`` and ``test()``).

        Under ``torch.distributed`` every rank calls this (a collective): the loss is
        averaged over the ranks and the accuracy over the ranks that give one, so the
        plateau rule, and with it the next search, is decided alike on every rank."""
        train_loss = float(train_loss)
        if world_size() > 1:
            train_loss, test_acc = self._mean_over_ranks(train_loss, test_acc)
        if math.isnan(train_loss) or train_loss > self.best_loss:
            self.epochs_no_loss_gain += 1
        else:
            self.epochs_no_loss_gain = 0
            self.best_loss = train_loss
        if test_acc is None:
            self.epochs_no_acc_gain = self.epochs_no_loss_gain
        elif float(test_acc) > self.best_acc:
            self.epochs_no_acc_gain = 0
            self.best_acc = float(test_acc)
        else:
            self.epochs_no_acc_gain += 1

    def _mean_over_ranks(self, train_loss: float,
                         test_acc: float | None) -> tuple[float, float | None]:
        # On the parameters' device: NCCL reduces CUDA tensors only.
        device = self.optimizer.param_groups[0]["params"][0].device
        given = test_acc is not None
        t = torch.tensor([train_loss, 0.0 if test_acc is None else float(test_acc), float(given)],
                         dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        loss, acc, count = t.tolist()
        return loss / world_size(), (acc / count if count else None)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (momentum buffers live in the optimizer's)."""
        return {
            "variant": self.variant,
            "lr_start": self.lr_start,
            "lr": self.optimizer.param_groups[0]["lr"],
            "alpha": self.alpha,
            "plateaued": self.plateaued,
            "searched": self.searched,
            "best_loss": self.best_loss,
            "best_acc": self.best_acc,
            "epochs_no_loss_gain": self.epochs_no_loss_gain,
            "epochs_no_acc_gain": self.epochs_no_acc_gain,
            "patience": self.patience,
            "last_search_epoch": self.last_search_epoch,
            "num_searches": self.num_searches,
            "last_report": None if self.last_report is None else self.last_report.to_dict(),
            "finder": self.finder.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore; also re-applies the lr and the plateau switch to the optimizer."""
        if state is None:
            raise ValueError("no MBT controller state to restore")
        if state["variant"] != self.variant:
            raise ValueError(f"state is for variant {state['variant']!r}, not {self.variant!r}")
        if state["lr_start"] != self.lr_start:
            logger.warning("MBT resume: start lr %g replaces %g", state["lr_start"], self.lr_start)
        self.lr_start = float(state["lr_start"])
        self.alpha = float(state["alpha"])
        self.plateaued = bool(state["plateaued"])
        self.searched = bool(state["searched"])
        self.best_loss = float(state["best_loss"])
        self.best_acc = float(state["best_acc"])
        self.epochs_no_loss_gain = int(state["epochs_no_loss_gain"])
        self.epochs_no_acc_gain = int(state["epochs_no_acc_gain"])
        self.patience = int(state["patience"])
        self.last_search_epoch = state["last_search_epoch"]
        self.num_searches = int(state["num_searches"])
        report = state["last_report"]
        self.last_report = None if report is None else SearchReport.from_dict(report)
        self.finder.load_state_dict(state["finder"])
        self.set_lr(float(state["lr"]))
        if self.plateaued:
            self._momentum_off()


def build_mbt(
    variant: str,
    params: Iterable,
    lr: float = 1e-2,
    momentum: float = 0.9,
    *,
    plateau_patience: int = 5,
    plateau_alpha: float = 0.5,
    early_stop_patience: int | None = None,
    reset_momentum: bool = True,
    config: MBTSearchConfig | None = None,
    **search_kwargs: Any,
) -> tuple[torch.optim.SGD, MBTController]:
    """SGD + controller for MBT-GD / -MMT / -NAG (Sec. 3.5.2), no weight decay (as the code).

    ``momentum`` is used by ``"mmt"`` and ``"nag"`` (0.9 in the paper) and ignored by
    ``"gd"``. ``lr`` is the start eta of each search and also the SGD lr until the
    first search sets it. ``**search_kwargs`` are :class:`MBTSearchConfig` fields.
    """
    if variant not in MBT_VARIANTS:
        raise ValueError(f"Invalid variant: {variant!r} (expected one of {MBT_VARIANTS})")
    if variant != "gd":
        check_range("momentum", momentum, 0.0, 1.0)
    optimizer = torch.optim.SGD(
        params, lr=lr, momentum=0.0 if variant == "gd" else momentum,
        nesterov=variant == "nag", weight_decay=0.0,
    )
    controller = MBTController(
        optimizer, variant, lr=lr, config=config, plateau_patience=plateau_patience,
        plateau_alpha=plateau_alpha, early_stop_patience=early_stop_patience,
        reset_momentum=reset_momentum, **search_kwargs,
    )
    return optimizer, controller
