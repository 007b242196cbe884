"""The paper's published numbers (``results/paper/*.csv``, transcribed from Section 4; see
``results/paper/README.md`` for the text lines and the cells to treat with care)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mbt.config_paths import PAPER_DIR

from .common import lr_key

__all__ = ["CLAIMS", "LR_GRID", "TABLES", "load", "paper_dir"]

# Start learning rates of Tables 1-2, in the paper's column order.
LR_GRID = (1e2, 1e1, 1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
# table -> (cell columns, value column)
TABLES = {
    "table1": (("batch_size", "lr"), "search_lr"),
    "table2": (("optim", "lr"), "best_test_acc"),
    "table3": (("model", "dataset", "optim"), "best_test_acc"),
}
# The figures print no numbers; their claims, quoted (line = our text copy).
CLAIMS = {
    "fig2b": ("for CIFAR10 stabilising appears after 40 iterates (Sec. 4.1, l. 1398)", 40),
    "fig3": ("Obtained learning rates behave similarly to the common scheme of learning rate "
             "warming up and decay [...] The experiment also indicates that MBT-NAG "
             "stabilises better (Sec. 4.2, l. 1404-1408)", None),
}


def paper_dir() -> Path:
    """The CSVs shipped in the package (a wheel), else ``results/paper`` of the checkout."""
    return PAPER_DIR


def load(table: str, directory: str | Path | None = None) -> pd.DataFrame:
    """The cells of ``table`` in the paper's order: the cell columns, ``paper`` (float),
    ``paper_str`` (as printed) and, for Tables 1-2, ``lr_key`` for matching runs."""
    keys, value = TABLES[table]
    path = Path(directory or paper_dir()) / f"{table}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"paper values not found: {path}")
    frame = pd.read_csv(path, dtype=str)
    frame["paper_str"] = frame[value]
    frame["paper"] = frame[value].astype(float)
    if "lr" in keys:
        frame["lr"] = frame["lr"].astype(float)
        frame["lr_key"] = frame["lr"].map(lr_key)
    if "batch_size" in keys:
        frame["batch_size"] = frame["batch_size"].astype(int)
    return frame[[*keys, *(["lr_key"] if "lr" in keys else []), "paper", "paper_str"]]
