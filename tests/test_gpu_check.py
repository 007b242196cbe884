"""``scripts/gpu_check.py --dry`` (``make gpu-check``'s code paths on the CPU, tiny sizes):
every section runs and the report holds what a GPU run will fill in."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from mbt.config_paths import REPO_ROOT

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "scripts" /
                                                  "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
def test_dry_run_writes_every_section(tmp_path):
    gpu_check = _script()
    assert gpu_check.main(["--dry", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    env = res["environment"]
    assert res["dry"] and env["device"] == "cpu" and env["torch"] == torch.__version__
    assert env["git"]["commit"] and "bf16" in env
    runs = res["train"]["runs"]
    assert [r["compile"] for r in runs] == [False, True]
    for r in runs:
        assert r["status"] == "finished" and r["epochs"] == 2, r
        assert len(r["epoch_s"]) == 2 and r["best_test_acc"] is not None
        for override in ("data.pipeline=device", "trainer.channels_last=true",
                         "data.allow_partial=true", "optim=mbt_nag"):
            assert override in r["command"]
    search = res["search"]  # CPU against the CPU when dry: identical searches
    assert len(search["cpu"]["per_batch"]) == len(search["device"]["per_batch"]) == 2
    assert search["eta_same"] == 2 and search["lr_rel"] == 0.0
    bench = res["bench"]
    assert bench["model"] == "tiny" and bench["throughput"]["rows"]
    assert bench["mbt_overhead"]["rows"] and bench["flops"]["per_image"] > 0
    md = (tmp_path / "gpu_check.md").read_text()
    for heading in ("## 1. Environment", "## 2. Training", "## 3. MBT search",
                    "## 4. Bench", "### Benchmark"):
        assert heading in md
    assert "dry run" in md and "**error**" not in md and "**Failed**" not in md


def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path, capsys, monkeypatch):
    gpu_check = _script()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "needs one GPU" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
