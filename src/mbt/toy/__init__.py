"""Deterministic experiments on the paper's analytic test functions (Sec. 3.3-3.4)."""

from .functions import FUNCTIONS, get_function
from .run import METHODS, ToyResult, run_toy

__all__ = ["FUNCTIONS", "METHODS", "ToyResult", "get_function", "run_toy"]
