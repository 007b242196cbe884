"""mbt's submitit launchers (mbt.launchers, conf/hydra/launcher/*.yaml).

* LAUNCHER=local_gpus: on one machine with K GPUs a sweep runs K jobs at once, one GPU
  each. No GPU needed: the jobs only report the CUDA_VISIBLE_DEVICES they were given, on a
  machine that claims to have GPUs 3, 5 and 7.
* A relaunch submits only the cells not yet in the ledger (issue 16): the filter itself
  (``finished_cells``, in process), and a sweep through LAUNCHER=local_gpus. The ledger is
  written by real ``model=tiny`` runs (tests/clirun.py ``plumbing``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clirun import plumbing, run_module
from mbt import ledger
from mbt.config_paths import CONF_DIR

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

needs_flock = pytest.mark.skipif(shutil.which("flock") is None,
                                 reason="needs flock(1) (util-linux)")

APP = '''
import json, os, time
from pathlib import Path

import hydra


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    start = time.time()
    time.sleep(2)
    Path(cfg.out, f"{cfg.i}.json").write_text(json.dumps(
        {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}))


main()
'''


def _local_gpus_sweep(tmp_path: Path, jobs: int, **env: str) -> list[dict]:
    """APP's sweep of ``jobs`` jobs through LAUNCHER=local_gpus: each job's GPU and times."""
    (tmp_path / "app.py").write_text(APP)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "app.py", "-m", f"hydra.searchpath=[file://{CONF_DIR}]",
         "hydra/launcher=local_gpus", f"+out={out}", f"+i={','.join(map(str, range(jobs)))}",
         f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=tmp_path, env={**os.environ, "MBT_GPU_LOCK_DIR": str(tmp_path / "locks"), **env},
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(p.read_text()) for p in out.glob("*.json")]


def _beside(a: dict, jobs: list[dict]) -> list[dict]:
    """The jobs running at the moment ``a`` starts (``a`` included). Concurrency only grows
    when a job starts, so the largest of these over all jobs is the most that ever ran at
    once. (Counting every job whose interval overlaps ``a``'s counted two jobs that ran one
    after the other beside a long ``a`` as three at once, on a loaded CI machine.)"""
    return [b for b in jobs if b["start"] <= a["start"] < b["end"]]


@pytest.mark.integration
@needs_flock
def test_local_gpus_runs_one_job_per_gpu(tmp_path):
    jobs = _local_gpus_sweep(tmp_path, 6, CUDA_VISIBLE_DEVICES="3,5,7")
    assert len(jobs) == 6
    assert {j["gpu"] for j in jobs} == {"3", "5", "7"}  # one GPU each, every GPU used
    for a in jobs:
        running = _beside(a, jobs)
        assert len({b["gpu"] for b in running}) == len(running) <= 3  # never two on one GPU
    assert max(len(_beside(a, jobs)) for a in jobs) >= 2  # and they do run side by side


@pytest.mark.integration
@needs_flock
def test_jobs_per_gpu_shares_each_gpu_between_that_many_jobs(tmp_path):
    """MBT_JOBS_PER_GPU=2 on GPUs 3 and 5: up to 2 jobs on one GPU at a time, never 3."""
    jobs = _local_gpus_sweep(tmp_path, 8, CUDA_VISIBLE_DEVICES="3,5", MBT_JOBS_PER_GPU="2")
    assert len(jobs) == 8 and {j["gpu"] for j in jobs} == {"3", "5"}
    per_gpu = [sum(b["gpu"] == a["gpu"] for b in _beside(a, jobs)) for a in jobs]
    assert max(per_gpu) == 2  # two share a GPU, a third never joins them
    assert sorted(p.name for p in (tmp_path / "locks").iterdir()) == [
        "gpu-3.2.lock", "gpu-3.lock", "gpu-5.2.lock", "gpu-5.lock"]


# -- a relaunch submits only what is not in the ledger ----------------------------------
def _cell(root: Path, runs: Path, lr: float, *extra: str) -> list[str]:
    """The task overrides of one plumbing cell (what Hydra's sweeper hands the launcher)."""
    args = [a for a in plumbing(root, runs) if not a.startswith("optim.lr=")]
    return [*args, f"optim.lr={lr}", *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cifar10_root):
    """A ledger with two finished cells, both lr 0.05: one on the CIFAR-10 copy, one with
    no CIFAR under data.root, trained on the synthetic fallback set."""
    work = tmp_path_factory.mktemp("finished")
    runs, nowhere = work / "runs", work / "nowhere"
    args = [a for a in plumbing(cifar10_root, runs) if not a.startswith("data.root=")]
    proc = run_module("mbt.train", "-m", *args, f"data.root={cifar10_root},{nowhere}",
                      "data.synthetic_fallback=true", f"hydra.sweep.dir={work / 'first'}",
                      cwd=work, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list(ledger.read(runs / "ledger.jsonl"))
    assert len(records) == 2 and sum(r["synthetic"] for r in records) == 2  # both generated
    assert len({r["data"]["root"] for r in records}) == 2, records  # ...at two places
    return work, runs, nowhere


def _master(*hydra_overrides: str):
    """The multirun config and config loader a launcher is set up with."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from mbt.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return loader.load_configuration("train", list(hydra_overrides),
                                         run_mode=RunMode.MULTIRUN), loader


def test_finished_cells_are_those_in_the_ledger(finished, cifar10_root, monkeypatch):
    import mbt.run
    from mbt.launchers import finished_cells

    work, runs, nowhere = finished
    fallback = ("data.synthetic_fallback=true",)
    cells = [_cell(cifar10_root, runs, 0.05),           # 0: in the ledger
             _cell(cifar10_root, runs, 0.1),            # 1: not run
             _cell(nowhere, runs, 0.05, *fallback),     # 2: in the ledger (synthetic set)
             _cell(cifar10_root, runs, -1),             # 3: invalid: no key, submitted
             _cell(nowhere, runs, 0.1, *fallback),      # 4: not run
             _cell(nowhere, runs, 0.05),                # 5: no data, no fallback: submitted
             _cell(cifar10_root, runs, 0.05, "seed=1")]  # 6: not run
    reads = []
    load_dataset = mbt.run.load_dataset
    monkeypatch.setattr(mbt.run, "load_dataset",
                        lambda *a, **k: reads.append(a) or load_dataset(*a, **k))
    master, loader = _master(f"hydra.sweep.dir={work / 'again'}")

    done, ledgers = finished_cells(master, loader, cells, 10, "train")
    assert sorted(done) == [10, 12]  # job numbers start at initial_job_idx
    assert ledgers == [str(runs / "ledger.jsonl")]
    for num, ret in done.items():
        record = ret.return_value
        assert ledger.find(runs / "ledger.jsonl", record["run_key"]) == record
        assert ret.hydra_cfg.hydra.job.num == num and ret.overrides == cells[num - 10]
    assert done[12].return_value["synthetic"] and done[12].return_value["lr"] == 0.05
    # The data files of each (dataset, root, allow_partial) are read once for the sweep:
    # the copy (cells 0, 1, 6); nowhere (missing), then the generated set (cells 2, 4);
    # nowhere again for cell 5, which has no fallback. Cell 3 fails before any data.
    assert [Path(a[1]).name for a in reads] == [cifar10_root.name, "nowhere",
                                                 "synthetic-data", "nowhere"]

    # An lr search's key is another: none of these training records counts for it.
    assert finished_cells(master, loader, cells, 0, "lr_search")[0] == {}
    # trainer.device=auto as the job resolves it: data.pipeline defaults to `device` on a
    # GPU node, `dataloader` elsewhere, and the two have different keys.
    ran = done[10].return_value["config"]["data"]["pipeline"]
    same, other = ("cpu", "cuda") if ran == "dataloader" else ("cuda", "cpu")
    assert list(finished_cells(master, loader, cells[:1], 0, "train", job_device=same)[0]) == [0]
    assert finished_cells(master, loader, cells[:1], 0, "train", job_device=other)[0] == {}


def test_task_kind_and_job_device():
    import inspect

    import mbt.find_lr
    import mbt.train
    from mbt.launchers import SlurmSkipFinished, task_kind

    assert task_kind(inspect.unwrap(mbt.train.main)) == "train"
    assert task_kind(inspect.unwrap(mbt.find_lr.main)) == "lr_search"
    assert task_kind(lambda cfg: None) is None and task_kind(None) is None

    def device(**params) -> str:
        launcher = SlurmSkipFinished()
        launcher.params = params
        return launcher.job_device()

    assert device(gpus_per_node=1) == device(gres="gpu:a100:1") == "cuda"
    assert device(additional_parameters={"gpus-per-task": 1}) == "cuda"
    assert device(gpus_per_node=None, cpus_per_task=1) == device(gpus_per_node=0) == "cpu"


@pytest.mark.integration
@needs_flock
def test_relaunch_submits_only_the_cells_not_in_the_ledger(finished, cifar10_root):
    """LAUNCHER=local_gpus (submitit's local executor; no GPU here): a sweep of a finished
    and a new cell submits one job, for the new cell; run again, it submits none."""
    work, runs, _ = finished
    sweep_dir = work / "relaunch"
    args = [a for a in plumbing(cifar10_root, runs) if not a.startswith("optim.lr=")]
    argv = ["-m", *args, "optim.lr=0.05,0.1", "hydra/launcher=local_gpus",
            f"hydra.sweep.dir={sweep_dir}"]
    env = {"CUDA_VISIBLE_DEVICES": "", "MBT_GPU_LOCK_DIR": str(work / "locks")}
    line = f"cells already in {runs / 'ledger.jsonl'}: not submitted"

    first = run_module("mbt.train", *argv, cwd=work, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"1 of 2 {line}" in first.stderr
    jobs = sorted(sweep_dir.glob(".submitit/*/*_submitted.pkl"))
    assert len(jobs) == 1, jobs  # one job submitted: the new cell's
    assert (sweep_dir / "1" / "run_key").is_file() and not (sweep_dir / "0").exists()
    assert "#1 : " in first.stdout and "#0 : " not in first.stdout  # its own job number
    assert sorted(r["lr"] for r in ledger.read(runs / "ledger.jsonl")) == [0.05, 0.05, 0.1]

    again = run_module("mbt.train", *argv, cwd=work, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"2 of 2 {line}" in again.stderr
    assert sorted(sweep_dir.glob(".submitit/*/*_submitted.pkl")) == jobs  # none new
    assert len(list(ledger.read(runs / "ledger.jsonl"))) == 3


def test_skipped_cells_made_by_other_code_are_counted(monkeypatch):
    from types import SimpleNamespace

    from mbt import launchers, runinfo

    monkeypatch.setattr(runinfo, "code_since", lambda r: ("", r.get("git_commit") == "old"))
    cells = [SimpleNamespace(return_value={"git_commit": c}) for c in ("old", "new", "old")]
    assert launchers._stale(cells).startswith(" (2 of them made by other code than this ")
    assert "rerun=1" in launchers._stale(cells)
    assert launchers._stale(cells[1:2]) == ""


@pytest.mark.integration
def test_status_launcher_lists_the_missing_cells_and_runs_none(finished, cifar10_root):
    """LAUNCHER=status: the sweep's cells are looked up, never run. (lr 0.1 is the relaunch
    test's cell in this module's ledger; 0.3 and 0.4 are nobody's.)"""
    work, runs, _ = finished
    args = [a for a in plumbing(cifar10_root, runs) if not a.startswith("optim.lr=")]
    before = (runs / "ledger.jsonl").read_bytes()
    proc = run_module("mbt.train", "-m", *args, "optim.lr=0.05,0.3,0.4", "hydra/launcher=status",
                      f"hydra.sweep.dir={work / 'status'}", cwd=work, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("status:", "  "))]
    assert lines == [f"status: custom: 1 of 3 cells in {runs / 'ledger.jsonl'}; to run: 2",
                     "  optim.lr=0.3", "  optim.lr=0.4"]
    assert (runs / "ledger.jsonl").read_bytes() == before  # nothing trained
    assert not list((work / "status").glob("*/run_key"))
