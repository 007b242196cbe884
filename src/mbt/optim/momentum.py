"""Backtracking Momentum and Backtracking NAG (paper Sec. 3.1).

Update: ``v_n = gamma_n v_{n-1} + delta_n grad f(y_n)``, ``z_{n+1} = z_n - v_n`` with
``y_n = z_n`` (MMT) or ``y_n = z_n - gamma v_{n-1}`` (NAG, "the term gamma appears also
in the argument for grad f"). gamma_n and delta_n come from the paper's two-stage search:

1. gamma-search (Steps 1-3): start with ``gamma' = gamma0, delta' = lr0``; multiply
   gamma' by beta until the direction satisfies condition (i) of Inexact
   Backtracking GD (eqs. (4)-(5)) with respect to grad f(z_n).
2. sigma-search (Steps 4-5): Armijo (7) along that direction with
   sigma in {1, beta, beta^2, ...}; then ``gamma_n = sigma gamma'``, ``delta_n = sigma delta'``.

Choices (Sec. 3.1 leaves them open):

* Condition (i) is tested on the *normalised* direction
  ``w = (gamma'/delta') v_{n-1} + grad f(y_n)``, so that ``z_{n+1} = z_n - (sigma delta') w``
  is literally an Inexact Backtracking GD step with step sigma delta'. Tested on v_n
  itself, (i) would compare a vector of size ~delta' ||g|| with ||g||, and shrinking
  gamma' alone could never satisfy it for small delta0. With gamma' -> 0, w -> grad f
  (MMT), which passes (i) because A1 < 1 < A2 and mu <= 1, so the gamma-loop ends.
* The gamma-loop is bounded by ``max_trials``; when it runs out gamma' is set to 0
  (plain Backtracking GD for this step) and ``bound_hit`` is recorded.
* For NAG, each gamma' trial needs grad f at its look-ahead point (one backward
  each); w = grad f(z_n) again once gamma' = 0.
* Default constants A1 = 0.1, A2 = 20, mu = 0.1: permissive enough that the
  steady-state momentum direction of gamma0 = 0.9 (about ||g|| / (1 - gamma) = 10 ||g||)
  passes; tighter values trade momentum for better-conditioned directions.
* A step whose sigma-search fails (bound hit, no move) also clears the momentum
  buffer, since v_n = 0 then.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .armijo import armijo_search
from .backtracking import condition_i
from .base import LineSearchOptimizer, check_range
from .closure import Closure

__all__ = ["BacktrackingMomentum", "BacktrackingNAG"]


class BacktrackingMomentum(LineSearchOptimizer):
    """Backtracking MMT (Sec. 3.1).

    Args:
        params: parameters or parameter groups (``lr_scale`` is not supported here).
        lr: delta_0, the largest delta tried.
        momentum: gamma_0, the largest gamma tried.
        alpha, beta: Armijo constant and shrink factor, in (0, 1).
        A1, A2, mu: constants of condition (i); need 0 < A1 < 1 < A2 and 0 < mu <= 1.
        nesterov: evaluate the gradient at the look-ahead point (Backtracking NAG).
        max_trials, min_lr: bounds of each search, as in :class:`BacktrackingGD`.

    ``step(closure)`` follows :mod:`mbt.optim.closure`; the chosen gamma_n is in
    ``last_search["momentum"]`` and delta_n in ``last_search["lr"]``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        momentum: float = 0.9,
        alpha: float = 0.5,
        beta: float = 0.7,
        *,
        A1: float = 0.1,
        A2: float = 20.0,
        mu: float = 0.1,
        nesterov: bool = False,
        max_trials: int = 100,
        min_lr: float = 1e-16,
    ) -> None:
        if not (isinstance(momentum, (int, float)) and 0.0 <= momentum < math.inf):
            raise ValueError(f"Invalid momentum: {momentum!r} (expected a value >= 0)")
        check_range("A1", A1, 0.0, 1.0)
        check_range("A2", A2, 1.0, math.inf)
        check_range("mu", mu, 0.0, 1.0, closed_high=True)
        defaults = dict(lr=lr, alpha=alpha, beta=beta, max_trials=max_trials, min_lr=min_lr,
                        momentum=momentum, A1=A1, A2=A2, mu=mu, nesterov=bool(nesterov))
        super().__init__(params, defaults)
        if any(g["lr_scale"] != 1.0 for g in self.param_groups):
            raise ValueError("lr_scale is not supported by Backtracking MMT/NAG")

    def _gamma_search(self, f, params, origin, g, g_norm, buf, group):
        """Steps 1-3: shrink gamma' until w satisfies condition (i).

        Returns ``(gamma', w, grad_evals, gave_up)``: the accepted momentum (0 for a plain
        gradient step), the direction, the extra gradient evaluations (NAG's look-ahead) and
        whether the gamma-loop ran out of trials with momentum present."""
        lr0, beta = group["lr"], group["beta"]
        gamma = group["momentum"]
        grad_evals, trials = 0, 0
        has_momentum = gamma > 0 and any(bool(b.any()) for b in buf)
        while has_momentum and trials < group["max_trials"]:
            trials += 1
            if group["nesterov"]:
                self._set_point(params, origin, buf, gamma)  # y = z - gamma' v_{n-1}
                f(backward=True, trial=True)
                grad_evals += 1
                g_look = self._grads(params)
            else:
                g_look = g
            w = [gl + (gamma / lr0) * b for gl, b in zip(g_look, buf)]
            w_norm = math.sqrt(f.reduce(self._dot(w, w)))
            if condition_i(g_norm, w_norm, f.reduce(self._dot(g, w)),
                           group["A1"], group["A2"], group["mu"]):
                return gamma, w, grad_evals, False
            gamma *= beta
        # No momentum yet, or the gamma-loop ran out: a plain Backtracking GD step.
        return 0.0, g, grad_evals, has_momentum

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> torch.Tensor:  # type: ignore[override]
        """One Backtracking MMT/NAG step; ``closure`` is required (see
        :mod:`mbt.optim.closure`). One gradient at the current point with its side effects;
        NAG's look-ahead gradients and the Armijo trials leave module buffers and random
        generators as they were. Returns the loss at the starting point; delta_n is
        ``self.last_search["lr"]``, gamma_n ``self.last_search["momentum"]``."""
        f = self._objective(closure)
        group = self.param_groups[0]
        params, _ = self._params_with_scale()
        f0 = f(backward=True)
        g = self._grads(params)
        g_norm = math.sqrt(f.reduce(self._dot(g, g)))
        origin = [p.detach().clone() for p in params]
        buf = [self.state[p].get("momentum_buffer") for p in params]
        buf = [torch.zeros_like(p) if b is None else b for p, b in zip(params, buf)]

        gamma, w, look_evals, gamma_bound = self._gamma_search(
            f, params, origin, g, g_norm, buf, group)

        def phi(lr: float) -> float:
            self._set_point(params, origin, w, lr)
            return f(backward=False)

        result = armijo_search(
            phi, f0, f.reduce(self._dot(g, w)), group["lr"], alpha=group["alpha"],
            beta=group["beta"], max_trials=group["max_trials"], min_lr=group["min_lr"],
        )
        self._set_point(params, origin, w, result.lr)
        sigma = result.lr / group["lr"]
        for p, wi in zip(params, w):
            # v_n = gamma_n v_{n-1} + delta_n grad f(y_n) = (sigma delta') w
            self.state[p]["momentum_buffer"] = wi.mul(result.lr)
        self._record(result, f0=f0, grad_evals=1 + look_evals, grad_norm=g_norm,
                     momentum=sigma * gamma, gamma_bound_hit=gamma_bound)
        return torch.scalar_tensor(f0)  # torch.tensor(f0)'s value, at a third of its cost


class BacktrackingNAG(BacktrackingMomentum):
    """Backtracking NAG (Sec. 3.1): :class:`BacktrackingMomentum` with ``nesterov=True``,
    the gradient taken at the look-ahead point ``y_n = z_n - gamma' v_{n-1}``.

    Args:
        params: parameters or parameter groups (``lr_scale`` is not supported here).
        lr: delta_0, the largest delta tried.
        momentum: gamma_0, the largest gamma tried.
        alpha, beta: Armijo constant and shrink factor, in (0, 1).
        A1, A2, mu: constants of condition (i), eqs. (4)-(5); 0 < A1 < 1 < A2, 0 < mu <= 1.
        max_trials, min_lr: bounds of each search, as in :class:`BacktrackingGD`.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        momentum: float = 0.9,
        alpha: float = 0.5,
        beta: float = 0.7,
        *,
        A1: float = 0.1,
        A2: float = 20.0,
        mu: float = 0.1,
        max_trials: int = 100,
        min_lr: float = 1e-16,
    ) -> None:
        super().__init__(params, lr, momentum, alpha, beta, A1=A1, A2=A2, mu=mu,
                         nesterov=True, max_trials=max_trials, min_lr=min_lr)
