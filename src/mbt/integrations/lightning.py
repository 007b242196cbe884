"""PyTorch Lightning integration: MBT per epoch, line searches per step (docs/lightning.md).

* :class:`MBTCallback` - MBT-GD / -MMT / -NAG (paper Sec. 3.5.2): at the start of every
  training epoch (MBT-GD: the first, and after a plateau) an MBT search on the train
  loader's mini-batches (20 by default) sets the SGD lr; the lr is logged as ``mbt/lr``.
  The plateau switch (alpha 0.5, momentum off) follows a logged epoch loss.
* :func:`line_search_step` / :class:`LineSearchMixin` - one step of a per-step line search
  (Backtracking GD Sec. 2.1, Two-way Sec. 3.3, Unbounded Sec. 3.4, Backtracking
  Momentum/NAG, SLS) under *manual* optimization: trial points are forward-only and
  never reach ``training_step`` or ``self.log``; the taken step is logged.

Why manual optimization: under automatic optimization Lightning hands the optimizer a
closure that always runs ``training_step`` + ``backward`` (and ``on_before_optimizer_step``)
and takes no ``backward`` keyword, so every trial costs a backward pass and repeats the
step's logging (the logged loss is the last trial's). Steps are still correct there
(trials leave no trace, :mod:`mbt.optim.closure`), only slow and mislogged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils.data import DataLoader

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
except ImportError as err:  # pragma: no cover - exercised only without lightning
    raise ImportError("mbt.integrations.lightning needs PyTorch Lightning: "
                      "pip install lightning (or pip install 'mbt[lightning]')") from err

from mbt.optim.batches import BatchLoss, format_loss, loader_sizes, prepare
from mbt.optim.mbt_finder import MBTSearchConfig, SearchReport
from mbt.optim.mbt_schedule import MBTController
from mbt.optim.step_size import step_size

__all__ = ["LineSearchMixin", "MBTCallback", "line_search_step"]

logger = logging.getLogger(__name__)


def _variant_of(optimizer: torch.optim.SGD) -> str:
    group = optimizer.param_groups[0]
    if group.get("nesterov", False):
        return "nag"
    return "mmt" if group.get("momentum", 0.0) > 0 else "gd"


def _search_batches(loader: Any) -> DataLoader:
    """A main-process copy of the train loader (same dataset, batch sampler and collate):
    iterating the trainer's own loader here would disturb the epoch's iterator (with
    persistent workers both share one)."""
    if not isinstance(loader, DataLoader):
        raise ValueError("MBTCallback searches one DataLoader; with several train loaders "
                         f"(got {type(loader).__name__}) pass batches=...")
    if loader.batch_sampler is None:
        return DataLoader(loader.dataset, batch_size=None, collate_fn=loader.collate_fn)
    return DataLoader(loader.dataset, batch_sampler=loader.batch_sampler,
                      collate_fn=loader.collate_fn)


class MBTCallback(Callback):
    """MBT-GD / -MMT / -NAG for a LightningModule whose optimizer is a ``torch.optim.SGD``
    (paper Sec. 3.5.2; the policy is :class:`mbt.optim.MBTController`).

    Args:
        variant: ``"gd"``, ``"mmt"`` or ``"nag"``; None: read from the SGD (momentum 0:
            gd, Nesterov: nag, else mmt).
        lr: start eta of every search (Table 2: 1e-2).
        loss_fn, target_key: the search's loss from the batch formats of
            :mod:`mbt.optim.batches` (``loss_fn(module(x), y)``); default: the module's
            ``compute_loss(batch)`` (which must not call ``self.log``).
        batch_loss: ``batch_loss(module, batch) -> loss``, overrides both.
        accumulate: micro-batches per search mini-batch (gradient accumulation).
        batches: what to search on; default: the trainer's train DataLoader.
        dataset_size, batch_size: Sec. 3.5.1's N and k; default from the loader.
        loss_key, acc_key: ``trainer.callback_metrics`` entries the plateau rule reads at
            each epoch's end (log the loss with ``on_epoch=True``); a missing loss
            disables the rule (warned once).
        log_name: key the lr is logged under (None: not logged).
        config, plateau_patience, plateau_alpha, early_stop_patience, **search_kwargs:
            as :class:`~mbt.optim.MBTController` (e.g. ``num_batches=20``).
    """

    def __init__(self, variant: str | None = None, *, lr: float = 1e-2,
                 loss_fn: Callable | None = None, target_key: str | None = None,
                 batch_loss: BatchLoss | None = None, accumulate: int = 1,
                 batches: Iterable | None = None, dataset_size: int | None = None,
                 batch_size: int | None = None, loss_key: str = "train/loss",
                 acc_key: str | None = None, log_name: str | None = "mbt/lr",
                 config: MBTSearchConfig | None = None, plateau_patience: int = 5,
                 plateau_alpha: float = 0.5, early_stop_patience: int | None = None,
                 **search_kwargs: Any) -> None:
        self.variant = variant
        self.batch_loss = batch_loss or (format_loss(loss_fn, target_key) if loss_fn else None)
        self.accumulate = accumulate
        self.batches = batches
        self.sizes = (dataset_size, batch_size)
        self.loss_key, self.acc_key, self.log_name = loss_key, acc_key, log_name
        self._controller_kwargs = dict(
            lr=lr, config=config, plateau_patience=plateau_patience,
            plateau_alpha=plateau_alpha, early_stop_patience=early_stop_patience,
            **search_kwargs)
        self.controller: MBTController | None = None
        self._pending_state: dict[str, Any] | None = None
        self._warned_no_loss = False

    @property
    def last_report(self) -> SearchReport | None:
        return None if self.controller is None else self.controller.last_report

    def _controller_for(self, trainer: pl.Trainer) -> MBTController:
        if len(trainer.optimizers) != 1:
            raise ValueError("MBTCallback needs exactly one optimizer, got "
                             f"{len(trainer.optimizers)}")
        opt = trainer.optimizers[0]
        # A callback reused for a new fit: the old controller would set the old optimizer.
        if self.controller is None or self.controller.optimizer is not opt:
            if not isinstance(opt, torch.optim.SGD):
                raise ValueError(f"MBT needs a torch.optim.SGD, got {type(opt).__name__}")
            if trainer.lr_scheduler_configs:
                logger.warning("MBTCallback: an lr scheduler also sets the lr; the "
                               "scheduler's changes are overwritten at each search")
            variant = self.variant or _variant_of(opt)
            self.controller = MBTController(opt, variant, **self._controller_kwargs)
            if self._pending_state is not None:
                self.controller.load_state_dict(self._pending_state)
        return self.controller

    def _batch_loss(self, pl_module: pl.LightningModule) -> BatchLoss:
        if self.batch_loss is not None:
            return self.batch_loss
        if not callable(getattr(pl_module, "compute_loss", None)):
            raise ValueError("MBTCallback needs the search's loss: give the module a "
                             "compute_loss(batch) method, or pass loss_fn= or batch_loss=")
        return lambda module, batch: module.compute_loss(batch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Search if due (Sec. 3.5.2), set the lr, log it."""
        ctl = self._controller_for(trainer)
        dataset_size, batch_size = self.sizes
        batches = self.batches
        if batches is None:
            loader = trainer.train_dataloader
            batches = _search_batches(loader)
            # N and k of the trainer's loader (the copy has a batch sampler, no batch_size).
            sizes = loader_sizes(loader, self.accumulate)
            dataset_size = sizes[0] if dataset_size is None else dataset_size
            batch_size = sizes[1] if batch_size is None else batch_size
        p = prepare(pl_module, None, batches, batch_loss=self._batch_loss(pl_module),
                    accumulate=self.accumulate, dataset_size=dataset_size,
                    batch_size=batch_size)
        report = ctl.on_epoch_start(trainer.current_epoch, p.model, p.loss_fn, p.batches,
                                    p.dataset_size, p.batch_size)
        if report is not None and trainer.world_size > 1:
            # Each rank searched its own batches: one lr for all, or the replicas diverge.
            lr = trainer.strategy.reduce(torch.tensor(report.lr, device=pl_module.device),
                                         reduce_op="mean")
            ctl.set_lr(float(lr))
        if self.log_name:
            pl_module.log(self.log_name, float(ctl.optimizer.param_groups[0]["lr"]),
                          on_step=False, on_epoch=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The plateau counters (and the optional early stop) from the epoch's metrics."""
        ctl = self._controller_for(trainer)
        metrics = trainer.callback_metrics
        if self.loss_key not in metrics:
            if not self._warned_no_loss:
                logger.warning("MBTCallback: %r is not logged (log it with on_epoch=True); "
                               "the plateau rule is off", self.loss_key)
                self._warned_no_loss = True
            return
        acc = metrics.get(self.acc_key) if self.acc_key else None
        ctl.on_epoch_end(float(metrics[self.loss_key]), None if acc is None else float(acc))
        if ctl.should_stop:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {} if self.controller is None else self.controller.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Loaded before the optimizer exists; applied when the controller is built.
        self._pending_state = state_dict or None


def _check_precision(trainer: pl.Trainer | None) -> None:
    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
    if scaler is not None:
        raise ValueError("line searches compare true losses along the true gradient: "
                         "precision='16-mixed' scales the gradients; use 'bf16-mixed' or 32")


def line_search_step(module: pl.LightningModule, compute_loss: Callable[[], torch.Tensor],
                     optimizer: Any = None, *, log_name: str | None = "train/lr",
                     ) -> torch.Tensor:
    """One line-search step inside ``training_step`` under manual optimization.

    ``compute_loss()`` returns the mini-batch loss at the current weights (no logging in
    it: trials call it too). The starting point runs it with ``manual_backward``; trial
    points run it forward-only under ``no_grad`` (:mod:`mbt.optim.closure`). Logs the
    taken step (``last_search["lr"]``, not the group's delta_0 that ``LearningRateMonitor``
    shows) and returns the loss at the starting point, for the caller to log.

    The torch optimizer is stepped directly: Lightning's ``optimizer.step(closure)`` wraps
    the closure in one without the ``backward`` keyword. Lightning's step counter is kept.
    """
    opt = module.optimizers() if optimizer is None else optimizer
    raw = getattr(opt, "optimizer", opt)  # LightningOptimizer -> the torch optimizer
    _check_precision(getattr(module, "_trainer", None))

    def closure(backward: bool = True) -> torch.Tensor:
        if not backward:
            return compute_loss()
        raw.zero_grad()
        loss = compute_loss()
        module.manual_backward(loss)
        return loss

    # Lightning counts manual steps (trainer.global_step, max_steps) in these two hooks.
    getattr(opt, "_on_before_step", lambda: None)()
    loss = raw.step(closure)
    getattr(opt, "_on_after_step", lambda: None)()
    if log_name:
        module.log(log_name, step_size(raw), on_step=True, on_epoch=False)
    return loss


class LineSearchMixin:
    """``training_step`` for a line-search optimizer: put it before ``LightningModule``
    (``class Net(LineSearchMixin, L.LightningModule)``) and define ``compute_loss(batch)``
    (the mini-batch loss, without logging: trial points call it too).
    Manual optimization; logs ``train/loss`` (the starting point's) and ``train/lr``."""

    @property
    def automatic_optimization(self) -> bool:
        return False

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = line_search_step(self, lambda: self.compute_loss(batch))  # type: ignore[arg-type]
        self.log("train/loss", loss, on_step=True, on_epoch=True)  # type: ignore[attr-defined]
        return loss
