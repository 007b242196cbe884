"""SLS: SGD with a stochastic Armijo line search on every mini-batch.

Paper: Vaswani, Mishkin, Laradji, Schmidt, Gidel, Lacoste-Julien, *Painless Stochastic
Gradient: Interpolation, Line-Search, and Convergence Rates* (NeurIPS 2019).
Reference code: ``IssamLaradji/sls`` (``sls/sls.py`` ``Sls.step``, ``sls/utils.py``),
a behavioural reference only.

On mini-batch i_k with loss f_i, the step eta_k is the first of
``eta, eta beta, eta beta^2, ...`` that passes the stochastic Armijo condition,
eq. (1) of the paper::

    f_i(w - eta grad f_i(w)) <= f_i(w) - c eta ||grad f_i(w)||^2

which is :func:`mbt.optim.armijo.armijo_search` (no growing) with ``alpha = c``. The
first trial eta comes from the paper's reset routine (Algorithm 2 there; the code's
``utils.reset_step``), applied to the previous step eta_{k-1}. The option numbers of
the paper and of the code differ, so we name them:

=========  ==========================  ==========  =========
``reset``  first trial eta              paper opt   code opt
=========  ==========================  ==========  =========
``grow``   eta_{k-1} gamma^{b/n}        2           1 (default)
``max``    eta_max (``lr``)             1           2
``keep``   eta_{k-1}                    0           0
=========  ==========================  ==========  =========

b/n is computed as ``1 / n_batches_per_epoch``, as the code does (it equals b/n when
the batch size divides the training-set size).

Defaults are the code's (``Sls.__init__``): ``init_step_size = 1`` (our ``lr``, the
paper's eta_max), ``c = 0.1``, ``beta_b = 0.9`` (our ``beta``), ``gamma = 2``,
``reset_option = 1`` (our ``"grow"``), at most 100 trial points, and the code's two
guards: no search (and no move) when ``||grad f_i|| < 1e-8``, and a step of 1e-6
when 100 trials all fail (``fail_lr``). The paper's algorithm has neither guard.

Choices:

* First step: the paper's reset returns eta_max at k = 0, so the first trial is
  exactly ``lr``; the code applies the reset already there (``lr * gamma^{1/n}``).
  We follow the paper (a factor 2^{1/n} ~ 1.001 on one step).
* After a failed search the next reset starts from the value the code stores, the
  step that would have been tried next, ``start * beta^trials``.
* ``n_batches_per_epoch=None``: the config layer cannot know the loader's length, so
  it may be left out. ``reset="grow"`` then uses the code's constructor default of
  500 and logs a warning once; set ``group["n_batches_per_epoch"]`` (or pass it) for
  the exact rule. It is read at every step, so it may be set after construction.
  Falling back to ``"max"`` instead would change the algorithm (and its cost); the
  code's own default keeps results comparable to the published numbers.
* The closure must be deterministic for a fixed batch (same data, no dropout noise):
  trial points re-evaluate the *same* f_i. The code reseeds the global RNG from the
  clock for this; here every trial replays the random draws of the evaluation at the
  starting point (:func:`mbt.optim.closure.trial_scope`). Trial forwards leave
  BatchNorm running statistics as they were; the code lets them move at every trial.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable
from typing import Any

import torch

from .armijo import SearchResult, armijo_search
from .base import LineSearchOptimizer, check_range
from .closure import Closure

__all__ = ["SLS", "RESETS"]

logger = logging.getLogger(__name__)

RESETS = ("grow", "max", "keep")
# Sls.__init__'s default n_batches_per_epoch, used when none is given (see above).
_CODE_BATCHES_PER_EPOCH = 500
# Keys beyond the base class's that one line search needs to agree on.
_SLS_KEYS = ("gamma", "reset", "n_batches_per_epoch", "fail_lr", "grad_tol")


def _check_batches(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid n_batches_per_epoch: {value!r} (expected int >= 1 or None)")


class SLS(LineSearchOptimizer):
    """SGD + stochastic Armijo line search with step-size reset (Vaswani et al. 2019).

    Args:
        params: parameters or parameter groups (a group may set ``lr_scale``; see
            :mod:`mbt.optim.base`). All groups share one line search.
        lr: eta_max, the first trial step and the ``reset="max"`` value
            (code: ``init_step_size``).
        c: Armijo constant of eq. (1), in (0, 1) (stored as ``group["alpha"]``, the
            name the shared search in :mod:`mbt.optim.armijo` uses).
        beta: backtracking factor in (0, 1) (code: ``beta_b``).
        gamma: growth factor of ``reset="grow"``, >= 1.
        reset: ``"grow"``, ``"max"`` or ``"keep"`` (table in the module docstring).
        n_batches_per_epoch: n/b for ``reset="grow"``; None -> 500 with a warning.
        max_trials: trial points per step (code: 100).
        min_lr: the backtracking loop also gives up below this step (code: none).
        fail_lr: step taken when no trial passes (code: 1e-6; 0 = stay put).
        grad_tol: no search and no move when ``||grad f_i|| < grad_tol`` (code: 1e-8).

    ``step(closure)`` calls ``closure(backward=True)`` once and ``closure(backward=False)``
    at each trial point (:mod:`mbt.optim.closure`) and returns the loss before the step.
    ``last_search`` holds the step taken (``lr``), the first trial (``start``) and the
    counts; the current eta_k is ``search_state["step_size"]``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        c: float = 0.1,
        beta: float = 0.9,
        *,
        gamma: float = 2.0,
        reset: str = "grow",
        n_batches_per_epoch: int | None = None,
        max_trials: int = 100,
        min_lr: float = 0.0,
        fail_lr: float = 1e-6,
        grad_tol: float = 1e-8,
    ) -> None:
        if reset not in RESETS:
            raise ValueError(f"Invalid reset: {reset!r} (expected one of {', '.join(RESETS)})")
        if not (isinstance(gamma, (int, float)) and 1.0 <= gamma < math.inf):
            raise ValueError(f"Invalid gamma: {gamma!r} (expected a finite value >= 1)")
        _check_batches(n_batches_per_epoch)
        for name, value in (("fail_lr", fail_lr), ("grad_tol", grad_tol)):
            if not (isinstance(value, (int, float)) and 0.0 <= value < math.inf):
                raise ValueError(f"Invalid {name}: {value!r} (expected a finite value >= 0)")
        check_range("c", c, 0.0, 1.0)
        defaults = dict(lr=lr, alpha=c, beta=beta, max_trials=max_trials, min_lr=min_lr,
                        gamma=float(gamma), reset=reset, n_batches_per_epoch=n_batches_per_epoch,
                        fail_lr=float(fail_lr), grad_tol=float(grad_tol))
        self._warned_batches = False
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group, first = self.param_groups[-1], self.param_groups[0]
        for key in _SLS_KEYS:
            if group[key] != first[key]:
                raise ValueError(f"All parameter groups must share {key!r} (one line search "
                                 f"covers the whole model); got {group[key]!r} and {first[key]!r}")

    def _batches_per_epoch(self, group: dict[str, Any]) -> int:
        n = group["n_batches_per_epoch"]
        _check_batches(n)  # it may have been set after construction
        if n is not None:
            return n
        if not self._warned_batches:
            logger.warning("SLS: n_batches_per_epoch not set; reset='grow' uses the reference "
                           "code's default %d (set it to len(train_loader) for gamma^(b/n))",
                           _CODE_BATCHES_PER_EPOCH)
            self._warned_batches = True
        return _CODE_BATCHES_PER_EPOCH

    def _reset(self, group: dict[str, Any]) -> float:
        """The first trial eta of this step (the paper's reset routine, Algorithm 2)."""
        previous = self.search_state.get("step_size")
        if previous is None or group["reset"] == "max":
            return group["lr"]  # paper: k = 0 returns eta_max
        if group["reset"] == "keep":
            return previous
        return previous * group["gamma"] ** (1.0 / self._batches_per_epoch(group))

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> torch.Tensor:  # type: ignore[override]
        """One SLS step; ``closure`` is required (see :mod:`mbt.optim.closure`).
        Returns the loss at the starting point; the step is ``self.last_search["lr"]``."""
        f = self._objective(closure)
        group = self.param_groups[0]
        start = self._reset(group)
        params, scales = self._params_with_scale()
        f0 = f(backward=True)
        grads = self._grads(params)
        direction = [g if s == 1.0 else g * s for g, s in zip(grads, scales)]
        slope = f.reduce(self._dot(grads, direction))  # ||grad f_i||^2 when lr_scale is 1
        grad_norm = math.sqrt(max(f.reduce(self._dot(grads, grads)), 0.0))
        state = self.search_state

        if grad_norm < group["grad_tol"]:
            # Code: the search is skipped, the point stays, the reset eta is kept.
            result = SearchResult(0.0, f0, 0, 0, 0, bound_hit=False)
            state["step_size"] = start
        else:
            origin = [p.detach().clone() for p in params]

            def phi(lr: float) -> float:
                self._set_point(params, origin, direction, lr)
                return f(backward=False)

            result = armijo_search(
                phi, f0, slope, start, alpha=group["alpha"], beta=group["beta"],
                max_trials=group["max_trials"], min_lr=group["min_lr"],
            )
            if result.lr > 0.0:
                state["step_size"] = result.lr
            else:
                # Code: a tiny step anyway (f there is not evaluated, hence NaN), and the
                # next reset starts from the trial that would have come next.
                state["step_size"] = start * group["beta"] ** (result.shrinks + 1)
                result = dataclasses.replace(
                    result, lr=group["fail_lr"], f_new=math.nan if group["fail_lr"] else f0)
            self._set_point(params, origin, direction, result.lr)
        self._record(result, f0=f0, grad_evals=1, grad_norm=grad_norm, start=start)
        return torch.scalar_tensor(f0)  # torch.tensor(f0)'s value, at a third of its cost
