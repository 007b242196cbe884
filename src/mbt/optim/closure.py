"""The closure contract shared by every line-search optimizer in :mod:`mbt.optim`.

A line search evaluates f many times per step but needs the gradient only once, at
the current point. So the closure may take a keyword ``backward``:

* ``closure(backward=True)``: zero the gradients, compute the loss, call
  ``loss.backward()`` and return the loss (exactly what ``torch.optim.LBFGS`` asks).
* ``closure(backward=False)``: compute and return the loss only. The optimizer calls
  it under ``torch.no_grad()``, so trial points build no autograd graph.

A plain ``closure()`` without that keyword also works (it is always run with grad
enabled and its backward pass is wasted at trial points): stock-PyTorch code, and
Lightning's automatic optimization, keep working. :func:`make_closure` builds the
fast kind for the usual model/loss/batch case. Any callable is accepted (functions,
lambdas, ``functools.partial``, bound methods, callable objects); how to call it is
decided once per ``step`` from its own signature, never cached across calls.

Trial points leave no trace (:func:`trial_scope`): the evaluation at the starting point
is the only one whose side effects stay. Module buffers (BatchNorm's running statistics
and ``num_batches_tracked``) touched by a trial forward are put back, and every trial
draws the random numbers the starting evaluation drew (the same dropout masks, so f is
one deterministic function within a step); after the step the generators continue from
where the starting evaluation left them. A search that accepts ``lr`` at every step
therefore leaves parameters, buffers and random streams exactly as SGD at ``lr`` would.

Under ``torch.distributed`` every loss the search compares is averaged over the ranks
(one all-reduce of a scalar per evaluation), so all ranks take the same decisions; with
DDP's averaged gradients their parameters stay identical.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

from .ranks import mean_over_ranks, world_size

__all__ = ["Closure", "Objective", "accepts_backward", "evaluate", "make_closure",
           "trial_scope"]

Closure = Callable[..., torch.Tensor]


def accepts_backward(closure: Closure) -> bool:
    """Whether ``closure`` takes the ``backward`` keyword (named, or through ``**kwargs``).

    Decided from this callable's own signature (``inspect.signature`` follows
    ``functools.partial``, bound methods, ``__call__`` and ``functools.wraps``)."""
    try:
        params = inspect.signature(closure).parameters
    except (TypeError, ValueError):  # builtins / C callables
        return False
    return "backward" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def evaluate(closure: Closure, *, backward: bool, fast: bool | None = None) -> torch.Tensor:
    """Run ``closure`` following the contract above and return its loss tensor
    (``fast``: whether it takes ``backward``; looked up when None)."""
    if accepts_backward(closure) if fast is None else fast:
        if backward:
            with torch.enable_grad():
                return closure(backward=True)
        with torch.no_grad():
            return closure(backward=False)
    with torch.enable_grad():
        return closure()


class _Buffers:
    """Module buffers seen by forwards run inside :func:`trial_scope`, with their values
    when first seen, so that :meth:`restore` puts every one back (also a buffer a module
    replaced by a new tensor rather than updating it in place)."""

    def __init__(self) -> None:
        self.modules: set[int] = set()
        self.saved: dict[tuple[int, str], tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = {}

    def hook(self, module: nn.Module, _args: Any) -> None:
        if id(module) in self.modules:
            return
        self.modules.add(id(module))
        for owner in module.modules():
            for name, buf in owner._buffers.items():
                key = (id(owner), name)
                if buf is not None and key not in self.saved:
                    self.saved[key] = (owner, name, buf, buf.detach().clone())

    def restore(self) -> None:
        with torch.no_grad():
            for owner, name, tensor, value in self.saved.values():
                owner._buffers[name] = tensor
                tensor.copy_(value)


class _RNG:
    """The CPU generator and the CUDA generators in use: one snapshot, restored at will."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = (torch.cuda.get_rng_state_all()
                     if torch.cuda.is_available() and torch.cuda.is_initialized() else None)

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


@contextlib.contextmanager
def trial_scope(rng: _RNG | None = None) -> Iterator[None]:
    """Run a trial evaluation without side effects on modules: buffers that the forwards
    inside change are restored on exit (a global forward pre-hook sees every module
    called, so it works on any ``nn.Module`` without being handed the model). With
    ``rng``, the random generators start from that snapshot (the starting point's
    draws) and are put back to where they were on exit."""
    buffers = _Buffers()
    after = _RNG() if rng is not None else None
    handle = register_module_forward_pre_hook(buffers.hook)
    try:
        if rng is not None:
            rng.restore()
        yield
    finally:
        handle.remove()
        buffers.restore()
        if after is not None:
            after.restore()


class Objective:
    """f for one optimizer step: ``f(backward=True)`` at the starting point (its side
    effects stay, as SGD's forward), then any number of trials ``f(backward=False)``
    (or ``f(backward=True, trial=True)`` for a gradient at a trial point, Backtracking
    NAG's look-ahead) that leave modules and random generators as they were. Each value
    is the mean over ``torch.distributed`` ranks when a process group is initialized."""

    def __init__(self, closure: Closure) -> None:
        self.closure = closure
        self.fast = accepts_backward(closure)
        self.world = world_size()
        self.rng: _RNG | None = None
        self.device = torch.device("cpu")  # of the losses: NCCL reduces on the GPU

    def __call__(self, *, backward: bool, trial: bool | None = None) -> float:
        trial = (not backward) if trial is None else trial
        if not trial:
            self.rng = _RNG()
            return self._reduce(evaluate(self.closure, backward=backward, fast=self.fast))
        with trial_scope(self.rng):
            loss = evaluate(self.closure, backward=backward, fast=self.fast)
        return self._reduce(loss)

    def reduce(self, value: float) -> float:
        """``value`` averaged over the ranks (itself without a process group)."""
        if self.world == 1:
            return value
        return self._reduce(torch.tensor(value, dtype=torch.float64, device=self.device))

    def _reduce(self, loss: torch.Tensor) -> float:
        if self.world > 1:
            self.device = loss.device
        return mean_over_ranks(loss, self.world)


def make_closure(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> Closure:
    """A closure for one fixed batch that follows the ``backward`` contract."""

    def closure(backward: bool = True) -> torch.Tensor:
        if backward:
            model.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs), targets)
        if backward:
            loss.backward()
        return loss

    return closure
