"""The device path (scripts/device_sweep.sh): the cpu-protocol sweeps on a lent GPU must
fill the same cells as the sweeps here. No GPU needed: the plan and the run keys are
checked here; the launcher's slots in tests/test_launchers.py, the merge in
tests/test_ledger.py, the commit of a copy without .git in tests/test_train.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from mbt import ledger
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
    assert "protocol=full" in fig2b and "model.bn_init=legacy,torch seed=1,2,3,4,5,6,7" in fig2b
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


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock(1) (util-linux)")
def test_one_pass_in_a_copy_without_git_trains_and_brings_back_its_ledger(tmp_path,
                                                                          cifar10_root):
    """What the device tool runs, on this CPU: the script in a copy of the tree without .git,
    with a prepared commit, on fig3's sweep shrunk to a tiny model. The records name the
    prepared commit, clean, and come back in $OUT with nothing else but the two logs; a
    copy whose code differs from the commit is refused."""
    copy = tmp_path / "copy"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    for name in tracked:
        if (REPO_ROOT / name).is_file() and not name.startswith("results/"):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, copy / name)
    (copy / "results").mkdir(exist_ok=True)
    (copy / "results" / "ledger.jsonl").write_text("")
    code = sorted(str(p.relative_to(copy)) for top in ("src", "conf", "scripts")
                  for p in (copy / top).rglob("*") if p.is_file())
    code += ["Makefile", "pyproject.toml"]
    device = copy / ".device"
    (device / "data").mkdir(parents=True)
    (device / "data" / "cifar-10-batches-py").symlink_to(cifar10_root / "cifar-10-batches-py")
    commit = "ab" * 20
    (device / "source.env").write_text(f"MBT_SOURCE_COMMIT={commit}\n")
    (device / "source.files").write_text("".join(f"{n}\n" for n in sorted(code)))
    (device / "source.sha256").write_text("".join(
        f"{hashlib.sha256((copy / n).read_bytes()).hexdigest()}  {n}\n" for n in code))
    out = tmp_path / "out"
    tiny = ("model=tiny data.subset=null trainer.epochs=1 trainer.batch_size=16 "
            "trainer.max_steps_per_epoch=2 optim.builder.num_batches=2 trainer.amp_bf16=false "
            "trainer.channels_last=false")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MBT_", "WANDB"))}

    def sweep(work: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "scripts/device_sweep.sh", "--minutes", "5", "--jobs-per-gpu", "2",
             "--args", tiny, "fig3"], cwd=copy, capture_output=True, text=True, timeout=600,
            env={**env, "OUT": str(out), "PY": sys.executable, "CUDA_VISIBLE_DEVICES": "",
                 "MBT_DEVICE_WORK": str(tmp_path / work), "PYTHONPATH": ""})

    proc = sweep("work")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["device_sweep.log", "failures.log",
                                                     "ledger.jsonl"]
    records = list(ledger.read(out / "ledger.jsonl"))
    assert sorted(r["optim"] for r in records) == ["mbt_mmt", "mbt_nag"]
    assert {(r["git_commit"], r["git_dirty"], r["status"]) for r in records} == {
        (commit, False, "finished")}
    log = (out / "device_sweep.log").read_text()
    assert "2 new record(s)" in log and "fig3: 2 finished on CPU" in log

    (copy / "src" / "mbt" / "extra.py").write_text("x = 1\n")  # code the commit lacks
    shutil.rmtree(out)
    proc = sweep("work2")
    assert proc.returncode == 2
    assert "error: not training: this copy's code is not commit" in (out / "device_sweep.log"
                                                                      ).read_text()
    assert not (tmp_path / "work2" / "ledger.jsonl").exists()


def _make_with_fake_python(tmp_path, fake_python: str, target: str, *variables: str):
    """``make <target> PROTOCOL=cpu`` with ``fake_python`` (a bash script) as python; its
    log of the commands it was given is the returned path."""
    fake = tmp_path / "py"
    fake.write_text(fake_python)
    fake.chmod(0o755)
    log = tmp_path / "log"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-f", str(REPO_ROOT / "Makefile"), target,
         "PROTOCOL=cpu", "NO_INSTALL=1", f"PY={fake}", f"LEDGER={tmp_path / 'ledger.jsonl'}",
         "DATA_ROOT=/nowhere", *variables],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "LOG": str(log)})
    return proc, log


FAKE_PY = """#!/usr/bin/env bash
# Stands in for python: best_lr names two cells, training logs its arguments (the first
# cell fails), the report does nothing.
case "$2" in
  mbt.report.best_lr) printf 'optim=sgd optim.lr=0.1\\noptim=nag optim.lr=0.01\\n' ;;
  mbt.train) echo "$*" >> "$LOG"; case "$*" in *optim=sgd*) exit 1 ;; esac ;;
esac
exit 0
"""


@pytest.mark.parametrize("launcher", ["basic", "local_gpus"])
def test_the_seed_loop_runs_every_best_cell_even_after_one_fails(tmp_path, launcher):
    """reproduce-table2's seeds at each best start lr: one multirun per cell, each with
    seeds 1 and 2 (side by side under local_gpus); a failed cell does not stop the others,
    and the target fails at the end."""
    proc, log = _make_with_fake_python(tmp_path, FAKE_PY, "reproduce-table2",
                                       f"LAUNCHER={launcher}", "ARGS='notes=a b {} $$x'")
    assert proc.returncode != 0  # the sgd cell failed
    seeds = [line.split() for line in log.read_text().splitlines() if "seed=1,2" in line]
    assert sorted(" ".join(words[-2:]) for words in seeds) == [  # the cell's overrides last
        "optim=nag optim.lr=0.01", "optim=sgd optim.lr=0.1"]
    assert all("experiment=table2" in w and f"hydra/launcher={launcher}" in w for w in seeds)
    # ARGS reach every seed cell as written: spaces inside a quoted value, {} and $ too
    assert all("notes=a b {} $x" in " ".join(words) for words in seeds)
    jobs = "8" if launcher == "local_gpus" else "1"
    assert f"xargs -r -L 1 -P {jobs} " in proc.stdout


FAKE_OOD_PY = """#!/usr/bin/env bash
# Stands in for python: best_lr names one out-of-domain cell, or two CIFAR cells of which
# the recipe keeps SGD's; the text sweep fails; training logs its arguments.
case "$2" in
  mbt.report.best_lr) case "$*" in
    *out_of_domain*) echo 'experiment=out_of_domain_grid optim=nag optim.lr=0.1' ;;
    *) printf 'optim=sgd optim.lr=0.1\\noptim=adam optim.lr=0.001\\n' ;; esac ;;
  mbt.train) echo "$*" >> "$LOG"; case "$*" in *experiment=out_of_domain_text\\ *) exit 1 ;; esac ;;
  mbt.report) echo report >> "$LOG" ;;
esac
exit 0
"""


def test_reproduce_ood_runs_every_sweep_after_a_failed_one(tmp_path):
    """A failed text sweep stops none of the later sweeps (CIFAR autolr, the seed loops);
    the target fails at the end, before its report."""
    proc, log = _make_with_fake_python(tmp_path, FAKE_OOD_PY, "reproduce-ood")
    assert proc.returncode != 0
    runs = log.read_text().splitlines()
    experiments = [w.split("=", 1)[1] for line in runs for w in line.split()
                   if w.startswith("experiment=") and "seed=1,2" not in line]
    assert experiments == ["out_of_domain", "out_of_domain_grid", "out_of_domain_text",
                           "out_of_domain_text_grid", "autolr", "autolr_grid"]
    seeds = [line for line in runs if "seed=1,2" in line]
    assert len(seeds) == 2
    assert seeds[0].endswith("experiment=out_of_domain_grid optim=nag optim.lr=0.1")
    assert "experiment=autolr_grid" in seeds[1] and seeds[1].endswith("optim=sgd optim.lr=0.1")
    assert "report" not in runs


def test_status_launcher_names_the_toy_runs_and_runs_nothing(tmp_path):
    proc, log = _make_with_fake_python(tmp_path, 'echo "$*" >> "$LOG"\n', "reproduce-fig2a",
                                       "LAUNCHER=status")
    assert proc.returncode == 0, proc.stderr
    assert "status: a toy run (not a ledger cell) not run: scripts/reproduce_toy.py" \
        in proc.stdout
    assert not log.exists()  # python was never started


FAKE_GAP_PY = """#!/usr/bin/env bash
# Stands in for python: training logs its arguments, the momentum sweep fails.
echo "$*" >> "$LOG"
case "$*" in *reset_momentum*) exit 1 ;; esac
exit 0
"""


def test_reproduce_mbt_gap_runs_both_sweeps_and_only_under_cpu(tmp_path):
    proc, log = _make_with_fake_python(tmp_path, FAKE_GAP_PY, "reproduce-mbt-gap")
    assert proc.returncode != 0
    runs = log.read_text().splitlines()
    assert len(runs) == 2  # the NAG sweep ran after the failed one; no report
    assert "optim=mbt_mmt,mbt_nag optim.builder.reset_momentum=true,false seed=0,1,2" in runs[0]
    assert "optim=nag optim.lr=0.01,0.016 seed=0,1,2" in runs[1]
    assert all("experiment=mbt_gap" in r and "protocol=cpu" in r for r in runs)
    proc, _ = _make_with_fake_python(tmp_path, FAKE_GAP_PY, "reproduce-mbt-gap",
                                     "PROTOCOL=full")
    assert proc.returncode == 2
    assert "reproduce-mbt-gap is defined for PROTOCOL=cpu only" in proc.stderr
    assert len(log.read_text().splitlines()) == 2  # nothing more ran


def test_make_report_reads_the_committed_ledger_until_a_sweep_writes_its_own(tmp_path):
    def ledger_read(*variables: str) -> str:
        proc = subprocess.run(
            ["make", "--no-print-directory", "-n", "-f", str(REPO_ROOT / "Makefile"), "report",
             "NO_INSTALL=1", "PY=py", *variables],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
        return proc.stdout.split("--ledger ")[1].split()[0]

    assert ledger_read() == "results/ledger.jsonl"
    assert ledger_read("LEDGER=mine.jsonl") == "mine.jsonl"  # asked for: used, even if absent
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "ledger.jsonl").write_text("")
    assert ledger_read() == "runs/ledger.jsonl"
