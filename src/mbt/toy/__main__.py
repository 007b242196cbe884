"""``python -m mbt.toy``: one optimizer on one analytic function; Hydra app (conf/toy.yaml).

Example: ``python -m mbt.toy function=quartic method=unbounded start=[0.1,15]``.
The last line on stdout is one JSON object (see :meth:`mbt.toy.run.ToyResult.summary`).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from mbt.config import _unknown_keys, near_miss
from mbt.config_paths import CONF_DIR
from mbt.entry import one_line_errors
from mbt.writable import why_unwritable

from .functions import FUNCTIONS
from .run import HISTORY_COLUMNS, METHODS, run_toy

Function = Enum("Function", {k: k for k in FUNCTIONS})
Method = Enum("Method", {k: k for k in METHODS})


@dataclass
class ToyConfig:
    """Schema of conf/toy.yaml; OmegaConf rejects wrong names and types before any work."""

    function: Function = MISSING
    method: Method = MISSING
    start: list[float] = field(default_factory=lambda: [0.1, 15.0])
    alpha: float = 0.5
    beta: float = 0.7
    lr0: float = 1.0
    max_iters: int = 1_000_000
    grad_tol: float = 1e-10
    out: str | None = None


ConfigStore.instance().store(name="toy_schema", node=ToyConfig)


def write_history(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HISTORY_COLUMNS)
        writer.writerows(rows)
    return path


def _refuse(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _check(cfg: DictConfig) -> None:
    """What the schema cannot refuse, before the run: ``+key=`` overrides pass OmegaConf's
    struct check (``+max_iter=10`` would run 10^6 iterations), and NaN/inf are floats."""
    unknown = _unknown_keys(cfg, ToyConfig)
    if unknown:
        unknown = [k + (f" (did you mean {m}?)" if (m := near_miss(k, ToyConfig)) else "")
                   for k in unknown]
        _refuse(f"unknown config key(s) {', '.join(unknown)} (conf/toy.yaml does not define "
                f"them; a typo in a +key= override?)")
    if not all(math.isfinite(v) for v in cfg.start):
        _refuse(f"start must be finite, got {list(cfg.start)}")
    for name in ("lr0", "grad_tol", "alpha", "beta"):
        if not math.isfinite(cfg[name]):
            _refuse(f"{name} must be finite, got {cfg[name]}")
    unwritable = cfg.out is not None and why_unwritable(cfg.out)
    if unwritable:  # before the run: a 10^6-iteration run must not be lost at the end
        _refuse(f"cannot write out={cfg.out} ({unwritable})", code=1)


@one_line_errors  # unknown function/method, non-numeric values: one line, exit 2
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="toy")
def main(cfg: DictConfig) -> None:
    function, method = cfg.function.name, cfg.method.name
    _check(cfg)
    try:
        result = run_toy(
            function, method, list(cfg.start), alpha=cfg.alpha, beta=cfg.beta, lr0=cfg.lr0,
            max_iters=cfg.max_iters, grad_tol=cfg.grad_tol, record=cfg.out is not None,
            progress=True,  # a bar on a terminal, else one summary line on stderr
        )
    except ValueError as err:  # bad ranges (alpha, beta, lr0, start): one line, exit 2
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    summary = result.summary()
    if cfg.out is not None:
        stem = f"{function}_{method}"
        csv_path = write_history(Path(cfg.out) / f"{stem}.csv", result.history)
        summary["history_csv"] = str(csv_path)
        summary["config"] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
