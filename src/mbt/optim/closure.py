"""The closure contract shared by every line-search optimizer in :mod:`mbt.optim`.

A line search evaluates f many times per step but needs the gradient only once, at
the current point. So the closure may take a keyword ``backward``:

* ``closure(backward=True)``: zero the gradients, compute the loss, call
  ``loss.backward()`` and return the loss (exactly what ``torch.optim.LBFGS`` asks).
* ``closure(backward=False)``: compute and return the loss only. The optimizer calls
  it under ``torch.no_grad()``, so trial points build no autograd graph.

A plain ``closure()`` without that keyword also works (it is always run with grad
enabled and its backward pass is wasted at trial points): stock-PyTorch code keeps
working, and :func:`make_closure` builds the fast kind for the usual
model/loss/batch case.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["Closure", "evaluate", "make_closure"]

Closure = Callable[..., torch.Tensor]

# Keyed by code object: training loops usually define a fresh closure per step, and
# inspecting the signature every time would cost more than a small model's forward.
_ACCEPTS_BACKWARD: dict[object, bool] = {}


def _accepts_backward(closure: Closure) -> bool:
    key = getattr(closure, "__code__", None) or type(closure)
    cached = _ACCEPTS_BACKWARD.get(key)
    if cached is None:
        try:
            params = inspect.signature(closure).parameters
        except (TypeError, ValueError):  # builtins / C callables
            params = {}
        cached = "backward" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        _ACCEPTS_BACKWARD[key] = cached
    return cached


def evaluate(closure: Closure, *, backward: bool) -> torch.Tensor:
    """Run ``closure`` following the contract above and return its loss tensor."""
    if _accepts_backward(closure):
        if backward:
            with torch.enable_grad():
                return closure(backward=True)
        with torch.no_grad():
            return closure(backward=False)
    with torch.enable_grad():
        return closure()


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
