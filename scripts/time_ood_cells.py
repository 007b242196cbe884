"""Size experiment=out_of_domain from a few steps: per-step, search and evaluation time of
one cell on this machine, extrapolated to an epoch. Prints one JSON line per method.

Usage: python scripts/time_ood_cells.py TASK [--optim mbt_nag,sgd] [--steps 12] [OVERRIDES]
  TASK: out_of_domain (Fashion-MNIST) or out_of_domain_text; OVERRIDES are Hydra overrides
  of that preset under protocol=cpu (e.g. trainer.batch_size=64 data.subset=1024).

Wall times on shared cores vary with the load (the JSON carries the 1-minute load average).
Run it with OMP_NUM_THREADS=1 where other processes keep the cores busy: torch's default of
one thread per core then spins at barriers waiting for a descheduled thread (measured on 2
busy cores: 0.2-1.0 s a Fashion-MNIST step with 2 threads, 0.03 s with 1).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import time

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from mbt.config import register_configs
from mbt.config_paths import CONF_DIR
from mbt.data import build_loaders_from_config
from mbt.loop import evaluate, train_epoch
from mbt.models import build_model
from mbt.optim.factory import build_optimizer

CPU = torch.device("cpu")


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_cell(task: str, optim: str, steps: int, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={task}", "protocol=cpu",
                                                      f"optim={optim}", "logger=none",
                                                      *overrides])
    torch.manual_seed(0)
    bs = cfg.trainer.batch_size
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True)
    train, test, _ = build_loaders_from_config(data_cfg, batch_size=bs, seed=0, device=CPU)
    model = build_model(cfg.model.name.name, cfg.model.num_classes)
    optimizer, controller = build_optimizer(cfg.optim, model.parameters())
    controller.prepare(train)
    t0 = time.perf_counter()
    report = controller.on_epoch_start(0, model, nn.CrossEntropyLoss(), train,
                                       dataset_size=train.num_samples, batch_size=bs)
    search_s = time.perf_counter() - t0
    controller.train_mode()
    loss = nn.CrossEntropyLoss()
    train_epoch(model, train, optimizer, loss, device=CPU, max_steps=2)  # warm-up
    c0, t0 = _cpu_s(), time.perf_counter()
    stats = train_epoch(model, train, optimizer, loss, device=CPU, max_steps=steps)
    step_s, step_cpu_s = ((time.perf_counter() - t0) / stats.steps,
                          (_cpu_s() - c0) / stats.steps)
    controller.eval_mode()
    n_eval = min(len(test), 3)
    t0 = time.perf_counter()
    evaluate(model, itertools.islice(iter(test), n_eval), loss, device=CPU)
    eval_s = (time.perf_counter() - t0) / n_eval * len(test)
    epoch_min = (step_s * len(train) + search_s) / 60
    return {"task": task, "optim": optim, "batch": bs, "steps_per_epoch": len(train),
            "step_s": round(step_s, 3), "step_cpu_s": round(step_cpu_s, 3),
            "search_s": round(search_s, 1), "search_evals": getattr(report, "func_evals", None),
            "eval_min": round(eval_s / 60, 3), "epoch_min": round(epoch_min, 2),
            "cell_min": round(cfg.trainer.epochs * epoch_min + eval_s / 60 * (
                cfg.trainer.epochs // max(cfg.trainer.eval_every, 1) or 1), 1),
            "epochs": cfg.trainer.epochs, "train_loss": round(stats.loss, 4),
            "lr": stats.lr, "loadavg_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["out_of_domain", "out_of_domain_text"])
    parser.add_argument("--optim", default="mbt_nag,sgd")
    parser.add_argument("--steps", type=int, default=12)
    args, overrides = parser.parse_known_args()
    register_configs()
    for optim in args.optim.split(","):
        print(json.dumps(time_cell(args.task, optim, args.steps, overrides)), flush=True)


if __name__ == "__main__":
    main()
