"""Sweeps through a live SLURM controller: `make test-slurm` (marker `slurm`, not in `make test`).

Every job goes through the real ``hydra/launcher=slurm`` (submitit) with the CPU override of
docs/cluster.md (``gpus_per_node=null cpus_per_task=1 mem_gb=1``), trains the ``tiny``
model for 2-step epochs on a generated CIFAR-10 copy and writes under pytest's tmp dirs.
``scripts/slurm_cluster.sh`` brings up a one-node cluster when none answers; without one,
these tests skip.

SLURM holds a requeued job for about two minutes (``Reason=BeginTime``) before it may start
again; a helper thread releases this module's held jobs at once (``scontrol update
StartTime=now``), which changes when they restart, not how.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from statistics import median
from types import SimpleNamespace

import pytest

from mbt import ledger

pytestmark = pytest.mark.slurm
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

PREFIX = "mbt-test-"  # job names of this module; the releaser touches nothing else
CELL = ["model=tiny", "optim=sgd", "trainer.batch_size=16", "trainer.max_steps_per_epoch=2",
        "trainer.eval_every=1", "trainer.progress=none", "logger=none", "data.num_workers=0"]


def _cmd(*args: str, check: bool = True) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60).stdout


def _controller_up() -> bool:
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module", autouse=True)
def partition():
    if not _controller_up():
        pytest.skip("no SLURM controller answers `scontrol ping` (run `make test-slurm`)")
    default = [p[:-1] for p in _cmd("sinfo", "-h", "-o", "%P").split() if p.endswith("*")]
    return os.environ.get("MBT_SLURM_PARTITION") or (default or ["debug"])[0]


@pytest.fixture(scope="module", autouse=True)
def release_requeued(partition):
    """Let this module's requeued jobs start again without SLURM's ~2 min hold."""
    stop = threading.Event()

    def loop():
        while not stop.wait(0.5):
            out = _cmd("squeue", "-h", "-r", "-t", "PD", "-o", "%i|%r|%j", check=False)
            for line in out.splitlines():
                jid, reason, name = line.split("|", 2)
                if reason == "BeginTime" and name.startswith(PREFIX):
                    _cmd("scontrol", "update", f"JobId={jid}", "StartTime=now", check=False)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def _name(kind: str) -> str:
    return f"{PREFIX}{kind}-{uuid.uuid4().hex[:6]}"


def _argv(partition: str, name: str, workdir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "mbt.train", "-m", *CELL, "hydra/launcher=slurm",
            f"hydra.launcher.partition={partition}", "hydra.launcher.gpus_per_node=null",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=10", f"hydra.launcher.name={name}",
            f"hydra.sweep.dir={workdir / 'multirun' / name}", *overrides]


def _start(argv: list[str], workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    log = workdir / f"launcher-{len(list(workdir.glob('launcher-*')))}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _finish(proc: subprocess.Popen, name: str, timeout: float = 240) -> str:
    """Wait for the launcher and then for every job named ``name``; the launcher's output."""
    try:
        proc.wait(timeout=timeout)
    finally:
        proc.kill()
    deadline = time.time() + 60
    while _cmd("squeue", "-h", "--name", name, check=False).strip() and time.time() < deadline:
        time.sleep(0.5)
    return proc.log.read_text()


def _sacct(name: str) -> list[dict]:
    """This sweep's jobs (array tasks), one dict per job: JobID, State, Start, End."""
    out = _cmd("sacct", "-X", "-n", "--parsable2", "--name", name,
               "-o", "JobID,State,Start,End")
    rows = [dict(zip(("JobID", "State", "Start", "End"), line.split("|")))
            for line in out.splitlines() if line.strip()]
    return [r for r in rows if "[" not in r["JobID"]]


def _restarts(job_id: str) -> int:
    match = re.search(r"\bRestarts=(\d+)", _cmd("scontrol", "show", "job", job_id))
    return int(match.group(1)) if match else 0


def _logs(sweep_dir: Path, suffix: str = "err") -> dict[str, str]:
    return {p.name: p.read_text() for p in sweep_dir.glob(f".submitit/*/*_log.{suffix}")}


def _max_overlap(rows: list[dict]) -> int:
    """The most jobs running at one time: at some job's start (times in whole seconds, so a
    job that ends in the second another starts in is taken as ended)."""
    spans = [(datetime.fromisoformat(r["Start"]), datetime.fromisoformat(r["End"])) for r in rows]
    return max(sum(s <= s0 < e for s, e in spans) for s0, _ in spans)


@pytest.fixture(scope="module")
def sweep(partition, tmp_path_factory, cifar10_root):
    """4 cells, one of them invalid (lr -1), at most 2 at once: the main sweep of (a), (d), (e)."""
    work = tmp_path_factory.mktemp("slurm-sweep")
    name = _name("sweep")
    overrides = [f"data.root={cifar10_root}", f"paths.runs={work / 'runs'}", "trainer.epochs=3",
                 "optim.lr=0.1,0.05,0.02,-1", "hydra.launcher.array_parallelism=2"]
    proc = _start(_argv(partition, name, work, *overrides), work)
    out = _finish(proc, name)
    return SimpleNamespace(work=work, name=name, overrides=overrides, out=out, rc=proc.returncode,
                           dir=work / "multirun" / name, jobs=_sacct(name),
                           records=list(ledger.read(work / "runs" / "ledger.jsonl")))


def test_sweep_runs_each_cell_as_a_slurm_job(sweep):
    assert len(sweep.jobs) == 4, (sweep.jobs, sweep.out[-3000:])
    assert sorted(r["lr"] for r in sweep.records) == [0.02, 0.05, 0.1], sweep.out[-3000:]
    assert {r["status"] for r in sweep.records} == {"finished"}
    assert {r["epochs_completed"] for r in sweep.records} == {3}


def test_a_failing_cell_does_not_stop_the_others(sweep):
    errors = {k: v for k, v in _logs(sweep.dir).items() if re.search(r"error: .*optim\.lr", v)}
    assert len(errors) == 1, _logs(sweep.dir)
    assert len(sweep.records) == 3  # the three valid cells ran to the end
    # ...and the launcher says so: exit 1, its last line the failed cell's error.
    assert sweep.rc == 1, sweep.out[-3000:]
    assert "error: a cell of the sweep failed in its job:" in sweep.out.strip().splitlines()[-1]


def test_jobs_run_concurrently_up_to_array_parallelism(sweep):
    scripts = "".join(p.read_text() for p in sweep.dir.glob(".submitit/*/*submission*.sh"))
    assert "--array=0-3%2" in scripts
    assert _max_overlap(sweep.jobs) == 2, sweep.jobs


def test_relaunch_submits_no_job_for_a_cell_in_the_ledger(sweep, partition):
    """Relaunching the sweep: the launcher finds the three valid cells in the ledger and
    submits a job only for the invalid one (no run key: it is submitted, and fails, as
    before). Relaunching the three valid cells submits no job at all."""
    ckpts = {p: p.stat().st_mtime_ns for p in (sweep.work / "runs").glob("*/last.pt")}
    ledger_file = sweep.work / "runs" / "ledger.jsonl"
    name = _name("again")
    proc = _start(_argv(partition, name, sweep.work, *sweep.overrides), sweep.work)
    out = _finish(proc, name)
    assert proc.returncode == 1, out[-3000:]  # the invalid cell fails again
    assert f"3 of 4 cells already in {ledger_file}: not submitted" in out, out[-3000:]
    assert len(_sacct(name)) == 1, out[-3000:]  # the lr -1 cell's, as job number 3
    logs = _logs(sweep.work / "multirun" / name)
    assert [re.search(r"error: .*optim\.lr", t) is not None for t in logs.values()] == [True]
    assert (sweep.work / "multirun" / name / "3").is_dir()
    assert not (sweep.work / "multirun" / name / "0").exists()

    name = _name("valid")
    valid = [o if not o.startswith("optim.lr=") else "optim.lr=0.1,0.05,0.02"
             for o in sweep.overrides]
    proc = _start(_argv(partition, name, sweep.work, *valid), sweep.work)
    out = _finish(proc, name)
    assert proc.returncode == 0, out[-3000:]
    assert f"3 of 3 cells already in {ledger_file}: not submitted" in out, out[-3000:]
    assert _sacct(name) == [] and not (sweep.work / "multirun" / name / ".submitit").exists()
    assert len(list(ledger.read(ledger_file))) == 3
    assert {p: p.stat().st_mtime_ns for p in ckpts} == ckpts and len(ckpts) == 3


@pytest.fixture(scope="module")
def timeout_sweep(partition, sweep, tmp_path_factory, cifar10_root):
    """(c), started early to overlap (b): one cell with a 1-minute time limit and about
    75 s of training. SLURM sends submitit's USR2 29-59 s into each attempt (it checks
    limits every 30 s), submitit requeues the job, the run resumes from its checkpoint."""
    per_epoch = median(t for r in sweep.records for t in r["history"]["epoch_time"])
    epochs = min(3000, max(150, math.ceil(75 / per_epoch)))
    work = tmp_path_factory.mktemp("slurm-timeout")
    name = _name("timeout")
    argv = _argv(partition, name, work, f"data.root={cifar10_root}", f"paths.runs={work}",
                 f"trainer.epochs={epochs}", "optim.lr=0.05", "hydra.launcher.timeout_min=1",
                 "hydra.launcher.signal_delay_s=1", "hydra.launcher.max_num_timeout=6")
    return SimpleNamespace(proc=_start(argv, work), name=name, work=work, epochs=epochs,
                           per_epoch=per_epoch)


def test_requeued_job_resumes_and_matches_an_uninterrupted_run(
        partition, tmp_path, cifar10_root, timeout_sweep):
    """Cell 0 is requeued (`scontrol requeue`) after its first checkpoint; cell 1 is the
    same config with its own runs dir and ledger, never interrupted."""
    name, a, b = _name("requeue"), tmp_path / "a", tmp_path / "b"
    proc = _start(_argv(partition, name, tmp_path, f"data.root={cifar10_root}",
                        "trainer.epochs=200", "optim.lr=0.05", f"paths.runs={a},{b}"), tmp_path)
    deadline = time.time() + 120
    while not list(a.glob("*/last.pt")):
        assert proc.poll() is None and time.time() < deadline, "cell 0 never checkpointed"
        time.sleep(0.1)
    job = next(j for j in _cmd("squeue", "-h", "-r", "--name", name, "-o", "%i").split()
               if j.endswith("_0"))
    _cmd("scontrol", "requeue", job)
    assert not (a / "ledger.jsonl").exists(), "cell 0 finished before the requeue"
    out = _finish(proc, name)
    assert proc.returncode == 0, out[-3000:]
    assert _restarts(job) == 1
    assert any("resuming at epoch" in t for t in _logs(tmp_path / "multirun" / name).values())
    (ra,), (rb,) = ledger.read(a / "ledger.jsonl"), ledger.read(b / "ledger.jsonl")
    assert ra["run_key"] == rb["run_key"] and ra["epochs_completed"] == 200
    assert ra["best_test_acc"] == rb["best_test_acc"]
    for col in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert ra["history"][col] == rb["history"][col], col


def test_job_past_its_time_limit_is_resubmitted_and_finishes(timeout_sweep):
    t = timeout_sweep
    out = _finish(t.proc, t.name, timeout=420)
    assert t.proc.returncode == 0, out[-3000:]
    (job,) = _sacct(t.name)
    assert job["State"] == "COMPLETED"
    assert _restarts(job["JobID"]) >= 1, f"{t.epochs} epochs of ~{t.per_epoch:.3f} s: no timeout"
    assert any("timed-out" in text for text in _logs(t.work / "multirun" / t.name).values())
    (record,) = ledger.read(t.work / "ledger.jsonl")
    assert record["status"] == "finished" and record["epochs_completed"] == t.epochs
