"""The Armijo test and the shrink/grow searches every backtracking method here shares.

Paper: Truong & Nguyen, *Backtracking gradient descent method ... Part 2* (AMO 2020).

* Armijo's condition, eq. (6)/(7) of Sec. 2.1: for a direction v with slope
  s = <grad f(z), v>, a step sigma is accepted when
  ``f(z - sigma v) - f(z) <= -alpha * sigma * s``.
* Backtracking GD (Sec. 2.1 (ii)): the largest of ``lr0, lr0 beta, lr0 beta^2, ...``
  that passes -> :func:`armijo_search` with ``grow=False`` started at ``lr0``.
* Two-way Backtracking GD (Sec. 3.3): start from the previous step; shrink while
  Armijo fails, otherwise grow by ``1/beta`` while the grown step passes and stays
  ``<= lr0`` -> ``grow=True, lr_max=lr0`` started at the previous step.
* Unbounded Backtracking GD (Sec. 3.4, "discrete construction"): start at ``lr0``,
  shrink as usual, otherwise grow while Armijo holds and the step stays
  ``<= h(||grad f||)`` -> ``grow=True, lr_max=h(||g||)`` started at ``lr0``.

Choices where the text is ambiguous (all Sec. 3.3):

* The two-way algorithm's Step 3.2 grows sigma "until sigma/beta > lr0" without
  re-testing Armijo; read literally it would reset every step to the largest
  power ``lr_{n-1} beta^-k <= lr0`` whether or not it descends, contradicting the
  text above it ("allowing increasing sigma ... in case sigma satisfies (7)") and
  Theorem 3.2's Armijo-based proof. We re-test Armijo at every grown value, as
  Sec. 3.4 spells out for the unbounded variant.
* Steps stay on the grid ``lr_start * beta^k`` with an integer k (no accumulated
  rounding from repeated multiply/divide), and "does not exceed lr_max" is tested
  with a relative tolerance of 1e-9 so that ``lr0 beta^3 / beta^3`` counts as lr0.
* Every search is bounded: at most ``max_trials`` evaluations of f, and no step
  below ``min_lr``. When the shrink loop hits a bound no Armijo step was found; the
  search then returns ``lr = 0`` (the point does not move, so f never increases)
  and sets ``bound_hit``. When the grow loop hits ``max_trials`` the last accepted
  step is kept and ``bound_hit`` is set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["armijo_holds", "armijo_search", "SearchResult"]

_GRID_RTOL = 1e-9


def armijo_holds(f_new: float, f0: float, lr: float, slope: float, alpha: float) -> bool:
    """Armijo's condition (7): ``f_new - f0 <= -alpha * lr * slope``.

    ``slope`` is ``<grad f(z), v>`` (``||grad f||^2`` for plain GD). A NaN or
    infinite trial value never passes, so a search can never accept a divergent step.
    """
    if not math.isfinite(f_new):
        return False
    return f_new - f0 <= -alpha * lr * slope


@dataclass
class SearchResult:
    """Outcome of one line search.

    Attributes:
        lr: accepted step (0.0 when the shrink loop hit its bound).
        f_new: f at the accepted point (``f0`` when ``lr == 0``).
        evals: function evaluations the search spent (excludes f0).
        shrinks: how many times the step was multiplied by beta.
        grows: how many grown steps were accepted.
        bound_hit: a bound (max_trials or min_lr) stopped the search.
    """

    lr: float
    f_new: float
    evals: int
    shrinks: int
    grows: int
    bound_hit: bool


def armijo_search(
    phi: Callable[[float], float],
    f0: float,
    slope: float,
    lr_start: float,
    *,
    alpha: float,
    beta: float,
    grow: bool = False,
    lr_max: float = math.inf,
    max_trials: int = 100,
    min_lr: float = 0.0,
) -> SearchResult:
    """Backtracking on the grid ``lr_start * beta^k`` (Sec. 2.1 (ii), 3.3, 3.4).

    Args:
        phi: ``phi(lr) = f(z - lr v)``; the caller moves the point, this only decides.
        f0: ``f(z)``.
        slope: ``<grad f(z), v>``; must be > 0 for a descent direction.
        lr_start: first step tried.
        alpha, beta: Armijo constant and the shrink factor, both in (0, 1).
        grow: when the first step passes, try ``lr / beta`` while it passes and is
            ``<= lr_max`` (two-way and unbounded variants).
        lr_max: cap on grown steps (``lr0`` for two-way, ``h(||g||)`` for unbounded).
        max_trials: bound on evaluations of ``phi``.
        min_lr: the shrink loop gives up below this step.

    Longer than 60 lines: the shrink and grow loops are one search (Sec. 3.3-3.4), read
    top to bottom with the bounds where they apply."""
    if not slope > 0.0:
        # Zero gradient (or an ascent direction): no step along v can pass (7).
        return SearchResult(0.0, f0, 0, 0, 0, bound_hit=False)

    k = 0  # lr = lr_start * beta**k keeps the step on the paper's grid exactly

    def lr_at(j: int) -> float:
        return lr_start * beta**j

    lr = lr_at(k)
    f_new = phi(lr)
    evals = 1
    if not armijo_holds(f_new, f0, lr, slope, alpha):
        while True:
            if evals >= max_trials or lr_at(k + 1) < min_lr:
                return SearchResult(0.0, f0, evals, k, 0, bound_hit=True)
            k += 1
            lr = lr_at(k)
            f_new = phi(lr)
            evals += 1
            if armijo_holds(f_new, f0, lr, slope, alpha):
                return SearchResult(lr, f_new, evals, k, 0, bound_hit=False)

    grows = 0
    if grow:
        while lr_at(k - 1) <= lr_max * (1.0 + _GRID_RTOL):
            if evals >= max_trials:
                return SearchResult(lr, f_new, evals, 0, grows, bound_hit=True)
            f_up = phi(lr_at(k - 1))
            evals += 1
            if not armijo_holds(f_up, f0, lr_at(k - 1), slope, alpha):
                break
            k -= 1
            grows += 1
            lr, f_new = lr_at(k), f_up
            if math.isfinite(lr_max) and abs(lr - lr_max) <= _GRID_RTOL * lr_max:
                lr = lr_max  # back on lr0 exactly, so two-way's next start is exact
    return SearchResult(lr, f_new, evals, 0, grows, bound_hit=False)
