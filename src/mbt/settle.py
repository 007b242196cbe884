"""When does a learning-rate sequence settle? (Sec. 4.1, Figure 2: "Two-way Backtracking
GD stabilises to Standard GD in only 6 iterates", "stabilising appears after 40 iterates").

The paper gives no definition; this module fixes one, and Figure 2(a) (the toy runs,
``scripts/reproduce_toy.py``) and Figure 2(b) (the network runs, ``mbt.report``) both use
it, so that the two panels measure the same thing:

* :func:`settling_iterate` - the first iterate after which the learning rate never
  changes again within the run. Iterate n (1-based) takes the step ``lrs[n - 1]`` from
  z_{n-1} to z_n; the answer k means ``lrs[k] == lrs[k + 1] == ... == lrs[-1]`` and
  ``lrs[k - 1]`` differs, i.e. iterates k+1, ..., N all use one step size: from iterate
  k on the method is Standard GD with that step. A constant sequence gives 0 (Standard
  GD, trivially). Only the run's own iterates count: a step that changes after the last
  recorded iterate is not seen, so callers should report the run length too.
* :func:`settled_after` - the same k, or None when the constant stretch at the end is
  shorter than ``min_tail`` iterates: how short a stretch is too short to call the run
  settled depends on why the run ended, so the caller states its rule:

  - a toy run cut off by ``max_iters`` could have changed its step at the next iterate:
    Figure 2(a) counts it as settled only after 20 equal steps (``MIN_TAIL`` in
    ``scripts/reproduce_toy.py``); a toy run that stopped by its own rule (converged,
    no Armijo step left) has nothing left to change, so any k counts;
  - a Figure 2(b) run's iterates are its epochs (full batch: one step each); it ends
    after the epochs it was configured for, not because a bound cut it short, and every
    iterate of it is recorded. It counts as settled when its last learning rate was used
    at least twice (``min_tail=2``: k <= N - 2); a run whose learning rate changes at its
    last iterate is *not settled*.
* :func:`iterations_to_within` - the first iterate from which a sequence stays within
  a tolerance of a target (e.g. f within 1e-10 of its limit).

"Never changes" allows a relative tolerance (default 1e-9, the grid tolerance of
:mod:`mbt.optim.armijo`): Two-way Backtracking GD starts each search from the previous
step, so the same grid value lr0 beta^k can come out as 0.08235429999999995 one time and
0.08235429999999996 the next; those are the same learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["GRID_RTOL", "iterations_to_within", "longest_constant_stretch", "lr_changes",
           "settled_after", "settling_iterate"]

GRID_RTOL = 1e-9


def _same(a: float, b: float, rtol: float) -> bool:
    # Equal within rtol of b (b is the later value: the last one, for settling).
    return abs(float(a) - float(b)) <= rtol * abs(float(b))


def settling_iterate(lrs: Sequence[float], *, rtol: float = GRID_RTOL) -> int:
    """The first iterate k after which the learning rate never changes (see module doc).

    Args:
        lrs: the step size of iterates 1, 2, ..., N in order.
        rtol: values within ``rtol * |last|`` of the last one count as equal.

    Returns:
        k in [0, N - 1]; 0 for an empty or constant sequence.
    """
    if rtol < 0:
        raise ValueError(f"Invalid rtol: {rtol!r} (expected >= 0)")
    if len(lrs) == 0:
        return 0
    last = float(lrs[-1])
    k = len(lrs) - 1
    while k > 0 and _same(lrs[k - 1], last, rtol):
        k -= 1
    return k


def settled_after(lrs: Sequence[float], *, min_tail: int,
                  rtol: float = GRID_RTOL) -> int | None:
    """:func:`settling_iterate` k when iterates k+1, ..., N (the constant stretch at the
    end) number at least ``min_tail``; None (not settled within the run) otherwise, and
    for an empty sequence. The module doc gives the rule Figures 2(a) and 2(b) use."""
    if min_tail < 1:
        raise ValueError(f"Invalid min_tail: {min_tail!r} (expected >= 1)")
    k = settling_iterate(lrs, rtol=rtol)
    return k if len(lrs) - k >= min_tail else None


def longest_constant_stretch(lrs: Sequence[float], *,
                             rtol: float = GRID_RTOL) -> tuple[int, int] | None:
    """(first, last) iterate, 1-based, of the longest stretch of iterates that use one
    learning rate (the latest of equally long ones); None for an empty sequence.

    A second reading of "stabilising" for runs that hold one lr for a long time and then
    change it again (Figure 2(b): Two-way's regrowth once the loss is near zero): such a
    run has no settling iterate within its length, but a stretch that starts where the
    settled runs' do. Ties go to the latest stretch, so that for a run whose last stretch
    is (one of) its longest, first - 1 is :func:`settling_iterate`."""
    if rtol < 0:
        raise ValueError(f"Invalid rtol: {rtol!r} (expected >= 0)")
    if len(lrs) == 0:
        return None
    best, start = (1, 1), 1
    for n in range(2, len(lrs) + 1):
        if not _same(lrs[n - 2], lrs[n - 1], rtol):
            start = n
        if n - start >= best[1] - best[0]:
            best = (start, n)
    return best


def lr_changes(lrs: Sequence[float], *, rtol: float = GRID_RTOL) -> int:
    """How many times the learning rate changes from one iterate to the next, with the
    tolerance :func:`settling_iterate` uses."""
    if rtol < 0:
        raise ValueError(f"Invalid rtol: {rtol!r} (expected >= 0)")
    return sum(not _same(a, b, rtol) for a, b in zip(lrs, lrs[1:]))


def iterations_to_within(values: Sequence[float], target: float, tol: float) -> int | None:
    """The first index n such that ``|values[m] - target| <= tol`` for every m >= n.

    With ``values[n] = f(z_n)`` (n = 0 the start) this is the number of iterations after
    which f stays within ``tol`` of ``target``. None when the last value is not within
    ``tol`` (not reached within the run).
    """
    if tol < 0:
        raise ValueError(f"Invalid tol: {tol!r} (expected >= 0)")
    n = len(values)
    while n > 0 and abs(float(values[n - 1]) - target) <= tol:
        n -= 1
    return None if n == len(values) else n
