"""Deterministic experiments on the paper's analytic test functions (Sec. 3.3-3.4)."""

from .functions import FUNCTIONS, get_function
from .run import METHODS, ToyResult, run_toy
from .settle import iterations_to_within, settling_iterate

__all__ = [
    "FUNCTIONS", "METHODS", "ToyResult", "get_function", "iterations_to_within", "run_toy",
    "settling_iterate",
]
