"""The run ledger: stable run keys, no secrets, atomic appends from concurrent processes."""

from __future__ import annotations

import json
import multiprocessing as mp

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


def test_run_key_ignores_where_files_live_but_not_what_is_computed():
    base = ledger.run_key(config())
    assert base.startswith("resnet18-cifar10-sgd-lr0.1-b200-e200-s0-")
    assert ledger.run_key(config(data__root="/elsewhere", trainer__device="cuda:1",
                                 logger__project="other", paths__ledger="y")) == base
    for change in ({"optim__lr": 0.01}, {"seed": 1}, {"data__subset": 500},
                   {"protocol": "smoke"}, {"trainer__epochs": 15}):
        assert ledger.run_key(config(**change)) != base, change


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
