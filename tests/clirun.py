"""Running the entrypoints as a user does, and the smallest real run for plumbing tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_module(module: str, *args: str, cwd: Path, env=None,
               timeout=300) -> subprocess.CompletedProcess:
    """``python -m <module> args...`` in ``cwd``; stdout/stderr captured as text. ``env``
    adds variables; a value of None removes one."""
    merged = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          env={k: v for k, v in merged.items() if v is not None})


def plumbing(root: Path, runs: Path, *, epochs: int = 1) -> list[str]:
    """model=tiny on a CIFAR-layout set under ``root``: 2 steps of 16 images per epoch, SGD,
    no W&B. For tests of the machinery around training, not of the model."""
    return [f"data.root={root}", f"paths.runs={runs}", "data.num_workers=0", "model=tiny",
            "trainer.batch_size=16", f"trainer.epochs={epochs}", "trainer.progress=none",
            "trainer.max_steps_per_epoch=2", "data.augment=none", "optim=sgd", "optim.lr=0.05",
            "logger=none"]


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The stderr of a failed run, which must be exactly one ``error:`` line (log lines of
    the run before the failure aside)."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return errors[0]
