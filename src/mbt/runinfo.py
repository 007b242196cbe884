"""Provenance of a run: device, versions, git commit; and seeding."""

from __future__ import annotations

import os
import random
import re
import subprocess
from functools import cache

import numpy as np
import torch

from mbt.config_paths import REPO_ROOT

__all__ = ["CODE_PATHS", "SOURCE_ENV", "already_done", "code_since", "device_name", "git_state",
           "resolve_device", "seed_everything"]

# What a run's numbers depend on, for "has the code changed since this record?".
CODE_PATHS = ("src/mbt", "conf")
# The commit a copy of a checkout without .git was made from (see git_state).
SOURCE_ENV = "MBT_SOURCE_COMMIT"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={name} but CUDA is not available here")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


@cache
def git_state() -> dict[str, object]:
    """``{"commit": sha or "unknown", "dirty": bool}`` of the checkout this code runs from.

    ``dirty`` means uncommitted changes to tracked files outside ``results/``: appending
    to the committed ledger (``paths.ledger=results/ledger.jsonl``) is not a code change.

    A copy of a checkout without its ``.git`` (the tree the device tool sends to a GPU
    machine) cannot ask git: there :data:`SOURCE_ENV` names the commit the copy was made
    from, and ``MBT_SOURCE_DIRTY=1`` says it differs from it (``scripts/device_env.sh``
    checks the copy against the file list and hashes ``make device-prepare`` wrote)."""
    if not (REPO_ROOT / "pyproject.toml").is_file():
        # A wheel install: git would answer for whatever repo holds the venv, if any.
        return {"commit": "unknown", "dirty": False}
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".",
                          ":(exclude)results"))
    except (OSError, subprocess.SubprocessError):
        exported = os.environ.get(SOURCE_ENV, "").strip()
        if re.fullmatch(r"[0-9a-f]{40}", exported):
            return {"commit": exported, "dirty": os.environ.get("MBT_SOURCE_DIRTY") == "1"}
        return {"commit": "unknown", "dirty": False}
    return {"commit": commit, "dirty": dirty}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()


@cache
def _changed_since(commit: str) -> list[str] | str:
    """Files under :data:`CODE_PATHS` that differ between ``commit`` and the working tree
    (uncommitted edits count), or why that cannot be told."""
    if git_state()["commit"] == "unknown":
        return "this is not a git checkout, so whether the code changed since is unknown"
    try:
        _git("cat-file", "-e", f"{commit}^{{commit}}")
    except (OSError, subprocess.SubprocessError):
        return "a commit this checkout does not have, so whether the code changed is unknown"
    try:
        return _git("diff", "--name-only", commit, "--", *CODE_PATHS).splitlines()
    except (OSError, subprocess.SubprocessError) as err:
        return f"git diff failed ({type(err).__name__}), so whether the code changed is unknown"


def already_done(key: str, ledger: str, record: dict, verb: str = "training") -> str:
    """The line a run prints when the ledger already holds its key: when and from which
    code the record came, and the override that runs it again beside it."""
    text, _ = code_since(record)
    return (f"{key}: already in {ledger} ({record.get('status')}, {text}); not {verb} again; "
            f"rerun=1 (or another label) runs it again and keeps both records")


def code_since(record: dict) -> tuple[str, bool]:
    """``(text, changed)``: which commit made the ledger ``record`` and whether the code a
    run depends on (:data:`CODE_PATHS`) has changed since; ``changed`` is True also where
    that cannot be told (unknown commit, not a git checkout)."""
    commit = str(record.get("git_commit") or "unknown")
    if commit == "unknown":
        return "made at an unknown commit", True
    made = f"made at commit {commit[:8]}" + (
        " with uncommitted changes" if record.get("git_dirty") else "")
    trained = record.get("trained_at_commits") or []
    if len(trained) > 1:
        made += f", trained across {len(trained)} commits"
    changed = _changed_since(commit)
    if isinstance(changed, str):
        return f"{made}, {changed}", True
    if not changed:
        return f"{made}; {' and '.join(CODE_PATHS)} are the same now", False
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return f"{made}; the code has changed since: {', '.join(changed[:3])}{more}", True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
