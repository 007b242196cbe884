"""Hydra multirun sweeps are idempotent, also through the submitit_local launcher."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mbt import ledger

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


def sweep(*overrides: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbt.train", "-m", *overrides], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WANDB_MODE": "offline"})


@pytest.mark.integration
def test_smoke_sweep_via_submitit_local_is_idempotent(cifar10_root, tmp_path):
    args = ["experiment=table2", "protocol=smoke", "hydra/launcher=submitit_local",
            f"data.root={cifar10_root}", f"paths.runs={tmp_path / 'runs'}", "data.subset=32",
            "trainer.batch_size=32", "logger=none", "optim=sgd", "model=tiny",  # 2 cells: 2 lrs
            f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    first = sweep(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    records = list(ledger.read(tmp_path / "runs" / "ledger.jsonl"))
    assert sorted(r["lr"] for r in records) == [0.001, 0.1]
    assert {r["protocol"] for r in records} == {"smoke"}
    assert {r["experiment"] for r in records} == {"table2"}
    # Each job has its own output directory.
    assert len({p.parent for p in (tmp_path / "multirun").rglob(".hydra/config.yaml")}) == 2

    again = sweep(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(ledger.read(tmp_path / "runs" / "ledger.jsonl"))) == 2
