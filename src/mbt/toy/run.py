"""Run one optimizer on one analytic function (paper Sec. 3.3-3.4, Examples 3.3, 3.6, 3.7).

The point is a 2-element float64 tensor driven by the same :mod:`mbt.optim` classes
that train networks, so these examples test the library itself.

Stopping rule (Sec. 3.4: "we stop when either the iterate number is 10^6 or when the
gradient of the point is <= 10^-10"): after each step we test the gradient norm the
step itself computed, i.e. at the point the step started from. That costs no extra
gradient per iteration and is the reading under which the paper's "after 89 steps"
(Example 3.7, Unbounded) comes out exactly. A run also stops when the line search can
no longer find any Armijo step (``stalled``: the point cannot move again, since every
search is deterministic) or when f becomes non-finite (``diverged``).

Long runs (Example 3.7 takes 10^6 iterations, a few minutes) report progress when
asked (``progress=True``): a tqdm bar when stderr is a terminal, otherwise one summary
line on stderr at the end, so that logs of ``make reproduce-toy`` say what ran and how
fast.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from mbt.optim import BacktrackingGD

from .functions import get_function

__all__ = ["METHODS", "ToyResult", "run_toy"]

# CLI name -> BacktrackingGD mode; "standard" is fixed-step GD (torch.optim.SGD).
METHODS = {"standard": None, "backtracking": "standard", "two_way": "two_way",
           "unbounded": "unbounded"}
HISTORY_COLUMNS = ("iteration", "x", "y", "f", "grad_norm", "lr", "func_evals")


@dataclass
class ToyResult:
    function: str
    method: str
    iterations: int
    point: list[float]
    lr: float
    f: float
    grad_norm: float
    seconds: float
    stop_reason: str
    func_evals: int
    grad_evals: int
    history: list[tuple] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """The JSON contract of ``python -m mbt.toy`` (everything but the history)."""
        return {k: v for k, v in self.__dict__.items() if k != "history"}


def _make_optimizer(method: str, z: torch.Tensor, lr0: float, alpha: float, beta: float):
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if METHODS[method] is None:
        return torch.optim.SGD([z], lr=lr0)
    return BacktrackingGD([z], lr=lr0, alpha=alpha, beta=beta, mode=METHODS[method])


def run_toy(
    function: str,
    method: str,
    start: Sequence[float],
    *,
    alpha: float = 0.5,
    beta: float = 0.7,
    lr0: float = 1.0,
    max_iters: int = 1_000_000,
    grad_tol: float = 1e-10,
    record: bool = False,
    progress: bool = False,
) -> ToyResult:
    """Iterate ``method`` on ``function`` from ``start``; see the module docstring.


    Longer than 60 lines: one iteration loop over the paper's methods, with the stopping
    rules and the history recorded inline."""
    f = get_function(function)
    if len(start) != 2:
        raise ValueError(f"start must have 2 coordinates, got {list(start)}")
    if max_iters < 0 or grad_tol < 0:
        raise ValueError("max_iters and grad_tol must be >= 0")
    z = torch.tensor([float(s) for s in start], dtype=torch.float64, requires_grad=True)
    opt = _make_optimizer(method, z, lr0, alpha, beta)
    line_search = isinstance(opt, BacktrackingGD)

    def closure(backward: bool = True) -> torch.Tensor:
        if backward:
            z.grad = None
        value = f(z)
        if backward:
            value.backward()
        return value

    history: list[tuple] = []
    evals = grads = 0
    reason, n, lr = "max_iters", 0, 0.0
    tty = progress and sys.stderr.isatty()
    bar = tqdm(total=max_iters, disable=not tty, mininterval=1.0, unit="it",
               desc=f"{function} {method}", file=sys.stderr)
    t0 = time.perf_counter()
    while n < max_iters:
        loss = float(opt.step(closure).detach())
        n += 1
        if line_search:
            last = opt.last_search
            if last["bound_hit"] and last["lr"] == 0.0:
                # No Armijo step exists at float64 resolution: the point can never move
                # again. This no-op step is not counted as an iteration.
                n -= 1
                evals += last["func_evals"]
                reason = "stalled"
                break
            lr, g_norm, step_evals = last["lr"], last["grad_norm"], last["func_evals"]
        else:
            lr, g_norm, step_evals = lr0, float(z.grad.norm()), 1
        evals, grads = evals + step_evals, grads + 1
        # Two Python floats: cheaper than torch.isfinite(z).all() on every iteration.
        point = z.detach().tolist()
        if record:
            history.append((n, *point, loss, g_norm, lr, step_evals))
        if tty and n % 4096 == 0:
            bar.update(n - bar.n)
        if not (math.isfinite(loss) and math.isfinite(point[0]) and math.isfinite(point[1])):
            reason = "diverged"
            break
        if g_norm <= grad_tol:
            reason = "grad_tol"
            break
    seconds = time.perf_counter() - t0
    bar.update(n - bar.n)
    bar.close()
    if progress and not tty:
        rate = n / seconds if seconds > 0 else math.inf
        tqdm.write(f"{function} {method}: {n} iterations in {seconds:.1f} s ({rate:,.0f} it/s), "
                   f"{evals} f-evals, stop {reason}", file=sys.stderr)
    final = closure(backward=True)  # f and ||grad f|| at the point we report
    grad_norm = float(z.grad.norm()) if z.grad is not None else math.nan
    return ToyResult(
        function=function, method=method, iterations=n, point=z.detach().tolist(), lr=lr,
        f=float(final.detach()), grad_norm=grad_norm, seconds=round(seconds, 4), stop_reason=reason,
        func_evals=evals, grad_evals=grads, history=history,
    )
