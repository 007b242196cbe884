"""``python -m mbt.train``: one CIFAR training run, resumable, logged to W&B and the ledger.

Examples::

    python -m mbt.train                                   # ResNet18, CIFAR10, MBT-NAG, 200 epochs
    python -m mbt.train optim=adam optim.lr=1e-3 data=cifar100 model=senet18
    python -m mbt.train -m optim=sgd,mmt,nag optim.lr=1e-1,1e-2   # a Hydra multirun sweep

Flow (config -> train loop -> ledger + W&B): validate the config, derive its
``run_key``; if the ledger already holds a finished or diverged record for that key,
print it and stop; otherwise resume from ``<paths.runs>/<run_key>/last.pt`` when it
exists, train with a checkpoint after every epoch, append one ledger record and print
it as the last stdout line. Divergent runs end with status ``diverged`` and the test
accuracy measured at that point (the paper records them at chance level, Sec. 4).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from mbt import checkpoint, ledger
from mbt.config import ConfigError, register_configs, validate
from mbt.config_paths import CONF_DIR
from mbt.data import DataError, build_loaders_from_config
from mbt.data.synthetic import write_cifar
from mbt.loop import evaluate, train_epoch
from mbt.models import build_model
from mbt.optim.factory import build_optimizer, build_scheduler
from mbt.runinfo import device_name, git_state, resolve_device, seed_everything
from mbt.tracking import make_tracker

__all__ = ["train"]

log = logging.getLogger(__name__)

# The MBT search draws its 20 mini-batches from a shuffle of its own, not from the
# first batches the epoch will train on (the published code also takes a fresh
# iterator of the train loader for the search).
_SEARCH_EPOCH_OFFSET = 1_000_003
_SYNTHETIC_SIZES = {"n_train": 2000, "n_test": 500}


def _notice(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load_data(cfg: DictConfig, device: torch.device):
    kwargs = dict(batch_size=cfg.trainer.batch_size, seed=cfg.seed, device=device,
                  channels_last=device.type == "cuda" and cfg.trainer.channels_last)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True)
    fallback = data_cfg["synthetic_fallback"]
    try:
        return build_loaders_from_config(data_cfg, **kwargs)
    except DataError as err:
        if not fallback:
            raise
        root = Path(cfg.paths.runs) / "synthetic-data"
        _notice(f"no CIFAR data under {data_cfg['root']!r}: training on a generated "
                f"CIFAR-layout data set in {root} (labelled synthetic) [{err}]")
        write_cifar(root, data_cfg["name"], seed=0, **_SYNTHETIC_SIZES)
        data_cfg.update(root=str(root), allow_partial=False)
        return build_loaders_from_config(data_cfg, **kwargs)


def _optimizer_mode(optimizer: torch.optim.Optimizer, mode: str) -> None:
    # schedulefree's optimizers need train()/eval() around training and evaluation;
    # torch.optim.Optimizer has neither method, so this is a no-op for every other one.
    switch = getattr(optimizer, mode, None)
    if callable(switch):
        switch()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _progress_mode(setting: str) -> str:
    if setting == "auto":
        return "bar" if sys.stderr.isatty() else "line"
    return setting


def _history_to_columns(history: list[dict]) -> dict[str, list]:
    keys = [k for k in history[0] if k != "step_lrs"] if history else []
    cols = {k: [row[k] for row in history] for k in keys}
    if history and "step_lrs" in history[0]:
        cols["step_lrs"] = [row["step_lrs"] for row in history]
    return cols


def _record(cfg_dict, key, status, history, *, wall, device, info, tracker, early_stopped):
    accs = [row["test_acc"] for row in history]
    measured = [i for i, a in enumerate(accs) if a is not None]
    best = max(measured, key=accs.__getitem__) if measured else None
    git = git_state()
    # A resumed run may span commits (and a finished checkpoint may only be re-recorded):
    # each epoch row carries the commit that trained it.
    trained_at = list(dict.fromkeys(row.get("commit", "unknown") for row in history))
    return {
        "kind": "train",
        "run_key": key,
        "status": status,
        "protocol": cfg_dict["protocol"],
        "experiment": cfg_dict.get("experiment"),
        "model": cfg_dict["model"]["name"],
        "dataset": cfg_dict["data"]["name"],
        "optim": cfg_dict["optim"]["name"],
        "lr": cfg_dict["optim"]["lr"],
        "batch_size": cfg_dict["trainer"]["batch_size"],
        "epochs": cfg_dict["trainer"]["epochs"],
        "seed": cfg_dict["seed"],
        "epochs_completed": len(history),
        "early_stopped": early_stopped,
        "best_test_acc": accs[best] if best is not None else None,
        "best_epoch": history[best]["epoch"] if best is not None else None,  # 1-based
        "final_test_acc": accs[-1] if accs else None,
        "history": _history_to_columns(history),
        "wall_time": round(wall, 3),
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "trained_at_commits": trained_at,
        "data": info,
        "synthetic": bool(info.get("synthetic")),
        "wandb": tracker.info,
        "config": cfg_dict,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume, or skip) the training run ``cfg`` describes; returns its ledger record,
    or a status-only dict when the run stopped early on ``trainer.stop_after``."""
    validate(cfg)
    cfg_dict = ledger.scrub_secrets(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    key = ledger.run_key(cfg_dict)
    done = ledger.find(cfg.paths.ledger, key)
    if done is not None:
        _notice(f"{key}: already in {cfg.paths.ledger} ({done['status']}); not training again")
        return done

    t = cfg.trainer
    device = resolve_device(t.device)
    seed_everything(cfg.seed)
    train_loader, test_loader, info = _load_data(cfg, device)
    model = build_model(cfg.model.name.name, cfg.model.num_classes,
                        bn_init=cfg.model.bn_init.name, seed=cfg.seed).to(device)
    if device.type == "cuda" and t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, controller = build_optimizer(cfg.optim, model.parameters())
    for group in optimizer.param_groups:  # SLS's step-size reset needs b/n (Vaswani et al.)
        if "n_batches_per_epoch" in group and group["n_batches_per_epoch"] is None:
            group["n_batches_per_epoch"] = len(train_loader)
    scheduler = build_scheduler(cfg.optim, optimizer)
    loss_fn = nn.CrossEntropyLoss()
    run_dir = Path(cfg.paths.runs) / key

    history: list[dict] = []
    start_epoch, wall_before, ref_loss = 0, 0.0, None
    state = checkpoint.load_latest(run_dir, map_location=device, notice=_notice)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if controller is not None:
            controller.load_state_dict(state["controller"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        checkpoint.restore_rng(state["rng"])
        history, start_epoch = state["history"], state["epoch"]
        wall_before, ref_loss = state["wall_time"], state["ref_loss"]
        if start_epoch >= t.epochs:
            trained_at = history[-1].get("commit", "an unknown commit")
            _notice(f"{key}: {run_dir / checkpoint.LAST} holds a finished run; recording it "
                    f"without training (trained at {trained_at})")
        else:
            _notice(f"{key}: resuming at epoch {start_epoch + 1} from {run_dir / checkpoint.LAST}")

    tracker = make_tracker(OmegaConf.to_container(cfg.logger, resolve=True, enum_to_str=True),
                           run_key=key, config=cfg_dict, run_dir=run_dir, notice=_notice)
    step_model = torch.compile(model) if t.compile else model
    progress = _progress_mode(t.progress)
    status, early_stopped = "finished", False
    t_start = time.perf_counter()
    epochs_here = 0
    code = git_state()
    code_commit = str(code["commit"])[:12] + ("+dirty" if code["dirty"] else "")
    for epoch in range(start_epoch, t.epochs):
        t_epoch = time.perf_counter()
        report = None
        if controller is not None:
            train_loader.set_epoch(_SEARCH_EPOCH_OFFSET + epoch)
            report = controller.on_epoch_start(
                epoch, model, loss_fn, train_loader,
                dataset_size=cfg.data.rescale_size or train_loader.num_samples,
                batch_size=t.batch_size)
        search_time = time.perf_counter() - t_epoch
        train_loader.set_epoch(epoch)
        _optimizer_mode(optimizer, "train")
        stats = train_epoch(
            step_model, train_loader, optimizer, loss_fn, device=device, bf16=t.amp_bf16,
            max_steps=t.max_steps_per_epoch, check_every=t.check_every,
            diverge_factor=t.diverge_factor, ref_loss=ref_loss, record_steps=t.record_steps,
            bar=progress == "bar", desc=f"epoch {epoch + 1}/{t.epochs}",
        )
        ref_loss = ref_loss if ref_loss is not None else stats.first_loss
        # Schedule-free optimizers evaluate and checkpoint at their averaged point.
        _optimizer_mode(optimizer, "eval")
        last_epoch = epoch + 1 == t.epochs or stats.diverged
        if last_epoch or (t.eval_every and (epoch + 1) % t.eval_every == 0):
            test_loss, test_acc = evaluate(step_model, test_loader, loss_fn, device=device,
                                           bf16=t.amp_bf16)
        else:
            test_loss = test_acc = None
        if controller is not None:
            controller.on_epoch_end(stats.loss, test_acc)
        if scheduler is not None:
            scheduler.step()
        row = {
            "epoch": epoch + 1, "train_loss": stats.loss, "train_acc": stats.acc,
            "test_loss": test_loss, "test_acc": test_acc, "lr": stats.lr,
            "epoch_time": time.perf_counter() - t_epoch, "search_time": search_time,
            "search_mean_lr": report.mean_lr if report else None,
            "search_evals": report.func_evals if report else None,
            "steps": stats.steps,
            "commit": code_commit,
        }
        if t.record_steps:
            row["step_lrs"] = stats.step_lrs
        history.append(row)
        tracker.log({k: v for k, v in row.items() if k not in ("step_lrs", "commit")},
                    step=epoch + 1)
        if progress != "none":
            print(f"{key} epoch {epoch + 1}/{t.epochs}: loss {stats.loss:.4f} "
                  f"train {stats.acc:.2f}% test {_pct(test_acc)} lr {stats.lr:.4g} "
                  f"({row['epoch_time']:.1f}s, search {search_time:.1f}s)", flush=True)
        if stats.diverged:
            status = "diverged"
            _notice(f"{key}: diverged in epoch {epoch + 1} (train loss {stats.loss:.4g}); "
                    f"test accuracy at that point {_pct(test_acc)}")
            break
        wall = wall_before + time.perf_counter() - t_start
        checkpoint.save(run_dir, {
            "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "controller": controller.state_dict() if controller is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": checkpoint.capture_rng(), "history": history, "wall_time": wall,
            "ref_loss": ref_loss, "run_key": key,
        })
        epochs_here += 1
        if controller is not None and getattr(controller, "should_stop", False):
            early_stopped = True
            break
        if t.stop_after is not None and epochs_here >= t.stop_after and epoch + 1 < t.epochs:
            tracker.finish()
            _notice(f"{key}: stopping after {epochs_here} epoch(s) as asked "
                    f"(trainer.stop_after); run the same command again to resume")
            return {"run_key": key, "status": "interrupted", "epochs_completed": epoch + 1}

    wall = wall_before + time.perf_counter() - t_start
    record = _record(cfg_dict, key, status, history, wall=wall, device=device, info=info,
                     tracker=tracker, early_stopped=early_stopped)
    ledger.append(cfg.paths.ledger, record)
    tracker.finish({"best_test_acc": record["best_test_acc"], "status": status})
    if not t.keep_checkpoint:
        for name in (checkpoint.LAST, checkpoint.PREV):
            (run_dir / name).unlink(missing_ok=True)
    return record


def run_and_print(job, cfg: DictConfig) -> None:
    """Entrypoint body shared by train and find_lr: known errors are one line, exit 2;
    the record is the last stdout line."""
    try:
        record = job(cfg)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(json.dumps(record, allow_nan=True, default=str), flush=True)


_DETAIL = ("full_key:", "reference_type=", "object_type=", "Set the environment")


def _condense(err: BaseException) -> str:
    """Hydra's composition error as one line: its message, the options it lists
    (tab-indented in Hydra's text) and the OmegaConf cause, without the detail lines."""
    text, seen = "", set()
    for e in (err, err.__cause__):
        for raw in str(e or "").split("Config search path:")[0].splitlines():
            line = raw.strip()
            if not line or line.startswith(_DETAIL) or line in seen:
                continue
            seen.add(line)
            sep = " " if text.endswith(":") else ", " if raw.startswith("\t") else "; "
            text = f"{text}{sep}{line}" if text else line
    return text


def one_line_errors(hydra_main):
    """Hydra prints a bad override (``model=resnet19``, ``data.pipeline=gpu``) over
    several lines and exits 1; entrypoints promise one ``error:`` line and exit 2.
    ``HYDRA_FULL_ERROR=1`` set by the user keeps Hydra's full report."""
    @functools.wraps(hydra_main)
    def entry() -> None:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            return hydra_main()
        os.environ["HYDRA_FULL_ERROR"] = "1"  # so composition errors reach us unprinted
        try:
            hydra_main()
        except (HydraException, OmegaConfBaseException) as err:
            print(f"error: {_condense(err)}", file=sys.stderr, flush=True)
            sys.exit(2)
    return entry


register_configs()


@one_line_errors
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    run_and_print(train, cfg)


if __name__ == "__main__":
    main()
