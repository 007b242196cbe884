"""``python -m mbt.bench --smallest`` on CPU: the report's structure, not its speed."""

from __future__ import annotations

import json

import pytest

from mbt.bench import Settings, resolve_settings
from mbt.bench.cli import main
from mbt.bench.report import parity, peak_key, peak_tflops

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TOP_KEYS = {"schema", "timestamp", "command", "device", "torch_version", "git", "model",
            "settings", "data", "throughput", "mbt_overhead", "flops", "parity", "notes"}
OVERHEAD_KEYS = {"batch_size", "steps_per_epoch_50k", "step_s", "search_s", "trials_per_batch",
                 "split_s", "floor_s", "floor_share", "search_vs_floor", "search_vs_floor_grad",
                 "least_vs_floor_grad",
                 "nag_epoch_50k_s", "mbt_epoch_50k_s", "ratio", "search_scaled"}
SECTIONS = ("# Benchmark", "## 1. Training throughput", "## 2. MBT-NAG against NAG",
            "## 3. FLOPs and MFU", "## 4. Accuracy parity")


@pytest.mark.integration
def test_smallest_cpu_run_writes_the_report(tmp_path, capsys):
    assert main(["--smallest", "--device", "cpu", "--out", str(tmp_path),
                 "--ledger", str(tmp_path / "ledger.jsonl")]) == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert TOP_KEYS <= set(res)
    assert res["device"]["type"] == "cpu" and res["git"]["commit"]
    assert res["settings"]["batch_sizes"] == [12] and res["settings"]["smallest"] is True

    rows = res["throughput"]["rows"]
    assert [r["data"] for r in rows] == ["dataloader", "device"]
    assert all(r["images_per_s"] > 0 and r["timed_images"] == 24 for r in rows)
    assert set(res["throughput"]["ratio"]) == {"paper"}

    (row,) = res["mbt_overhead"]["rows"]
    assert OVERHEAD_KEYS <= set(row)
    assert row["steps_per_epoch_50k"] == 4167 and row["search_scaled"] is True
    assert row["floor_share"] == pytest.approx(20 / 4167)
    assert row["mbt_epoch_50k_s"] == pytest.approx(row["search_s"] + row["nag_epoch_50k_s"])
    assert res["mbt_overhead"]["target"] is None  # batch 200 was not measured

    assert res["flops"]["per_image"] > 1e9  # ResNet18 on 32x32: ~3.3 GFLOP forward+backward
    assert all(r["mfu"] is None for r in res["flops"]["rows"])  # no CPU peak
    assert res["parity"]["status"] == "not yet measured"

    md = (tmp_path / "bench.md").read_text()
    positions = [md.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    assert "Reduced CPU run" in md and "Not yet measured" in md
    assert "bench.md" in capsys.readouterr().out


def test_settings_defaults_follow_the_device():
    import torch

    cpu = resolve_settings(Settings(), torch.device("cpu"))
    assert cpu.images == 400 and cpu.bf16 is False and cpu.search_batches < 20
    cuda = resolve_settings(Settings(), torch.device("cuda"))
    assert cuda.images >= 10_000 and cuda.bf16 is True and cuda.search_batches == 20
    assert cuda.batch_sizes == (12, 50, 200, 800)
    small = resolve_settings(Settings(smallest=True, batch_sizes=(12, 50)), torch.device("cpu"))
    assert small.batch_size == 12 and small.batch_sizes == (12, 50)
    with pytest.raises(ValueError, match="search-batches"):
        resolve_settings(Settings(search_batches=21), torch.device("cpu"))


def test_peak_table_by_device_name():
    assert peak_key("NVIDIA H100 80GB HBM3") == "H100 SXM"
    assert peak_key("NVIDIA H100 PCIe") == "H100 PCIe"
    assert peak_key("NVIDIA H200") == "H200"
    assert peak_key("NVIDIA A100-SXM4-80GB") == "A100"
    assert peak_key("NVIDIA GeForce RTX 4090") is None
    import torch

    assert peak_tflops(torch.device("cuda"), "NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert peak_tflops(torch.device("cpu"), "CPU", "fp32") is None


def test_parity_pairs_bf16_and_fp32_runs_of_one_cell(tmp_path):
    def record(bf16: bool, seed: int, acc: float, device: str = "cuda") -> dict:
        cfg = {"model": {"name": "resnet18"}, "data": {"name": "cifar10"},
               "optim": {"name": "nag", "lr": 0.01}, "seed": seed,
               "trainer": {"batch_size": 200, "epochs": 200, "amp_bf16": bf16,
                           "channels_last": True, "compile": False}}
        return {"kind": "train", "status": "finished", "device": device, "config": cfg,
                "best_test_acc": acc}

    path = tmp_path / "ledger.jsonl"
    recs = [record(False, 0, 93.0), record(False, 1, 93.4), record(True, 0, 93.1),
            record(True, 0, 50.0, device="cpu"),  # no CPU fp32 partner: no CPU row
            record(False, 2, 70.0, device="cuda:1")]  # a CUDA run on another index
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    par = parity(path)
    assert par["status"] == "measured"
    (row,) = par["rows"]
    assert row["cell"].startswith("cuda: ")
    assert row["fp32_n"] == 3 and row["bf16_n"] == 1
    assert row["delta"] == pytest.approx(93.1 - (93.0 + 93.4 + 70.0) / 3)
    path.write_text(path.read_text() + json.dumps(record(False, 1, 51.0, device="cpu")) + "\n")
    rows = {r["cell"].split(":")[0]: r for r in parity(path)["rows"]}
    assert set(rows) == {"cpu", "cuda"}  # a CPU pair is its own row, never mixed in
    assert rows["cpu"]["delta"] == pytest.approx(50.0 - 51.0)
    assert parity(tmp_path / "missing.jsonl")["status"] == "not yet measured"


def test_search_split_per_batch_and_extrapolation_to_20():
    from mbt.bench.measure import _per_batch, _to_full_search

    # set-up 1 s; batch 0: grad 2 s, trials 1+1 s, next batch's data 1 s; batch 1: 2, 1+1.
    marks = [("grad", 1.0), ("trial", 3.0), ("trial", 4.0), ("batch", 5.0),
             ("grad", 6.0), ("trial", 8.0), ("trial", 9.0)]
    split = _per_batch(marks, 0.0, 10.0)
    assert split["setup"] == 1.0 and split["trial_s"] == [1.0, 1.0, 1.0, 1.0]
    assert split["batches"] == [{"grad": 2.0, "trials": 2.0, "other": 1.0, "n_trials": 2},
                                {"grad": 2.0, "trials": 2.0, "other": 0.0, "n_trials": 2}]
    full = _to_full_search(split)  # batch 0 once, the mean of the later ones 19 times
    assert full == {"grad": 40.0, "trials": 40.0, "other": 2.0, "n_trials": 40.0,
                    "total": 82.0}


def test_parity_only_rereads_the_ledger_and_keeps_the_timings(tmp_path, monkeypatch):
    from mbt.bench.cli import main

    assert main(["--parity-only", "--out", str(tmp_path)]) == 2  # no bench.json yet
    res = {"parity": {"ledger": "x", "status": "not yet measured", "rows": []},
           "throughput": {"marker": 1.25}}
    (tmp_path / "bench.json").write_text(json.dumps(res))
    import mbt.bench.report as report

    path = tmp_path / "ledger.jsonl"
    cfg = {"model": {"name": "resnet18"}, "data": {"name": "cifar10"},
           "optim": {"name": "nag", "lr": 0.01}, "trainer": {"batch_size": 100, "epochs": 3}}
    recs = [{"kind": "train", "status": "finished", "device": "cpu", "best_test_acc": acc,
             "config": {**cfg, "seed": 0, "trainer": {**cfg["trainer"], "amp_bf16": bf16}}}
            for bf16, acc in ((False, 40.0), (True, 41.0))]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    rendered = []
    monkeypatch.setattr(report, "render", lambda r: rendered.append(r) or "md\n")
    assert main(["--parity-only", "--out", str(tmp_path), "--ledger", str(path)]) == 0
    out = json.loads((tmp_path / "bench.json").read_text())
    assert out["throughput"] == {"marker": 1.25}  # not re-timed
    (row,) = out["parity"]["rows"]
    assert row["cell"].startswith("cpu: ") and row["delta"] == pytest.approx(1.0)
    assert rendered and (tmp_path / "bench.md").read_text() == "md\n"


def test_render_of_the_committed_bench_json_has_every_section_and_row():
    """The fast-suite check of render (the integration test above runs a real bench)."""
    from pathlib import Path

    from mbt.bench.report import render

    res = json.loads((Path(__file__).resolve().parents[1] / "results" / "bench.json").read_text())
    md = render({**res, "notes": ["a note"]})
    at = [md.index(s) for s in SECTIONS]
    assert at == sorted(at) and md.endswith("## Notes\n\n- a note\n")
    rows = {m["batch_size"] for m in res["mbt_overhead"]["rows"]}
    assert all(sum(line.startswith(f"| {b} | ") for line in md.splitlines()) == 2 for b in rows)
    assert md.count("\n| ") >= len(res["throughput"]["rows"]) + len(res["flops"]["rows"])
