"""Slow: real CIFAR-10 images (the partial copy ../shared/data/cifar-head), real training."""

from __future__ import annotations

import pytest

from mbt.train import train

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_short_mbt_nag_run_on_real_images_beats_chance(compose, cifar_head, tmp_path):
    cfg = compose(f"data.root={cifar_head}", "data.allow_partial=true", "data.subset=2000",
                  "data.augment=standard", "data.num_workers=0", f"paths.runs={tmp_path}",
                  "optim=mbt_nag", "trainer.epochs=3", "trainer.batch_size=100",
                  "trainer.progress=line", "logger=none", "protocol=smoke")
    record = train(cfg)
    assert record["status"] == "finished" and record["data"]["partial"] is True
    assert record["data"]["num_test"] == 1017
    # Chance is 10 %; three epochs on 2000 real images reach well above it.
    assert record["best_test_acc"] > 20.0, record["history"]["test_acc"]
    print("cifar-head MBT-NAG test accuracy per epoch:", record["history"]["test_acc"],
          "lr:", record["history"]["lr"], "wall:", record["wall_time"])
