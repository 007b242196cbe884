"""python -m mbt.train end to end on CPU: ledger, checkpoints, resume, divergence, W&B offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mbt import checkpoint, ledger
from mbt.config import ConfigError
from mbt.train import train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run_cli(*overrides: str, cwd: Path, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbt.train", *overrides], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def tiny_overrides(root: Path, runs: Path, model: str = "tiny") -> list[str]:
    """A 64-image CIFAR-layout set, 2 steps of 32 per epoch, with ``model=tiny`` (these tests
    check the run's machinery; the one that needs the paper's model passes resnet18)."""
    return [f"data.root={root}", f"paths.runs={runs}", "data.num_workers=0",
            "trainer.batch_size=32", "trainer.epochs=2", "trainer.progress=none",
            "data.augment=standard", f"model={model}"]


@pytest.mark.integration
def test_mbt_nag_two_epochs_ledger_checkpoint_and_wandb(compose, cifar10_root, tmp_path):
    # The paper's ResNet18 end to end once; the other tests use model=tiny.
    cfg = compose(*tiny_overrides(cifar10_root, tmp_path, "resnet18"), "optim=mbt_nag",
                  "optim.builder.num_batches=3", "logger.mode=offline")
    record = train(cfg)
    assert record["status"] == "finished" and record["epochs_completed"] == 2
    assert record["synthetic"] is True
    hist = record["history"]
    assert hist["epoch"] == [1, 2]
    assert all(v is not None and v > 0 for v in hist["search_evals"])
    # The learning rate used is the rescaled search result, not the start value.
    assert all(lr != 0.01 for lr in hist["lr"])
    assert record["best_test_acc"] == max(hist["test_acc"])
    records = list(ledger.read(tmp_path / "ledger.jsonl"))
    assert [r["run_key"] for r in records] == [record["run_key"]]
    run_dir = tmp_path / record["run_key"]
    assert (run_dir / "last.pt").exists()
    saved = torch.load(run_dir / "last.pt", weights_only=True)
    assert saved["epoch"] == 2 and saved["controller"] is not None
    assert record["wandb"]["mode"] == "offline"
    assert list((run_dir / "wandb").glob("offline-run-*"))


def test_sgd_run_is_skipped_once_in_the_ledger(compose, cifar10_root, tmp_path):
    cfg = compose(*tiny_overrides(cifar10_root, tmp_path), "optim=sgd", "logger=none")
    first = train(cfg)
    assert first["status"] == "finished"
    again = train(cfg)
    assert again["run_key"] == first["run_key"]
    assert len(list(ledger.read(tmp_path / "ledger.jsonl"))) == 1


def test_a_finished_run_keeps_one_checkpoint_and_names_its_folder(
        compose, cifar10_root, tmp_path, capsys):
    from mbt.entry import summary

    record = train(compose(*tiny_overrides(cifar10_root, tmp_path), "optim=sgd",
                           "logger=none"))
    run_dir = tmp_path / record["run_key"]
    # Two epochs wrote last.pt twice (the first became prev.pt); the finished run keeps one.
    assert sorted(p.name for p in run_dir.glob("*.pt")) == ["last.pt"]
    assert f"{record['run_key']}: run folder {run_dir}" in capsys.readouterr().err
    line = summary(record)
    assert line.startswith(f"{record['run_key']}: finished, 2/2 epochs, best test ")
    assert line.endswith(f"; ledger {tmp_path / 'ledger.jsonl'}; run folder {run_dir}")


def test_summary_of_a_search_and_of_a_stopped_run():
    from mbt.entry import summary

    search = {"kind": "lr_search", "run_key": "lrsearch-k", "status": "finished",
              "search_lr": 0.0123456789, "search_mean_lr": 0.01, "func_evals": 57,
              "seconds": 3.21, "config": {"paths": {"runs": "r", "ledger": "r/l.jsonl"}}}
    assert summary(search) == ("lrsearch-k: search lr 0.0123457 (mean accepted 0.01, "
                               "57 evaluations, 3.2 s); ledger r/l.jsonl; run folder r/lrsearch-k")
    stopped = {"run_key": "k", "status": "interrupted", "epochs_completed": 1, "run_dir": "r/k"}
    assert summary(stopped) == "k: interrupted after 1 epoch(s), resumable; run folder r/k"


def _git_repo(root: Path) -> list[str]:
    """A repo with two commits; the second edits src/mbt (the code a run depends on)."""
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=root, check=True, capture_output=True, text=True).stdout
    (root / "src" / "mbt" / "optim").mkdir(parents=True)
    (root / "conf").mkdir()
    (root / "src" / "mbt" / "optim" / "armijo.py").write_text("c = 0.5\n")
    (root / "conf" / "train.yaml").write_text("seed: 0\n")
    (root / "pyproject.toml").write_text("")  # a checkout, not a wheel install (runinfo)
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "a")
    old = git("rev-parse", "HEAD").strip()
    (root / "src" / "mbt" / "optim" / "armijo.py").write_text("c = 1e-4\n")
    git("commit", "-qam", "b")
    return [old, git("rev-parse", "HEAD").strip()]


def test_code_since_names_the_commit_and_the_files_changed_since(tmp_path, monkeypatch):
    from mbt import runinfo

    old, new = _git_repo(tmp_path / "repo")
    monkeypatch.setattr(runinfo, "REPO_ROOT", tmp_path / "repo")
    runinfo.git_state.cache_clear()  # cached per process; cleared again below
    runinfo._changed_since.cache_clear()
    try:
        text, changed = runinfo.code_since({"git_commit": old, "git_dirty": False})
        assert changed and text == (f"made at commit {old[:8]}; the code has changed since: "
                                    f"src/mbt/optim/armijo.py")
        assert runinfo.code_since({"git_commit": new}) == (
            f"made at commit {new[:8]}; src/mbt and conf are the same now", False)
        # Uncommitted edits count; files outside src/mbt and conf do not.
        (tmp_path / "repo" / "README").write_text("x")
        assert not runinfo.code_since({"git_commit": new})[1]
        (tmp_path / "repo" / "conf" / "train.yaml").write_text("seed: 1\n")
        runinfo._changed_since.cache_clear()
        assert "conf/train.yaml" in runinfo.code_since({"git_commit": new})[0]
        assert runinfo.code_since({"git_commit": "0" * 40}) == (
            "made at commit 00000000, a commit this checkout does not have, so whether the "
            "code changed is unknown", True)
        assert runinfo.code_since({}) == ("made at an unknown commit", True)
        monkeypatch.setattr(runinfo, "REPO_ROOT", tmp_path)  # no repository there
        runinfo.git_state.cache_clear()
        runinfo._changed_since.cache_clear()
        text, changed = runinfo.code_since({"git_commit": old})
        assert changed and "not a git checkout" in text
    finally:
        runinfo.git_state.cache_clear()
        runinfo._changed_since.cache_clear()


def test_a_copy_without_git_takes_its_commit_from_the_environment(tmp_path, monkeypatch):
    """The device tool sends the working tree without .git: records made there name the
    commit ``make device-prepare`` exported, and only a well-formed one."""
    from mbt import runinfo

    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.setattr(runinfo, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    sha = "0123456789abcdef" * 2 + "01234567"
    state = runinfo.git_state.__wrapped__
    monkeypatch.delenv(runinfo.SOURCE_ENV, raising=False)
    monkeypatch.delenv("MBT_SOURCE_DIRTY", raising=False)
    assert state() == {"commit": "unknown", "dirty": False}
    monkeypatch.setenv(runinfo.SOURCE_ENV, sha)
    assert state() == {"commit": sha, "dirty": False}
    monkeypatch.setenv("MBT_SOURCE_DIRTY", "1")
    assert state() == {"commit": sha, "dirty": True}
    monkeypatch.setenv(runinfo.SOURCE_ENV, "HEAD")  # not a commit id: not believed
    assert state() == {"commit": "unknown", "dirty": False}


def test_a_stale_record_says_so_and_rerun_keeps_both(compose, cifar10_root, tmp_path, capsys):
    over = [*tiny_overrides(cifar10_root, tmp_path), "optim=sgd", "logger=none",
            "trainer.epochs=1"]
    first = train(compose(*over))
    # The record as an older commit, which this checkout does not have, would have left it.
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps({**first, "git_commit": "0" * 40, "git_dirty": False}) + "\n")
    capsys.readouterr()
    assert train(compose(*over))["run_key"] == first["run_key"]
    err = capsys.readouterr().err
    assert (f"{first['run_key']}: already in {path} (finished, made at commit 00000000, a "
            f"commit this checkout does not have") in err
    assert "not training again; rerun=1 (or another label) runs it again and keeps both" in err
    again = train(compose(*over, "rerun=1"))
    assert again["run_key"] != first["run_key"] and "-s0-r1-" in again["run_key"]
    assert [r["run_key"] for r in ledger.read(path)] == [first["run_key"], again["run_key"]]
    with pytest.raises(ConfigError, match="rerun must be a label"):
        train(compose(*over, "rerun=a/b"))


def test_a_line_search_every_step_records_its_evaluations_per_epoch(compose, cifar10_root,
                                                                      tmp_path):
    from mbt.tracking import wandb_row

    record = train(compose(*tiny_overrides(cifar10_root, tmp_path), "optim=two_way_gd",
                           "logger=none"))
    hist = record["history"]
    # 2 steps per epoch: each step evaluates f at least twice (the point, one trial) and
    # takes one gradient.
    assert hist["line_search_grad_evals"] == [2, 2]
    assert all(n >= 4 for n in hist["line_search_evals"]) and len(hist["line_search_evals"]) == 2
    assert all(n >= 0 for n in hist["line_search_bound_hits"])
    row = {k: v[0] for k, v in hist.items() if k != "step_lrs"}
    assert wandb_row(row)["search/step_evals"] == hist["line_search_evals"][0]
    plain = train(compose(*tiny_overrides(cifar10_root, tmp_path), "optim=sgd", "logger=none"))
    assert not [k for k in plain["history"] if k.startswith("line_search")]


def test_stop_and_resume_equals_an_uninterrupted_run(compose, cifar10_root, tmp_path):
    base = [*tiny_overrides(cifar10_root, tmp_path / "a"), "optim=mmt", "logger=none"]
    whole = train(compose(*base))
    split = [*tiny_overrides(cifar10_root, tmp_path / "b"), "optim=mmt", "logger=none"]
    part = train(compose(*split, "trainer.stop_after=1"))
    assert part["status"] == "interrupted" and part["epochs_completed"] == 1
    assert not (tmp_path / "b" / "ledger.jsonl").exists()
    resumed = train(compose(*split))
    assert resumed["run_key"] == whole["run_key"]
    for col in ("train_loss", "test_acc", "lr"):
        assert resumed["history"][col] == pytest.approx(whole["history"][col], rel=1e-5)
    # Every epoch names the commit that trained it; both halves ran this checkout.
    assert len(set(resumed["history"]["commit"])) == 1
    assert resumed["trained_at_commits"] == resumed["history"]["commit"][:1]


def test_finished_checkpoint_without_record_is_recorded_not_retrained(
        compose, cifar10_root, tmp_path, capsys):
    over = [*tiny_overrides(cifar10_root, tmp_path), "optim=sgd", "logger=none"]
    first = train(compose(*over))
    (tmp_path / "ledger.jsonl").unlink()  # e.g. a record deleted by hand
    # The checkpoint says which commit trained it, whatever commit re-records it.
    ckpt_path = tmp_path / first["run_key"] / "last.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    for row in ckpt["history"]:
        row["commit"] = "0ld0ld0ld0ld"
    torch.save(ckpt, ckpt_path)
    capsys.readouterr()
    again = train(compose(*over))
    assert "holds a finished run; recording it without training" in capsys.readouterr().err
    assert again["trained_at_commits"] == ["0ld0ld0ld0ld"]
    assert again["history"]["train_loss"] == first["history"]["train_loss"]


def test_divergence_is_recorded_not_raised(compose, cifar10_root, tmp_path):
    cfg = compose(*tiny_overrides(cifar10_root, tmp_path), "optim=sgd", "optim.lr=100",
                  "logger=none", "trainer.check_every=1", "trainer.diverge_factor=10")
    record = train(cfg)
    assert record["status"] == "diverged"
    assert record["epochs_completed"] == 1
    assert 0.0 <= record["final_test_acc"] <= 100.0
    assert ledger.find(tmp_path / "ledger.jsonl", record["run_key"])["status"] == "diverged"


def test_corrupt_checkpoint_falls_back_to_previous(compose, cifar10_root, tmp_path, capsys):
    over = [*tiny_overrides(cifar10_root, tmp_path), "optim=sgd", "logger=none",
            "trainer.epochs=3"]
    train(compose(*over, "trainer.stop_after=2"))
    key = next(p for p in tmp_path.iterdir() if p.is_dir()).name
    last = tmp_path / key / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # truncated mid-write
    capsys.readouterr()
    record = train(compose(*over))
    err = capsys.readouterr().err
    assert "unreadable" in err and "resuming at epoch 2" in err
    assert record["epochs_completed"] == 3


def test_checkpoint_unreadable_everywhere_starts_over(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    notes = []
    assert checkpoint.load_latest(tmp_path, notice=notes.append) == (None, None)
    assert len(notes) == 1 and "starting over" in notes[0]


# The process kills itself with SIGKILL right after its first checkpoint lands: a hard kill
# at a known point. Polling for last.pt from outside raced the run (2 tiny steps per epoch
# finished all 3 epochs before the signal arrived on a busy CI machine).
_KILL_AFTER_FIRST_SAVE = """
import os, signal, sys
from mbt import checkpoint
_save = checkpoint.save
def save(*a, **k):
    path = _save(*a, **k)
    os.kill(os.getpid(), signal.SIGKILL)
    return path
checkpoint.save = save
from mbt.train import main
sys.argv = ["mbt.train", *sys.argv[1:]]
main()
"""


@pytest.mark.integration
def test_killed_process_resumes_and_ledger_has_one_record(cifar10_root, tmp_path):
    over = [*tiny_overrides(cifar10_root, tmp_path), "optim=sgd", "logger=none",
            "trainer.epochs=3"]
    killed = subprocess.run([sys.executable, "-c", _KILL_AFTER_FIRST_SAVE, *over], cwd=tmp_path,
                            capture_output=True, text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ckpt = torch.load(next(tmp_path.glob("*/last.pt")), weights_only=True)
    assert ckpt["epoch"] == 1
    assert not (tmp_path / "ledger.jsonl").exists() or not list(
        ledger.read(tmp_path / "ledger.jsonl")), "a killed run wrote no record"
    done = run_cli(*over, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"resuming at epoch {ckpt['epoch'] + 1}" in done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["epochs_completed"] == 3
    assert len(list(ledger.read(tmp_path / "ledger.jsonl"))) == 1


@pytest.mark.integration
@pytest.mark.parametrize("override,needle", [
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("trainer.batch_size=0", "trainer.batch_size must be > 0"),
    ("model=resnet19", "Could not find 'model/resnet19'"),
    ("data.pipeline=gpu", "expected one of [dataloader, device]"),
])
def test_bad_config_exits_nonzero_with_one_clear_line(tmp_path, override, needle):
    proc = run_cli(override, "logger=none", f"paths.runs={tmp_path}", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    if override.startswith("model="):
        assert "resnet18" in lines[0], "the valid names are listed"


@pytest.mark.integration
def test_missing_data_is_one_line(tmp_path):
    proc = run_cli(f"data.root={tmp_path / 'nowhere'}", "logger=none",
                   f"paths.runs={tmp_path}", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "nowhere" in lines[-1]
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_cli_json_last_line_and_no_secret_anywhere(cifar10_root, tmp_path):
    secret = "sekrit-0123456789abcdef"
    proc = run_cli(*tiny_overrides(cifar10_root, tmp_path / "runs"), "optim=sgd",
                   "trainer.epochs=1", "logger.mode=offline", "--json", cwd=tmp_path,
                   env={"WANDB_API_KEY": secret})
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["status"] == "finished"
    assert secret not in proc.stdout + proc.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert secret.encode() not in path.read_bytes(), path


def test_synthetic_fallback_is_labelled(compose, tmp_path):
    cfg = compose(f"data.root={tmp_path / 'none'}", f"paths.runs={tmp_path}",
                  "data.synthetic_fallback=true", "data.subset=64", "data.num_workers=0",
                  "trainer.batch_size=32", "trainer.epochs=1", "trainer.progress=none",
                  "trainer.max_steps_per_epoch=1", "optim=sgd", "logger=none",
                  "model=tiny")
    record = train(cfg)
    assert record["synthetic"] is True and record["data"]["synthetic"] is True
    assert record["history"]["steps"] == [1]


def test_by_default_only_a_non_finite_loss_ends_a_run(compose, cifar10_root, tmp_path):
    # The published code never stops a run: an exploding but finite loss trains on.
    over = [f"data.root={cifar10_root}", f"paths.runs={tmp_path}", "data.num_workers=0",
            "model=tiny", "trainer.batch_size=16", "trainer.epochs=3", "trainer.progress=none",
            "trainer.max_steps_per_epoch=2", "data.augment=none", "optim=sgd", "logger=none",
            "trainer.check_every=1"]
    exploding = train(compose(*over, "optim.lr=50"))
    losses = exploding["history"]["train_loss"]
    assert exploding["status"] == "finished" and exploding["epochs_completed"] == 3
    assert max(losses) > 100 * losses[0]  # the 10x rule would have stopped it
    stopped = train(compose(*over, "optim.lr=50", "trainer.diverge_factor=10"))
    assert stopped["status"] == "diverged" and stopped["epochs_completed"] < 3
    blown = train(compose(*over, "optim.lr=1e30"))
    assert blown["status"] == "diverged" and blown["epochs_completed"] == 1


def _tiny(root: Path, runs: Path, *extra: str) -> list[str]:
    return [f"data.root={root}", f"paths.runs={runs}", "data.num_workers=0", "model=tiny",
            "trainer.batch_size=16", "trainer.max_steps_per_epoch=2", "trainer.progress=none",
            "data.augment=standard", "optim=mmt", "logger=none", *extra]


def test_checkpoint_every_n_epochs_and_at_the_last_and_stop_epoch(
        compose, cifar10_root, tmp_path, monkeypatch):
    saved: list[int] = []
    real_save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save",
                        lambda run_dir, state: (saved.append(state["epoch"]),
                                                real_save(run_dir, state)))
    over = ("trainer.epochs=5", "trainer.checkpoint_every=2")
    whole = train(compose(*_tiny(cifar10_root, tmp_path / "a", *over)))
    assert saved == [2, 4, 5]
    saved.clear()
    split = _tiny(cifar10_root, tmp_path / "b", *over)
    assert train(compose(*split, "trainer.stop_after=1"))["status"] == "interrupted"
    assert saved == [1]  # the stop epoch, off the every-2 grid
    resumed = train(compose(*split))
    assert saved == [1, 2, 4, 5]
    assert resumed["run_key"] == whole["run_key"]  # checkpoint_every is not in the key
    for col in ("train_loss", "test_acc", "lr"):
        assert resumed["history"][col] == pytest.approx(whole["history"][col], rel=1e-5)


def test_default_pipeline_follows_the_device_and_keeps_cpu_run_keys(compose):
    from omegaconf import OmegaConf

    from test_ledger import HEAD

    def resolved(*overrides):
        return OmegaConf.to_container(compose(*overrides), resolve=True, enum_to_str=True)

    # The stock Table 1 cell's key as pinned in tests/test_ledger.py, whatever GPU is here.
    cfg = resolved("protocol=full", "experiment=table1", "trainer.device=cpu")
    assert cfg["data"]["pipeline"] == "dataloader"
    assert ledger.run_key(cfg, HEAD) == "resnet18-cifar10-mbt_gd-lr0.01-b200-e200-s0-d70dbfa8"
    assert resolved("trainer.device=cuda")["data"]["pipeline"] == "device"
    assert resolved("trainer.device=cuda:1")["data"]["pipeline"] == "device"
    assert resolved("trainer.device=cuda", "data.pipeline=dataloader")["data"]["pipeline"] == \
        "dataloader"


def test_a_cpu_run_records_the_pipeline_it_ran(compose, cifar10_root, tmp_path):
    record = train(compose(*_tiny(cifar10_root, tmp_path, "trainer.epochs=1",
                                  "trainer.device=cpu")))
    assert record["config"]["data"]["pipeline"] == record["data"]["pipeline"] == "dataloader"


def test_amp_bf16_on_cpu_runs_where_supported_and_is_refused_where_not(
        compose, cifar10_root, tmp_path, monkeypatch):
    import mbt.loop
    from mbt.config import ConfigError

    over = _tiny(cifar10_root, tmp_path, "trainer.epochs=1", "trainer.device=cpu",
                 "trainer.amp_bf16=true")
    if mbt.loop.cpu_bf16_supported():
        with mbt.loop.autocast(torch.device("cpu"), True):
            assert torch.nn.Linear(4, 2)(torch.ones(1, 4)).dtype == torch.bfloat16
        record = train(compose(*over))
        assert record["status"] == "finished" and record["config"]["trainer"]["amp_bf16"]
    monkeypatch.setattr(mbt.loop, "cpu_bf16_supported", lambda: False)
    with pytest.raises(ConfigError, match="amp_bf16=true needs a CPU with native bf16"):
        train(compose(*over))


def test_channels_last_on_cuda_and_under_cpu_bf16_only(compose, cifar10_root, tmp_path,
                                                         monkeypatch):
    import mbt.loop
    import mbt.train
    from mbt.run import uses_channels_last

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    base = _tiny(cifar10_root, tmp_path, "trainer.epochs=1", "trainer.device=cpu")
    fp32, bf16 = compose(*base), compose(*base, "trainer.amp_bf16=false")
    bf16.trainer.amp_bf16 = True  # composed as fp32 so it also composes on CPUs without bf16
    off = compose(*base, "trainer.channels_last=false")
    assert not uses_channels_last(fp32, cpu)  # a CPU fp32 run keeps NCHW, so its numbers
    assert uses_channels_last(bf16, cpu) and uses_channels_last(fp32, cuda)
    assert not uses_channels_last(off, cuda)
    if not mbt.loop.cpu_bf16_supported():
        pytest.skip("this CPU has no native bf16")
    seen = {}
    build = mbt.train._build

    def spy(run):
        built = build(run)
        seen["model"] = built[0]
        seen["batch"] = next(iter(run.train_loader))[0]
        return built

    monkeypatch.setattr(mbt.train, "_build", spy)
    train(compose(*base, "trainer.amp_bf16=true"))
    conv = next(m for m in seen["model"].modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert seen["batch"].is_contiguous(memory_format=torch.channels_last)


def test_mbt_history_records_the_alpha_of_each_epochs_search(compose, cifar10_root, tmp_path):
    """Fig. 3's plateau switch is read from the recorded alpha; it must agree with the
    report's replay of the controller's rule (issue 23)."""
    from mbt.report.verdicts import switch_epoch

    cfg = compose(*tiny_overrides(cifar10_root, tmp_path), "optim=mbt_nag",
                  "optim.builder.num_batches=2", "optim.builder.plateau_patience=0",
                  "trainer.epochs=5", "logger=none")
    record = train(cfg)
    alphas = record["history"]["alpha"]
    assert len(alphas) == 5 and alphas[0] == 1e-4 and set(alphas) <= {1e-4, 0.5}
    replayed = dict(record, history={k: v for k, v in record["history"].items()
                                     if k != "alpha"})
    # On this data the switch fires within the 5 epochs (epoch 4 when this was written).
    assert 0.5 in alphas and switch_epoch(record) == switch_epoch(replayed) == alphas.index(0.5) + 1
