"""mbt.report autolr: automatic-lr methods vs tuned grids, tuning cost counted (fixture ledger)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mbt import ledger
from mbt.report import build, load_ledger, write_index
from mbt.report.__main__ import main

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run(optim, lr, seed, accs, wall, *, status="finished", lrs=None, protocol="full") -> dict:
    """An autolr record with the keys ``mbt.train._record`` writes."""
    n = len(accs)
    best = max(range(n), key=accs.__getitem__)
    history = {"epoch": list(range(1, n + 1)), "train_loss": [1.0] * n, "train_acc": [50.0] * n,
               "test_loss": [1.0] * n, "test_acc": list(accs),
               "lr": list(lrs) if lrs is not None else [lr] * n, "epoch_time": [wall / n] * n,
               "search_time": [0.0] * n, "search_mean_lr": [None] * n,
               "search_evals": [None] * n, "steps": [250] * n}
    data = {"dataset": "cifar10", "num_train": 50000, "num_test": 10000, "num_classes": 10,
            "partial": False, "synthetic": False, "subset": None}
    return {"kind": "train", "key_schema": 2,
            "run_key": f"resnet18-cifar10-{optim}-lr{lr:g}-s{seed}-{protocol}",
            "status": status, "protocol": protocol, "experiment": "autolr",
            "model": "resnet18", "dataset": "cifar10", "optim": optim, "lr": lr,
            "batch_size": 200, "epochs": max(n, 3), "seed": seed, "epochs_completed": n,
            "early_stopped": False, "best_test_acc": accs[best], "best_epoch": best + 1,
            "final_test_acc": accs[-1], "history": history, "wall_time": wall,
            "device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3", "git_commit": COMMIT,
            "git_dirty": False, "data": data, "synthetic": False, "config": {}}


def fixture_records() -> list[dict]:
    return [
        # automatic: MBT-NAG (2 seeds, its search inside wall_time), Prodigy (1 seed)
        run("mbt_nag", 0.01, 0, (80.0, 91.0, 90.5), 60.0, lrs=[0.01, 0.05, 0.02]),
        run("mbt_nag", 0.01, 1, (80.0, 91.5, 91.0), 70.0, lrs=[0.01, 0.04, 0.02]),
        run("prodigy", 1.0, 0, (85.0, 90.0, 90.0), 50.0),
        # tuned: SGD at 3 start lrs x 2 seeds; lr 1 diverged for seed 0 (chance, 10 %)
        run("sgd", 1.0, 0, (20.0, 10.0), 5.0, status="diverged"),
        run("sgd", 1.0, 1, (70.0, 88.0, 87.0), 39.5),
        run("sgd", 0.1, 0, (80.0, 89.0, 88.0), 40.0),
        run("sgd", 0.1, 1, (80.0, 89.5, 89.0), 40.5),
        run("sgd", 0.01, 0, (80.0, 92.0, 91.5), 41.0),
        run("sgd", 0.01, 1, (80.0, 93.0, 92.5), 41.5),
        # another protocol: not mixed in
        run("sgd", 0.1, 0, (50.0,), 1.0, protocol="smoke"),
    ]


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / "ledger.jsonl"
    for r in fixture_records():
        ledger.append(path, r)
    return path


def _rows(path: Path) -> dict[str, dict]:
    with path.open() as fh:
        return {r["optim"]: r for r in csv.DictReader(fh)}


def test_autolr_table_cost_median_order_and_verdict(ledger_path, tmp_path):
    out = tmp_path / "results"
    result = build("autolr", load_ledger(ledger_path), out)
    assert result.selection.protocol == "full" and len(result.selection.records) == 9
    assert [p.name for p in result.written] == ["autolr.md", "autolr.csv", "autolr.png"]

    rows = _rows(out / "autolr.csv")
    assert list(rows) == ["sgd", "mbt_nag", "prodigy"]          # best accuracy first
    sgd, nag, prodigy = rows["sgd"], rows["mbt_nag"], rows["prodigy"]
    assert (sgd["kind"], nag["kind"], prodigy["kind"]) == ("tuned", "automatic", "automatic")
    # the cost sums the whole grid per seed (the diverged run too), then means over seeds
    assert sgd["time_s_per_seed"] == "86 121.5" and float(sgd["time_s_mean"]) == 103.75
    assert (sgd["runs_per_seed"], sgd["runs_total"], sgd["n_grid"]) == ("3.0", "6", "3")
    assert float(nag["time_s_mean"]) == 65.0 and nag["runs_per_seed"] == "1.0"
    assert float(prodigy["time_s_mean"]) == 50.0
    assert float(sgd["gpu_hours_mean"]) == pytest.approx(103.75 / 3600, abs=1e-6)
    # accuracy at the best grid point (1e-2) and at the median one (1e-1 of 1e-2, 1e-1, 1)
    assert (sgd["best_lr"], float(sgd["best_acc_mean"]), float(sgd["final_acc_mean"])) == (
        "1e-2", 92.5, 92.0)
    assert (sgd["median_lr"], float(sgd["median_acc_mean"])) == ("1e-1", 89.25)
    assert float(nag["median_acc_mean"]) == float(nag["best_acc_mean"]) == 91.25
    assert sgd["grid_lrs"] == "1e-2 1e-1 1e0" and sgd["complete_grid"] == "True"

    md = (out / "autolr.md").read_text()
    assert ("| SGD | tuned | 1e-2 best, 1e-1 median of 3 | 3 | 103.8 ± 25.1 s (0.0288 GPU-h) "
            "| 92.50 ± 0.71 (n=2) | 92.00 ± 0.71 (n=2) | 89.25 ± 0.35 (n=2) | 0 1 |") in md
    assert "| Prodigy | automatic | 1e0 | 1 | 50.0 s (0.0139 GPU-h) | 90.00 (n=1) |" in md
    assert md.index("| SGD |") < md.index("| MBT-NAG |") < md.index("| Prodigy |")
    assert ("MBT-NAG against Prodigy, the best other automatic method: wins on best-epoch "
            "accuracy (+1.25 points) and final-epoch accuracy (+0.75 points); loses on time "
            "(1.30× as long: 65.0 s vs 50.0 s per seed).") in md
    assert ("MBT-NAG against SGD, the best tuned method (start lr 1e-2, the best of 3 tried, "
            "3 runs per seed): wins on time (0.63× as long: 65.0 s vs 103.8 s per seed); "
            "loses on best-epoch accuracy (-1.25 points) and final-epoch accuracy "
            "(-1.25 points).") in md
    assert "the logged lr of Prodigy is the user multiplier" in md
    assert "predate the step-size logging" in md
    assert "have one seed**" in md and "Every method" not in md
    assert "make reproduce-autolr PROTOCOL=full" in md and "NOT" not in md
    assert (out / "autolr.png").read_bytes()[:4] == b"\x89PNG"


def test_autolr_diverged_point_and_other_protocol(ledger_path, tmp_path):
    records = load_ledger(ledger_path)
    build("autolr", records, tmp_path)
    md = (tmp_path / "autolr.md").read_text()
    assert "| protocol | `full` (also in the source: smoke: 1 cell) |" in md
    # SGD at lr 1: one diverged seed enters as chance (10 %): mean of 10 and 88
    one = [r for r in records if r["optim"] == "sgd" and r["lr"] == 1.0]
    assert {r["status"] for r in one} == {"diverged", "finished"}
    smoke = build("autolr", records, tmp_path / "smoke", protocol="smoke")
    text = (tmp_path / "smoke" / "autolr.md").read_text()
    assert len(smoke.selection.records) == 1
    assert "Protocol `smoke` is NOT this experiment's full protocol" in text
    assert "MBT-MMT / MBT-NAG have no runs here: no verdict." in text


def test_autolr_in_cli_and_index(ledger_path, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["autolr", "--ledger", str(ledger_path), "--out", str(out)]) == 0
    assert "autolr: wrote" in capsys.readouterr().out
    index = write_index(out, load_ledger(ledger_path)).read_text()
    assert "| Beyond: autolr |" in index and "full · 9 runs / 5 cells" in index
    assert "`make reproduce-autolr PROTOCOL=full`" in index
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["autolr", "--ledger", str(empty), "--out", str(tmp_path / "none")]) == 1
    assert "`make reproduce-autolr`" in capsys.readouterr().out


def test_only_curves_flat_at_the_multiplier_are_flagged():
    from mbt.report.autolr import _logged_multiplier

    def rec(optim, lrs, lr=1.0):
        return {"optim": optim, "lr": lr, "history": {"epoch": [1, 2], "lr": lrs}}

    assert _logged_multiplier(rec("prodigy", [1.0, 1.0]))  # old record: the multiplier
    assert not _logged_multiplier(rec("prodigy", [2e-4, 9e-3]))  # the logged d·lr
    assert not _logged_multiplier(rec("sgd", [1.0, 1.0]))  # lr is sgd's step


def test_point_labels_do_not_overlap(tmp_path, monkeypatch):
    """Panel (a) names every point; methods with nearly the same time and accuracy (as
    Prodigy, D-Adapt Adam and Schedule-Free AdamW in the cpu run) get labels that overlap
    neither each other nor a point's marker (adjustText, the report extra)."""
    pytest.importorskip("adjustText")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    crowd = [("prodigy", 37.8, 112.0), ("dadapt_adam", 36.8, 112.5),
             ("adamw_schedulefree", 36.6, 110.0), ("dadapt_sgd", 14.9, 110.5),
             ("sgd_schedulefree", 13.3, 107.0), ("dog", 11.2, 111.0), ("sls", 31.9, 156.0),
             ("mbt_gd", 31.3, 152.0), ("mbt_nag", 40.4, 252.0), ("mbt_mmt", 34.0, 246.0)]
    records = [run(optim, 1.0, 0, (acc - 1.0, acc), secs) for optim, acc, secs in crowd]
    boxes = {}
    save = Figure.savefig

    def spy(fig, *args, **kwargs):
        out = save(fig, *args, **kwargs)
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        ax = fig.axes[0]
        boxes["texts"] = [t.get_window_extent(renderer) for t in ax.texts]
        boxes["legend"] = ax.get_legend().get_window_extent(renderer)
        boxes["markers"] = [line.get_window_extent(renderer) for line in ax.lines
                            if line.get_marker() not in (None, "None", "") and
                            len(line.get_xdata()) == 1 and line.get_label().startswith("_")]
        return out

    monkeypatch.setattr(Figure, "savefig", spy)
    build("autolr", records, tmp_path)
    texts, markers = boxes["texts"], boxes["markers"]
    assert len(texts) == len(crowd) and len(markers) == len(crowd)
    for i, a in enumerate(texts):
        assert not any(a.overlaps(b) for b in texts[i + 1:]), f"label {i} overlaps a label"
        assert not any(a.overlaps(m) for m in markers), f"label {i} covers a marker"
        assert not a.overlaps(boxes["legend"]), f"label {i} is under the legend"


def test_autolr_takes_the_settings_most_runs_share(ledger_path, tmp_path):
    # an older preset of the same protocol (fewer epochs): kept in the ledger, never pooled
    old = run("dog", 1.0, 0, (95.0, 99.0), 10.0)
    old.update(epochs=2, run_key="resnet18-cifar10-dog-old")
    ledger.append(ledger_path, old)
    out = tmp_path / "results"
    result = build("autolr", load_ledger(ledger_path), out)
    assert len(result.selection.records) == 9
    assert "dog" not in _rows(out / "autolr.csv")
    assert ("**Left out.** Beyond: autolr: the runs with 3 epochs, batch 200 (most of its "
            "runs); left out, other settings: 2 epochs, batch 200: 1 run.") in \
        (out / "autolr.md").read_text()


def test_tuned_extra_seeds_keep_the_seed0_choice_and_do_not_dilute_its_cost(tmp_path):
    # Seed 0 ran the grid; seeds 1-2 ran only its best lr (1e-2), as `mbt.report.best_lr`
    # sends them. Their lower mean must not hand the win to the one-seed point at 1e-1,
    # and the cost is the grid's, not the grid's spread over three seeds.
    path = tmp_path / "ledger.jsonl"
    for r in (run("sgd", 1.0, 0, (20.0, 30.0), 10.0), run("sgd", 0.1, 0, (80.0, 90.0), 20.0),
              run("sgd", 0.01, 0, (80.0, 91.0), 30.0), run("sgd", 0.01, 1, (80.0, 87.0), 31.0),
              run("sgd", 0.01, 2, (80.0, 86.0), 32.0)):
        ledger.append(path, r)
    build("autolr", load_ledger(path), tmp_path)
    sgd = _rows(tmp_path / "autolr.csv")["sgd"]
    assert sgd["best_lr"] == "1e-2" and float(sgd["best_acc_mean"]) == pytest.approx(88.0)
    assert (sgd["runs_per_seed"], sgd["runs_total"], float(sgd["time_s_mean"])) == (
        "3.0", "5", 60.0)
    assert sgd["complete_grid"] == "True"
    assert "Incomplete grids" not in (tmp_path / "autolr.md").read_text()
    # a seed that ran part of the grid is still flagged
    ledger.append(path, run("sgd", 0.1, 1, (80.0, 89.0), 21.0))
    build("autolr", load_ledger(path), tmp_path)
    assert "SGD: seed 1 lacks 1e0" in (tmp_path / "autolr.md").read_text()
