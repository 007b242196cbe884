"""The console scripts (``[project.scripts]``). Each imports its command only when run, so
that an install without the ``train`` extra (``pip install mbt``: torch and ``mbt.optim``
only) answers with one ``error:`` line naming the extra instead of a traceback."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from mbt.config_paths import install_hint

EXTRA_HINT = install_hint("train")


def _command(script: str, module: str) -> Callable[[], object]:
    """``module.main``; a package missing from the install ends the process with one line.
    Every module-level import under src/mbt is core or in ``train``
    (tests/test_packaging.py), so a missing one here is the extra's."""
    try:
        return importlib.import_module(module).main
    except ModuleNotFoundError as err:
        if (err.name or "mbt").split(".")[0] == "mbt":
            raise
        print(f"error: {script} needs mbt's training and report stack, and {err.name!r} is "
              f"not installed: {EXTRA_HINT}", file=sys.stderr, flush=True)
        sys.exit(2)


def train() -> object:
    return _command("mbt-train", "mbt.train")()


def find_lr() -> object:
    return _command("mbt-find-lr", "mbt.find_lr")()


def toy() -> object:
    return _command("mbt-toy", "mbt.toy.__main__")()


def report() -> object:
    return _command("mbt-report", "mbt.report.__main__")()


def bench() -> object:
    return _command("mbt-bench", "mbt.bench.cli")()
