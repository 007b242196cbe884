"""The device path (scripts/device_sweep.sh): the cpu-protocol sweeps on a lent GPU must
fill the same cells as the sweeps here. No GPU needed: the plan and the run keys are
checked here; the launcher's slots in tests/test_launchers.py, the merge in
tests/test_ledger.py, the commit of a copy without .git in tests/test_train.py."""

from __future__ import annotations

import subprocess

import pytest

from mbt.config_paths import REPO_ROOT
from mbt.run import run_identity

HEAD = {"n_train": 5170, "n_test": 1017, "files": "84a1cac196166435"}


def _plan(*groups: str) -> dict[str, list[str]]:
    proc = subprocess.run(["bash", "scripts/device_sweep.sh", "--plan", *groups], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    plan: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("# "):
            group = plan.setdefault(line[2:], [])
        else:
            group.append(line)
    return plan


def test_the_plan_is_the_make_targets_on_local_gpus_with_the_cpu_pipeline():
    plan = _plan("table2", "fig2b", "ood")
    assert list(plan) == ["table2", "fig2b", "ood"]
    train = [line for lines in plan.values() for line in lines if "-m mbt.train" in line]
    assert train and all("hydra/launcher=local_gpus" in t and "logger=none" in t for t in train)
    # CIFAR's sweeps (they take data.root) keep the CPU cells' run keys; Fashion-MNIST's and
    # the text's configs have no pipeline key to set.
    cifar = [t for t in train if "data.root=" in t]
    assert cifar and all("data.pipeline=dataloader" in t for t in cifar)
    assert not any("data.pipeline" in t for t in train if "data.root=" not in t)
    assert any("experiment=$e" in t for t in train if "data.root=" not in t)
    table2 = "\n".join(plan["table2"])
    assert "experiment=table2_mbt optim=mbt_mmt,mbt_nag" in table2  # beyond the paper's grid
    assert "mbt.report.best_lr" in table2  # and the seeds at each best start lr
    assert all("protocol=cpu" in t for t in plan["table2"] + plan["ood"] if "mbt.train" in t)
    fig2b = "\n".join(plan["fig2b"])
    assert "protocol=full" in fig2b and "model.bn_init=legacy,torch seed=0,1,2,3,4,5,6,7" in fig2b
    assert "--target out_of_domain" in "\n".join(plan["ood"])


def test_an_unknown_group_is_one_error_line():
    proc = subprocess.run(["bash", "scripts/device_sweep.sh", "--plan", "table9"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown argument 'table9'")


@pytest.mark.parametrize("cell", [
    ["experiment=table2", "optim=nag", "optim.lr=0.01", "seed=0"],
    ["experiment=table2_mbt", "optim=mbt_nag", "seed=1"],
    ["experiment=table3", "model=densenet121", "optim=mbt_mmt", "seed=0"],
])
def test_a_gpu_run_with_the_dataloader_pipeline_has_the_cpu_runs_key(compose, cell):
    """What makes a cell done on either machine done: trainer.device is not in the key, and
    PIPELINE=dataloader fixes the one setting that follows the device."""
    def key(*device: str) -> str:
        cfg = compose(*cell, "protocol=cpu", *device)
        return run_identity(cfg, fingerprint=HEAD)[0]

    cpu = key("trainer.device=cpu")
    assert key("trainer.device=cuda", "data.pipeline=dataloader") == cpu
    assert key("trainer.device=cuda") != cpu  # without it the GPU would run every cell again
