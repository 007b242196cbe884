"""What a run looks like in W&B: real offline runs of a tiny training and of one MBT search,
read back from the run's ``.wandb`` file (the records wandb would upload with ``wandb sync``)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError

from mbt import ledger
from mbt.find_lr import find_lr_run
from mbt.tracking import WANDB_KEYS, ledger_row, run_group, run_tags, wandb_row
from mbt.train import train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# wandb's transaction log: a 7-byte header (":W&B", magic 0xBEE1, version 0), then LevelDB's
# log format (32 KiB blocks of records, each with a 7-byte header: crc32c, length, type
# FULL=1 FIRST=2 MIDDLE=3 LAST=4), each record a serialized wandb_internal_pb2.Record.
_BLOCK, _HEADER = 32768, 7


def read_wandb_file(path: Path) -> dict:
    """The run record, the history rows, the merged summary and the metric definitions of
    an offline run's ``run-<id>.wandb``. wandb >= 0.19 ships no Python reader (its service
    is in Go), so this follows the file format directly; it fails loudly if that changes."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), "unknown .wandb file header"
    chunks, pending, pos = [], b"", _HEADER
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        if pos + _HEADER + length > len(data):  # the writer is not done with it
            break
        body = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 1:
            chunks.append(body)
        elif kind == 2:
            pending = body
        elif kind == 3:
            pending += body
        else:
            chunks.append(pending + body)
    out = {"run": None, "history": [], "summary": {}, "metrics": [], "exit": False}

    def items(updates):
        return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in updates}

    for chunk in chunks:
        record = pb.Record()
        record.ParseFromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
        elif kind == "history":
            out["history"].append(items(record.history.item))
        elif kind == "summary":
            out["summary"].update(items(record.summary.update))
        elif kind == "metric":
            out["metrics"].append(record.metric)
        elif kind == "exit":
            out["exit"] = True
    return out


def offline_run(run_dir: Path, timeout: float = 60.0) -> dict:
    """The offline run's records, once complete: ``run.finish()`` can return before
    wandb's service (a separate process) has written the file out, so wait for the run's
    exit record."""
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    deadline = time.monotonic() + timeout
    while True:
        try:
            wb = read_wandb_file(files[0])
        except (struct.error, DecodeError):  # a record still being written
            wb = None
        if wb is not None and wb["run"] is not None and wb["exit"]:
            return wb
        assert time.monotonic() < deadline, f"{files[0]} has no exit record after {timeout} s"
        time.sleep(0.2)


def tiny(root: Path, runs: Path, *extra: str) -> list[str]:
    """model=tiny, 2 epochs of 2 steps of 16 images, W&B offline."""
    return [f"data.root={root}", f"paths.runs={runs}", "data.num_workers=0", "model=tiny",
            "trainer.batch_size=16", "trainer.epochs=2", "trainer.progress=none",
            "trainer.max_steps_per_epoch=2", "data.augment=none", "logger=wandb",
            "logger.mode=offline", *extra]


def test_mbt_training_run_logs_namespaced_metrics_against_epoch(compose, cifar10_root,
                                                                tmp_path):
    cfg = compose(*tiny(cifar10_root, tmp_path, "optim=mbt_gd", "optim.lr=0.05",
                        "optim.builder.num_batches=2", "protocol=smoke"))
    record = train(cfg)
    wb = offline_run(tmp_path / record["run_key"])

    run = wb["run"]
    assert run.display_name == record["run_key"]
    assert run.run_group == "adhoc-smoke"  # no experiment: adhoc, never without its protocol
    assert run.job_type == "train"
    assert {"protocol:smoke", "model:tiny", "dataset:cifar10", "optim:mbt_gd",
            "init:torch"} <= set(run.tags)

    rows = [r for r in wb["history"] if "epoch" in r]
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert {"train/loss", "train/acc", "train/steps", "test/loss", "test/acc", "lr/value",
                "time/epoch", "time/search"} <= row.keys()
        assert not {"train_loss", "test_acc", "lr", "search_mean_lr"} & row.keys()
    hist = record["history"]
    assert [r["test/acc"] for r in rows] == hist["test_acc"]
    # MBT-GD searches once, before epoch 1: its search/* are in that row only
    searched, after = rows
    assert {"search/lr", "search/mean_lr", "search/trials", "search/grad_evals",
            "search/bound_hits"} <= searched.keys()
    assert searched["search/batch_lrs/_type"] == "histogram"  # 2 mini-batches' accepted eta
    assert searched["search/lr"] == hist["search_lr"][0] == hist["lr"][0]
    assert searched["search/grad_evals"] == 2 and len(hist["search_per_batch"][0]) == 2
    assert not [k for k in after if k.startswith("search/")]

    steps = {m.glob_name: m.step_metric for m in wb["metrics"] if m.glob_name}
    assert steps == {f"{ns}/*": "epoch" for ns in ("train", "test", "lr", "search", "time")}
    acc = next(m for m in wb["metrics"] if m.name == "test/acc")
    assert acc.summary.max and acc.step_metric == "epoch"
    assert wb["summary"]["test/acc"]["max"] == record["best_test_acc"]
    assert wb["summary"]["status"] == "finished"


def test_non_mbt_run_logs_no_search_keys(compose, cifar10_root, tmp_path):
    record = train(compose(*tiny(cifar10_root, tmp_path, "optim=sgd", "optim.lr=0.05")))
    wb = offline_run(tmp_path / record["run_key"])
    assert wb["run"].run_group == "adhoc-custom" and wb["run"].job_type == "train"
    keys = set().union(*wb["history"], wb["summary"])
    assert {"train/loss", "test/acc", "lr/value", "time/epoch"} <= keys
    assert not [k for k in keys if k.startswith("search")]
    # the ledger keeps its columns (None: no search), which the reports read
    assert record["history"]["search_mean_lr"] == [None, None]


def test_run_config_carries_the_ledgers_provenance_and_line_searches_their_evals(
        compose, cifar10_root, tmp_path):
    record = train(compose(*tiny(cifar10_root, tmp_path, "optim=two_way_gd")))
    wb = offline_run(tmp_path / record["run_key"])
    config = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
              for i in wb["run"].config.update}
    prov = config["provenance"]
    assert prov["data"]["num_train"] == record["data"]["num_train"] == 64
    assert prov["data"]["partial"] is False and prov["synthetic"] is True
    assert prov["data"]["fingerprint"] == record["data"]["fingerprint"]
    assert (prov["device"], prov["torch_version"], prov["git_commit"]) == (
        record["device"], record["torch_version"], record["git_commit"])
    rows = [r for r in wb["history"] if "epoch" in r]
    assert [r["search/step_evals"] for r in rows] == record["history"]["line_search_evals"]
    assert [r["search/step_grad_evals"] for r in rows] == [2, 2]


def test_find_lr_logs_each_search_as_an_lr_search_run(compose, cifar10_root, tmp_path):
    cfg = compose("experiment=table1", "protocol=smoke",
                  *tiny(cifar10_root, tmp_path, "optim.builder.num_batches=3",
                        "trainer.batch_size=12"))
    record = find_lr_run(cfg)
    wb = offline_run(tmp_path / record["run_key"])

    run = wb["run"]
    assert (run.run_group, run.job_type) == ("table1-smoke", "lr_search")
    assert run.display_name == record["run_key"]
    assert {"protocol:smoke", "model:tiny", "optim:mbt_gd"} <= set(run.tags)
    points = [r for r in wb["history"] if "search/batch" in r]
    assert [p["search/batch"] for p in points] == [1, 2, 3]
    assert [p["search/batch_lr"] for p in points] == record["per_batch"]
    assert all(p["search/batch_trials"] >= 1 for p in points)
    step = next(m for m in wb["metrics"] if m.glob_name == "search/batch_*")
    assert step.step_metric == "search/batch"
    summary = wb["summary"]
    assert summary["search/lr"] == record["search_lr"]  # the rescaled result (Table 1)
    assert summary["search/mean_lr"] == record["search_mean_lr"]
    assert summary["search/trials"] == record["func_evals"]
    assert summary["search/grad_evals"] == record["grad_evals"] == 3
    assert summary["search/bound_hits"] == record["bound_hits"]
    assert summary["status"] == "finished"
    assert record["wandb"]["mode"] == "offline"
    assert [r["run_key"] for r in ledger.read(tmp_path / "ledger.jsonl")] == [record["run_key"]]


def test_find_lr_with_logger_none_makes_no_wandb_run(compose, cifar10_root, tmp_path):
    cfg = compose(*tiny(cifar10_root, tmp_path, "optim=mbt_gd", "optim.builder.num_batches=2",
                        "logger=none"))
    record = find_lr_run(cfg)
    assert record["wandb"] == {}
    assert not list(tmp_path.rglob("offline-run-*"))
    assert len(list(ledger.read(tmp_path / "ledger.jsonl"))) == 1


def test_rows_map_to_namespaces_and_back():
    row = {"epoch": 3, "train_loss": 1.5, "test_acc": None, "lr": 0.1, "search_mean_lr": None,
           "search_evals": None, "epoch_time": 2.0, "future_key": 7}
    mapped = wandb_row(row)
    assert mapped == {"epoch": 3, "train/loss": 1.5, "lr/value": 0.1, "time/epoch": 2.0,
                      "future_key": 7}
    assert ledger_row(mapped) == {k: v for k, v in row.items() if v is not None}
    assert len(set(WANDB_KEYS.values())) == len(WANDB_KEYS)  # invertible
    assert {v.split("/")[0] for v in WANDB_KEYS.values()} == {"train", "test", "lr", "search",
                                                              "time"}


def test_group_always_names_its_protocol_and_tags_the_cell():
    config = {"experiment": "table2", "protocol": "full",
              "model": {"name": "resnet18", "bn_init": "legacy"}, "data": {"name": "cifar10"},
              "optim": {"name": "sgd"}}
    assert run_group(config, {"group": "table2"}) == "table2-full"
    assert run_group(config, {"group": None}) == "table2-full"
    assert run_group(config, {"group": "table2-full"}) == "table2-full"
    assert run_group({**config, "experiment": None, "protocol": "smoke"}, {}) == "adhoc-smoke"
    assert run_tags(config, {"tags": ["mine", "optim:sgd"]}) == [
        "protocol:full", "model:resnet18", "dataset:cifar10", "optim:sgd", "init:legacy", "mine"]


def test_per_batch_etas_equal_up_to_rounding_still_log_a_histogram():
    """A fig3 cpu run crashed at epoch 9: etas a few ulps apart cannot be cut into 64
    bins by numpy, and wandb.Histogram raised."""
    import math as _math

    import wandb

    from mbt.tracking import WandbTracker

    class Run:
        logged: list = []

        def log(self, metrics, step):
            self.logged.append(metrics)

    tracker = WandbTracker.__new__(WandbTracker)
    tracker._wandb, tracker.run = wandb, Run()
    eta = 0.0658
    tracker.log({"search_per_batch": [eta] * 10 + [_math.nextafter(eta, 1.0)] * 10,
                 "train_loss": 1.0}, step=1)
    hist = tracker.run.logged[-1][WANDB_KEYS["search_per_batch"]]
    assert isinstance(hist, wandb.Histogram)
