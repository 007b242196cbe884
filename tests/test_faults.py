"""Faults a user hits, reproduced as they would hit them (issues 12 and 26; docs/reliability.md).

Each test names the fault and what the project promises for it. Runs use ``model=tiny``
on a small CIFAR-layout set, so the machinery (ledger, checkpoints, locks, reports) is what
is tested. Tests that mount a tmpfs need root and skip elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clirun import one_error_line, plumbing, run_module
from mbt import checkpoint, ledger
from mbt.data.cifar import DataError, load_cifar
from mbt.data.synthetic import write_cifar
from mbt.entry import run_and_print
from mbt.report.__main__ import main as report_main
from mbt.train import train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *options: str):
    """A small tmpfs at ``path`` (root only; skips the test elsewhere)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join([f"size={size}", *options])
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(directory: Path, leave: int) -> None:
    """Fill the file system of ``directory`` until about ``leave`` bytes are free."""
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    with open(directory / "filler", "wb") as fh:
        fh.write(b"\0" * max(free - leave, 0))


# --- 1. a full disk never tears the ledger --------------------------------------------------

def test_full_ledger_disk_leaves_the_ledger_whole_and_exits_nonzero(compose, cifar10_root, tmp_path,
                                                                      monkeypatch, capsys):
    ledger_path = tmp_path / "ledger.jsonl"
    ledger.append(ledger_path, {"run_key": "earlier", "status": "finished"})
    before = ledger_path.read_bytes()
    real_write = ledger.os.write

    def disk_fills_during_the_record(fd, b):  # ENOSPC: part of the line gets written
        return real_write(fd, b[:100] if b.lstrip().startswith(b"{") else b)

    monkeypatch.setattr(ledger.os, "write", disk_fills_during_the_record)
    cfg = compose(*plumbing(cifar10_root, tmp_path / "runs"), f"paths.ledger={ledger_path}")
    with pytest.raises(SystemExit) as stop:
        run_and_print(train, cfg)
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: could not append to the ledger") and "unchanged" in err[-1]
    assert ledger_path.read_bytes() == before  # no torn line
    monkeypatch.undo()
    record = train(cfg)  # the rerun trains nothing new: the checkpoint holds the finished run
    assert [json.loads(line)["run_key"] for line in _lines(ledger_path)] == ["earlier",
                                                                            record["run_key"]]


@pytest.mark.integration
def test_full_tmpfs_is_found_before_training(cifar10_root, tmp_path):
    with tmpfs(tmp_path / "small", "64k") as small:
        _fill(small, leave=0)
        proc = run_module("mbt.train", *plumbing(cifar10_root, tmp_path / "runs"),
                          f"paths.ledger={small}/ledger.jsonl", cwd=tmp_path, timeout=120)
        assert proc.returncode == 1
        line = one_error_line(proc)
        assert "paths.ledger" in line and "No space left" in line
        assert not list((tmp_path / "runs").glob("*/last.pt")), "nothing trained"


# --- 2. run identity includes the data --------------------------------------------------------

def test_partial_copy_never_satisfies_the_full_cell_but_a_moved_copy_does(compose, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    write_cifar(full, "cifar10", n_train=64, n_test=32, seed=0)
    shutil.copytree(full, part)
    (part / "cifar-10-batches-py" / "data_batch_5").unlink()  # a partial copy
    runs = tmp_path / "runs"
    on_part = train(compose(*plumbing(part, runs), "data.allow_partial=true"))
    on_full = train(compose(*plumbing(full, runs)))
    assert on_part["run_key"] != on_full["run_key"]
    assert on_part["data"]["fingerprint"]["n_train"] < on_full["data"]["fingerprint"]["n_train"]
    moved = tmp_path / "moved"
    shutil.copytree(full, moved)
    again = train(compose(*plumbing(moved, runs)))
    assert again["run_key"] == on_full["run_key"]
    assert len(_lines(runs / "ledger.jsonl")) == 2


def test_migration_rekeys_old_records_to_the_key_a_rerun_would_use(compose, cifar10_root, tmp_path):
    from mbt.ledger_migrate import migrate

    record = train(compose(*plumbing(cifar10_root, tmp_path / "runs")))
    old = {k: v for k, v in record.items() if k != "key_schema"}
    old["run_key"] = "resnet-old-style-key"
    old["data"] = {k: v for k, v in record["data"].items() if k != "fingerprint"}
    path = tmp_path / "old.jsonl"
    ledger.append(path, old)
    counts = migrate(path, notice=lambda m: None)
    assert counts["migrated"] == 1
    assert migrate(path, notice=lambda m: None)["migrated"] == 0  # idempotent
    new = list(ledger.read(path))[-1]
    assert new["run_key"] == record["run_key"] and new["migrated_from"] == "resnet-old-style-key"
    assert _lines(path)[0] == json.dumps(old, sort_keys=True)  # the old line is untouched


# --- 3. two sweeps on one ledger --------------------------------------------------------------

@pytest.mark.integration
def test_second_process_on_the_same_cell_waits_then_skips(compose, cifar10_root, tmp_path):
    import fcntl

    from mbt.run import run_identity

    args = plumbing(cifar10_root, tmp_path / "runs")
    key, _ = run_identity(compose(*args))
    lock_path = tmp_path / "runs" / key / "lock"
    lock_path.parent.mkdir(parents=True)
    with open(lock_path, "a") as held:  # "the first sweep" is running this cell
        fcntl.flock(held, fcntl.LOCK_EX)
        second = subprocess.Popen([sys.executable, "-m", "mbt.train", *args], cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = ""
        deadline = time.time() + 120  # until the second has reached the lock and waits
        while time.time() < deadline and second.poll() is None \
                and "another process is running this cell" not in seen:
            seen += _read_ready(second)
        assert second.poll() is None, f"the second process did not wait: {seen}"
        # The first finishes the cell: its record reaches the ledger, then it lets go.
        train(compose(*args, "paths.runs=" + str(tmp_path / "first")))
        first_record = json.loads(_lines(tmp_path / "first" / "ledger.jsonl")[0])
        ledger.append(tmp_path / "runs" / "ledger.jsonl", first_record)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, seen + err
    assert "another process is running this cell" in seen and "not training again" in err
    assert len(_lines(tmp_path / "runs" / "ledger.jsonl")) == 1


def _read_ready(proc: subprocess.Popen) -> str:
    """What ``proc`` wrote to stderr, if anything arrives within 0.1 s, else ''. Read from
    the file descriptor: ``readline`` on the text wrapper can pull the next lines into its
    buffer, where ``select`` no longer sees them (the wait notice, printed right after the
    run folder line, was then missed)."""
    import os
    import select

    ready, _, _ = select.select([proc.stderr], [], [], 0.1)
    return os.read(proc.stderr.fileno(), 65536).decode(errors="replace") if ready else ""


# --- 4/5. reports never destroy or double-count results -------------------------------------

def _search(batch, lr, value, *, protocol="full", key=None, seed=0) -> dict:
    return {"kind": "lr_search", "key_schema": ledger.KEY_SCHEMA, "status": "finished",
            "run_key": key or f"s-{batch}-{lr}-{protocol}-{seed}", "experiment": "table1",
            "protocol": protocol, "model": "resnet18", "dataset": "cifar10", "optim": "mbt_gd",
            "lr": lr, "batch_size": batch, "seed": seed, "search_lr": value,
            "search_mean_lr": value * 10, "func_evals": 40, "seconds": 1.0,
            "data": {"num_train": 50000, "num_test": 10000, "num_classes": 10}}


def test_report_with_a_missing_ledger_is_an_error_naming_it(tmp_path, capsys):
    out = tmp_path / "results"
    assert report_main(["all", "--ledger", str(tmp_path / "nope.jsonl"), "--out", str(out)]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
    assert not out.exists()


def test_report_refuses_to_replace_results_with_fewer_runs(tmp_path, capsys):
    big, small, out = tmp_path / "big.jsonl", tmp_path / "small.jsonl", tmp_path / "results"
    for r in (_search(200, 0.01, 0.012), _search(12, 100.0, 0.004)):
        ledger.append(big, r)
    ledger.append(small, _search(200, 0.01, 0.02))
    assert report_main(["table1", "--ledger", str(big), "--out", str(out)]) == 0
    committed = (out / "table1.md").read_text()
    assert report_main(["table1", "--ledger", str(small), "--out", str(out)]) == 2
    assert "not replacing it" in capsys.readouterr().err
    assert (out / "table1.md").read_text() == committed
    assert report_main(["table1", "--ledger", str(small), "--out", str(out), "--force"]) == 0
    assert (out / "table1.md").read_text() != committed


def test_lower_protocol_never_overwrites_and_a_cell_counts_once(tmp_path, caplog):
    path, out = tmp_path / "ledger.jsonl", tmp_path / "results"
    ledger.append(path, _search(200, 0.01, 0.012, key="old"))
    ledger.append(path, _search(200, 0.01, 0.014, key="rerun"))  # same cell + seed
    assert report_main(["table1", "--ledger", str(path), "--out", str(out)]) == 0
    assert "counted once, from rerun; not counted: old" in caplog.text
    rows = (out / "table1.csv").read_text().splitlines()
    cell = next(r for r in rows if r.startswith("200,1e-2"))
    assert ",1," in cell and "0.014" in cell  # n = 1, the newest
    full_md = (out / "table1.md").read_text()
    ledger.append(path, _search(200, 0.01, 0.5, protocol="smoke"))
    ledger.append(path, _search(12, 0.01, 0.5, protocol="smoke"))
    assert report_main(["table1", "--ledger", str(path), "--out", str(out),
                        "--protocol", "smoke"]) == 0
    assert (out / "table1.md").read_text() == full_md
    assert "smoke" in (out / "smoke" / "table1.md").read_text()


def test_report_skips_bad_lines_and_old_schema_records_and_says_so(tmp_path, capsys, caplog):
    path, out = tmp_path / "ledger.jsonl", tmp_path / "results"
    ledger.append(path, _search(200, 0.01, 0.012))
    with path.open("a") as fh:
        fh.write('"a string"\n')
        fh.write(json.dumps({**_search(12, 0.01, 0.01, key="strs"), "search_lr": "0.01"}) + "\n")
        fh.write(json.dumps({k: v for k, v in _search(25, 0.01, 0.01, key="v1").items()
                             if k != "key_schema"}) + "\n")
    assert report_main(["table1", "--ledger", str(path), "--out", str(out)]) == 0
    assert "line 2: not a JSON object" in caplog.text
    assert "line 3: search_lr is str" in caplog.text
    assert "skipped 1 record of an older key schema" in caplog.text
    assert "ledger_migrate" in caplog.text


# --- 6. checkpoints on a failing disk ---------------------------------------------------------

def test_failed_checkpoint_save_leaves_no_temp_file_and_says_why(tmp_path, monkeypatch):
    def full_disk(obj, fh):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(checkpoint.CheckpointError, match="No space left"):
        checkpoint.save(tmp_path, {"epoch": 1})
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_are_removed_at_startup(compose, cifar10_root, tmp_path, capsys):
    cfg = compose(*plumbing(cifar10_root, tmp_path / "runs", epochs=2), "trainer.stop_after=1")
    key = train(cfg)["run_key"]
    stale = tmp_path / "runs" / key / ".last.pt.12345.tmp"
    stale.write_bytes(b"x" * 1000)
    train(compose(*plumbing(cifar10_root, tmp_path / "runs", epochs=2)))
    assert not stale.exists()
    assert "stale temporary file" in capsys.readouterr().err


@pytest.mark.integration
def test_read_only_runs_directory_is_found_before_training(cifar10_root, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", "ro") as ro:
        proc = run_module("mbt.train", *plumbing(cifar10_root, ro / "runs"),
                          f"paths.ledger={tmp_path}/ledger.jsonl", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "paths.runs" in one_error_line(proc)
    assert "Read-only" in proc.stderr


# --- 7. W&B with credentials and no network ---------------------------------------------------

@pytest.mark.integration
def test_wandb_without_network_falls_back_to_offline_in_bounded_time(cifar10_root, tmp_path):
    env = {"WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9",
           "WANDB_MODE": None}
    args = [a for a in plumbing(cifar10_root, tmp_path / "runs") if a != "logger=none"]
    t0 = time.perf_counter()
    proc = run_module("mbt.train", *args, "logger=wandb", "logger.mode=online",
                      "logger.init_timeout=5", "--json", cwd=tmp_path, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "logging offline" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["wandb"]["mode"] == "offline"
    assert time.perf_counter() - t0 < 120


# --- 8. a CIFAR pickle cannot run code -------------------------------------------------------

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_cifar_pickle_is_refused_without_running(tmp_path):
    root = tmp_path / "evil"
    write_cifar(root, "cifar10", n_train=16, n_test=16, seed=0)
    marker = tmp_path / "pwned"
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": _Payload(marker), "labels": [0]}))
    with pytest.raises(DataError, match="refusing to load global") as err:
        load_cifar("cifar10", root, allow_partial=True)
    assert "\n" not in str(err.value)
    assert not marker.exists()


# --- 9. one invalid cell does not abort a sweep ----------------------------------------------

@pytest.mark.integration
def test_invalid_cell_is_skipped_and_the_sweep_goes_on(cifar10_root, tmp_path):
    proc = run_module("mbt.train", "--multirun", *plumbing(cifar10_root, tmp_path / "runs"),
                      "optim.lr=0.05,-1,0.02", f"hydra.sweep.dir={tmp_path}/multirun",
                      cwd=tmp_path, timeout=300)
    assert proc.returncode == 1
    records = [json.loads(line) for line in _lines(tmp_path / "runs" / "ledger.jsonl")]
    assert sorted(r["lr"] for r in records) == [0.02, 0.05]
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith("error: 1 cell(s) of the sweep failed") and "optim.lr=-1" in summary


# --- 10/11. one-line errors and nonsense refused -----------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize(("override", "needle"), [
    ("trainer.device=cuda", "CUDA is not available"),
    ("optim.lr=inf", "finite"),
    ("optim.lr=nan", "finite"),
    ("+trainer.foo=1", "unknown config key(s) trainer.foo"),
    ("optim=two_way_gd optim.builder.alpha=2", "alpha"),
])
def test_nonsense_is_one_line_before_any_data_is_read(tmp_path, override, needle):
    # data.root points nowhere: an error about the data would mean the check came too late.
    proc = run_module("mbt.train", *override.split(), f"data.root={tmp_path}/nowhere",
                      f"paths.runs={tmp_path}/runs", "logger=none", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert needle in line and "nowhere" not in line


def test_checkpoint_without_model_falls_back_and_resume_names_the_file(compose, cifar10_root,
                                                                      tmp_path, capsys):
    over = plumbing(cifar10_root, tmp_path / "runs", epochs=3)
    key = train(compose(*over, "trainer.stop_after=2"))["run_key"]
    last = tmp_path / "runs" / key / "last.pt"
    state = torch.load(last, weights_only=True)
    del state["model"]
    torch.save(state, last)
    capsys.readouterr()
    record = train(compose(*over))
    err = capsys.readouterr().err
    assert "no 'model'" in err and "falling back to prev.pt" in err
    assert f"resuming at epoch 2 from {tmp_path / 'runs' / key / 'prev.pt'}" in err
    assert record["epochs_completed"] == 3


@pytest.mark.integration
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_or_sigterm_is_one_line_saying_how_to_resume(cifar10_root, tmp_path, signum,
                                                             code):
    # Far more epochs than it can finish: the signal always lands mid-run.
    args = [*plumbing(cifar10_root, tmp_path / "runs", epochs=100_000), "trainer.eval_every=0"]
    # A job started in the background by a non-interactive shell (CI) inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler: restore the default,
    # as a terminal would have it.
    proc = subprocess.Popen([sys.executable, "-m", "mbt.train", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list((tmp_path / "runs").glob("*/last.pt")) and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=120)
    finally:  # never leave a 100 000-epoch run behind when the test fails
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert last.startswith("interrupted") and "run the same command again to resume" in last


@pytest.mark.integration
@pytest.mark.parametrize(("override", "needle"), [
    ("function=foo", "expected one of"),
    ("method=bar", "expected one of"),
    ("lr0=abc", "could not be converted"),
    ("start=[a,1]", "could not be converted"),
    ("start=[nan,1]", "start must be finite"),
    ("start=[1,-inf]", "start must be finite"),
    ("+max_iter=10", "max_iter (did you mean max_iters?)"),  # a typo of max_iters
    ("lr0=nan", "lr0 must be finite"),
    ("grad_tol=inf", "grad_tol must be finite"),
])
def test_toy_cli_nonsense_is_one_line(tmp_path, override, needle):
    args = [override] if override.startswith(("function", "method")) else \
        ["function=quartic", "method=backtracking", override]
    proc = run_module("mbt.toy", *args, "max_iters=3", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert needle in one_error_line(proc)


# --- issue 26: faults of the second audit ------------------------------------------------------

def _strict(line: str) -> dict:
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(line, parse_constant=refuse)


def test_a_diverged_record_is_strict_json_and_old_nan_lines_read_as_before(tmp_path):
    path = tmp_path / "ledger.jsonl"
    nan, inf = float("nan"), float("inf")
    old = {"run_key": "old", "status": "diverged", "best_test_acc": nan,
           "history": {"train_loss": [2.3, nan]}}
    with path.open("w") as fh:  # as records were written before: NaN, not JSON
        fh.write(json.dumps(old, allow_nan=True) + "\n")
    ledger.append(path, {"run_key": "new", "status": "diverged", "best_test_acc": nan,
                         "history": {"train_loss": [2.3, inf, -inf], "test_acc": [10.0, nan]}})
    new = _strict(_lines(path)[1])
    assert new["best_test_acc"] is None
    assert new["history"] == {"train_loss": [2.3, None, None], "test_acc": [10.0, None]}
    first, second = ledger.read(path)
    assert first["best_test_acc"] != first["best_test_acc"]  # still NaN, as it was read
    assert second["run_key"] == "new"


def test_a_non_utf8_line_is_skipped_by_report_train_and_migrate(tmp_path, caplog):
    from mbt.ledger_migrate import migrate

    path, out = tmp_path / "ledger.jsonl", tmp_path / "results"
    ledger.append(path, _search(200, 0.01, 0.012))
    with path.open("ab") as fh:
        fh.write(b'{"run_key": "caf\xe9", "status": "finished"}\n')
    ledger.append(path, _search(12, 0.01, 0.01, key="after"))
    assert report_main(["table1", "--ledger", str(path), "--out", str(out)]) == 0
    assert f"{path} line 2: not UTF-8" in caplog.text
    assert ledger.find(path, "after")["run_key"] == "after"  # what training looks up
    assert migrate(path, notice=lambda m: None)["current"] == 2


@pytest.mark.parametrize(("edit", "why"), [
    (lambda r: r.pop("optim"), "no optim"),
    (lambda r: r.update(lr=None), "no lr"),
    (lambda r: r.update(batch_size=None), "no batch_size"),
    (lambda r: r.update(model=None), "no model"),
])
def test_a_hand_edited_record_is_refused_in_one_warning(tmp_path, caplog, edit, why):
    path, out = tmp_path / "ledger.jsonl", tmp_path / "results"
    good = _search(200, 0.01, 0.012)
    bad = _search(12, 0.01, 0.01, key="edited")
    edit(bad)
    for r in (good, bad):
        ledger.append(path, r)
    assert report_main(["table1", "--ledger", str(path), "--out", str(out)]) == 0
    warned = [m for m in caplog.messages if "line 2" in m]
    assert len(warned) == 1 and why in warned[0] and "edited" in warned[0]
    assert "200" in (out / "table1.md").read_text()


def test_two_runs_directories_on_one_ledger_train_a_cell_once(compose, cifar10_root, tmp_path,
                                                             monkeypatch, capsys):
    import threading

    from mbt import train as train_module

    shared = f"paths.ledger={tmp_path / 'ledger.jsonl'}"
    first = compose(*plumbing(cifar10_root, tmp_path / "runs-a"), shared)
    second = compose(*plumbing(cifar10_root, tmp_path / "runs-b"), shared)
    inside, build = threading.Event(), train_module._build

    def slow_first_build(run):  # the first process is mid-run when the second starts
        if threading.current_thread() is not threading.main_thread():
            inside.set()
            time.sleep(1.0)
        return build(run)

    monkeypatch.setattr(train_module, "_build", slow_first_build)
    results = {}
    worker = threading.Thread(target=lambda: results.update(first=train(first)))
    worker.start()
    assert inside.wait(60)
    results["second"] = train(second)
    worker.join(60)
    assert results["second"]["run_key"] == results["first"]["run_key"]
    assert results["first"]["exploded"] is False
    assert len(_lines(tmp_path / "ledger.jsonl")) == 1
    assert "not training again" in capsys.readouterr().err


def test_a_run_lock_without_flock_is_one_line(compose, cifar10_root, tmp_path, monkeypatch):
    from mbt import run as run_module_

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_module_.fcntl, "flock", no_locks)
    with pytest.raises(run_module_.RunIOError, match="no working flock"):
        train(compose(*plumbing(cifar10_root, tmp_path / "runs")))


def _two_checkpoints(compose, cifar10_root, tmp_path) -> tuple[list[str], Path]:
    over = plumbing(cifar10_root, tmp_path / "runs", epochs=3)
    key = train(compose(*over, "trainer.stop_after=2"))["run_key"]
    return over, tmp_path / "runs" / key


def _edit_checkpoint(path: Path, edit) -> None:
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def _other_model(state):  # the model changed between commits: same keys, other shapes
    name = next(k for k, v in state["model"].items() if v.dim() > 1)
    state["model"][name] = torch.zeros(3, 3)


def _bad_rng(state):
    state["rng"]["torch"] = torch.zeros(5, dtype=torch.uint8)


@pytest.mark.parametrize("edit", [_other_model, _bad_rng])
def test_a_checkpoint_of_another_model_falls_back_to_prev(compose, cifar10_root, tmp_path,
                                                         capsys, edit):
    over, run_dir = _two_checkpoints(compose, cifar10_root, tmp_path)
    _edit_checkpoint(run_dir / "last.pt", edit)
    capsys.readouterr()
    record = train(compose(*over))
    err = capsys.readouterr().err
    assert "does not match this model" in err and "falling back to prev.pt" in err
    assert f"resuming at epoch 2 from {run_dir / 'prev.pt'}" in err
    assert record["epochs_completed"] == 3


def test_no_checkpoint_matching_the_model_is_one_line_saying_how_to_start_fresh(
        compose, cifar10_root, tmp_path, capsys):
    over, run_dir = _two_checkpoints(compose, cifar10_root, tmp_path)
    for name in ("last.pt", "prev.pt"):
        _edit_checkpoint(run_dir / name, _other_model)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run_and_print(train, compose(*over))
    assert stop.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith("error: ")]
    assert len(errors) == 1
    assert "does not match this model" in errors[0] and str(run_dir) in errors[0]
    assert "start fresh" in errors[0]


@pytest.mark.parametrize(("override", "env", "needle"), [
    ("paths.ledger={tmp}/a_directory", {}, "is a directory"),
    ("seed=-1", {}, "seed must be"),
    ("logger=wandb", {"WANDB_MODE": "bogus"}, "WANDB_MODE"),
])
def test_more_nonsense_is_one_line_before_any_data_is_read(compose, tmp_path, capsys,
                                                           monkeypatch, override, env, needle):
    (tmp_path / "a_directory").mkdir()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = compose(override.format(tmp=tmp_path), f"data.root={tmp_path}/nowhere",
                  f"paths.runs={tmp_path}/runs")
    with pytest.raises(SystemExit) as stop:
        run_and_print(train, cfg)
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and needle in errors[0] and "nowhere" not in errors[0]


def test_last_pt_that_is_a_directory_is_one_line(compose, cifar10_root, tmp_path, capsys):
    over = plumbing(cifar10_root, tmp_path / "runs", epochs=3)
    key = train(compose(*over, "trainer.stop_after=1"))["run_key"]
    last = tmp_path / "runs" / key / "last.pt"
    last.unlink()
    last.mkdir()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run_and_print(train, compose(*over))
    assert stop.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and f"{last} is a directory" in errors[0]
    assert last.is_dir() and not (tmp_path / "runs" / key / "prev.pt").is_dir()


def test_report_to_an_unwritable_out_is_one_line_before_reading(tmp_path, capsys):
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, _search(200, 0.01, 0.012))
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "results"
    assert report_main(["table1", "--ledger", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write --out") and str(out) in err[0]


@pytest.mark.integration
def test_an_unwritable_hydra_output_directory_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")  # read-only or full disks fail the same way
    proc = run_module("mbt.train", f"hydra.run.dir={tmp_path}/a_file/out",
                      f"data.root={tmp_path}/nowhere", f"paths.runs={tmp_path}/runs",
                      "logger=none", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "hydra.run.dir" in line and "a_file/out" in line


@pytest.mark.integration
def test_an_unwritable_toy_out_is_one_line_before_running(tmp_path):
    (tmp_path / "a_file").write_text("")
    proc = run_module("mbt.toy", "function=quartic", "method=backtracking", "max_iters=3",
                      f"out={tmp_path}/a_file/x", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "out=" in line and "a_file/x" in line and "iterations" not in proc.stderr


def test_a_finite_explosion_is_flagged_and_div_cells_say_what_they_show(tmp_path):
    from test_report import train_record

    path, out = tmp_path / "ledger.jsonl", tmp_path / "results"
    calm = train_record("table2", "sgd", 0.1, accs=(80.0, 92.0, 91.0))
    boom = train_record("table2", "adam", 0.1, accs=(30.0, 45.0, 10.0))
    boom["history"]["train_loss"] = [2.3, 5e3, 1e14]  # finite: the rule never fired
    div = train_record("table2", "mmt", 100.0, accs=(45.0, 10.3), status="diverged")
    for r in (calm, boom, div):
        ledger.append(path, r)
    assert not ledger.exploded(calm) and ledger.exploded(boom)
    assert report_main(["table2", "--ledger", str(path), "--out", str(out)]) == 0
    md = (out / "table2.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| Adam | 1e-1"))
    assert "| 45.00 (exploded) |" in row  # the number the rule gives, flagged
    assert "45.00 (div)" in md  # a diverged run shows its best finite epoch ...
    assert "counts as chance accuracy" not in md  # ... and the note no longer says chance
    assert "best accuracy of its finite epochs" in md and "`(exploded)`" in md


@pytest.mark.integration
def test_a_sweep_cell_that_does_not_compose_is_named_before_any_cell_runs(tmp_path):
    # optim.builder.beta exists for mbt_gd, not for sgd: cell #1 cannot be composed.
    proc = run_module("mbt.train", "--multirun", "optim=mbt_gd,sgd", "optim.builder.beta=0.5",
                      f"data.root={tmp_path}/nowhere", f"paths.runs={tmp_path}/runs",
                      "logger=none", f"hydra.sweep.dir={tmp_path}/multirun", cwd=tmp_path,
                      timeout=120)
    assert proc.returncode == 2
    line = one_error_line(proc)  # one line: cell #0 did not run (its data error would show)
    assert "cell [optim=sgd optim.builder.beta=0.5 " in line and "not in struct" in line
    assert "not found" not in proc.stderr


def test_a_runs_directory_without_flock_beside_a_locking_ledger_still_trains(
        compose, cifar10_root, tmp_path, monkeypatch, capsys):
    from mbt import run as run_module_

    real = run_module_.fcntl.flock

    def no_locks_under_runs(fh, op):  # Lustre noflock for paths.runs, the ledger elsewhere
        if str(tmp_path / "runs") in fh.name:
            raise OSError(errno.ENOLCK, "No locks available")
        return real(fh, op)

    monkeypatch.setattr(run_module_.fcntl, "flock", no_locks_under_runs)
    record = train(compose(*plumbing(cifar10_root, tmp_path / "runs"),
                           f"paths.ledger={tmp_path / 'ledger' / 'ledger.jsonl'}"))
    assert record["status"] == "finished"
    assert "the ledger's lock alone keeps this cell to one process" in capsys.readouterr().err


def test_training_flags_a_run_whose_loss_explodes_but_stays_finite(compose, cifar10_root,
                                                                  tmp_path, monkeypatch, capsys):
    import dataclasses

    from mbt import train as train_module

    epoch = train_module.train_epoch
    seen = []

    def explodes_in_epoch_2(*args, **kwargs):
        stats = epoch(*args, **kwargs)
        seen.append(stats.loss)
        return dataclasses.replace(stats, loss=1e14) if len(seen) == 2 else stats

    monkeypatch.setattr(train_module, "train_epoch", explodes_in_epoch_2)
    record = train(compose(*plumbing(cifar10_root, tmp_path / "runs", epochs=2)))
    assert record["status"] == "finished" and record["exploded"] is True
    assert "exploded" in capsys.readouterr().err
    assert _strict(_lines(tmp_path / "runs" / "ledger.jsonl")[0])["exploded"] is True
