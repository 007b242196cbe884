"""Backtracking GD and its variants (paper Sec. 2.1, 3.3, 3.4) as ``torch.optim`` optimizers.

* :class:`BacktrackingGD` - Armijo's rule: the largest ``lr0 beta^k`` passing (7).
* :class:`TwoWayBacktrackingGD` - Sec. 3.3: start from the previous step, may grow
  back up to ``lr0``.
* :class:`UnboundedBacktrackingGD` - Sec. 3.4: start from ``lr0``, may grow past it
  up to ``h(||grad f||)``; default ``h(t) = lr0`` for t > 1 and ``lr0 / sqrt(t)``
  for t <= 1 (the choice of the paper's Examples 3.6-3.7).
* :class:`InexactBacktrackingGD` - Sec. 2.1: the same rule along a supplied direction
  v, after checking condition (i): ``A1 ||g|| <= ||v|| <= A2 ||g||`` and
  ``<g, v> >= mu ||g|| ||v||``.

``lr`` is the paper's delta_0. The step sizes actually taken are read from
``optimizer.last_search["lr"]``. The searches themselves are in :mod:`mbt.optim.armijo`.

Choices (see also :mod:`mbt.optim.armijo`):

* Two-way's very first step starts from ``lr0`` (there is no delta_{-1}).
* Inexact: a direction that violates condition (i) is replaced by the gradient
  (which always satisfies it when ``A1 <= 1 <= A2``) and counted in
  ``search_state["condition_i_failures"]``; ``on_violation="raise"`` makes it an error
  instead. Silently using a non-descent direction would void Theorem 2.1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from .armijo import armijo_search
from .base import LineSearchOptimizer, check_range
from .closure import Closure

__all__ = [
    "BacktrackingGD",
    "TwoWayBacktrackingGD",
    "UnboundedBacktrackingGD",
    "InexactBacktrackingGD",
    "default_h",
    "condition_i",
]

MODES = ("standard", "two_way", "unbounded")
Direction = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], Sequence[torch.Tensor]]


def default_h(grad_norm: float, lr0: float) -> float:
    """h(t) = lr0 for t > 1, lr0/sqrt(t) for t <= 1 (Sec. 3.4); t h(t) -> 0 as t -> 0."""
    if grad_norm > 1.0:
        return lr0
    if grad_norm <= 0.0:
        return math.inf
    return lr0 / math.sqrt(grad_norm)


def condition_i(g_norm: float, v_norm: float, g_dot_v: float, A1: float, A2: float,
                mu: float) -> bool:
    """Condition (i) of Inexact Backtracking GD, eqs. (4)-(5)."""
    return A1 * g_norm <= v_norm <= A2 * g_norm and g_dot_v >= mu * g_norm * v_norm


class BacktrackingGD(LineSearchOptimizer):
    """Backtracking gradient descent (Armijo's rule), Sec. 2.1.

    Args:
        params: iterable of parameters or dicts defining parameter groups (a group may
            set ``lr_scale``; see :mod:`mbt.optim.base`).
        lr: delta_0, the largest step tried (and the cap of the two-way variant).
        alpha: Armijo constant in (0, 1).
        beta: shrink factor in (0, 1).
        mode: ``"standard"`` (restart at lr0), ``"two_way"`` (Sec. 3.3) or
            ``"unbounded"`` (Sec. 3.4).
        h: for ``mode="unbounded"``, the cap ``h(||grad f||, lr0)``; default
            :func:`default_h`.
        max_trials: at most this many evaluations of f per search.
        min_lr: the shrink loop stops below this step; the step is then skipped.

    ``step(closure)`` calls ``closure(backward=True)`` once at the current point and
    ``closure(backward=False)`` at every trial point (see :mod:`mbt.optim.closure`);
    it returns the loss at the point where the step started.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        alpha: float = 0.5,
        beta: float = 0.7,
        *,
        mode: str = "standard",
        h: Callable[[float, float], float] | None = None,
        max_trials: int = 100,
        min_lr: float = 1e-16,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"Invalid mode: {mode!r} (expected one of {', '.join(MODES)})")
        if h is not None and mode != "unbounded":
            raise ValueError("h is only used by mode='unbounded'")
        # A callable stays an attribute (as LBFGS keeps only a string in its groups):
        # param groups go into state_dict(), and checkpoints load with weights_only=True.
        self.h = default_h if h is None else h
        defaults = dict(lr=lr, alpha=alpha, beta=beta, max_trials=max_trials, min_lr=min_lr,
                        mode=mode, **getattr(self, "_extra_defaults", {}))
        super().__init__(params, defaults)

    @property
    def mode(self) -> str:
        return self.param_groups[0]["mode"]

    def _direction(self, params, grads, scales) -> list[torch.Tensor]:
        """v = D grad f (D from the groups' lr_scale); subclasses may change it."""
        return [g if s == 1.0 else g * s for g, s in zip(grads, scales)]

    def _start_and_cap(self, lr0: float, grad_norm: float) -> tuple[float, bool, float]:
        if self.mode == "standard":
            return lr0, False, lr0
        if self.mode == "two_way":
            previous = self.search_state.get("lr")
            # After a skipped step (lr 0) restart from lr0 rather than from nothing; lr0 is
            # read at every step, so a scheduler or a param_groups edit that lowers it
            # lowers the cap, and the start with it.
            start = min(previous, lr0) if previous else lr0
            return start, True, lr0
        return lr0, True, self.h(grad_norm, lr0)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> torch.Tensor:  # type: ignore[override]
        """One Armijo step; ``closure`` is required (see :mod:`mbt.optim.closure`).

        Calls ``closure(backward=True)`` once at the current point, then
        ``closure(backward=False)`` at each trial point (trials leave module buffers and
        random generators as they were). Returns the loss at the starting point; the
        step taken is ``self.last_search["lr"]``."""
        f = self._objective(closure)
        group = self.param_groups[0]
        params, scales = self._params_with_scale()
        f0 = f(backward=True)
        grads = self._grads(params)
        direction = self._direction(params, grads, scales)
        slope = f.reduce(self._dot(grads, direction))
        # v = grad f (no lr_scale, no supplied direction): the slope is ||grad f||^2 already.
        same = all(v is g for v, g in zip(direction, grads))
        grad_norm = math.sqrt(max(slope if same else f.reduce(self._dot(grads, grads)), 0.0))
        origin = [p.detach().clone() for p in params]
        at: list[float | None] = [None]  # the step the parameters are at (the last trial)

        def phi(lr: float) -> float:
            self._set_point(params, origin, direction, lr)
            at[0] = lr
            return f(backward=False)

        start, grow, cap = self._start_and_cap(group["lr"], grad_norm)
        result = armijo_search(
            phi, f0, slope, start, alpha=group["alpha"], beta=group["beta"], grow=grow,
            lr_max=cap, max_trials=group["max_trials"], min_lr=group["min_lr"],
        )
        if at[0] != result.lr:  # else the last trial was the accepted step: already there
            self._set_point(params, origin, direction, result.lr)
        if result.lr > 0.0:
            self.search_state["lr"] = result.lr
        self._record(result, f0=f0, grad_evals=1, grad_norm=grad_norm, start=start)
        # torch.tensor(f0)'s float32 value, at a third of its cost.
        return torch.scalar_tensor(f0)


class TwoWayBacktrackingGD(BacktrackingGD):
    """Two-way Backtracking GD (Sec. 3.3): :class:`BacktrackingGD` with ``mode="two_way"``."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        alpha: float = 0.5,
        beta: float = 0.7,
        *,
        max_trials: int = 100,
        min_lr: float = 1e-16,
    ) -> None:
        super().__init__(params, lr, alpha, beta, mode="two_way",
                         max_trials=max_trials, min_lr=min_lr)


class UnboundedBacktrackingGD(BacktrackingGD):
    """Unbounded Backtracking GD (Sec. 3.4): ``mode="unbounded"`` with cap ``h``."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        alpha: float = 0.5,
        beta: float = 0.7,
        *,
        h: Callable[[float, float], float] | None = None,
        max_trials: int = 100,
        min_lr: float = 1e-16,
    ) -> None:
        super().__init__(params, lr, alpha, beta, mode="unbounded", h=h,
                         max_trials=max_trials, min_lr=min_lr)


class InexactBacktrackingGD(BacktrackingGD):
    """Inexact Backtracking GD (Sec. 2.1): Armijo along ``v = direction(grads, params)``.

    Args:
        direction: maps the gradients (and parameters) to the direction v, one tensor
            per parameter; ``None`` means v = grad f.
        A1, A2, mu: the constants of condition (i), eqs. (4)-(5).
        on_violation: ``"gradient"`` (fall back to v = grad f) or ``"raise"``.
        Other arguments as :class:`BacktrackingGD` (``mode`` included).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        alpha: float = 0.5,
        beta: float = 0.7,
        *,
        direction: Direction | None = None,
        A1: float = 0.5,
        A2: float = 2.0,
        mu: float = 0.5,
        on_violation: str = "gradient",
        **kwargs: Any,
    ) -> None:
        check_range("A1", A1, 0.0, math.inf)
        check_range("A2", A2, 0.0, math.inf)
        check_range("mu", mu, 0.0, 1.0, closed_high=True)
        if A1 > A2:
            raise ValueError(f"Invalid A1, A2: need A1 <= A2, got {A1} > {A2}")
        if on_violation not in ("gradient", "raise"):
            raise ValueError(f"Invalid on_violation: {on_violation!r}")
        self.direction_fn = direction  # a callable: an attribute (see BacktrackingGD)
        self._extra_defaults = dict(A1=A1, A2=A2, mu=mu, on_violation=on_violation)
        super().__init__(params, lr, alpha, beta, **kwargs)

    def _direction(self, params, grads, scales):
        if self.direction_fn is None:
            return super()._direction(params, grads, scales)
        group = self.param_groups[0]
        A1, A2, mu = group["A1"], group["A2"], group["mu"]
        v = [t.detach() for t in self.direction_fn(grads, params)]
        g_norm = math.sqrt(self._dot(grads, grads))
        ok = condition_i(g_norm, math.sqrt(self._dot(v, v)), self._dot(grads, v), A1, A2, mu)
        state = self.search_state
        state["condition_i_failures"] = state.get("condition_i_failures", 0) + (not ok)
        if ok:
            return v
        if group["on_violation"] == "raise":
            raise ValueError("direction violates condition (i) of Inexact Backtracking GD "
                             f"(A1={A1}, A2={A2}, mu={mu})")
        return super()._direction(params, grads, scales)
