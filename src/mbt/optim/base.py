"""Machinery shared by the line-search optimizers (Backtracking GD family, Sec. 2-3).

The paper's f is a function of *all* weights, so one step size sigma is searched for
the whole model. Parameter groups are still honoured: each group may set
``lr_scale`` d_g > 0 (default 1), and the search direction is v = D grad f with D
block-diagonal. That is an instance of Inexact Backtracking GD (Sec. 2.1 (i)) with
A1 = min d, A2 = max d and mu = min d / max d, so Theorem 2.1 still applies. The
search constants (lr, alpha, beta, bounds) must agree across groups: a group with
its own alpha would ask for a different line search, which the paper does not define.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from .armijo import SearchResult
from .closure import Closure, Objective

__all__ = ["LineSearchOptimizer", "check_range"]

# Keys that define the line search and therefore must be shared by all groups.
_SEARCH_KEYS = ("lr", "alpha", "beta", "max_trials", "min_lr")


def check_range(name: str, value: float, low: float, high: float, *,
                closed_high: bool = False) -> None:
    """Raise ``ValueError`` unless ``low < value < high`` (``<= high`` if closed)."""
    ok = low < value <= high if closed_high else low < value < high
    if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
        bracket = "]" if closed_high else ")"
        raise ValueError(f"Invalid {name}: {value!r} (expected a value in ({low}, {high}{bracket})")


class LineSearchOptimizer(Optimizer):
    """Base class: validation, trial-point bookkeeping and the per-step record.

    Subclasses implement ``step(closure)``. After every step ``last_search`` holds
    the accepted ``lr``, the function/gradient evaluations of that step and whether a
    bound stopped the search; the running totals ``func_evals`` / ``grad_evals``
    live in the optimizer state, so they survive ``state_dict()``.
    """

    def __init__(self, params: Iterable, defaults: dict[str, Any]) -> None:
        check_range("lr", defaults["lr"], 0.0, math.inf)
        check_range("alpha", defaults["alpha"], 0.0, 1.0)
        check_range("beta", defaults["beta"], 0.0, 1.0)
        if not (isinstance(defaults["max_trials"], int) and defaults["max_trials"] >= 1):
            raise ValueError(f"Invalid max_trials: {defaults['max_trials']!r} (expected int >= 1)")
        if not (defaults["min_lr"] >= 0.0):
            raise ValueError(f"Invalid min_lr: {defaults['min_lr']!r} (expected >= 0)")
        defaults.setdefault("lr_scale", 1.0)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if not (group["lr_scale"] >= 0.0 and math.isfinite(group["lr_scale"])):
            raise ValueError(f"Invalid lr_scale: {group['lr_scale']!r} (expected >= 0)")
        first = self.param_groups[0]
        for key in _SEARCH_KEYS:
            if group[key] != first[key]:
                raise ValueError(
                    f"All parameter groups must share {key!r} (one line search covers the "
                    f"whole model); got {group[key]!r} and {first[key]!r}. "
                    "Use 'lr_scale' to scale a group's step."
                )

    # -- state ---------------------------------------------------------------------
    @property
    def _first_param(self) -> torch.Tensor:
        return self.param_groups[0]["params"][0]

    @property
    def search_state(self) -> dict[str, Any]:
        """Global (not per-parameter) state; kept on the first parameter like LBFGS."""
        state = self.state[self._first_param]
        if "func_evals" not in state:
            state.update(func_evals=0, grad_evals=0, n_steps=0, bound_hits=0)
        return state

    @property
    def last_search(self) -> dict[str, Any]:
        """What the last ``step`` did: lr, evals, bound_hit, loss before/after, ..."""
        return dict(self.search_state.get("last", {}))

    def _record(self, result: SearchResult, *, f0: float, grad_evals: int, **extra) -> None:
        state = self.search_state
        state["func_evals"] += result.evals + 1  # + the evaluation at the current point
        state["grad_evals"] += grad_evals
        state["n_steps"] += 1
        state["bound_hits"] += int(result.bound_hit)
        state["last"] = dict(
            lr=result.lr, f0=f0, f_new=result.f_new, func_evals=result.evals + 1,
            grad_evals=grad_evals, shrinks=result.shrinks, grows=result.grows,
            bound_hit=result.bound_hit, **extra,
        )

    # -- point bookkeeping ---------------------------------------------------------
    def _params_with_scale(self) -> tuple[list[torch.Tensor], list[float]]:
        params, scales = [], []
        for group in self.param_groups:
            for p in group["params"]:
                params.append(p)
                scales.append(float(group["lr_scale"]))
        return params, scales

    @staticmethod
    def _grads(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        # A snapshot: closures may zero .grad in place at trial points.
        return [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]

    @staticmethod
    def _set_point(params, origin, direction, lr: float) -> None:
        """params <- origin - lr * direction, in one fused op per tensor (exact restore)."""
        for p, x0, v in zip(params, origin, direction):
            torch.add(x0, v, alpha=-lr, out=p.data)

    @staticmethod
    def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
        if not a:
            return 0.0
        # One host sync for the whole model rather than one per tensor.
        total = torch.stack([torch.sum(x * y, dtype=torch.float64) for x, y in zip(a, b)]).sum()
        return float(total)

    def _objective(self, closure: Closure | None) -> Objective:
        """f for this step (:class:`mbt.optim.closure.Objective`): trials leave no trace,
        losses are averaged over ``torch.distributed`` ranks."""
        if closure is None:
            raise RuntimeError(
                f"{type(self).__name__}.step() needs a closure that re-evaluates the loss "
                "(see mbt.optim.closure for the contract)."
            )
        return Objective(closure)
