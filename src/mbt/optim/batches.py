"""Batch formats and gradient accumulation for the MBT search (paper Sec. 3.5.2).

:class:`~mbt.optim.mbt_finder.MBTFinder` evaluates ``loss_fn(model(inputs), targets)`` on
``(inputs, targets)`` pairs. Real training code has other batches: several inputs, dicts,
a loss computed inside the model, or an optimizer step made of ``k`` accumulated
micro-batches. :func:`prepare` turns any of those into what the finder takes: a module
whose ``forward(batch)`` *is* the mini-batch loss (it holds the user's model, so the
searched parameters and restored buffers are exactly the model's), an identity loss, and
the batches paired with ``None`` targets.

How a batch becomes a loss (``batch_loss(model, batch)``), unless the caller gives one:

* ``(inputs, targets)`` -> ``loss_fn(model(inputs), targets)`` (the finder's own reading:
  a tuple ``inputs`` is passed as one argument);
* ``(x_1, ..., x_n, targets)``, n >= 2 -> ``loss_fn(model(x_1, ..., x_n), targets)``;
* a dict with ``target_key`` -> ``loss_fn(model(**rest), batch[target_key])``.

Gradient accumulation (``accumulate=k``): one search mini-batch is ``k`` consecutive
micro-batches and its loss is their mean weighted by size, which for a mean-reduced loss
is the loss of the concatenated batch (BatchNorm excepted: it normalises each micro-batch
with its own statistics, as accumulated training does). The gradient pass checkpoints
each micro-batch (``torch.utils.checkpoint``), so its activations are recomputed in the
backward pass and peak memory stays about one micro-batch's, at the price of one more
forward per micro-batch; trial evaluations run under ``no_grad`` one micro-batch at a time.
The rescaling's batch size k (Sec. 3.5.1) is then the examples per step,
``loader.batch_size * accumulate``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["BatchLoss", "Prepared", "SearchModule", "batch_len", "format_loss", "loader_sizes",
           "prepare", "split_batch"]

BatchLoss = Callable[[nn.Module, Any], torch.Tensor]

_FORMATS = ("batches must yield (inputs, targets) pairs, (input_1, ..., input_n, targets) "
            "tuples or dicts (with target_key=...), or pass batch_loss=...")


def split_batch(batch: Any, target_key: str | None = None) -> tuple[tuple, dict, Any]:
    """``(args, kwargs, targets)`` of one batch, following the module docstring."""
    if isinstance(batch, Mapping):
        if target_key is None:
            raise ValueError("dict batches need target_key=... (the entry holding the "
                             "targets) or batch_loss=...")
        if target_key not in batch:
            raise ValueError(f"target_key {target_key!r} is not in the batch "
                             f"(keys: {sorted(map(str, batch))})")
        return (), {k: v for k, v in batch.items() if k != target_key}, batch[target_key]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        *inputs, targets = batch
        return tuple(inputs), {}, targets
    raise ValueError(_FORMATS)


def format_loss(loss_fn: Callable[[Any, Any], torch.Tensor],
               target_key: str | None = None) -> BatchLoss:
    """``batch_loss(model, batch)`` for the default batch formats (module docstring)."""
    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable")

    def loss(model: nn.Module, batch: Any) -> torch.Tensor:
        args, kwargs, targets = split_batch(batch, target_key)
        return loss_fn(model(*args, **kwargs), targets)

    return loss


def batch_len(batch: Any) -> int:
    """Examples in a batch: the leading size of its first tensor (1 if it has none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    items = batch.values() if isinstance(batch, Mapping) else (
        batch if isinstance(batch, (tuple, list)) else ())
    for item in items:
        if isinstance(item, (torch.Tensor, Mapping, tuple, list)):
            return batch_len(item)
    return 1


class SearchModule(nn.Module):
    """``model`` and a :data:`BatchLoss` as one module: ``forward(batch)`` returns the
    loss of one search mini-batch (a list of ``accumulate`` micro-batches when > 1)."""

    def __init__(self, model: nn.Module, loss: BatchLoss, accumulate: int = 1) -> None:
        super().__init__()
        self.model = model
        # Not an attribute nn.Module would register: a loss module's parameters, if any,
        # are not the model's and must not be searched.
        self._loss = (loss,)
        self.accumulate = accumulate

    def forward(self, batch: Any) -> torch.Tensor:
        loss = self._loss[0]
        if self.accumulate == 1:
            return loss(self.model, batch)
        sizes = [batch_len(b) for b in batch]
        total = sum(sizes)
        out: Any = 0.0
        for micro, n in zip(batch, sizes):
            if torch.is_grad_enabled():  # the gradient pass: one micro-batch's activations
                value = checkpoint(loss, self.model, micro, use_reentrant=False)
            else:
                value = loss(self.model, micro)
            out = out + value * (n / total)
        return out


class _Paired:
    """The batches (grouped ``k`` at a time when accumulating) as ``(batch, None)`` pairs;
    re-iterable whenever the underlying batches are (the finder restarts them)."""

    def __init__(self, batches: Iterable, accumulate: int) -> None:
        self.batches = batches
        self.accumulate = accumulate

    def __iter__(self) -> Iterator[tuple[Any, None]]:
        it = iter(self.batches)
        if self.accumulate == 1:
            for batch in it:
                yield batch, None
            return
        while group := list(itertools.islice(it, self.accumulate)):
            yield group, None  # a short last group is weighted by its own size


def _loss_of(out: torch.Tensor, _targets: None) -> torch.Tensor:
    return out


@dataclass
class Prepared:
    """What :meth:`MBTFinder.find` takes, from :func:`prepare`."""

    model: SearchModule
    loss_fn: Callable[[torch.Tensor, None], torch.Tensor]
    batches: Iterable
    dataset_size: int | None
    batch_size: int | None


def loader_sizes(batches: Iterable, accumulate: int = 1) -> tuple[int | None, int | None]:
    """Sec. 3.5.1's N and k from a DataLoader: ``len(dataset)`` and the examples per step,
    ``batch_size * accumulate`` (None where the loader does not tell)."""
    try:
        dataset_size = len(batches.dataset)  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # not a DataLoader / an IterableDataset
        dataset_size = None
    batch_size = getattr(batches, "batch_size", None)
    return dataset_size, None if batch_size is None else batch_size * accumulate


def prepare(model: nn.Module, loss_fn: Callable | None, batches: Iterable, *,
            batch_loss: BatchLoss | None = None, target_key: str | None = None,
            accumulate: int = 1, dataset_size: int | None = None,
            batch_size: int | None = None) -> Prepared:
    """Adapt a model, a loss and batches of any format to the MBT finder.

    Args:
        batch_loss: ``batch_loss(model, batch) -> scalar loss``; replaces ``loss_fn``
            and the default formats (e.g. a ``LightningModule``'s loss method).
        target_key: the targets' key in dict batches.
        accumulate: micro-batches per search mini-batch (gradient accumulation).
        dataset_size, batch_size: Sec. 3.5.1's N and k (examples per step); from a
            DataLoader when omitted (``len(dataset)``, ``batch_size * accumulate``).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ValueError(f"Invalid accumulate: {accumulate!r} (expected int >= 1)")
    if batch_loss is None:
        if loss_fn is None:
            raise ValueError("pass loss_fn, or batch_loss(model, batch) -> loss")
        batch_loss = format_loss(loss_fn, target_key)
    elif not callable(batch_loss):
        raise ValueError("batch_loss must be callable")
    sizes = loader_sizes(batches, accumulate)
    dataset_size = sizes[0] if dataset_size is None else dataset_size
    batch_size = sizes[1] if batch_size is None else batch_size
    return Prepared(SearchModule(model, batch_loss, accumulate), _loss_of,
                    _Paired(batches, accumulate), dataset_size, batch_size)
