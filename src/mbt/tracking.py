"""Weights & Biases for training runs, with an offline fallback and no secrets on disk.

``logger.mode=auto`` (the default) runs online when credentials exist (the
``WANDB_API_KEY`` variable or a ``wandb login`` entry in ~/.netrc) and otherwise
offline, with one notice line; offline runs can be uploaded later with ``wandb sync``.
Online init is bounded (``logger.init_timeout`` seconds): with credentials but no network
the run falls back to offline with one notice line and trains on.
The API key is never copied into the run config, the ledger or the logs: wandb reads
it from the environment itself.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

__all__ = ["NullTracker", "WandbTracker", "make_tracker", "resolve_mode"]

log = logging.getLogger(__name__)


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

    def log(self, metrics: dict, step: int) -> None:
        pass

    def finish(self, summary: dict | None = None) -> None:
        pass


class WandbTracker:
    """One W&B run per training run; resumed by id when a run restarts from a checkpoint."""

    def __init__(self, logger_cfg: dict, *, run_key: str, config: dict, run_dir: Path,
                 notice=print):
        import wandb  # imported here: wandb's import costs ~1 s and is unused with logger=none

        self.mode, message = resolve_mode(str(logger_cfg["mode"]))
        if message:
            notice(message)
        run_dir.mkdir(parents=True, exist_ok=True)
        timeout = float(logger_cfg.get("init_timeout") or 30)

        def init(mode: str):
            return wandb.init(
                project=logger_cfg["project"], entity=logger_cfg.get("entity"),
                group=logger_cfg.get("group"), tags=list(logger_cfg.get("tags") or []),
                name=run_key, id=_wandb_id(run_key), resume="allow", config=config,
                dir=str(run_dir), mode=mode,
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
            wandb.teardown()  # the failed init still holds the run id in wandb's service
            self.run = init(self.mode)
        self.info = {"mode": self.mode, "dir": str(Path(self.run.dir).parent),
                     "url": getattr(self.run, "url", None) if self.mode == "online" else None,
                     "id": self.run.id, "project": logger_cfg["project"]}

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(metrics, step=step)

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
    if logger_cfg["name"] == "none" or logger_cfg.get("mode") == "disabled":
        return NullTracker()
    return WandbTracker(logger_cfg, **kwargs)
