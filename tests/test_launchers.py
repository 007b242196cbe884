"""LAUNCHER=local_gpus (conf/hydra/launcher/local_gpus.yaml): on one machine with K GPUs a
sweep runs K jobs at once, one GPU each. No GPU needed: the jobs only report the
CUDA_VISIBLE_DEVICES they were given, on a machine that claims to have GPUs 3, 5 and 7."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from mbt.config_paths import CONF_DIR

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

APP = '''
import json, os, time
from pathlib import Path

import hydra


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    start = time.time()
    time.sleep(2)
    Path(cfg.out, f"{cfg.i}.json").write_text(json.dumps(
        {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}))


main()
'''


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock(1) (util-linux)")
def test_local_gpus_runs_one_job_per_gpu(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "3,5,7",
           "MBT_GPU_LOCK_DIR": str(tmp_path / "locks")}
    proc = subprocess.run(
        [sys.executable, "app.py", "-m", f"hydra.searchpath=[file://{CONF_DIR}]",
         "hydra/launcher=local_gpus", f"+out={out}", "+i=0,1,2,3,4,5",
         f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(jobs) == 6
    assert {j["gpu"] for j in jobs} == {"3", "5", "7"}  # one GPU each, every GPU used
    for a in jobs:
        running = [b for b in jobs if b["start"] < a["end"] and a["start"] < b["end"]]
        assert len({b["gpu"] for b in running}) == len(running) <= 3  # never two on one GPU
    assert max(sum(b["start"] < a["end"] and a["start"] < b["end"] for b in jobs)
               for a in jobs) >= 2  # and they do run side by side
