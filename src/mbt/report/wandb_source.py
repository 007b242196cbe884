"""Runs from the W&B public API, rebuilt into ledger-like records (``--source wandb``)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

from mbt import ledger
from mbt.tracking import PROVENANCE_KEYS, ledger_row

from .common import ReportError, get

__all__ = ["load_wandb", "record_from_wandb", "require_online"]

log = logging.getLogger(__name__)

_HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                 "epoch_time", "search_time", "search_mean_lr", "search_evals", "steps")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")

def require_online(what: str, fallback: str, timeout: float = 5.0) -> None:
    """Raise :class:`ReportError` (one line naming ``what`` and the ``fallback``) unless W&B
    credentials exist and the server answers within ``timeout`` seconds: fail in seconds
    offline instead of inside wandb's retry loop."""
    from mbt.tracking import resolve_mode

    mode, _ = resolve_mode("auto")
    if mode != "online":
        raise ReportError(f"{what} needs W&B online (mode {mode!r}: no WANDB_API_KEY / "
                          f"`wandb login`, or WANDB_MODE set); {fallback}")
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError as err:
        raise ReportError(f"{what}: cannot reach {url.hostname} ({_first_line(err)}); "
                          f"offline? {fallback}") from err


def load_wandb(project: str, entity: str | None = None, *, experiments: Iterable[str],
               protocol: str | None = None, timeout: int = 20) -> list[dict]:
    """Runs of ``experiments`` (the report targets) from the W&B public API, as ledger-like
    records.

    Raises :class:`ReportError` (one line) without credentials, offline, or on any API error.
    """
    require_online("--source wandb", "use --source ledger")
    path = f"{entity}/{project}" if entity else project
    filters: dict[str, Any] = {"config.experiment": {"$in": list(experiments)}}
    if protocol:
        filters["config.protocol"] = protocol
    try:
        import wandb

        runs = wandb.Api(timeout=timeout).runs(path, filters=filters)
        records = [r for run in runs if (r := record_from_wandb(run)) is not None]
    except Exception as err:  # wandb raises CommError, HTTPError, ValueError, ...
        raise ReportError(f"--source wandb: reading runs of {path!r} failed "
                          f"({_first_line(err)})") from err
    log.info("read %d runs from W&B project %s", len(records), path)
    return records

def record_from_wandb(run) -> dict | None:
    """A ledger-like record from a W&B run (``run.config`` is the resolved config that
    ``mbt.train`` logged; the history holds one row per epoch). Runs logged with the
    ledger's provenance (``config.provenance``, :data:`mbt.tracking.PROVENANCE_KEYS`) say
    which data were actually loaded, on what device, at which commit; for older runs those
    fields are None (the data) or what W&B's own metadata knows (GPU, commit)."""
    cfg = dict(run.config)
    known = cfg.pop("provenance", None) or {}
    raw = getattr(run, "summary", None) or {}
    summary = dict(getattr(raw, "_json_dict", raw))
    status = summary.get("status") or ("finished" if run.state == "finished" else None)
    if status not in ledger.FINAL_STATUSES:
        return None
    try:  # wandb-metadata.json is a file download that may be missing
        meta = run.metadata or {}
    except Exception:  # noqa: BLE001 - metadata is optional provenance
        meta = {}
    common = {
        "run_key": run.name, "status": status, "protocol": cfg.get("protocol"),
        "experiment": cfg.get("experiment"), "model": get(cfg, "model", "name"),
        "dataset": get(cfg, "data", "name"), "optim": get(cfg, "optim", "name"),
        "lr": get(cfg, "optim", "lr"), "batch_size": get(cfg, "trainer", "batch_size"),
        "seed": cfg.get("seed"), "device": None, "device_name": meta.get("gpu"),
        "git_commit": get(meta, "git", "commit"), "git_dirty": None,
        "data": {"num_classes": get(cfg, "data", "num_classes")}, "synthetic": None,
        "config": cfg, "source": "wandb",
        "wandb": {"id": run.id, "url": getattr(run, "url", None)},
    }
    common.update({k: known[k] for k in PROVENANCE_KEYS if k in known})
    # Runs log namespaced keys (mbt.tracking: search/lr, train/loss, ...); runs logged before
    # the namespaces used the ledger's flat names. Both read back under the ledger's.
    if getattr(run, "job_type", None) == "lr_search" or "search/lr" in summary \
            or "search_lr" in summary:  # an lr_search run (Table 1)
        flat = ledger_row(summary)
        return {"kind": "lr_search", **common,
                "search_lr": flat.get("search_lr"), "search_mean_lr": flat.get("search_mean_lr"),
                "func_evals": flat.get("search_evals", flat.get("func_evals")),
                "seconds": summary.get("search/seconds", summary.get("seconds"))}
    rows = sorted((ledger_row(r) for r in run.scan_history()), key=lambda r: r.get("epoch") or 0)
    rows = [r for r in rows if r.get("epoch") is not None]
    history = {k: [r.get(k) for r in rows] for k in _HISTORY_KEYS}
    accs = history["test_acc"]
    measured = [i for i, a in enumerate(accs) if a is not None]  # trainer.eval_every skips
    best = max(measured, key=accs.__getitem__) if measured else None
    return {
        "kind": "train", **common, "epochs": get(cfg, "trainer", "epochs"),
        "epochs_completed": len(rows), "early_stopped": None,
        "best_test_acc": accs[best] if measured else summary.get("best_test_acc"),
        "best_epoch": history["epoch"][best] if measured else None,
        "final_test_acc": accs[measured[-1]] if measured else None, "history": history,
    }
