"""Hydra multirun sweeps are idempotent, also through the submitit_local launcher, and a
failing cell of a submitit sweep fails the launcher (not only its own job's log)."""

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


@pytest.mark.integration
def test_failing_cell_of_a_submitit_sweep_fails_the_launcher(cifar10_root, tmp_path):
    # Each cell is a job of its own process: a failure used to end the job as a success,
    # leaving the launcher's exit status 0 with the error only in the job's log.
    args = ["hydra/launcher=submitit_local", f"data.root={cifar10_root}",
            f"paths.runs={tmp_path / 'runs'}", "data.subset=32", "trainer.batch_size=32",
            "trainer.epochs=1", "logger=none", "optim=sgd", "model=tiny", "optim.lr=0.1,-1",
            f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    proc = sweep(*args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: a cell of the sweep failed in its job:") and "lr" in last
    assert "optim.lr=-1" in proc.stderr  # Hydra's line naming the failed job's overrides
    assert [r["lr"] for r in ledger.read(tmp_path / "runs" / "ledger.jsonl")] == [0.1]
    job_logs = "".join(p.read_text() for p in (tmp_path / "multirun").rglob("*_log.err"))
    assert "error:" in job_logs and "Traceback" not in last
