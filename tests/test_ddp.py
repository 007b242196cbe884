"""Line searches under DistributedDataParallel: 2 processes on the CPU (gloo), as torchrun
starts them on GPUs. Every rank must take the same step from the same losses and gradients
averaged over the ranks, or their weights drift apart (the rank's own loss along DDP's
averaged gradient passes Armijo's test at different steps on different ranks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import ddp_worker
from mbt.optim import find_lr

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(check: str, tmp_path: Path) -> list[dict]:
    """What each of the 2 ranks of ``ddp_worker.py <check>`` saw."""
    out = tmp_path / f"{check}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(WORKER), check, str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if sys.platform == "linux":  # gloo on the loopback device only, not the host's address
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    proc = subprocess.Popen(cmd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # torchrun stops its workers on SIGTERM
        output, _ = proc.communicate(timeout=60)
        pytest.fail(f"torchrun {check} timed out:\n{output}")
    assert proc.returncode == 0, output
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", ["two_way", "nag", "sls"])
def test_line_search_ranks_take_the_same_steps(name, gd_ranks):
    first, second = (r[name] for r in gd_ranks)
    assert second["lrs"] == first["lrs"]
    assert len(set(first["lrs"])) > 1  # the searches did decide something
    assert first["params_equal"] and second["params_equal"]


@pytest.fixture(scope="module")
def gd_ranks(tmp_path_factory) -> list[dict]:
    return torchrun("gd", tmp_path_factory.mktemp("ddp"))


def test_mbt_finder_agrees_across_ranks_and_with_one_process(tmp_path):
    first, second = ranks = torchrun("mbt", tmp_path)
    assert second["wrapped"] == first["wrapped"]  # every number of the search
    assert second["controller"]["lrs"] == first["controller"]["lrs"]
    for r in ranks:
        assert r["controller"]["params_equal"]
        assert r["bare"] == r["wrapped"]  # grads averaged by the finder without DDP's hooks
        assert r["unchanged"]
        assert r["ragged"] == 2  # all ranks stop when the first runs out
        # mean loss 1.0 then 1.1, rank 0's accuracy 0.5 then 0.4: no gain on either count
        assert r["plateau"] == pytest.approx([1.0, 0.5, 1, 1])

    # One process on both ranks' batches, BatchNorm per half: the same search.
    x, y = ddp_worker.dataset().tensors
    k, n = ddp_worker.K, ddp_worker.N
    halves = [(x[j * 2 * k + r:(j + 1) * 2 * k:2], y[j * 2 * k + r:(j + 1) * 2 * k:2])
              for j in range(n // (2 * k)) for r in range(2)]
    batches = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]))
               for a, b in zip(halves[::2], halves[1::2], strict=True)]
    ref = find_lr(ddp_worker.model(), nn.CrossEntropyLoss(), batches, lr=0.5, num_batches=6,
                  bn_slices=2, dataset_size=n, batch_size=2 * k)
    got = ranks[0]["wrapped"]
    assert got["per_batch"] == pytest.approx(ref.per_batch, rel=1e-12)
    assert got["f0"] == pytest.approx(ref.f0, rel=1e-5)
    assert got["scale"] == pytest.approx(ref.scale, rel=1e-12)  # global batch over N


def test_lr_range_test_agrees_across_ranks(tmp_path):
    """Each rank sweeps its own shard; the curve, the early stop and the suggestion are
    the ranks' mean's, the same on both, wrapped or not, and the weights stay put."""
    first, second = ranks = torchrun("lr_range", tmp_path)
    assert second["wrapped"] == first["wrapped"]
    for r in ranks:
        assert r["bare"] == r["wrapped"]  # grads averaged by the test without DDP's hooks
        assert r["wrapped"]["weights_agree"]  # at every step of the sweep
        assert r["unchanged"]
    assert len(set(first["wrapped"]["losses"])) > 1
