"""The run ledger: stable run keys, no secrets, atomic appends from concurrent processes."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from mbt import ledger


def config(**changes) -> dict:
    cfg = {"model": {"name": "resnet18", "num_classes": 10},
           "data": {"name": "cifar10", "root": "data", "subset": None, "num_workers": 2},
           "optim": {"name": "sgd", "lr": 0.1, "builder": {"_target_": "torch.optim.SGD"}},
           "trainer": {"epochs": 200, "batch_size": 200, "device": "auto"},
           "logger": {"name": "wandb", "project": "mbt"}, "paths": {"ledger": "x"},
           "seed": 0, "protocol": "full"}
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return cfg


FULL = {"n_train": 50000, "n_test": 10000, "files": "0123456789abcdef"}
HEAD = {"n_train": 5170, "n_test": 1017, "files": "84a1cac196166435"}


def test_run_key_ignores_where_files_live_but_not_what_is_computed():
    base = ledger.run_key(config(), FULL)
    assert base.startswith("resnet18-cifar10-sgd-lr0.1-b200-e200-s0-")
    assert ledger.run_key(config(data__root="/elsewhere", trainer__device="cuda:1",
                                 logger__project="other", paths__ledger="y"), FULL) == base
    for change in ({"optim__lr": 0.01}, {"seed": 1}, {"data__subset": 500},
                   {"protocol": "smoke"}, {"trainer__epochs": 15}, {"data__num_workers": 0}):
        assert ledger.run_key(config(**change), FULL) != base, change


def test_run_key_includes_the_data_actually_loaded_not_its_path():
    full = ledger.run_key(config(), FULL)
    # The partial copy (allow_partial) is another cell, whatever the config says.
    assert ledger.run_key(config(data__allow_partial=True), HEAD) != full
    assert ledger.run_key(config(), {**FULL, "files": "fedcba9876543210"}) != full
    # The same files at another path (and with the flag that was needed to read them).
    assert ledger.run_key(config(data__root="/mnt/x", data__allow_partial=True), FULL) == full


def test_new_config_keys_at_their_neutral_value_keep_old_keys():
    base = ledger.run_key(config(), FULL)
    cfg = config()
    cfg["model"]["bn_init"] = "torch"  # added after key schema 2, at its neutral value
    assert ledger.run_key(cfg, FULL) == base
    cfg["model"]["bn_init"] = "legacy"
    assert ledger.run_key(cfg, FULL) != base


def test_reference_run_key_is_pinned(compose):
    """The keys of a stock config. If this fails, a config change altered every run key:
    a new key that changes the numbers belongs in ledger.KEY_NEUTRAL with the value that
    reproduces the old behaviour; one that does not belongs in ledger._KEY_IGNORES.
    Change the pinned keys only with a KEY_SCHEMA bump and `python -m mbt.ledger_migrate`."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose("protocol=full", "experiment=table1",
                                         "trainer.device=cpu"), resolve=True,
                                 enum_to_str=True)
    assert ledger.run_key(cfg, HEAD) == "resnet18-cifar10-mbt_gd-lr0.01-b200-e200-s0-d70dbfa8"
    assert ledger.run_key(cfg, HEAD, "lr_search") == \
        "lrsearch-resnet18-cifar10-mbt_gd-lr0.01-b200-s0-73bd8744"


def test_an_lr_search_key_ignores_the_training_settings():
    base = ledger.run_key(config(), FULL, "lr_search")
    for change in ({"trainer__epochs": 15}, {"trainer__diverge_factor": 10.0}):
        assert ledger.run_key(config(**change), FULL, "lr_search") == base, change
        assert ledger.run_key(config(**change), FULL) != ledger.run_key(config(), FULL)
    assert ledger.run_key(config(trainer__batch_size=12), FULL, "lr_search") != base


def test_append_is_whole_or_absent_on_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, {"run_key": "a", "status": "finished"})
    before = path.read_bytes()
    real_write = ledger.os.write

    def short_write(fd, data):  # what a full disk does: part of the bytes, then ENOSPC
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(ledger.os, "write", short_write)
    with pytest.raises(ledger.LedgerError, match="unchanged"):
        ledger.append(path, {"run_key": "b", "status": "finished", "pad": "x" * 1000})
    monkeypatch.undo()
    assert path.read_bytes() == before
    ledger.append(path, {"run_key": "c", "status": "finished"})
    assert [r["run_key"] for r in ledger.read(path)] == ["a", "c"]


def test_a_torn_line_never_swallows_the_next_record(tmp_path, caplog):
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, {"run_key": "a", "status": "finished"})
    with path.open("a") as fh:
        fh.write('{"run_key": "torn", "sta')  # a crash mid-write, no newline
    ledger.append(path, {"run_key": "b", "status": "finished"})
    with caplog.at_level("WARNING"):
        keys = [r["run_key"] for r in ledger.read(path)]
    assert keys == ["a", "b"]
    assert "line 2" in caplog.text and "not valid JSON" in caplog.text


def test_reader_reports_lines_that_are_not_records(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text('[1, 2]\n{"run_key": "s", "status": "finished", "lr": "0.1"}\n'
                    '{"run_key": "ok", "status": "finished", "lr": 0.1}\n')
    bad = []
    keys = [r["run_key"] for r in ledger.read(path, on_bad=lambda p, n, why: bad.append((n, why)))]
    assert keys == ["ok"]
    assert [n for n, _ in bad] == [1, 2]
    assert "not a JSON object" in bad[0][1] and "lr is str" in bad[1][1]


def test_secrets_are_redacted_in_records(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, {"run_key": "k", "status": "finished",
                         "config": {"logger": {"api_key": "abc123", "token": "t0k"}}})
    text = path.read_text()
    assert "abc123" not in text and "t0k" not in text
    assert json.loads(text)["config"]["logger"]["api_key"] == "<redacted>"


def test_find_returns_last_final_record_and_skips_torn_lines(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, {"run_key": "a", "status": "finished", "n": 1})
    ledger.append(path, {"run_key": "a", "status": "interrupted", "n": 2})
    ledger.append(path, {"run_key": "a", "status": "diverged", "n": 3})
    with path.open("a") as fh:
        fh.write('{"run_key": "a", "status": "fini')  # a crash mid-write
    assert ledger.find(path, "a")["n"] == 3
    assert ledger.find(path, "b") is None
    assert len(list(ledger.read(path))) == 3


def _writer(path: str, worker: int, n: int) -> None:
    for i in range(n):
        ledger.append(path, {"run_key": f"w{worker}-{i}", "status": "finished",
                             "payload": "x" * 50_000})  # larger than a pipe buffer


def test_concurrent_appends_never_interleave(tmp_path):
    path = str(tmp_path / "ledger.jsonl")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = open(path).read().splitlines()
    assert len(lines) == 60
    keys = {json.loads(line)["run_key"] for line in lines}  # every line parses
    assert len(keys) == 60


def test_a_file_system_without_flock_is_one_clear_error(tmp_path, monkeypatch):
    import errno

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(ledger.fcntl, "flock", no_locks)
    with pytest.raises(ledger.LedgerError, match="no working flock.*docs/cluster.md"):
        ledger.append(tmp_path / "ledger.jsonl", {"run_key": "a", "status": "finished"})


def test_merge_appends_only_what_the_ledger_lacks(tmp_path, capsys):
    """A device sweep's copy of the ledger comes back and is merged: its first lines are
    the copy's own, a cell the ledger finished meanwhile keeps the ledger's record, a torn
    line is skipped, and merging again appends nothing."""
    from mbt.ledger_merge import main

    def rec(key, status="finished", acc=50.0, device="CPU (1 threads)"):
        return {"run_key": key, "status": status, "best_test_acc": acc, "device_name": device}

    into, copy = tmp_path / "ledger.jsonl", tmp_path / "device.jsonl"
    for r in (rec("a"), rec("b")):
        ledger.append(into, r)
    copy.write_bytes(into.read_bytes())
    ledger.append(into, rec("c"))  # finished here after the copy was made
    for r in (rec("c", acc=61.0, device="NVIDIA H200"), rec("d", device="NVIDIA H200"),
              rec("e", status="diverged", acc=10.0, device="NVIDIA H200")):
        ledger.append(copy, r)
    with copy.open("a") as fh:
        fh.write('{"run_key": "torn"\n')
    ledger.append(copy, rec("d", device="NVIDIA H200"))  # the same record twice: once

    before = into.read_bytes()
    assert main([str(copy), str(into), "--dry-run"]) == 0
    assert into.read_bytes() == before
    assert "would append 2 record(s)" in capsys.readouterr().out
    assert main([str(copy), str(into)]) == 0
    out = capsys.readouterr().out
    assert "appended 2 record(s)" in out and "3 already there, 1 left out" in out
    assert into.read_bytes().startswith(before)  # append-only
    records = list(ledger.read(into))
    assert [(r["run_key"], r["device_name"]) for r in records] == [
        ("a", "CPU (1 threads)"), ("b", "CPU (1 threads)"), ("c", "CPU (1 threads)"),
        ("d", "NVIDIA H200"), ("e", "NVIDIA H200")]
    assert main([str(copy), str(into)]) == 0
    assert "appended 0 record(s)" in capsys.readouterr().out
    assert len(list(ledger.read(into))) == 5
    assert main([str(tmp_path / "missing.jsonl"), str(into)]) == 2
