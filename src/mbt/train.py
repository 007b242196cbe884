"""``python -m mbt.train``: one CIFAR training run, resumable, logged to W&B and the ledger.

Examples::

    python -m mbt.train                                   # ResNet18, CIFAR10, MBT-NAG, 200 epochs
    python -m mbt.train optim=adam optim.lr=1e-3 data=cifar100 model=senet18
    python -m mbt.train -m optim=sgd,mmt,nag optim.lr=1e-1,1e-2   # a Hydra multirun sweep

Flow (config -> train loop -> ledger + W&B): validate the config, derive its
``run_key``; if the ledger already holds a finished or diverged record for that key,
print it and stop; otherwise resume from ``<paths.runs>/<run_key>/last.pt`` when it
exists, train with a checkpoint after every epoch, append one ledger record, keep only
the last checkpoint, and print a one-line summary as the last stdout line (the record as
JSON with ``--json``). Divergent runs end with status ``diverged`` and the test
accuracy measured at that point (the paper records them at chance level, Sec. 4).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mbt import checkpoint, ledger
from mbt.config import register_configs
from mbt.config_paths import CONF_DIR
from mbt.entry import one_line_errors, run_and_print
from mbt.loop import evaluate, train_epoch
from mbt.models import build_model
from mbt.optim.factory import build_optimizer, build_scheduler
from mbt.run import Run, notice, open_run, provenance, uses_channels_last
from mbt.runinfo import already_done, git_state
from mbt.tracking import make_tracker

__all__ = ["train"]

# Named, not __name__ (which is "__main__" under `python -m mbt.train`): the per-epoch lines
# go through this logger, which conf/hydra/job_logging/mbt.yaml prints bare on the console.
log = logging.getLogger("mbt.train")

# The MBT search draws its 20 mini-batches from a shuffle of its own, not from the
# first batches the epoch will train on (the published code also takes a fresh
# iterator of the train loader for the search).
_SEARCH_EPOCH_OFFSET = 1_000_003


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


def _record(run: Run, status, history, *, wall, tracker, early_stopped):
    accs = [row["test_acc"] for row in history]
    measured = [i for i, a in enumerate(accs) if a is not None]
    best = max(measured, key=accs.__getitem__) if measured else None
    # A resumed run may span commits (and a finished checkpoint may only be re-recorded):
    # each epoch row carries the commit that trained it.
    trained_at = list(dict.fromkeys(row.get("commit", "unknown") for row in history))
    record = {
        **provenance(run, "train", status),
        "epochs": run.config["trainer"]["epochs"],
        "epochs_completed": len(history),
        "early_stopped": early_stopped,
        "best_test_acc": accs[best] if best is not None else None,
        "best_epoch": history[best]["epoch"] if best is not None else None,  # 1-based
        "final_test_acc": accs[-1] if accs else None,
        "history": _history_to_columns(history),
        "wall_time": round(wall, 3),
        "trained_at_commits": trained_at,
        "wandb": tracker.info,
    }
    # finished, but its loss blew up and stayed finite (1e14); a diverged run is marked already
    record["exploded"] = status == "finished" and ledger.exploded(record)
    return record


def _build(run: Run):
    """Model, optimizer (+ MBT/LR-range controller) and scheduler of the run."""
    cfg = run.cfg
    model = build_model(cfg.model.name.name, cfg.model.num_classes,
                        bn_init=cfg.model.bn_init.name, seed=cfg.seed).to(run.device)
    if uses_channels_last(cfg, run.device):
        model = model.to(memory_format=torch.channels_last)
    optimizer, controller = build_optimizer(cfg.optim, model.parameters())
    controller.prepare(run.train_loader)
    return model, optimizer, controller, build_scheduler(cfg.optim, optimizer)


def _resume(run: Run, model, optimizer, controller, scheduler) -> dict:
    """Restore the newest readable checkpoint; the loop state to continue from."""
    def restore(state: dict) -> None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        controller.load_state_dict(state["controller"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        checkpoint.restore_rng(state["rng"])

    state, path = checkpoint.load_latest(run.run_dir, map_location=run.device, notice=notice,
                                         apply=restore)
    if state is None:
        return {"history": [], "epoch": 0, "wall_time": 0.0, "ref_loss": None}
    if state["epoch"] >= run.cfg.trainer.epochs:
        trained_at = state["history"][-1].get("commit", "an unknown commit")
        notice(f"{run.key}: {path} holds a finished run; recording it without training "
               f"(trained at {trained_at})")
    else:
        notice(f"{run.key}: resuming at epoch {state['epoch'] + 1} from {path}")
    return state


def _line_search_counts(optimizer) -> dict[str, int] | None:
    """Running totals of an optimizer that searches every step (mbt.optim's line searches,
    SLS: ``search_state``), or None."""
    state = getattr(optimizer, "search_state", None)
    if not isinstance(state, dict):
        return None
    return {"evals": int(state.get("func_evals", 0)),
            "grad_evals": int(state.get("grad_evals", 0)),
            "bound_hits": int(state.get("bound_hits", 0))}


def _epoch(run: Run, epoch, model, step_model, optimizer, controller, scheduler, ref_loss,
           progress):
    """One epoch (MBT search first, if any), its evaluation, and its history row."""
    t, loader = run.cfg.trainer, run.train_loader
    t_epoch = time.perf_counter()
    loader.set_epoch(_SEARCH_EPOCH_OFFSET + epoch)
    report = controller.on_epoch_start(
        epoch, model, nn.CrossEntropyLoss(), loader,
        dataset_size=run.cfg.data.rescale_size or loader.num_samples, batch_size=t.batch_size)
    search_time = time.perf_counter() - t_epoch
    alpha = getattr(controller, "alpha", None)  # this epoch's search's: Fig. 3's switch
    counts = _line_search_counts(optimizer)
    loader.set_epoch(epoch)
    controller.train_mode()
    stats = train_epoch(
        step_model, loader, optimizer, nn.CrossEntropyLoss(), device=run.device,
        bf16=t.amp_bf16, max_steps=t.max_steps_per_epoch, check_every=t.check_every,
        diverge_factor=t.diverge_factor, ref_loss=ref_loss, record_steps=t.record_steps,
        bar=progress == "bar", desc=f"epoch {epoch + 1}/{t.epochs}",
    )
    controller.eval_mode()  # e.g. schedule-free: evaluate and checkpoint the averaged point
    test_loss = test_acc = None
    if epoch + 1 == t.epochs or stats.diverged or (t.eval_every
                                                   and (epoch + 1) % t.eval_every == 0):
        test_loss, test_acc = evaluate(step_model, run.test_loader, nn.CrossEntropyLoss(),
                                       device=run.device, bf16=t.amp_bf16)
    controller.on_epoch_end(stats.loss, test_acc)
    if scheduler is not None:
        scheduler.step()
    code = git_state()
    row = {
        "epoch": epoch + 1, "train_loss": stats.loss, "train_acc": stats.acc,
        "test_loss": test_loss, "test_acc": test_acc, "lr": stats.lr,
        "epoch_time": time.perf_counter() - t_epoch, "search_time": search_time,
        "search_mean_lr": report.mean_lr if report else None,
        "alpha": alpha,
        "search_evals": report.func_evals if report else None,
        "steps": stats.steps,
        # the search's result and cost beyond the raw mean (W&B's search/*; None: no search)
        "search_lr": report.lr if report else None,
        "search_grad_evals": report.grad_evals if report else None,
        "search_bound_hits": (sum(map(bool, report.bound_hits))
                              if hasattr(report, "bound_hits") else None),
        "search_per_batch": list(report.per_batch) if hasattr(report, "per_batch") else None,
        "commit": str(code["commit"])[:12] + ("+dirty" if code["dirty"] else ""),
    }
    if counts is not None:  # a line search every step: what this epoch's searches cost
        row.update({f"line_search_{k}": v - counts[k]
                    for k, v in _line_search_counts(optimizer).items()})
    if t.record_steps:
        row["step_lrs"] = stats.step_lrs
    if progress != "none":  # Hydra's job logging: the console and the job's train.log
        log.info("%s epoch %d/%d: loss %.4f train %.2f%% test %s lr %.4g (%.1fs, search %.1fs)",
                 run.key, epoch + 1, t.epochs, stats.loss, stats.acc, _pct(test_acc), stats.lr,
                 row["epoch_time"], search_time)
    return row, stats


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume, or skip) the training run ``cfg`` describes; returns its ledger record,
    or a status-only dict when the run stopped early on ``trainer.stop_after``.


    Longer than 60 lines: the run's life in order (skip, resume, epochs, checkpoint,
    record); each step is a helper already."""
    with open_run(cfg) as run:
        if run.done is not None:
            notice(already_done(run.key, cfg.paths.ledger, run.done))
            return run.done
        t = cfg.trainer
        model, optimizer, controller, scheduler = _build(run)
        state = _resume(run, model, optimizer, controller, scheduler)
        history, ref_loss = state["history"], state["ref_loss"]
        tracker = make_tracker(OmegaConf.to_container(cfg.logger, resolve=True,
                                                      enum_to_str=True),
                               run_key=run.key, config=run.config, run_dir=run.run_dir,
                               notice=notice, provenance=provenance(run, "train", "running"))
        step_model = torch.compile(model, dynamic=False) if t.compile else model
        progress = _progress_mode(t.progress)
        status, early_stopped, t_start = "finished", False, time.perf_counter()
        for epochs_here, epoch in enumerate(range(state["epoch"], t.epochs), 1):
            row, stats = _epoch(run, epoch, model, step_model, optimizer, controller,
                                scheduler, ref_loss, progress)
            ref_loss = ref_loss if ref_loss is not None else stats.first_loss
            history.append(row)
            tracker.log({k: v for k, v in row.items() if k not in ("step_lrs", "commit")},
                        step=epoch + 1)
            if stats.diverged:
                status = "diverged"
                notice(f"{run.key}: diverged in epoch {epoch + 1} (train loss "
                       f"{stats.loss:.4g}); test accuracy at that point {_pct(row['test_acc'])}")
                break
            if ((epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == t.epochs
                    or controller.should_stop
                    or (t.stop_after is not None and epochs_here >= t.stop_after)):
                checkpoint.save(run.run_dir, {
                    "epoch": epoch + 1, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "controller": controller.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "rng": checkpoint.capture_rng(), "history": history,
                    "wall_time": state["wall_time"] + time.perf_counter() - t_start,
                    "ref_loss": ref_loss, "run_key": run.key,
                })
            if controller.should_stop:
                early_stopped = True
                break
            if t.stop_after is not None and epochs_here >= t.stop_after and epoch + 1 < t.epochs:
                tracker.finish()
                notice(f"{run.key}: stopping after {epochs_here} epoch(s) as asked "
                       f"(trainer.stop_after); run the same command again to resume")
                return {"run_key": run.key, "status": "interrupted", "epochs_completed": epoch + 1,
                        "run_dir": str(run.run_dir)}
        record = _record(run, status, history,
                         wall=state["wall_time"] + time.perf_counter() - t_start,
                         tracker=tracker, early_stopped=early_stopped)
        if record["exploded"]:
            notice(f"{run.key}: the train loss exploded (last epoch "
                   f"{history[-1]['train_loss']:.4g}) but stayed finite: recorded finished, "
                   f"flagged exploded")
        ledger.append(cfg.paths.ledger, record)
        tracker.finish({"best_test_acc": record["best_test_acc"], "status": status})
        # A finished run needs no fallback generation: keep last.pt only (or nothing).
        for name in (checkpoint.PREV,) if t.keep_checkpoint else (checkpoint.LAST,
                                                                  checkpoint.PREV):
            (run.run_dir / name).unlink(missing_ok=True)
        return record


register_configs()


@one_line_errors
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    run_and_print(train, cfg)


if __name__ == "__main__":
    main()
