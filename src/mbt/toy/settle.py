"""When does a learning-rate sequence settle? The definitions live in :mod:`mbt.settle`,
shared by Figure 2(a) (these toy runs) and Figure 2(b) (``mbt.report``): one function, so
both panels measure the same thing. Re-exported here, where the toy runs import them."""

from __future__ import annotations

from mbt.settle import GRID_RTOL, iterations_to_within, settled_after, settling_iterate

__all__ = ["GRID_RTOL", "iterations_to_within", "settled_after", "settling_iterate"]
