"""mbt.report: tables and figures rebuilt from a fixture ledger, beside the paper's CSVs."""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from matplotlib.figure import Figure

from mbt import ledger
from mbt.report import build, load_ledger, paper, status_line, write_index
from mbt.report.__main__ import main
from mbt.report.common import PLAIN, Context, fmt_lr, seed_order, tuned_lr, variant
from mbt.report.figures import fig2b_settling
from mbt.report.selection import select
from mbt.report.targets import by_name
from mbt.report.wandb_source import record_from_wandb
from mbt.settle import settling_iterate

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _meta(protocol: str, experiment: str, *, synthetic=False, partial=False, num_train=50000,
          dataset="cifar10", seed=0) -> dict:
    data = {"dataset": dataset, "num_train": num_train, "num_test": 10000,
            "num_classes": 100 if dataset == "cifar100" else 10, "partial": partial,
            "synthetic": synthetic, "root": "data", "subset": None}
    return {"key_schema": ledger.KEY_SCHEMA,
            "protocol": protocol, "experiment": experiment, "dataset": dataset, "seed": seed,
            "device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3", "torch_version": "2.11.0",
            "git_commit": COMMIT, "git_dirty": False, "data": data, "synthetic": synthetic,
            "config": {}, "finished_at": "2025-01-01T00:00:00+00:00"}


def train_record(experiment, optim, lr, *, seed=0, accs=(80.0, 90.0, 89.0), lrs=None,
                 status="finished", protocol="full", model="resnet18", dataset="cifar10",
                 batch_size=200, step_lrs=None, steps=250, **meta) -> dict:
    """A record with the keys ``mbt.train._record`` writes."""
    n = len(accs)
    best = max(range(n), key=accs.__getitem__)
    history = {"epoch": list(range(1, n + 1)), "train_loss": [1.0] * n, "train_acc": [50.0] * n,
               "test_loss": [1.0] * n, "test_acc": list(accs),
               "lr": list(lrs) if lrs is not None else [lr] * n, "epoch_time": [1.0] * n,
               "search_time": [0.1] * n, "search_mean_lr": [None] * n,
               "search_evals": [None] * n, "steps": [steps] * n}
    if step_lrs is not None:
        history["step_lrs"] = step_lrs
    key = f"{experiment}-{model}-{dataset}-{optim}-lr{lr:g}-s{seed}-{protocol}"
    return {"kind": "train", "run_key": key,
            "status": status, "model": model, "optim": optim, "lr": lr,
            "batch_size": batch_size, "epochs": n, "epochs_completed": n, "early_stopped": False,
            "best_test_acc": accs[best], "best_epoch": best + 1, "final_test_acc": accs[-1],
            "history": history, "wall_time": 3.0, "wandb": {"mode": "disabled"},
            **_meta(protocol, experiment, dataset=dataset, seed=seed, **meta)}


def search_record(batch_size, lr, search_lr, *, seed=0, protocol="smoke") -> dict:
    """A record with the keys ``python -m mbt.find_lr`` writes (Table 1)."""
    return {"kind": "lr_search", "run_key": f"find-b{batch_size}-lr{lr:g}-s{seed}",
            "status": "finished", "model": "resnet18", "optim": "mbt_gd", "lr": lr,
            "batch_size": batch_size, "search_lr": search_lr, "search_mean_lr": search_lr / 2,
            "per_batch": [search_lr] * 20, "func_evals": 120, "seconds": 2.5,
            **_meta(protocol, "table1", seed=seed)}


def fixture_records() -> list[dict]:
    return [
        # Table 2: a two-seed cell, a diverged run, and a quick run; its MBT-MMT/NAG cells
        # are Fig. 3's runs below (same run key, recorded under fig3)
        train_record("table2", "sgd", 0.1, seed=0, accs=(80.0, 92.0, 91.0)),
        train_record("table2", "sgd", 0.1, seed=1, accs=(80.0, 92.5, 91.5)),
        train_record("table2", "mmt", 100.0, accs=(45.0, 10.3), status="diverged"),
        train_record("table2", "sgd", 0.1, protocol="quick", accs=(50.0, 60.0)),
        # Table 3: one cell of its own, on synthetic data; its ResNet18 cells are Fig. 3's
        train_record("table3", "mbt_nag", 0.01, model="densenet121", dataset="cifar100",
                     accs=(60.0, 74.0, 73.0), synthetic=True),
        # Fig. 2(b): full batch on 500 images, one step per epoch
        train_record("fig2b", "two_way_gd", 1.0, batch_size=500, num_train=500, steps=1,
                     accs=(10.0, 12.0, 14.0, 15.0, 16.0), lrs=[1.0, 0.5, 0.25, 0.25, 0.25]),
        # Fig. 3: both MBT methods on CIFAR10, one on CIFAR100 (partial data)
        train_record("fig3", "mbt_mmt", 0.01, lrs=[0.01, 0.05, 0.002], accs=(80.0, 93.5, 93.0)),
        train_record("fig3", "mbt_nag", 0.01, lrs=[0.01, 0.04, 0.004], accs=(90.0, 93.0, 92.8)),
        train_record("fig3", "mbt_nag", 0.01, dataset="cifar100", lrs=[0.02, 0.03, 0.003],
                     partial=True, num_train=10000, accs=(60.0, 70.0, 69.0)),
        # Table 1: a two-seed cell and a single cell
        search_record(200, 1e-2, 0.0120, seed=0),
        search_record(200, 1e-2, 0.0130, seed=1),
        search_record(12, 1e2, 0.0040),
    ]


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / "ledger.jsonl"
    for r in fixture_records():
        ledger.append(path, r)
    return path


def _rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _cell(rows: list[dict], **keys) -> dict:
    (row,) = [r for r in rows if all(r[k] == v for k, v in keys.items())]
    return row


# --- the paper's numbers ---------------------------------------------------------------------

def test_paper_csvs_have_the_full_grid():
    t1, t2, t3 = (paper.load(t) for t in ("table1", "table2", "table3"))
    assert len(t1) == 63 and set(t1.batch_size) == {12, 25, 50, 100, 200, 400, 800}
    assert sorted(set(t1.lr)) == sorted(paper.LR_GRID)
    assert not t1.duplicated(["batch_size", "lr"]).any()
    counts = t2.groupby("optim").size()
    full_rows = ["sgd", "mmt", "nag", "adagrad", "adadelta", "rmsprop", "adam", "adamax"]
    assert all(counts[o] == 9 for o in full_rows) and len(t2) == 8 * 9 + 3
    mbt = t2[t2.optim.str.startswith("mbt_")]
    assert dict(zip(mbt.optim, mbt.paper_str)) == {"mbt_gd": "91.64", "mbt_mmt": "93.70",
                                                   "mbt_nag": "93.85"}
    assert set(mbt.lr) == {1e-2}
    assert len(t3) == 20 and set(t3.model) == {"resnet18", "preact_resnet18", "mobilenetv2",
                                               "senet18", "densenet121"}
    # spot checks against the text (l. 1417, 1457, 1487, 1495) and Table 2 == Table 3 row 1
    assert t1.set_index(["batch_size", "lr"]).loc[(12, 1e2), "paper_str"] == "0.0035"
    assert t2.set_index(["optim", "lr"]).loc[("sgd", 1e-1), "paper"] == 92.07
    t3i = t3.set_index(["model", "dataset", "optim"])
    assert t3i.loc[("densenet121", "cifar100", "mbt_nag"), "paper"] == 74.51
    assert t3i.loc[("resnet18", "cifar10", "mbt_mmt"), "paper"] == 93.70


# --- tables ---------------------------------------------------------------------------------------

def test_table2_cells_header_and_protocol_choice(ledger_path, tmp_path):
    out = tmp_path / "results"
    result = build("table2", load_ledger(ledger_path), out)
    assert result.selection.protocol == "full"  # 4 full cells beat 1 quick cell
    assert result.selection.borrowed == {"fig3": 2}
    rows = _rows(out / "table2.csv")
    assert len(rows) == 75  # every paper cell, ours blank where not run
    two = _cell(rows, optim="sgd", lr="1e-1")
    assert (two["paper"], two["ours"], two["n"], two["delta"]) == ("92.07", "92.25 ± 0.35",
                                                                   "2", "+0.18")
    assert two["ours_final"] == "91.25 ± 0.35" and two["seeds"] == "0 1"
    div = _cell(rows, optim="mmt", lr="1e2")
    # best finite epoch (45.0), as the published code reports a run it never stops
    assert (div["ours"], div["delta"], div["n_diverged"]) == ("45.00 (div)", "+35.00", "1")
    nag = _cell(rows, optim="mbt_nag", lr="1e-2")
    assert (nag["paper"], nag["ours"], nag["delta"]) == ("93.85", "93.00", "-0.85")
    mmt = _cell(rows, optim="mbt_mmt", lr="1e-2")
    assert (mmt["paper"], mmt["ours"], mmt["delta"]) == ("93.70", "93.50", "-0.20")
    empty = _cell(rows, optim="adam", lr="1e-3")
    assert (empty["paper"], empty["ours"], empty["n"]) == ("92.29", "", "0")

    md = (out / "table2.md").read_text()
    assert "| sgd | 0.1 |" not in md and "| SGD | 1e-1 | 92.07 | 92.25 ± 0.35 | 2 | +0.18 |" in md
    assert "| MMT | 1e2 | 10.00 | 45.00 (div) | 1 | +35.00 |" in md
    assert "| protocol | `full` (also in the source: quick: 1 cell) |" in md
    assert ("| runs | 5 runs (diverged ×1, finished ×4); 2 runs recorded under experiment "
            "`fig3` (the same runs: the run key leaves out the experiment); 4 cells |") in md
    assert "| seeds | 0, 1 |" in md
    assert "NVIDIA H100 80GB HBM3" in md and "01234567" in md
    assert "make reproduce-table2 PROTOCOL=full" in md
    assert "python -m mbt.report table2 --protocol full" in md
    assert "NOT the paper's protocol" not in md and "SYNTHETIC" not in md


def test_header_names_the_commit_of_each_cell_when_they_differ(tmp_path):
    records = [train_record("table2", "sgd", 0.1, seed=0),
               train_record("table2", "sgd", 0.1, seed=1),
               train_record("table2", "adam", 1e-3), train_record("table2", "nag", 0.01)]
    records[1]["git_commit"] = records[3]["git_commit"] = "fedcba98" * 5
    records[2]["trained_at_commits"] = ["aaaaaaaaaaaa", "bbbbbbbbbbbb+dirty"]
    path = tmp_path / "ledger.jsonl"
    for r in records:
        ledger.append(path, r)
    build("table2", load_ledger(path), tmp_path / "out")
    md = (tmp_path / "out" / "table2.md").read_text()
    assert ("| cells by commit | 01234567: sgd/0.1; aaaaaaaa, bbbbbbbb (dirty): adam/0.001; "
            "fedcba98: all the others (2 cells) |") in md
    # One commit for every cell: no such row.
    path.write_text("")
    ledger.append(path, records[0])
    build("table2", load_ledger(path), tmp_path / "one")
    md = (tmp_path / "one" / "table2.md").read_text()
    assert "| commit(s) | 01234567 |" in md and "cells by commit" not in md


def test_quick_protocol_is_never_presented_as_the_papers(ledger_path, tmp_path):
    result = build("table2", load_ledger(ledger_path), tmp_path, protocol="quick")
    md = (tmp_path / "table2.md").read_text()
    assert len(result.selection.records) == 1
    assert "Protocol `quick` is NOT the paper's protocol" in md
    assert "ours (quick)" in md and "make reproduce-table2 PROTOCOL=quick" in md


def test_table3_flags_synthetic_data_loudly(ledger_path, tmp_path):
    result = build("table3", load_ledger(ledger_path), tmp_path)
    assert result.selection.borrowed == {"fig3": 3}
    rows = _rows(tmp_path / "table3.csv")
    row = _cell(rows, model="densenet121", dataset="cifar100", optim="mbt_nag")
    assert (row["paper"], row["ours"], row["delta"]) == ("74.51", "74.00", "-0.51")
    row = _cell(rows, model="resnet18", dataset="cifar100", optim="mbt_nag")
    assert (row["paper"], row["ours"], row["delta"]) == ("70.78", "70.00", "-0.78")
    md = (tmp_path / "table3.md").read_text()
    assert "**WARNING: 1 of 4 runs trained on SYNTHETIC data" in md
    assert "**WARNING: 1 of 4 runs used a PARTIAL copy" in md
    assert "| ResNet18 | 93.50 / 93.70 | 93.00 / 93.85 | — / 68.82 | 70.00 / 70.78 |" in md


def test_table1_cells_and_heatmap(ledger_path, tmp_path):
    build("table1", load_ledger(ledger_path), tmp_path)
    rows = _rows(tmp_path / "table1.csv")
    assert len(rows) == 63
    two = _cell(rows, batch_size="200", lr="1e-2")
    assert (two["paper"], two["torch_n"], two["torch_ratio"]) == ("0.0125", "2", "1.0")
    assert float(two["torch_ours_mean"]) == pytest.approx(0.0125)
    assert float(two["torch_ours_std"]) == pytest.approx(0.000707, abs=1e-6)
    one = _cell(rows, batch_size="12", lr="1e2")
    assert (one["paper"], one["torch_ours_mean"], one["torch_ratio"]) == ("0.0035", "0.004",
                                                                          "1.1429")
    assert "legacy_ours_mean" not in rows[0]  # no legacy-init runs in this ledger
    md = (tmp_path / "table1.md").read_text()
    assert "Protocol `smoke` is NOT the paper's protocol" in md
    assert "| runs | 3 runs (finished); 2 cells |" in md
    assert (tmp_path / "table1.png").read_bytes()[:4] == b"\x89PNG"


def test_table1_shows_both_inits_beside_the_paper(tmp_path):
    path = tmp_path / "ledger.jsonl"
    for lr, value in ((1e-2, 0.005), (1e2, 0.0052)):
        ledger.append(path, search_record(200, lr, value))
        ledger.append(path, {**search_record(200, lr, value * 2.5), "bn_init": "legacy",
                             "run_key": f"legacy-{lr}"})
    build("table1", load_ledger(path), tmp_path)
    cell = _cell(_rows(tmp_path / "table1.csv"), batch_size="200", lr="1e-2")
    assert (cell["torch_n"], cell["legacy_n"]) == ("1", "1")  # not pooled into n = 2
    assert float(cell["legacy_ours_mean"]) == pytest.approx(0.0125)
    assert (cell["torch_ratio"], cell["legacy_ratio"]) == ("0.4", "1.0")
    md = (tmp_path / "table1.md").read_text()
    assert "## Ours, legacy init" in md and "## Ours, torch init" in md
    # per-row spread and ratio range for each init
    assert ("| 200 | 0.0122–0.0147 (×1.20, 9 lrs) | 0.0050–0.0052 (×1.04, 2 lrs) | 0.37–0.40 "
            "| 0.0125–0.0130 (×1.04, 2 lrs) | 0.93–1.00 |") in md


def test_table1_keeps_bn_slices_searches_apart_and_beside_their_one_slice_cell(tmp_path, caplog):
    path = tmp_path / "ledger.jsonl"
    for lr, value in ((1e-2, 0.0125), (1e2, 0.013)):
        ledger.append(path, {**search_record(200, lr, value), "bn_init": "legacy",
                             "run_key": f"legacy-{lr}"})
    sliced = {**search_record(200, 1e-2, 0.01375), "bn_init": "legacy", "run_key": "k2",
              "config": {"optim": {"builder": {"bn_slices": 2}}}}
    ledger.append(path, sliced)  # newest: it must not replace the one-slice sample
    build("table1", load_ledger(path), tmp_path)
    cell = _cell(_rows(tmp_path / "table1.csv"), batch_size="200", lr="1e-2")
    assert float(cell["legacy_ours_mean"]) == pytest.approx(0.0125) and cell["legacy_n"] == "1"
    assert float(cell["legacy+slices2_ours_mean"]) == pytest.approx(0.01375)
    md = (tmp_path / "table1.md").read_text()
    assert "## Ours, legacy+slices2" not in md  # not a column of the main table
    assert "| 200 | 1e-2 | 0.0125 | legacy | 2 | 0.0125 | 0.0138 | 1.10 | 1.10 | 1.00 |" in md
    # a report that shows plain runs only leaves a sliced search out, like a legacy one
    plain_only = dataclasses.replace(by_name("table1"), variants=frozenset({PLAIN}))
    with caplog.at_level(logging.WARNING, logger="mbt.report.selection"):
        assert select(load_ledger(path), plain_only).records == []
    # the warning says which variants it left out, so a reader can tell a control from a bug
    assert "3 runs of other variants left out" in caplog.text
    assert "legacy 2, legacy+slices2 1" in caplog.text
    # the index and the header count (batch, lr) cells once and say what each variant covers
    per_variant = "2 cells (per variant: legacy 2, legacy+slices2 1)"
    assert f"3 runs / {per_variant}" in status_line(select(load_ledger(path), by_name("table1")))
    assert f"| runs | 3 runs (finished); {per_variant} |" in md


def test_table1_shows_the_seed_to_seed_spread_of_a_cell(tmp_path):
    path = tmp_path / "ledger.jsonl"
    for seed, value in ((0, 0.018), (1, 0.024), (2, 0.018)):
        ledger.append(path, {**search_record(800, 1e-2, value, seed=seed), "bn_init": "legacy"})
    ledger.append(path, {**search_record(800, 1e2, 0.021), "bn_init": "legacy"})
    ledger.append(path, {**search_record(800, 1e-2, 0.0198), "bn_init": "legacy",
                         "run_key": "k2", "config": {"optim": {"builder": {"bn_slices": 2}}}})
    build("table1", load_ledger(path), tmp_path)
    md = (tmp_path / "table1.md").read_text()
    # paper 0.0170 at (800, 1e-2); one-seed cells are not listed
    assert ("| 800 | 1e-2 | 0.0170 | legacy | 0 1 2 | 0.0200 ± 0.0035 | 0.0180–0.0240 (×1.33) "
            "| 0.17 | 1.06–1.41 |") in md
    assert "| 800 | 1e2 | 0.0153 | legacy | 0 |" not in md
    # an ablation of seed 0 is set beside the plain search of seed 0, not the 3-seed mean
    assert "| 800 | 1e-2 | 0.0170 | legacy | 2 | 0.0180 | 0.0198 | 1.10 | 1.16 | 1.06 |" in md


def test_table1_keeps_subset_searches_apart_and_counts_passes_over_the_images(tmp_path):
    # The data-reuse ablation: a search over n of the images draws each one 20 × b / n
    # times; it must neither replace nor pool with the search over all of them.
    path = tmp_path / "ledger.jsonl"
    whole = {**search_record(200, 1e-2, 0.012), "bn_init": "legacy", "run_key": "all",
             "data": {"num_train": 5170, "subset": None},
             "config": {"optim": {"builder": {"num_batches": 20}}}}
    ledger.append(path, {**whole, "run_key": "sub", "search_lr": 0.015,
                         "data": {"num_train": 1200, "subset": 1200}})
    # ablation runs alone: the paper's panel only, no crash
    assert (tmp_path / "table1.png") in build("table1", load_ledger(path), tmp_path).written
    ledger.append(path, whole)
    # a training run's subset is a protocol setting, not a variant
    assert variant({"kind": "train", "bn_init": "legacy", "data": {"subset": 500}}) == "legacy"
    build("table1", load_ledger(path), tmp_path)
    cell = _cell(_rows(tmp_path / "table1.csv"), batch_size="200", lr="1e-2")
    assert float(cell["legacy_ours_mean"]) == pytest.approx(0.012) and cell["legacy_n"] == "1"
    assert float(cell["legacy+subset1200_ours_mean"]) == pytest.approx(0.015)
    md = (tmp_path / "table1.md").read_text()
    # 20 × 200 / 5170 = 0.77 passes against 20 × 200 / 1200 = 3.33
    assert ("| 200 | 1e-2 | 0.0125 | legacy | 5170 | 0.77 | 1200 | 3.33 | 0.0120 | 0.0150 "
            "| 1.25 | 1.20 | 0.96 |") in md


# --- figures ------------------------------------------------------------------------------------

def test_settle_point():
    # Fig. 2(b) settles by mbt.settle.settling_iterate, the definition Fig. 2(a) uses: k =
    # the first iterate after which the lr never changes (iterates k+1..N share one lr) ...
    for lrs in ([1.0, 0.5, 0.25, 0.25, 0.25], [0.3, 0.3], [1.0, 0.5, 0.5]):
        assert fig2b_settling(lrs) == settling_iterate(lrs)
    assert fig2b_settling([1.0, 0.5, 0.25, 0.25, 0.25]) == 2   # iterates 3-5 use 0.25
    assert fig2b_settling([0.3, 0.3]) == 0                     # never changes
    # ... with Fig. 2(b)'s rule for the end of a run: its last lr must be used twice
    assert fig2b_settling([1.0, 0.5, 0.25, 0.5]) is None       # changes at the last iterate
    assert fig2b_settling([0.3]) is None
    assert fig2b_settling([]) is None


def test_fig2b(ledger_path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    build("fig2b", load_ledger(ledger_path), tmp_path)
    assert (tmp_path / "fig2b.png").read_bytes()[:4] == b"\x89PNG"
    frame = pd.read_csv(tmp_path / "fig2b.csv")
    assert list(frame.lr) == [1.0, 0.5, 0.25, 0.25, 0.25] and list(frame.iterate) == [1, 2, 3, 4, 5]
    md = (tmp_path / "fig2b.md").read_text()
    assert "**Ours**: settles after iterate 2: lr 0.25 from iterate 3 to 5, after 2 changes." in md
    # no α in the fixture's config: a dash
    assert "| torch | — | 1 | 0 | 500 | 5 | 2 | 3–5 | 3–5 | 2 | 1 | 0.25 | 1 → 1 | finished |" in md
    assert "stabilising appears after 40 iterates" in md and "not full batch" not in md


def test_fig2b_uses_step_lrs_and_reports_no_settling(tmp_path):
    rec = train_record("fig2b", "two_way_gd", 1.0, accs=(10.0, 11.0), steps=2,
                       step_lrs=[[1.0, 0.5], [0.25, 0.5]])
    build("fig2b", [rec], tmp_path)
    assert list(pd.read_csv(tmp_path / "fig2b.csv").lr) == [1.0, 0.5, 0.25, 0.5]
    md = (tmp_path / "fig2b.md").read_text()
    assert "**Ours**: not settled in 4 iterates (the lr changes at its last iterate " \
        "(0.25 → 0.5))." in md
    assert "| not settled | — |" in md and "| 4 steps |" in md
    assert "batch 200 < 50000 training images, so not full batch" in md


def _fig2b_record(lrs, *, seed=0, lr0=1.0, alpha=1e-4, init=None, init_in_config=False):
    """A Fig. 2(b) run (full batch on 500 images) with its α in the resolved config and its
    BatchNorm init in the record (``bn_init``) or only in ``config.model.bn_init``."""
    rec = train_record("fig2b", "two_way_gd", lr0, seed=seed, batch_size=500, num_train=500,
                       steps=1, accs=(10.0,) * len(lrs), lrs=lrs)
    rec["config"] = {"optim": {"builder": {"alpha": alpha}}}
    if init and init_in_config:
        rec["config"]["model"] = {"bn_init": init}
    elif init:
        rec["bn_init"] = init
    rec["history"]["train_loss"] = [2.3 - 0.1 * i for i in range(len(lrs))]
    rec["run_key"] += f"-a{alpha:g}-{init or 'torch'}"
    return rec


def test_fig2b_several_runs_table_and_legend(tmp_path, monkeypatch):
    records = [
        _fig2b_record([0.5, 0.25, 0.25, 0.25]),                              # k = 1
        _fig2b_record([0.5, 0.25, 0.125, 0.25], seed=1),                     # not settled
        _fig2b_record([0.1, 0.05, 0.05, 0.025, 0.025], lr0=0.1, alpha=0.5),  # k = 3
        _fig2b_record([1.0] * 4, init="legacy"),                             # k = 0
        _fig2b_record([1.0, 0.5, 0.5, 0.5], seed=2, alpha=0.5, init="legacy",
                      init_in_config=True),                                  # k = 1
    ]
    legends = []
    save = Figure.savefig

    def spy(fig, *args, **kwargs):
        legends.extend(t.get_text() for ax in fig.axes if ax.get_legend()
                       for t in ax.get_legend().get_texts())
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    result = build("fig2b", records, tmp_path)
    # 5 runs; seeds 0 and 1 of one setting are one cell
    assert len(result.selection.records) == 5 and result.selection.cells == 4
    md = (tmp_path / "fig2b.md").read_text()
    # one row per run: torch init first, then α ascending, δ0 descending, seed
    assert """| BatchNorm init | α | δ0 (start lr) | seed (subset and weights) | images | \
iterates | settles after iterate | lr constant at iterates | longest one-lr stretch | lr changes | \
first lr | final lr | train loss (first → final) | status |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| torch | 1e-4 | 1 | 0 | 500 | 4 | 1 | 2–4 | 2–4 | 1 | 0.5 | 0.25 | 2.3 → 2 | finished |
| torch | 1e-4 | 1 | 1 | 500 | 4 | not settled | — | 4–4 | 3 | 0.5 | 0.25 | 2.3 → 2 | finished |
| torch | 0.5 | 0.1 | 0 | 500 | 5 | 3 | 4–5 | 4–5 | 2 | 0.1 | 0.025 | 2.3 → 1.9 | finished |
| legacy | 1e-4 | 1 | 0 | 500 | 4 | 0 | 1–4 | 1–4 | 0 | 1 | 1 | 2.3 → 2 | finished |
| legacy | 0.5 | 1 | 2 | 500 | 4 | 1 | 2–4 | 2–4 | 1 | 1 | 0.5 | 2.3 → 2 | finished |
""" in md
    assert "**Ours**: 4 of 5 runs settle, after iterate 0–3 (median 1); torch init, α 1e-4, " \
        "δ0 1, seed 0: settles after iterate 1:" in md
    # seed 1 never held one lr over 2 iterates: no second reading of it
    assert "longest one-lr stretch**" not in md
    # the legend says where each curve settles, naming only the settings that vary
    assert legends == [
        "ours, torch init, α 1e-4, δ0 1, seed 0: settles after iterate 1",
        "ours, torch init, α 1e-4, δ0 1, seed 1: not settled in 4 iterates",
        "ours, torch init, α 0.5, δ0 0.1, seed 0: settles after iterate 3",
        "ours, legacy init, α 1e-4, δ0 1, seed 0: settles after iterate 0",
        "ours, legacy init, α 0.5, δ0 1, seed 2: settles after iterate 1",
        "paper: settles after 40 iterates",
        "ours: iterate k, after which the lr never changes",
        # the lower panel: the settling iterate's distribution per init at α 1e-4
        "torch init (n = 2)", "legacy init (n = 1)", "paper: 40",
    ]
    # seed 1 changed its lr at its 4th and last iterate: it may settle before or after 40
    assert "torch init: 40 falls above all 1 run (settling iterate 1); left out: 1 " \
        "unsettled run too short to place against 40; legacy init: 40 falls above all 1 " \
        "run (settling iterate 0)." in md
    frame = pd.read_csv(tmp_path / "fig2b.csv")
    assert len(frame) == 21 and set(frame.bn_init) == {"torch", "legacy"}
    assert sorted(set(frame.alpha)) == [1e-4, 0.5] and sorted(set(frame.lr0)) == [0.1, 1.0]
    assert frame[frame.seed == 1].settled_after.isna().all()


def test_fig2b_groups_a_setting_run_with_many_seeds(tmp_path, monkeypatch):
    """From 3 seeds of one setting on, the legend has one entry for the setting and the
    "Ours" sentence its settling range; each seed stays a table row."""
    records = [_fig2b_record([0.5, 0.25, 0.25, 0.25]),                      # k = 1
               _fig2b_record([0.5, 0.5, 0.25, 0.25, 0.25], seed=1),          # k = 2
               _fig2b_record([0.5, 0.25, 0.125, 0.25], seed=2),              # not settled
               _fig2b_record([1.0, 0.5, 0.5, 0.5], init="legacy")]          # k = 1
    legends = []
    save = Figure.savefig

    def spy(fig, *args, **kwargs):
        legends.extend(t.get_text() for t in fig.axes[0].get_legend().get_texts())
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    build("fig2b", records, tmp_path)
    assert legends == [
        "ours, torch init, 3 seeds: 2 of 3 settle after iterate 1–2 (median 1.5)",
        "ours, legacy init, seed 0: settles after iterate 1",
        "paper: settles after 40 iterates",
        "ours: iterate k, after which the lr never changes"]
    md = (tmp_path / "fig2b.md").read_text()
    assert ("**Ours**: 3 of 4 runs settle, after iterate 1–2 (median 1); torch init, seeds "
            "0, 1, 2: 2 of 3 settle after iterate 1–2 (median 1.5); not settled: seed 2 "
            "(0.125 → 0.25 at its last iterate); legacy init, seed 0: settles after "
            "iterate 1: lr 0.5 from iterate 2 to 4, after 1 changes.") in md
    assert md.count("| torch | 1e-4 | 1 |") == 3
    # only the seed varies: the sentence names the seeds alone
    build("fig2b", records[:3], tmp_path / "one_setting")
    md = (tmp_path / "one_setting" / "fig2b.md").read_text()
    assert "(median 1.5); seeds 0, 1, 2: 2 of 3 settle after iterate 1–2 (median 1.5); " \
        "not settled: seed 2 (0.125 → 0.25 at its last iterate)." in md
    build("fig2b", [*records[:2], _fig2b_record([0.5], seed=2)], tmp_path / "short")
    assert "not settled: seed 2 (a single iterate)." in \
        (tmp_path / "short" / "fig2b.md").read_text()


def test_fig2b_reads_a_held_then_regrown_lr_as_its_longest_stretch(tmp_path):
    # seed 1 holds 0.25 over iterates 2-4, then two-way grows it back: not settled, but
    # stabilising after iterate 1 when read as its longest one-lr stretch
    records = [_fig2b_record([0.5, 0.25, 0.25, 0.25]),
               _fig2b_record([0.5, 0.25, 0.25, 0.25, 0.5, 0.25], seed=1)]
    build("fig2b", records, tmp_path)
    md = (tmp_path / "fig2b.md").read_text()
    assert "seed 1: one lr over iterates 2–4): torch init: 40 falls above all 2 runs " \
        "(stabilising iterates 1–1)." in md
    assert "| 1 | 500 | 6 | not settled | — | 2–4 |" in md
    # where the two readings agree, the second line is left out
    build("fig2b", records[:1], tmp_path / "settled")
    assert "longest one-lr stretch**" not in (tmp_path / "settled" / "fig2b.md").read_text()


def test_fig3(ledger_path, tmp_path):
    build("fig3", load_ledger(ledger_path), tmp_path)
    assert (tmp_path / "fig3.png").read_bytes()[:4] == b"\x89PNG"
    frame = pd.read_csv(tmp_path / "fig3.csv")
    assert len(frame) == 9 and set(frame.dataset) == {"cifar10", "cifar100"}
    md = (tmp_path / "fig3.md").read_text()
    # last-half max/min over epochs 2-3: MMT 0.05/0.002 = 25, NAG 0.04/0.004 = 10
    assert "CIFAR10: last-half max/min lr MBT-MMT 25.00, MBT-NAG 10.00 (MBT-NAG steadier)" in md
    assert "**WARNING: 1 of 3 runs used a PARTIAL copy" in md


# --- CLI, missing data, index, W&B ------------------------------------------------------------

def test_missing_target_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "ledger.jsonl"
    empty.write_text("")
    out = tmp_path / "results"
    assert main(["fig3", "--ledger", str(empty), "--out", str(out)]) == 1
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "`make reproduce-fig3`" in line
    assert not out.exists()
    assert main(["all", "--ledger", str(empty), "--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["README.md"]
    assert (out / "README.md").read_text().count("| not run |") >= 5


def test_cli_all_and_index(ledger_path, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["all", "--ledger", str(ledger_path), "--out", str(out)]) == 0
    for target in ("table1", "table2", "table3", "fig2b", "fig3"):
        assert (out / f"{target}.md").is_file() and (out / f"{target}.csv").is_file()
    index = (out / "README.md").read_text()
    assert "full · 5 runs / 4 cells · seeds 0 1 · commit 01234567" in index
    assert "smoke · 3 runs / 2 cells" in index and "full · 1 run / 1 cell" in index  # fig2b
    assert "SYNTHETIC data" in index
    assert f"--ledger {ledger_path}" in (out / "table2.md").read_text()
    assert main(["table2", "--protocol", "smoke", "--ledger", str(ledger_path),
                 "--out", str(out)]) == 1
    assert "no smoke runs" in capsys.readouterr().out.splitlines()[-1]


def test_shared_runs_join_only_with_the_targets_settings():
    own = train_record("table2", "sgd", 0.1)                          # 3 epochs
    same = train_record("fig3", "mbt_nag", 0.01)                      # 3 epochs: joins
    longer = train_record("fig3", "mbt_mmt", 0.01, accs=(1.0,) * 5)  # 5 epochs: another run
    other_model = train_record("fig3", "mbt_gd", 0.01, model="senet18")
    sel = select([own, same, longer, other_model], by_name("table2"))
    assert [r["optim"] for r in sel.records] == ["sgd", "mbt_nag"]
    alone = select([longer], by_name("table2"))
    assert len(alone.records) == 1 and alone.borrowed == {"fig3": 1}


def test_table3_resnet18_row_counts_the_runs_table2_counts():
    # one run key, recorded under whichever preset made it first: autolr's cpu preset made
    # MBT-MMT's seeds 1-2 at 1e-2, which Table 2 counted and Table 3 once left out
    records = [train_record("table2", "mbt_mmt", 0.01),
               train_record("autolr", "mbt_mmt", 0.01, seed=1),
               train_record("mbt_gap", "mbt_nag", 0.01, seed=2),
               train_record("table3", "mbt_nag", 0.01, model="senet18")]

    def resnet18_mbt(target):
        return sorted((r["optim"], r["seed"]) for r in select(records, by_name(target)).records
                      if r["model"] == "resnet18")

    assert resnet18_mbt("table3") == resnet18_mbt("table2") == [
        ("mbt_mmt", 0), ("mbt_mmt", 1), ("mbt_nag", 2)]
    # and a Table 2 cell that `make reproduce-table3` made first counts for autolr too
    records[0]["experiment"] = "table3"
    assert ("mbt_mmt", 0) in resnet18_mbt("autolr")


def test_target_without_runs_of_its_own_takes_the_first_sharing_experiments_settings():
    # Table 3 shares ResNet18 MBT cells with Table 2 (8-epoch presets) and Figure 3 (longer):
    # with none of its own yet, it must not pool a 3-epoch and a 5-epoch run of one cell.
    short = train_record("table2", "mbt_nag", 0.01)                    # 3 epochs
    longer = train_record("fig3", "mbt_nag", 0.01, accs=(1.0,) * 5)    # 5 epochs, newer
    longer["run_key"] += "-e5"
    sel = select([short, longer], by_name("table3"))
    assert [r["epochs"] for r in sel.records] == [3] and sel.borrowed == {"table2": 1}
    # Figure 3's runs alone still make a Table 3
    assert len(select([longer], by_name("table3")).records) == 1


def test_write_index_lists_other_results(tmp_path):
    (tmp_path / "fig2a.md").write_text("x")
    text = write_index(tmp_path, [], ctx=Context(out=tmp_path)).read_text()
    assert "| Fig. 2(a) |" in text and "[`fig2a.md`](fig2a.md)" in text


def test_wandb_source_fails_in_one_line_offline(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["table2", "--source", "wandb", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --source wandb") and "\n" not in err


def test_record_from_wandb_rebuilds_a_train_record():
    cfg = {"protocol": "full", "experiment": "table2", "seed": 1,
           "model": {"name": "resnet18"}, "data": {"name": "cifar10", "num_classes": 10},
           "optim": {"name": "sgd", "lr": 0.1}, "trainer": {"batch_size": 200, "epochs": 2}}
    rows = [{"epoch": 2, "test_acc": 91.0, "lr": 0.1}, {"epoch": 1, "test_acc": 92.0, "lr": 0.1},
            {"epoch": 0.5, "test_acc": None}, {"_step": 3}]
    run = SimpleNamespace(config=cfg, summary={"status": "finished"}, state="finished",
                          metadata={"gpu": "NVIDIA H100"}, name="key", id="abc", url=None,
                          scan_history=lambda: iter(rows))
    rec = record_from_wandb(run)
    assert (rec["kind"], rec["best_test_acc"], rec["best_epoch"], rec["final_test_acc"]) == (
        "train", 92.0, 1, 91.0)
    assert by_name("table2").cell_of(rec) == ("sgd", 0.1) and rec["synthetic"] is None
    sel = select([rec], by_name("table2"))
    assert sel.protocol == "full" and len(sel.records) == 1
    running = SimpleNamespace(**{**vars(run), "summary": {}, "state": "running"})
    assert record_from_wandb(running) is None
    # A run logged with the ledger's provenance says what data it loaded, where, when.
    prov = {"data": {"num_train": 5170, "partial": True, "synthetic": False},
            "synthetic": False, "device": "cuda:0", "device_name": "NVIDIA H200",
            "torch_version": "2.14.1", "git_commit": "f" * 40, "git_dirty": False}
    rec = record_from_wandb(SimpleNamespace(**{**vars(run), "config": {**cfg,
                                                                       "provenance": prov}}))
    assert {k: rec[k] for k in prov} == prov and "provenance" not in rec["config"]


def test_fmt_lr():
    assert [fmt_lr(v) for v in paper.LR_GRID] == ["1e2", "1e1", "1e0", "1e-1", "1e-2", "1e-3",
                                                   "1e-4", "1e-5", "1e-6"]
    assert fmt_lr(0.03) == "0.03"


def test_commits_are_the_ones_that_trained_the_run():
    from mbt.report.writers import commits_of

    resumed = {"git_commit": "c" * 40, "git_dirty": False,
               "trained_at_commits": ["a" * 12, "b" * 12 + "+dirty"]}
    assert commits_of(resumed) == ["aaaaaaaa", "bbbbbbbb (dirty)"]
    assert commits_of({"git_commit": "c" * 40, "git_dirty": True}) == ["cccccccc (dirty)"]
    assert commits_of({}) == []


def test_record_from_wandb_reads_namespaced_runs():
    """Runs logged by mbt.tracking use train/loss, test/acc, lr/value, search/* keys."""
    from mbt.tracking import wandb_row

    cfg = {"protocol": "full", "experiment": "table2", "seed": 0,
           "model": {"name": "resnet18"}, "data": {"name": "cifar10", "num_classes": 10},
           "optim": {"name": "mbt_nag", "lr": 0.01}, "trainer": {"batch_size": 200, "epochs": 2}}
    rows = [wandb_row({"epoch": e, "test_acc": a, "lr": lr, "train_loss": 1.0 / e})
            for e, a, lr in ((1, 50.0, 0.02), (2, 60.0, 0.03))]
    assert "test/acc" in rows[0] and "test_acc" not in rows[0]
    run = SimpleNamespace(config=cfg, summary={"status": "finished"}, state="finished",
                          metadata={}, name="k", id="i", url=None, job_type="train",
                          scan_history=lambda: iter(rows))
    rec = record_from_wandb(run)
    assert rec["history"]["lr"] == [0.02, 0.03] and rec["best_test_acc"] == 60.0
    search = SimpleNamespace(**{**vars(run), "job_type": "lr_search", "summary": {
        "status": "finished", "search/lr": 0.005, "search/mean_lr": 0.2, "search/trials": 40,
        "search/seconds": 3.0}})
    rec = record_from_wandb(search)
    assert (rec["kind"], rec["search_lr"], rec["func_evals"], rec["seconds"]) == (
        "lr_search", 0.005, 40, 3.0)


def test_table2_and_autolr_see_each_others_cells():
    """autolr's cpu SGD/NAG/MBT runs have Table 2's run keys, so whichever preset trained a
    cell first labels it; both reports (and best_lr's extra seeds) must still see it. A run
    with a divergence cut-off (autolr's other presets) is not a Table 2 cell."""
    from mbt.report.best_lr import best_lrs
    from mbt.report.paper import LR_GRID

    grid = [train_record("autolr", "sgd", lr, protocol="cpu",
                         accs=(10.0, 90.0 if lr == 0.1 else 50.0, 40.0)) for lr in LR_GRID]
    mbt = train_record("table2", "mbt_nag", 0.01, protocol="cpu")
    cut = train_record("autolr", "nag", 0.1, protocol="cpu")
    cut["config"] = {"trainer": {"diverge_factor": 10.0}}
    records = [*grid, mbt, cut]
    table2 = select(records, by_name("table2"), "cpu")
    assert sorted(r["optim"] for r in table2.records) == ["mbt_nag"] + ["sgd"] * 9
    assert best_lrs(records, "cpu")[0] == {"sgd": 0.1}
    autolr = select(records, by_name("autolr"), "cpu")
    assert sorted(r["optim"] for r in autolr.records) == ["mbt_nag", "nag"] + ["sgd"] * 9


def test_tuned_lr_prefers_the_best_score_then_the_larger_lr():
    assert tuned_lr({0.1: 90.0, 1.0: 90.0, 0.01: 89.0}) == 1.0       # a tie: the larger lr
    assert tuned_lr({0.1: 90.0, 1.0: None, 10.0: float("nan")}) == 0.1  # no score: the worst
    assert tuned_lr({0.1: None}) == 0.1


def test_seeds_sort_in_numeric_order():
    assert sorted([10, 2, None, "b", 0], key=seed_order) == [0, 2, 10, "b", None]
