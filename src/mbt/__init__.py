"""Backtracking gradient descent and the MBT learning-rate finders (Truong & Nguyen 2020)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mbt")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.1.0"  # keep equal to pyproject's version (tests/test_packaging.py)

__all__ = ["__version__"]
