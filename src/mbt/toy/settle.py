"""When does a learning-rate sequence settle? (Sec. 4.1, Figure 2: "Two-way Backtracking
GD stabilises to Standard GD in only 6 iterates", "stabilising appears after 40 iterates").

The paper gives no definition; these helpers fix one so that Figure 2(a) (the toy runs)
and Figure 2(b) (the network run) measure the same thing:

* :func:`settling_iterate` - the first iterate after which the learning rate never
  changes again within the run. Iterate n (1-based) takes the step ``lrs[n - 1]`` from
  z_{n-1} to z_n; the answer k means ``lrs[k] == lrs[k + 1] == ... == lrs[-1]`` and
  ``lrs[k - 1]`` differs, i.e. iterates k+1, ..., N all use one step size: from iterate
  k on the method is Standard GD with that step. A constant sequence gives 0 (Standard
  GD, trivially). Only the run's own iterates count: a step that changes after the last
  recorded iterate is not seen, so callers should report the run length too.
* :func:`iterations_to_within` - the first iterate from which a sequence stays within
  a tolerance of a target (e.g. f within 1e-10 of its limit).

"Never changes" allows a relative tolerance (default 1e-9, the grid tolerance of
:mod:`mbt.optim.armijo`): Two-way Backtracking GD starts each search from the previous
step, so the same grid value lr0 beta^k can come out as 0.08235429999999995 one time and
0.08235429999999996 the next; those are the same learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["iterations_to_within", "settling_iterate"]

GRID_RTOL = 1e-9


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
    while k > 0 and abs(float(lrs[k - 1]) - last) <= rtol * abs(last):
        k -= 1
    return k


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
