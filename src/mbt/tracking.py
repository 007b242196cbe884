"""Weights & Biases for training runs, with an offline fallback and no secrets on disk.

``logger.mode=auto`` (the default) runs online when credentials exist (the
``WANDB_API_KEY`` variable or a ``wandb login`` entry in ~/.netrc) and otherwise
offline, with one notice line; offline runs can be uploaded later with ``wandb sync``.
Online init is bounded (``logger.init_timeout`` seconds): with credentials but no network
the run falls back to offline with one notice line and trains on.
The API key is never copied into the run config, the ledger or the logs: wandb reads
it from the environment itself.

What a run looks like in W&B (docs/wandb.md has the table): the ledger's flat per-epoch
columns are logged under namespaces (:data:`WANDB_KEYS`: ``train/``, ``test/``, ``lr/``,
``search/``, ``time/``) against the ``epoch`` axis, ``test/acc`` keeps its maximum in the
summary, and only the values a run has are logged (no empty ``search/*`` for a run without
an MBT search). Every run carries a group (``<experiment or adhoc>-<protocol>``: one
protocol per group), a job type (``train``, ``lr_search``, ``bench``) and ``key:value``
tags (protocol, model, dataset, optimizer, BatchNorm init); its name is the run key.
"""

from __future__ import annotations

import logging
import math
import netrc
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["JOB_TYPES", "PROVENANCE_KEYS", "WANDB_KEYS", "NullTracker", "WandbTracker",
           "ledger_row", "make_tracker", "resolve_mode", "run_group", "run_tags", "wandb_row"]

log = logging.getLogger(__name__)

# The W&B name of each column of mbt.train's per-epoch row (the ledger keeps the flat
# names; reports read those). Keys not listed here are logged under their own name.
WANDB_KEYS = {
    "train_loss": "train/loss", "train_acc": "train/acc", "steps": "train/steps",
    "test_loss": "test/loss", "test_acc": "test/acc",
    "lr": "lr/value",
    # the epoch's MBT search (Sec. 3.5): rescaled result, raw mean of the accepted eta,
    # the accepted eta of each mini-batch (a histogram), its cost and bound hits
    "search_lr": "search/lr", "search_mean_lr": "search/mean_lr",
    "search_per_batch": "search/batch_lrs", "search_evals": "search/trials",
    "search_grad_evals": "search/grad_evals", "search_bound_hits": "search/bound_hits",
    # a line search every step (backtracking_*, two_way_gd, sls): the epoch's evaluations
    "line_search_evals": "search/step_evals", "line_search_grad_evals": "search/step_grad_evals",
    "line_search_bound_hits": "search/step_bound_hits",
    "epoch_time": "time/epoch", "search_time": "time/search",
}
_LEDGER_KEYS = {v: k for k, v in WANDB_KEYS.items()}
# The ledger's provenance a W&B run carries in its config, under ``provenance``: the data
# actually loaded (image counts, partial copy, synthetic fallback, fingerprint), where and
# with what it ran. ``mbt.report --source wandb`` reads them back.
PROVENANCE_KEYS = ("data", "synthetic", "device", "device_name", "torch_version",
                   "git_commit", "git_dirty", "key_schema")
_NAMESPACES = ("train", "test", "lr", "search", "time")
JOB_TYPES = ("train", "lr_search", "bench")


def wandb_row(row: dict) -> dict:
    """An epoch row under its W&B names, without the values the run does not have
    (``None``: no search in a non-MBT run, no test score between evaluations)."""
    return {WANDB_KEYS.get(k, k): v for k, v in row.items() if v is not None}


def ledger_row(row: dict) -> dict:
    """The inverse of :func:`wandb_row`: a W&B history row under the ledger's names
    (for readers of W&B history, e.g. ``mbt.report --source wandb``)."""
    return {_LEDGER_KEYS.get(k, k): v for k, v in row.items()}


def run_group(config: dict, logger_cfg: dict) -> str:
    """``<logger.group or experiment or adhoc>-<protocol>``: a group never mixes protocols."""
    base = logger_cfg.get("group") or config.get("experiment") or "adhoc"
    protocol = config.get("protocol") or "custom"
    return base if base.endswith(f"-{protocol}") else f"{base}-{protocol}"


def run_tags(config: dict, logger_cfg: dict) -> list[str]:
    """``key:value`` tags for filtering in the W&B UI, then ``logger.tags``."""
    model, data, optim = (config.get(k) or {} for k in ("model", "data", "optim"))
    tags = [f"protocol:{config.get('protocol') or 'custom'}", f"model:{model.get('name')}",
            f"dataset:{data.get('name')}", f"optim:{optim.get('name')}",
            f"init:{model.get('bn_init') or 'torch'}", *(logger_cfg.get("tags") or [])]
    return list(dict.fromkeys(str(t)[:64] for t in tags))  # W&B: tags up to 64 characters


def _offline_after_failure(wandb, init):
    """The offline run after a failed online init. The failed init can leave wandb's service
    holding the run id for a moment ("run ID ... is in use"): tear the service down and
    retry a few times before giving up."""
    for attempt in range(4):
        wandb.teardown()
        try:
            return init("offline")
        except Exception:  # noqa: BLE001 - the id still held by the dying service
            if attempt == 3:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def resolve_mode(mode: str) -> tuple[str, str | None]:
    """(wandb mode, notice or None) for a configured ``logger.mode``."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "online") and mode == "auto":
        return os.environ["WANDB_MODE"], None
    if mode != "auto":
        return mode, None
    if _has_credentials():
        return "online", None
    return "offline", ("W&B: no credentials found (WANDB_API_KEY / wandb login): logging "
                       "offline; upload later with `wandb sync <dir>`")


class NullTracker:
    """``logger=none``: the same interface, doing nothing."""

    mode = "disabled"
    info: dict[str, Any] = {}

    def log(self, row: dict, step: int) -> None:
        pass

    def log_search(self, report) -> None:
        pass

    def finish(self, summary: dict | None = None) -> None:
        pass


class WandbTracker:
    """One W&B run per training run or search; resumed by id when a run restarts from a
    checkpoint. ``job_type``: train (per-epoch rows) | lr_search (one MBT search) | bench."""

    def __init__(self, logger_cfg: dict, *, run_key: str, config: dict, run_dir: Path,
                 notice=print, job_type: str = "train", provenance: dict | None = None):
        import wandb  # imported here: wandb's import costs ~1 s and is unused with logger=none

        if job_type not in JOB_TYPES:
            raise ValueError(f"Invalid job_type: {job_type!r} (one of {', '.join(JOB_TYPES)})")
        self._wandb = wandb
        self.mode, message = resolve_mode(str(logger_cfg["mode"]))
        if message:
            notice(message)
        run_dir.mkdir(parents=True, exist_ok=True)
        timeout = float(logger_cfg.get("init_timeout") or 30)
        if provenance:
            config = {**config, "provenance": {k: provenance[k] for k in PROVENANCE_KEYS
                                               if k in provenance}}

        def init(mode: str):
            return wandb.init(
                project=logger_cfg["project"], entity=logger_cfg.get("entity"),
                group=run_group(config, logger_cfg), job_type=job_type,
                tags=run_tags(config, logger_cfg), name=run_key, id=_wandb_id(run_key),
                resume="allow", config=config, dir=str(run_dir), mode=mode,
                settings=wandb.Settings(console="off", quiet=True, silent=True,
                                        init_timeout=timeout),
            )

        try:
            self.run = init(self.mode)
        except Exception as err:  # CommError, timeouts, HTTP errors: all mean "not online"
            if self.mode != "online":
                raise
            reason = " ".join(str(err).split())[:160] or type(err).__name__
            notice(f"W&B: could not start an online run within {timeout:g} s ({reason}): "
                   f"logging offline; upload later with `wandb sync <dir>`")
            self.mode = "offline"
            self.run = _offline_after_failure(wandb, init)
        self._define_metrics(job_type)
        self.info = {"mode": self.mode, "dir": str(Path(self.run.dir).parent),
                     "url": getattr(self.run, "url", None) if self.mode == "online" else None,
                     "id": self.run.id, "project": logger_cfg["project"]}

    def _define_metrics(self, job_type: str) -> None:
        if job_type == "lr_search":  # one point per searched mini-batch
            self.run.define_metric("search/batch")
            self.run.define_metric("search/batch_*", step_metric="search/batch")
            return
        self.run.define_metric("epoch")
        for namespace in _NAMESPACES:
            self.run.define_metric(f"{namespace}/*", step_metric="epoch")
        # best-of summaries; "last" keeps the final value beside them
        self.run.define_metric("test/acc", step_metric="epoch", summary="max,last")
        self.run.define_metric("test/loss", step_metric="epoch", summary="min,last")
        self.run.define_metric("train/loss", step_metric="epoch", summary="min,last")

    def log(self, row: dict, step: int) -> None:
        """One epoch row of mbt.train (ledger names), logged at ``epoch = step``."""
        metrics = wandb_row({**row, "epoch": step})
        key = WANDB_KEYS["search_per_batch"]
        if key in metrics:  # a histogram per epoch; a list would not chart
            finite = [v for v in metrics.pop(key) if math.isfinite(v)]
            if finite:
                metrics[key] = self._histogram(finite)
        self.run.log(metrics, step=step)

    def _histogram(self, values: list[float]):
        """W&B's 64-bin histogram; one bin where the values span too few ulps for 64 (the
        search's etas are often equal up to rounding, and numpy then refuses to bin them:
        that crashed a 30-epoch run at epoch 9)."""
        try:
            return self._wandb.Histogram(values)
        except ValueError:
            return self._wandb.Histogram(values, num_bins=1)

    def log_search(self, report) -> None:
        """One MBT search (an ``mbt.optim.SearchReport``): the accepted eta of each
        mini-batch against ``search/batch``, and the result and its cost in the summary."""
        for i, eta in enumerate(report.per_batch):
            point = {"search/batch": i + 1, "search/batch_lr": eta}
            if i < len(report.starts):
                point["search/batch_start"] = report.starts[i]
            if i < len(report.trials):
                point["search/batch_trials"] = len(report.trials[i])
            if i < len(report.bound_hits):
                point["search/batch_bound_hit"] = int(bool(report.bound_hits[i]))
            self.run.log(point, step=i)
        self.run.summary.update({
            "search/lr": report.lr, "search/mean_lr": report.mean_lr,
            "search/scale": report.scale, "search/batches": len(report.per_batch),
            "search/trials": report.func_evals, "search/grad_evals": report.grad_evals,
            "search/bound_hits": int(sum(bool(b) for b in report.bound_hits)),
            "search/seconds": report.seconds,
        })

    def finish(self, summary: dict | None = None) -> None:
        if summary:
            self.run.summary.update(summary)
        self.run.finish()


def _wandb_id(run_key: str) -> str:
    # W&B ids allow letters, digits, '-' and '_' only, up to 64 characters; keep the
    # hash suffix, which makes the key unique.
    clean = "".join(c if c.isalnum() or c in "-_" else "_" for c in run_key)
    return clean[-64:]


def make_tracker(logger_cfg: dict, **kwargs) -> NullTracker | WandbTracker:
    """``NullTracker`` for ``logger=none`` or ``logger.mode=disabled``, else a W&B run
    (keyword arguments as :class:`WandbTracker`)."""
    if logger_cfg["name"] == "none" or logger_cfg.get("mode") == "disabled":
        return NullTracker()
    return WandbTracker(logger_cfg, **kwargs)
