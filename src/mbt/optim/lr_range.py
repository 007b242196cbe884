"""The LR-range test ("LR finder") and a controller that trains SGD at its suggestion.

Paper: L. N. Smith, *Cyclical Learning Rates for Training Neural Networks* (WACV 2017),
Sec. 3.3 ("LR range test"); the automatic variant follows fastai's ``Learner.lr_find``
and ``LRFinder`` callback (``fastai/callback/schedule.py``), a behavioural reference.

One test (:func:`lr_range_test`), from the model's weights w0:

1. Step i = 0, 1, ..., ``num_steps - 1`` takes one optimizer step on the next
   mini-batch with ``lr_i = lr_min (lr_max / lr_min)^(i / num_steps)`` (fastai's
   ``SchedExp(start, end)(i / num_it)``; lr_max itself is never reached). The loss
   recorded for lr_i is the mini-batch loss at the weights *before* that step, as in
   fastai and Smith's plots.
2. Smoothed loss: an exponential moving average with bias correction,
   ``a_i = s a_{i-1} + (1 - s) loss_i``, ``smoothed_i = a_i / (1 - s^(i+1))``
   (fastai's ``AvgSmoothLoss``, s = ``smooth`` = 0.98).
3. Stop early once ``smoothed_i > diverge_factor * min_{j<=i} smoothed_j`` (4, as
   fastai) or the loss is not finite. Losses are assumed >= 0 (cross-entropy).
4. Suggestion (:func:`suggest_lr`), on the smoothed curve without its first
   ``num_steps // 10`` and last 5 points and cut at the first non-finite value (as
   ``lr_find``; if fewer than 2 points remain, the whole finite curve is used):

   * ``rule="steepest"`` (default; fastai's ``steep``): the lr at the steepest
     negative slope of the smoothed loss against log(lr), i.e. the left end of the
     segment with the most negative ``d smoothed / d log lr``.
   * ``rule="min_div10"`` (fastai's ``minimum``): the lr at the minimum smoothed loss,
     divided by 10.

5. Every parameter, buffer, ``.grad`` and module ``training`` flag is restored, so
   the test never moves the model (nor its BatchNorm statistics). The test's optimizer
   is a fresh one from ``optimizer_factory``; the training optimizer is untouched.

The model runs in training mode during the test (BatchNorm batch statistics, dropout
on), as in fastai: the curve is the one training would see. Batches are any
re-iterable of ``(inputs, targets)`` (restarted when exhausted).

Under ``torch.distributed`` (DDP, one process per GPU) a test is a collective call: every
rank calls it with its own batches. Each step's gradient and loss are averaged over the
ranks (the gradient as DDP's backward averages it, done here because the test runs the
module inside a DDP wrapper, bypassing its hooks), so the smoothed curves, the early stop
and the suggestion agree on all ranks bit for bit.

:class:`LRRangeController` runs the test once, at the first ``on_epoch_start`` (epoch 0
of a fresh run; a resumed run restores the result instead), and sets the wrapped
optimizer's lr to the suggestion, with the same hooks as
:class:`mbt.optim.mbt_schedule.MBTController`. :func:`build_lr_range_sgd` is the config
builder (``conf/optim/lr_range_sgd.yaml``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from .controller import EpochController
from .mbt_finder import LossFn, _to_device
from .ranks import all_ranks, averaged, mean_over_ranks, world_size

__all__ = [
    "RULES",
    "LRRangeController",
    "LRRangeResult",
    "build_lr_range_sgd",
    "lr_range_test",
    "suggest_lr",
]

logger = logging.getLogger(__name__)

RULES = ("steepest", "min_div10")
_SKIP_END = 5  # fastai drops the last 5 recorded points before suggesting

OptimizerFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


@dataclass
class LRRangeResult:
    """One LR-range test: the curve, the suggestion and its cost.

    Attributes:
        lrs, losses, smoothed: per step, the lr used, the mini-batch loss before
            the step, and the bias-corrected moving average of the losses.
        suggested_lr: the lr ``rule`` picks.
        rule: ``"steepest"`` or ``"min_div10"``.
        stopped_early: the divergence test ended the sweep before ``num_steps``.
        seconds: wall time, weights restore included.

    ``lr`` and ``mean_lr`` (both the suggestion; there is no rescaling) and
    ``func_evals`` / ``grad_evals`` (forward+backward passes, one per step) let a
    train loop log it like an MBT :class:`~mbt.optim.mbt_finder.SearchReport`.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_lr: float
    rule: str
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def lr(self) -> float:
        return self.suggested_lr

    @property
    def mean_lr(self) -> float:
        return self.suggested_lr

    @property
    def func_evals(self) -> int:
        return len(self.lrs)

    @property
    def grad_evals(self) -> int:
        return len(self.lrs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LRRangeResult:
        return cls(**d)


def _check_test_args(lr_min, lr_max, num_steps, smooth, diverge_factor, rule) -> None:
    for name, value in (("lr_min", lr_min), ("lr_max", lr_max)):
        if not (isinstance(value, (int, float)) and 0.0 < value < math.inf):
            raise ValueError(f"Invalid {name}: {value!r} (expected a finite value > 0)")
    if not lr_min < lr_max:
        raise ValueError(f"Invalid range: lr_min={lr_min!r} must be < lr_max={lr_max!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"Invalid num_steps: {num_steps!r} (expected int >= 2)")
    if not (isinstance(smooth, (int, float)) and 0.0 <= smooth < 1.0):
        raise ValueError(f"Invalid smooth: {smooth!r} (expected a value in [0, 1))")
    if not (isinstance(diverge_factor, (int, float)) and 1.0 < diverge_factor <= math.inf):
        raise ValueError(f"Invalid diverge_factor: {diverge_factor!r} (expected > 1)")
    if rule not in RULES:
        raise ValueError(f"Invalid rule: {rule!r} (expected one of {', '.join(RULES)})")


def _finite_prefix(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    for i, (_, loss) in enumerate(points):
        if not math.isfinite(loss):
            return points[:i]
    return points


def suggest_lr(lrs: list[float], smoothed: list[float], *, rule: str = "steepest",
               skip_start: int = 0, skip_end: int = _SKIP_END) -> float:
    """The lr that ``rule`` picks from a recorded curve (step 4 of the module docstring)."""
    if rule not in RULES:
        raise ValueError(f"Invalid rule: {rule!r} (expected one of {', '.join(RULES)})")
    points = list(zip(lrs, smoothed))
    kept = _finite_prefix(points[skip_start:len(points) - skip_end])
    if len(kept) < 2:  # an early stop left too few points for fastai's trimming
        kept = _finite_prefix(points)
    if len(kept) < 2:
        raise ValueError(f"LR-range test recorded {len(kept)} finite loss(es); need >= 2 "
                         "(lower lr_min or check the loss)")
    if rule == "min_div10":
        return min(kept, key=lambda p: p[1])[0] / 10.0
    slopes = [(l1 - l0) / (math.log(r1) - math.log(r0))
              for (r0, l0), (r1, l1) in zip(kept, kept[1:])]
    i = min(range(len(slopes)), key=slopes.__getitem__)
    if slopes[i] >= 0.0:
        logger.warning("LR-range test: the smoothed loss never decreases; 'steepest' "
                       "returns the flattest point, %g", kept[i][0])
    return kept[i][0]


def lr_range_test(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable,
    *,
    optimizer_factory: OptimizerFactory,
    lr_min: float = 1e-7,
    lr_max: float = 10.0,
    num_steps: int = 100,
    smooth: float = 0.98,
    diverge_factor: float = 4.0,
    rule: str = "steepest",
) -> LRRangeResult:
    """Run one LR-range test from the model's current weights; the model is left unchanged.

    Args:
        model: any module on one device, or its ``DistributedDataParallel`` wrapper;
            its trainable parameters are swept.
        loss_fn: ``loss_fn(model(inputs), targets)`` -> scalar mean loss.
        batches: re-iterable of ``(inputs, targets)``; moved to the model's device.
        optimizer_factory: ``factory(params) -> Optimizer``, called once; every
            group's lr is overwritten at each step (e.g. SGD with the training run's
            momentum and weight decay; see :func:`build_lr_range_sgd`).
        lr_min, lr_max: ends of the exponential sweep (fastai: 1e-7, 10).
        num_steps: steps (mini-batches) at most (fastai: 100).
        smooth: EMA factor of the smoothed loss (fastai: 0.98).
        diverge_factor: stop once smoothed > diverge_factor * best smoothed (fastai: 4).
        rule: ``"steepest"`` or ``"min_div10"`` (module docstring, step 4).
    """
    _check_test_args(lr_min, lr_max, num_steps, smooth, diverge_factor, rule)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module  # its forward would sync buffers; grads are averaged here
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters with requires_grad=True")
    t_start = time.perf_counter()
    with _restored(model):
        optimizer = optimizer_factory(params)
        model.train()
        lrs, losses, smoothed, stopped = _sweep(
            model, loss_fn, batches, optimizer, params[0].device, lr_min=lr_min,
            lr_max=lr_max, num_steps=num_steps, smooth=smooth, diverge_factor=diverge_factor)
    suggested = suggest_lr(lrs, smoothed, rule=rule, skip_start=num_steps // 10)
    result = LRRangeResult(lrs, losses, smoothed, suggested, rule, stopped,
                           time.perf_counter() - t_start)
    logger.info("LR-range test: %s lr=%.4g after %d steps (lr %.3g..%.3g)%s, %.2f s",
                rule, suggested, len(lrs), lrs[0], lrs[-1],
                ", stopped on divergence" if stopped else "", result.seconds)
    return result


@contextlib.contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """On exit, the model's parameters, buffers, gradients and train/eval flags are as on
    entry, whatever happened inside (the test only looks)."""
    device = next(model.parameters()).device
    tensors = list(model.parameters()) + list(model.buffers())
    flags = [(m, m.training) for m in model.modules()]
    with torch.no_grad():
        saved = [t.detach().clone() for t in tensors]
        grads = [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
    try:
        yield
    finally:
        with torch.no_grad():
            for t, s in zip(tensors, saved):
                t.copy_(s)
            for p, g in zip(model.parameters(), grads):
                p.grad = g
        for m, flag in flags:
            m.training = flag
        if device.type == "cuda":
            torch.cuda.synchronize(device)


def _sweep(model: nn.Module, loss_fn: LossFn, batches: Iterable, optimizer: Optimizer,
           device: torch.device, *, lr_min: float, lr_max: float, num_steps: int,
           smooth: float, diverge_factor: float
           ) -> tuple[list[float], list[float], list[float], bool]:
    """Steps 1-3 of the module docstring: (lrs, losses, smoothed losses, stopped early)."""
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    world = world_size()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    iterator = iter(batches)
    avg, best = 0.0, math.inf
    for i in range(num_steps):
        batch = next(iterator, None)
        if batch is None:
            iterator = iter(batches)  # restart, as fastai runs several epochs
            batch = next(iterator, None)
        if not all_ranks(batch is not None, world, device) or batch is None:  # all raise
            raise ValueError("batches yielded no (inputs, targets) pair")
        inputs, targets = (_to_device(t, device) for t in batch)
        lr = lr_min * (lr_max / lr_min) ** (i / num_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        seen: dict[str, torch.Tensor] = {}

        def closure(backward: bool = True, inputs=inputs, targets=targets, seen=seen):
            loss = loss_fn(model(inputs), targets)
            if backward:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if world > 1:
                    _average_grads(params, world)
                seen.setdefault("loss", loss.detach())  # the loss before the step
            return loss

        optimizer.step(closure)
        loss = mean_over_ranks(seen["loss"], world)
        avg = smooth * avg + (1.0 - smooth) * loss
        value = avg / (1.0 - smooth ** (i + 1))  # bias correction of the zero start
        lrs.append(lr)
        losses.append(loss)
        smoothed.append(value)
        best = min(best, value)
        if not math.isfinite(value) or value > diverge_factor * best:
            return lrs, losses, smoothed, i + 1 < num_steps
    return lrs, losses, smoothed, False


def _average_grads(params: list[torch.Tensor], world: int) -> None:
    """Each ``.grad`` averaged over the ranks, in place; a parameter the loss does not
    reach takes part with zeros (every rank must send every gradient)."""
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    torch._foreach_copy_(grads, list(averaged(tuple(grads), world)))


def _sgd_factory(optimizer: torch.optim.SGD) -> OptimizerFactory:
    """A fresh SGD with the training SGD's momentum, dampening, weight decay, Nesterov."""
    d = optimizer.defaults

    def factory(params):
        return torch.optim.SGD(params, lr=d["lr"], momentum=d["momentum"],
                               dampening=d["dampening"], weight_decay=d["weight_decay"],
                               nesterov=d["nesterov"])

    return factory


class LRRangeController(EpochController):
    """Runs :func:`lr_range_test` once and trains at its suggestion (an EpochController).

    Args:
        optimizer: the training optimizer; the controller writes ``lr`` into every
            param group (ratios between groups are not kept) and clears its state.
        optimizer_factory: what the test steps with; default for a
            ``torch.optim.SGD``: a fresh SGD with the same momentum/weight decay.
        lr_min, lr_max, num_steps, smooth, diverge_factor, rule: see :func:`lr_range_test`.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        optimizer_factory: OptimizerFactory | None = None,
        lr_min: float = 1e-7,
        lr_max: float = 10.0,
        num_steps: int = 100,
        smooth: float = 0.98,
        diverge_factor: float = 4.0,
        rule: str = "steepest",
    ) -> None:
        _check_test_args(lr_min, lr_max, num_steps, smooth, diverge_factor, rule)
        if optimizer_factory is None:
            if not isinstance(optimizer, torch.optim.SGD):
                raise ValueError(f"pass optimizer_factory for a {type(optimizer).__name__} "
                                 "(the default only copies a torch.optim.SGD)")
            optimizer_factory = _sgd_factory(optimizer)
        super().__init__(optimizer)
        self.optimizer_factory = optimizer_factory
        self.test_kwargs: dict[str, Any] = dict(lr_min=lr_min, lr_max=lr_max, num_steps=num_steps,
                                smooth=smooth, diverge_factor=diverge_factor, rule=rule)
        self.last_report: LRRangeResult | None = None
        self.test_epoch: int | None = None

    def on_epoch_start(self, epoch: int, model: nn.Module, loss_fn: LossFn,
                       train_batches: Iterable, dataset_size: int | None = None,
                       batch_size: int | None = None) -> LRRangeResult | None:
        """Run the test if it has not run yet, set the lr; returns the result or None.

        ``dataset_size`` / ``batch_size`` are accepted for the hook's signature and
        unused (the test needs no rescaling).
        """
        if self.last_report is not None:
            return None
        report = lr_range_test(model, loss_fn, train_batches,
                               optimizer_factory=self.optimizer_factory, **self.test_kwargs)
        self.adopt(report)  # momentum buffers (if any) restart with the new lr
        self.last_report = report
        self.test_epoch = epoch
        return report

    def state_dict(self) -> dict[str, Any]:
        return {
            "lr": self.optimizer.param_groups[0]["lr"],
            "test_epoch": self.test_epoch,
            "last_report": None if self.last_report is None else self.last_report.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore the result (so a resumed run does not test again) and re-apply the lr."""
        if state is None:
            raise ValueError("no LR-range controller state to restore")
        report = state["last_report"]
        self.last_report = None if report is None else LRRangeResult.from_dict(report)
        self.test_epoch = state["test_epoch"]
        self.set_lr(float(state["lr"]))


def build_lr_range_sgd(
    params: Iterable,
    lr: float = 1e-2,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    **test_kwargs: Any,
) -> tuple[torch.optim.SGD, LRRangeController]:
    """SGD + :class:`LRRangeController` (config builder).

    ``lr`` is the SGD lr until the test sets it at the first epoch; the test steps
    with a fresh SGD of the same ``momentum`` / ``weight_decay``. ``**test_kwargs``
    are :class:`LRRangeController` arguments (``lr_min``, ``lr_max``, ``num_steps``,
    ``smooth``, ``diverge_factor``, ``rule``).
    """
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return optimizer, LRRangeController(optimizer, **test_kwargs)
