"""Atomic, verifiable training checkpoints: write to a temp file, fsync, rename.

Two generations are kept (``last.pt`` and ``prev.pt``), so a checkpoint truncated by
a crash or a full disk costs at most one more epoch: :func:`load_latest` reports the
bad file in one line and falls back to the previous good one, or to a fresh start.
Files load with ``weights_only=True``: everything saved is tensors, containers and
plain Python values.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["REQUIRED", "CheckpointError", "capture_rng", "load_latest", "restore_rng", "save"]

log = logging.getLogger(__name__)

LAST, PREV = "last.pt", "prev.pt"
# What a training checkpoint must hold to resume; a file without one of them counts as
# unreadable (fall back to prev.pt, then to a fresh start).
REQUIRED = ("epoch", "model", "optimizer", "rng", "history")


class CheckpointError(OSError):
    """A checkpoint could not be written (disk full, read-only); one-line message."""


def capture_rng() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [int(v) for v in np.random.get_state()[1]] + [np.random.get_state()[2]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    keys = np.array(state["numpy"][:-1], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy"][-1]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(obj):
    return tuple(_as_tuple(o) for o in obj) if isinstance(obj, (list, tuple)) else obj


def save(directory: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` as ``directory/last.pt``; the former ``last.pt`` becomes ``prev.pt``."""
    tmp = directory / f".{LAST}.{os.getpid()}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise CheckpointError(f"could not save a checkpoint in {directory} ({reason}); "
                              f"free space and run the same command again to resume") from err
    last = directory / LAST
    if last.exists():
        os.replace(last, directory / PREV)
    os.replace(tmp, last)
    return last


def load_latest(directory: Path, map_location="cpu", notice=print,
                apply=None) -> tuple[dict[str, Any], Path] | tuple[None, None]:
    """``(state, path)`` of the newest readable checkpoint in ``directory``, or
    ``(None, None)`` (fresh start). A file that does not load, or lacks a key of
    :data:`REQUIRED`, is reported in one line and skipped. ``apply(state)`` restores it
    into the run; a file it rejects (a model changed between commits, a bad ``rng``) is
    reported and skipped the same way, and when no file is left :class:`CheckpointError`
    says how to start fresh (never a silent fresh start over a run of another model)."""
    mismatched = []
    for name in (LAST, PREV):
        path = directory / name
        if not path.exists():
            continue
        if not path.is_file():  # save() would rotate it into prev.pt: stop before that
            what = "a directory" if path.is_dir() else "not a regular file"
            raise CheckpointError(f"{path} is {what}, not a checkpoint; move it away and run "
                                  f"the same command again")
        fallback = (directory / PREV).exists() and name == LAST
        then = "falling back to " + PREV if fallback else "starting over"
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
            if not isinstance(state, dict) or (lacking := [k for k in REQUIRED
                                                             if k not in state]):
                what = "not a dict" if not isinstance(state, dict) else f"no {lacking[0]!r}"
                raise ValueError(f"not a training checkpoint: {what}")
        except Exception as err:  # truncated/corrupt files raise many different types
            notice(f"checkpoint {path} is unreadable ({_why(err)}); {then}")
            continue
        try:
            if apply is not None:
                apply(state)
            return state, path
        except Exception as err:  # load_state_dict, set_rng_state: many types too
            mismatched.append((path, _why(err)))
            if fallback:
                notice(f"checkpoint {path} does not match this model ({_why(err)}); {then}")
    if mismatched:
        path, why = mismatched[0]
        raise CheckpointError(
            f"checkpoint {path} does not match this model ({why}); to start fresh, move "
            f"{' and '.join(str(p) for p, _ in mismatched)} away (or set another paths.runs) "
            f"and run the same command again")
    return None, None


def _why(err: Exception) -> str:
    text = " ".join(str(err).split())  # load_state_dict's report spans lines
    return f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__
