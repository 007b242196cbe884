"""The MBT learning-rate finder (paper Sec. 3.5.2, rescaling Sec. 3.5.1).

MBT ("Mini-batch Two-way Backtracking") runs two-way Backtracking GD on a few
mini-batches, averages the accepted learning rates and rescales the mean; MBT-GD,
MBT-MMT and MBT-NAG then train with plain SGD / momentum / Nesterov at that rate
(the per-epoch policy is :mod:`mbt.optim.mbt_schedule`). Defaults follow the
authors' published code (``hank-nguyen/MBT-optimizer``, ``lr_backtrack.py``
``LRFinder.backtrack`` / ``_train_batch`` / ``track_batch``), which produced the
paper's numbers; where the text says otherwise the text's reading is an option.
``docs/fidelity.md`` lists every difference.

One search (:meth:`MBTFinder.find`), starting from the model's weights w0:

1. For each of ``num_batches`` mini-batches (x, y), at the current weights w_k:
   loss f0 and gradient g in ONE forward/backward pass, then a two-way Armijo
   search on ``phi(eta) = f(w_k - eta g)`` with the test
   ``f(w_k - eta g) - f0 + alpha eta ||g||^2 <= 0`` (eq. (7) along -g):
   if the first trial fails, ``eta <- beta eta`` until it holds; if it holds,
   ``eta <- eta / beta`` until it fails, then one step back. The search also stops
   (and accepts the current eta) once eta leaves ``[lr_min, lr_max]`` or
   ``eta ||g||^2 <= stop_tol`` -- exactly the code's ``self.cond``.
2. The first mini-batch starts from ``lr``, each later one from
   ``max(lr_min, mean of the eta accepted so far)``.
3. After the search on a mini-batch, one SGD step ``w_{k+1} = w_k - s eta_k g`` is
   taken with the *rescaled* eta (s below), so the next mini-batch is searched a
   little further along.
4. Result: ``mean_lr = mean(eta_k)`` (raw) and ``lr = s * mean_lr``. With
   ``k`` the batch size and ``N`` the training-set size, ``s = sqrt(k/N)`` for
   ``rescale="code"`` (the code divides by sqrt(batches per epoch)), ``1`` for
   ``"none"``. Sec. 3.5.1's delta/sqrt(rho) is the same factor: its words define rho as
   full batch over mini-batch (N/k); the symbol "rho = k/N" printed next to them is a typo
   (with it, delta/sqrt(rho) would not be "bigger" than delta/rho, and the noise argument
   of eq. (9) gives sqrt(k/N)). So text and code agree; docs/fidelity.md. ``lr`` is the
   number the trainer uses and the number Table 1 reports (``lr_main.py`` stores
   ``lr_finder_BT.lr_BT``, the rescaled mean; Table 1's values grow like
   sqrt(batch size), 0.0035 at 12 to ~0.016 at 800, i.e. raw means of ~0.13-0.25).
5. All parameters and buffers are restored to w0 bit for bit: a search never moves
   the model, nor its BatchNorm statistics, ``.grad`` or any optimizer state.

Modes during a search (Remark 3.10 asks for a *consistent* mode): BatchNorm-type
layers run in training mode (batch statistics) by default, as in the code, which
calls ``model.train()`` in ``_train_batch``; ``bn_mode="eval"`` uses the running
statistics instead. Dropout layers (``nn.Dropout*``) are switched off by default as
Remark 3.10 says; the code leaves them on, but none of the paper's CIFAR models has
dropout, so the results are unaffected. Dropout written as ``F.dropout(x,
training=self.training)`` inside a custom module cannot be caught this way. Every
module's ``training`` flag is restored afterwards.

Cost (designed for GPUs): per mini-batch one forward+backward (``autograd.grad``,
so ``.grad`` is never touched) and one host sync for ``f0`` and ``||g||^2``
together; per trial a no-grad forward, two fused multi-tensor kernels (restore
w_k, add ``-eta g``), a buffer restore and exactly one host sync (the Armijo
comparison needs the loss on the host). Memory: three extra copies of the
trainable parameters (w0, w_k, g).

Batches: ``batches`` is any re-iterable of ``(inputs, targets)`` pairs (a
``DataLoader``, a list); tensors are moved to the parameters' device. A fresh
iterator is taken per search; when it runs out before ``num_batches`` it is
restarted, as the code does (so a 3-batch list gives batches 0,1,2,0,1,...). A
one-shot iterator that yields nothing after a restart ends the search early with
the batches it gave (logged as a warning); no batch at all is an error.

The model must live on one device. Under ``torch.distributed`` (DDP, one process per
GPU) a search is a collective call: every rank calls it, with its own batches (the
rank's loader, e.g. with a ``DistributedSampler``, as DDP training draws them). f is the
mean of the ranks' mini-batch losses and g its gradient: each mini-batch's gradient is
averaged over the ranks (one all-reduce, what DDP's backward does; ``autograd.grad``
bypasses DDP's hooks, so the finder does it itself), and f0 and every trial loss are
averaged too (one float64 scalar all-reduce each, as :class:`mbt.optim.closure.Objective`
does), so every Armijo decision, every eta and the lr agree on all ranks bit for bit.
The model may be the DDP wrapper or the module inside it (the same search either way:
the wrapper is unwrapped). The ranks also agree on when the batches run out. The
rescaling wants the global batch over the data set: a ``DistributedSampler`` loader
gives the per-rank batch over ``len(sampler)``, the same ratio.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from .base import check_range
from .batches import prepare
from .ranks import all_ranks, averaged, mean_over_ranks, world_size

__all__ = [
    "BN_MODES",
    "MBTFinder",
    "MBTSearchConfig",
    "RESCALE_MODES",
    "SearchReport",
    "find_lr",
    "rescale_factor",
]

logger = logging.getLogger(__name__)
# Mini-batches between progress lines where there is no terminal for the bar.
_PROGRESS_EVERY = 5

RESCALE_MODES = ("code", "none")
BN_MODES = ("train", "eval")

# The code widens its bounds: lr_min = 1e-6 - 1e-8 and lr_max = 100 + 1e-8
# (lr_backtrack.py, LRFinder.__init__), so that 1e-6 and 100 themselves count as
# inside. We keep that slack relative to the configured bounds (1 % at the bottom,
# 1e-10 at the top), which reproduces the code's numbers for its defaults and stays
# sensible for other bounds.
_LO_SLACK = 1e-2
_HI_SLACK = 1e-10

LossFn = Callable[[Any, Any], torch.Tensor]
_NO_BATCH = object()


@dataclass(frozen=True)
class MBTSearchConfig:
    """Hyper-parameters of one MBT search. Defaults are the published code's.

    Attributes:
        num_batches: mini-batches per search (code ``num_iter = 20``; text "20-50",
            Sec. 3.5.2, and 20 in the experiments).
        alpha: Armijo constant (code and text: 1e-4; the plateau rule raises it
            to 0.5, see :mod:`mbt.optim.mbt_schedule`).
        beta: shrink factor (0.5).
        lr_min, lr_max: the search stops once eta leaves this range (code:
            1e-6 and 100, with slack, see ``_LO_SLACK``). For the text's two-way
            cap "never grow past delta_0" (Sec. 3.3) set ``lr_max`` to the start lr.
        stop_tol: the search also stops once ``eta ||g||^2 <= stop_tol`` (code
            ``thres = 1e-7``).
        rescale: ``"code"`` (sqrt(k/N), Sec. 3.5.1's delta/sqrt(rho)) or ``"none"``.
        carry_start_bug: start a later search from the previous search's last
            rescaled eta instead of ``lr`` (the code never resets
            ``LRFinder.lr_current``); off by default.
        bn_mode: ``"train"`` (batch statistics, the code) or ``"eval"``.
        dropout_off: switch ``nn.Dropout*`` off during the search (Remark 3.10);
            the code leaves it on.
        bn_slices: evaluate each mini-batch as this many equal slices, one forward each,
            outputs concatenated: BatchNorm then normalises with the statistics of
            batch/k images, as under the published code's ``nn.DataParallel`` over k
            GPUs (each replica sees its slice). 1 (default): one forward, one device.
    """

    num_batches: int = 20
    alpha: float = 1e-4
    beta: float = 0.5
    lr_min: float = 1e-6
    lr_max: float = 100.0
    stop_tol: float = 1e-7
    rescale: str = "code"
    carry_start_bug: bool = False
    bn_mode: str = "train"
    dropout_off: bool = True
    bn_slices: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.num_batches, bool) or not isinstance(self.num_batches, int) \
                or self.num_batches < 1:
            raise ValueError(f"Invalid num_batches: {self.num_batches!r} (expected int >= 1)")
        check_range("alpha", self.alpha, 0.0, 1.0)
        check_range("beta", self.beta, 0.0, 1.0)
        check_range("lr_min", self.lr_min, 0.0, math.inf)
        check_range("lr_max", self.lr_max, 0.0, math.inf)
        if not self.lr_min < self.lr_max:
            raise ValueError(f"Invalid bounds: lr_min={self.lr_min!r} must be < "
                             f"lr_max={self.lr_max!r}")
        if not (isinstance(self.stop_tol, (int, float)) and 0.0 <= self.stop_tol < math.inf):
            raise ValueError(f"Invalid stop_tol: {self.stop_tol!r} (expected a finite value >= 0)")
        if self.rescale not in RESCALE_MODES:
            raise ValueError(f"Invalid rescale: {self.rescale!r} (expected one of {RESCALE_MODES})")
        if isinstance(self.bn_slices, bool) or not isinstance(self.bn_slices, int) \
                or self.bn_slices < 1:
            raise ValueError(f"Invalid bn_slices: {self.bn_slices!r} (expected int >= 1)")
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"Invalid bn_mode: {self.bn_mode!r} (expected one of {BN_MODES})")
        for name in ("carry_start_bug", "dropout_off"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Invalid {name}: {getattr(self, name)!r} (expected a bool)")

    def replace(self, **changes: Any) -> MBTSearchConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass
class SearchReport:
    """What one MBT search found and what it cost.

    Attributes:
        mean_lr: mean of the accepted eta, before rescaling ("raw").
        lr: ``scale * mean_lr``: the learning rate to train with, and the
            "averagely-optimal learning rate" of Table 1.
        scale: the rescaling factor applied (sqrt(rho), 1/sqrt(rho) or 1).
        alpha: the Armijo constant this search used.
        per_batch: accepted eta on each mini-batch (raw).
        starts: first trial eta on each mini-batch.
        bound_hits: per mini-batch, whether a bound (``[lr_min, lr_max]`` or
            ``stop_tol``) ended the search rather than the Armijo test; then the
            accepted eta need not satisfy Armijo (the code's behaviour).
        f0: loss at w_k on each mini-batch.
        grad_sq_norms: ``||g||^2`` on each mini-batch.
        trials: per mini-batch, the ``(eta, f(w_k - eta g))`` pairs tried, in order.
        func_evals: trial loss evaluations (no-grad forwards; the forward of the
            gradient pass is not counted).
        grad_evals: forward+backward passes (one per mini-batch).
        seconds: wall time of the search, weights restore included.
    """

    mean_lr: float
    lr: float
    scale: float
    alpha: float
    per_batch: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    bound_hits: list[bool] = field(default_factory=list)
    f0: list[float] = field(default_factory=list)
    grad_sq_norms: list[float] = field(default_factory=list)
    trials: list[list[tuple[float, float]]] = field(default_factory=list)
    func_evals: int = 0
    grad_evals: int = 0
    seconds: float = 0.0

    def add(self, start: float, eta: float, bound_hit: bool, f0: float, grad_sq: float,
            tried: list[tuple[float, float]]) -> None:
        """Record one mini-batch's search (one gradient, ``len(tried)`` evaluations of f)."""
        self.starts.append(start)
        self.per_batch.append(eta)
        self.bound_hits.append(bound_hit)
        self.f0.append(f0)
        self.grad_sq_norms.append(grad_sq)
        self.trials.append(tried)
        self.func_evals += len(tried)
        self.grad_evals += 1

    @property
    def num_batches(self) -> int:
        """Mini-batches actually searched (fewer than asked for only if data ran out)."""
        return len(self.per_batch)

    @property
    def bound_hit(self) -> bool:
        """Whether a bound ended the search on any mini-batch."""
        return any(self.bound_hits)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (for checkpoints and JSON)."""
        d = dataclasses.asdict(self)
        d["trials"] = [[list(t) for t in batch] for batch in self.trials]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchReport:
        d = dict(d)
        d["trials"] = [[tuple(t) for t in batch] for batch in d.get("trials", [])]
        return cls(**d)


def rescale_factor(rescale: str, dataset_size: int | None, batch_size: int | None) -> float:
    """The factor s in ``lr = s * mean_lr`` (Sec. 3.5.1's 1/sqrt(rho), rho = N/k).

    ``"code"``: sqrt(k/N), computed as the code does, ``1 / sqrt(N / k)``
    (``LRFinder.backtrack``: ``ratio = 1/np.sqrt(num_batches)`` with
    ``num_batches = len(dataset) / batch_size``). ``"none"``: 1.
    """
    if rescale not in RESCALE_MODES:
        raise ValueError(f"Invalid rescale: {rescale!r} (expected one of {RESCALE_MODES})")
    if rescale == "none":
        return 1.0
    for name, value in (("dataset_size", dataset_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid {name}: {value!r} (expected int >= 1; needed for "
                             f"rescale={rescale!r})")
    assert isinstance(dataset_size, int) and isinstance(batch_size, int)  # checked above
    if batch_size > dataset_size:
        raise ValueError(f"batch_size={batch_size} exceeds dataset_size={dataset_size}")
    return 1.0 / math.sqrt(dataset_size / batch_size)


class _NoBar:
    """Where tqdm is not installed (``mbt.optim`` needs only torch): no bar, the lines."""

    disable = True

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int) -> Any:
    """A tqdm bar on a terminal when tqdm is installed (the ``train`` extra has it), else
    a disabled stand-in: the search then logs a line every ``_PROGRESS_EVERY`` batches."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc="MBT search", unit="batch", leave=False,
                disable=not sys.stderr.isatty(), mininterval=0)


def _progress(bar, done: int, total: int, report, t_search: float) -> None:
    """Advance the bar; where there is none (no terminal, no tqdm), a line every
    ``_PROGRESS_EVERY`` mini-batches, as the epoch lines."""
    bar.update(1)
    if bar.disable and done % _PROGRESS_EVERY == 0 and done < total:
        logger.info("MBT search: %d/%d mini-batches, mean eta so far %.4g (%.1f s)", done,
                    total, sum(report.per_batch) / done, time.perf_counter() - t_search)


def _infer_sizes(batches: Iterable, dataset_size: int | None, batch_size: int | None):
    """Fill missing sizes from a DataLoader (``len(loader.dataset)``, ``loader.batch_size``),
    as the code does. Under DDP the rank's share of the data set (``len(sampler)`` of a
    ``DistributedSampler``) goes with the per-rank batch: sqrt(k/N) of the global batch."""
    sampler = getattr(batches, "sampler", None)
    if dataset_size is None and isinstance(sampler, DistributedSampler):
        dataset_size = len(sampler)
    if dataset_size is None:
        dataset = getattr(batches, "dataset", None)
        try:
            dataset_size = len(dataset) if dataset is not None else None
        except TypeError:  # an IterableDataset without __len__
            dataset_size = None
    if batch_size is None:
        batch_size = getattr(batches, "batch_size", None)
    return dataset_size, batch_size


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


@contextmanager
def _search_mode(model: nn.Module, bn_mode: str, dropout_off: bool) -> Iterator[None]:
    """Put the model into the search's consistent mode, then restore every flag."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.train()  # as the code's _train_batch; then adjust the two layer kinds
        for m in model.modules():
            if isinstance(m, _NormBase):
                m.training = bn_mode == "train"
            elif isinstance(m, _DropoutNd) and dropout_off:
                m.training = False
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _forward(model: nn.Module, inputs: Any, slices: int) -> Any:
    """``model(inputs)``, or, for ``slices`` > 1, the outputs of equal slices of the batch
    concatenated (what ``nn.DataParallel`` computes on ``slices`` devices)."""
    if slices == 1:
        return model(inputs)
    return torch.cat([model(chunk) for chunk in torch.chunk(inputs, slices)])


def _two_way_search(
    trial: Callable[[float], float],
    f0: float,
    grad_sq: float,
    lr: float,
    *,
    alpha: float,
    beta: float,
    lo: float,
    hi: float,
    stop_tol: float,
) -> tuple[float, bool, list[tuple[float, float]]]:
    """The code's two-way search on one mini-batch (``_train_batch`` + ``track_batch``).

    Returns ``(accepted eta, bound_hit, [(eta, f), ...])``.

    Why not :func:`mbt.optim.armijo.armijo_search`: its semantics differ from the
    code's in ways that change the answer or the evaluation count. (a) When the
    shrink loop hits a bound (``min_lr`` there; here also ``eta ||g||^2 <=
    stop_tol``) it returns ``lr = 0``; the code accepts the last eta tried and
    averages it in. (b) Its grow loop never evaluates a step above ``lr_max``; the
    code evaluates it and then steps back (one more forward). (c) On a zero gradient
    it returns 0 without a trial; the code tries the start eta and keeps it. (d) An
    exact tie ``f - f0 + alpha eta ||g||^2 == 0`` passes there and starts growing;
    the code neither shrinks nor grows on it. (e) The code has no trial cap; the
    ``[lr_min, lr_max]`` range bounds it (about 27 halvings for the defaults).
    """

    def inside(eta: float) -> bool:  # the code's self.cond
        return eta * grad_sq > stop_tol and lo <= eta <= hi

    def gap(eta: float, f: float) -> float:  # the code's self.check; NaN if f is NaN
        return f - f0 + alpha * eta * grad_sq

    eta = lr
    f = trial(eta)
    tried = [(eta, f)]
    d, ok = gap(eta, f), inside(eta)
    if ok and not d <= 0.0:  # Armijo fails (or NaN): shrink until it holds
        while ok and not d <= 0.0:
            eta = eta * beta
            f = trial(eta)
            tried.append((eta, f))
            d, ok = gap(eta, f), inside(eta)
    elif ok and d < 0.0:  # holds strictly: grow until it fails, then one step back
        while ok and d < 0.0:
            eta = eta / beta
            f = trial(eta)
            tried.append((eta, f))
            d, ok = gap(eta, f), inside(eta)
        eta = eta * beta
    return eta, not ok, tried


class MBTFinder:
    """The MBT learning-rate finder (Sec. 3.5.2) for any model, loss and batches.

    Holds a :class:`MBTSearchConfig` and the one piece of state the code carries
    between searches (the last rescaled eta, used only with ``carry_start_bug``).

    Example::

        finder = MBTFinder(num_batches=20)
        report = finder.find(model, nn.CrossEntropyLoss(), train_loader, lr=1e-2)
        for g in optimizer.param_groups:
            g["lr"] = report.lr
    """

    def __init__(self, config: MBTSearchConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = MBTSearchConfig(**overrides)
        elif overrides:
            config = config.replace(**overrides)
        if not isinstance(config, MBTSearchConfig):
            raise ValueError(f"config must be an MBTSearchConfig, got {type(config).__name__}")
        self.config = config
        self._carry: float | None = None  # code: LRFinder.lr_current after a search

    def state_dict(self) -> dict[str, Any]:
        return {"carry": self._carry}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._carry = state["carry"]

    def find(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Iterable,
        *,
        lr: float = 1e-2,
        dataset_size: int | None = None,
        batch_size: int | None = None,
        alpha: float | None = None,
    ) -> SearchReport:
        """Run one search from the model's current weights; the model is left unchanged.

        Args:
            model: any module, or its ``DistributedDataParallel`` wrapper; all its
                parameters with ``requires_grad`` are searched. Under ``torch.distributed``
                every rank must call this, each with its own batches (module docstring).
            loss_fn: ``loss_fn(model(inputs), targets)`` -> scalar tensor (the mean
                mini-batch loss, as ``nn.CrossEntropyLoss()`` gives).
            batches: re-iterable of ``(inputs, targets)``; see the module docstring.
            lr: start eta of the first mini-batch (Table 2: 1e-2 "as default"; the
                published ``model_main.py`` has ``lr_start = 100``).
            dataset_size, batch_size: for rho; taken from a DataLoader when omitted.
            alpha: overrides ``config.alpha`` for this search (the plateau rule).

        Longer than 60 lines: the search's setup (sizes, scale, bounds, search mode)
        and the restore that must wrap all of it, in one place."""
        cfg = self.config
        alpha = cfg.alpha if alpha is None else alpha
        check_range("alpha", alpha, 0.0, 1.0)
        if not (isinstance(lr, (int, float)) and cfg.lr_min <= lr <= cfg.lr_max):
            raise ValueError(f"Invalid lr: {lr!r} (expected a start value in "
                             f"[lr_min={cfg.lr_min}, lr_max={cfg.lr_max}])")
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        if isinstance(model, DistributedDataParallel):
            model = model.module  # its forward would sync buffers; grads are averaged here
        if not callable(loss_fn):
            raise ValueError("loss_fn must be callable")
        dataset_size, batch_size = _infer_sizes(batches, dataset_size, batch_size)
        scale = rescale_factor(cfg.rescale, dataset_size, batch_size)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("model has no parameters with requires_grad=True")
        buffers = list(model.buffers())
        device = params[0].device
        start = self._carry if (cfg.carry_start_bug and self._carry is not None) else float(lr)
        lo, hi = cfg.lr_min * (1.0 - _LO_SLACK), cfg.lr_max * (1.0 + _HI_SLACK)

        report = SearchReport(mean_lr=math.nan, lr=math.nan, scale=scale, alpha=alpha)
        t_start = time.perf_counter()
        with torch.no_grad():
            w0 = [p.detach().clone() for p in params]
            b0 = [b.detach().clone() for b in buffers]
            w_k = [t.clone() for t in w0]  # preallocated once, refilled per mini-batch
        try:
            with _search_mode(model, cfg.bn_mode, cfg.dropout_off), torch.no_grad():
                self._search(model, loss_fn, batches, params, buffers, b0, w_k, device,
                             start, scale, alpha, lo, hi, report, world_size())
        finally:
            with torch.no_grad():
                torch._foreach_copy_(cast(list[torch.Tensor], params), w0)
                if buffers:
                    torch._foreach_copy_(buffers, b0)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # so ``seconds`` covers the queued work
            report.seconds = time.perf_counter() - t_start

        report.mean_lr = sum(report.per_batch) / len(report.per_batch)
        report.lr = report.mean_lr * scale
        # The code's LRFinder.lr_current after a search: the last accepted eta, rescaled.
        self._carry = report.per_batch[-1] * scale
        logger.info(
            "MBT search: lr=%.6g (mean eta=%.6g x scale %.6g), alpha=%g, %d batches, "
            "%d func evals, %d grad evals, %.3f s, bound hits %d, per-batch eta [%s]",
            report.lr, report.mean_lr, scale, alpha, report.num_batches, report.func_evals,
            report.grad_evals, report.seconds, sum(report.bound_hits),
            ", ".join(f"{eta:.3g}" for eta in report.per_batch),
        )
        return report

    def _gradient(self, model, loss_fn, inputs, targets, params, buffers, b0, w_k, device,
                  world: int):
        """The one gradient of a mini-batch at ``w_k`` (averaged over ranks under DDP), with
        BN buffers put back: ``(moved, base, g, f0, ||g||^2)``, where ``moved`` are the
        parameters the loss reaches, ``base`` their values and ``g`` their gradients."""
        with torch.enable_grad():
            loss = loss_fn(_forward(model, inputs, self.config.bn_slices), targets)
        if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
            raise ValueError("loss_fn must return a scalar tensor")
        if not loss.requires_grad:
            raise ValueError("the loss does not depend on any trainable parameter")
        # Under DDP every rank needs every gradient for the all-reduce (zeros: no move).
        grads = torch.autograd.grad(loss, params, allow_unused=True,
                                    materialize_grads=world > 1)
        if world > 1:
            grads = averaged(grads, world)
        if buffers:  # the forward updated BN statistics; trials start from w0's
            torch._foreach_copy_(buffers, b0)
        # Parameters the loss does not reach have no gradient: they do not move.
        moved = [p for p, g in zip(params, grads, strict=True) if g is not None]
        base = [w for w, g in zip(w_k, grads, strict=True) if g is not None]
        g = [g for g in grads if g is not None]
        if g:
            sq = torch.stack([n.to(torch.float64) for n in torch._foreach_norm(g)])
            sq = sq.square().sum()
        else:
            sq = torch.zeros((), dtype=torch.float64, device=device)
        if world > 1:  # grads are the same everywhere already, the losses are not
            f0, grad_sq = mean_over_ranks(loss, world), float(sq)
        else:  # one host sync for both numbers the Armijo test needs
            f0, grad_sq = torch.stack([loss.detach().reshape(()).to(torch.float64),
                                       sq.to(loss.device)]).tolist()
        return moved, base, g, f0, grad_sq

    def _search(self, model, loss_fn, batches, params, buffers, b0, w_k, device, start, scale,
                alpha, lo, hi, report: SearchReport, world: int) -> None:
        """The mini-batch loop; runs under no_grad in search mode (see :meth:`find`), as a
        collective of ``world`` ranks when that is > 1.


        Longer than 60 lines: the per-mini-batch steps of the code's
        ``LRFinder.backtrack`` in their order (batch, gradient, two-way search,
        record, walk on)."""
        cfg = self.config
        iterator = iter(batches)
        restarted_empty = False
        eta_start = start
        # Searches take tens of seconds to minutes: a per-mini-batch bar on a terminal;
        # elsewhere (a log file, a SLURM job) a line every _PROGRESS_EVERY mini-batches.
        bar = _progress_bar(cfg.num_batches)
        t_search = time.perf_counter()
        for k in range(cfg.num_batches):
            try:
                batch = next(iterator)
            except StopIteration:
                # The code restarts the loader (``iterator = iter(trainloader)``).
                iterator = iter(batches)
                batch = next(iterator, _NO_BATCH)
            if not all_ranks(batch is not _NO_BATCH, world, device):
                restarted_empty = True  # on every rank: all stop at the same mini-batch
                break
            try:
                inputs, targets = batch
            except (TypeError, ValueError) as err:
                raise ValueError("batches must yield (inputs, targets) pairs") from err
            inputs, targets = _to_device(inputs, device), _to_device(targets, device)

            torch._foreach_copy_(w_k, params)  # w_k: the trials' base point
            moved, base, g, f0, grad_sq = self._gradient(
                model, loss_fn, inputs, targets, params, buffers, b0, w_k, device, world)
            if not math.isfinite(f0):
                logger.warning("MBT search: non-finite loss %r on mini-batch %d", f0, k)

            def trial(eta: float, moved=moved, base=base, g=g, inputs=inputs,
                      targets=targets) -> float:
                if g:
                    torch._foreach_copy_(moved, base)
                    torch._foreach_add_(moved, g, alpha=-eta)
                f = loss_fn(_forward(model, inputs, cfg.bn_slices), targets)
                if buffers:
                    torch._foreach_copy_(buffers, b0)
                return mean_over_ranks(f, world)  # the one host sync per trial

            eta, hit, tried = _two_way_search(
                trial, f0, grad_sq, eta_start, alpha=alpha, beta=cfg.beta, lo=lo, hi=hi,
                stop_tol=cfg.stop_tol,
            )
            report.add(eta_start, eta, hit, f0, grad_sq, tried)
            logger.debug("MBT batch %d: start %.6g -> eta %.6g (%d trials%s)", k, eta_start,
                         eta, len(tried), ", bound hit" if hit else "")

            # Walk on: one plain SGD step with the rescaled eta (code: "official update").
            if g:
                torch._foreach_copy_(moved, base)
                torch._foreach_add_(moved, g, alpha=-eta * scale)
            # Later mini-batches start from the running mean (code: max(lr_min, mean)).
            eta_start = max(lo, sum(report.per_batch) / len(report.per_batch))
            _progress(bar, k + 1, cfg.num_batches, report, t_search)

        bar.close()
        if not report.per_batch:
            raise ValueError("batches yielded no mini-batch")
        if restarted_empty:
            logger.warning("MBT search: batches ran out after %d of %d mini-batches and could "
                           "not be restarted; using those", report.num_batches, cfg.num_batches)


def find_lr(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable,
    *,
    lr: float = 1e-2,
    dataset_size: int | None = None,
    batch_size: int | None = None,
    config: MBTSearchConfig | None = None,
    batch_loss: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    target_key: str | None = None,
    accumulate: int = 1,
    **overrides: Any,
) -> SearchReport:
    """One stand-alone MBT search: ``MBTFinder(config, **overrides).find(...)``.

    Batches may also be ``(x_1, ..., x_n, targets)`` tuples, dicts (``target_key``) or
    anything ``batch_loss(model, batch)`` turns into a loss, and ``accumulate`` micro-batches
    may make one search mini-batch (gradient accumulation): :mod:`mbt.optim.batches`.
    """
    finder = MBTFinder(config, **overrides)
    if finder.config.bn_slices == 1:
        p = prepare(model, loss_fn, batches, batch_loss=batch_loss, target_key=target_key,
                    accumulate=accumulate, dataset_size=dataset_size, batch_size=batch_size)
        model, loss_fn, batches = p.model, p.loss_fn, p.batches
        dataset_size, batch_size = p.dataset_size, p.batch_size
    elif batch_loss is not None or target_key is not None or accumulate != 1:
        raise ValueError("bn_slices > 1 splits an input tensor: it takes (inputs, targets) "
                         "pairs only, without batch_loss, target_key or accumulate")
    return finder.find(
        model, loss_fn, batches, lr=lr, dataset_size=dataset_size, batch_size=batch_size
    )
