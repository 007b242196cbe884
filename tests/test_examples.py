"""examples/ run as documented: in-process at CI size (fast), and as a user runs them
(``python examples/X.py``, a fresh process: integration)."""

from __future__ import annotations

import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# CI size: a few steps, 3 mini-batches per MBT search.
SMALL = {
    "plain_loop.py": ["--steps", "4", "--search-batches", "3"],
    "mbt_nag_schedule.py": ["--epochs", "2", "--steps", "2", "--search-batches", "3"],
    "lightning_two_way.py": ["--steps", "4", "--search-batches", "3"],
}


def main_of(name: str):
    return runpy.run_path(str(EXAMPLES / name), run_name="example")["main"]


def test_plain_loop_finds_an_lr_on_dict_batches_with_accumulation():
    lr = main_of("plain_loop.py")(SMALL["plain_loop.py"])
    assert math.isfinite(lr) and lr > 0


def test_mbt_nag_schedule_searches_every_epoch():
    lrs = main_of("mbt_nag_schedule.py")(SMALL["mbt_nag_schedule.py"])
    assert len(lrs) == 2 and all(math.isfinite(lr) and lr > 0 for lr in lrs)
    assert lrs[0] != 1e-2  # the search replaced the start lr


@pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated")  # Lightning's own code
def test_lightning_example_logs_the_taken_step_and_the_mbt_lr():
    pytest.importorskip("lightning")
    two_way, mbt = main_of("lightning_two_way.py")(SMALL["lightning_two_way.py"])
    assert 0 < two_way["train/lr"] <= 1.0  # a step taken, at most lr0
    assert mbt["mbt/lr"] > 0 and mbt["mbt/lr"] != 1e-2


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(SMALL))
def test_example_runs_as_a_script(name):
    if name.startswith("lightning"):
        pytest.importorskip("lightning")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *SMALL[name]], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "lr" in proc.stdout
