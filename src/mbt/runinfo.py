"""Provenance of a run: device, versions, git commit; and seeding."""

from __future__ import annotations

import random
import subprocess
from functools import cache

import numpy as np
import torch

from mbt.config_paths import REPO_ROOT

__all__ = ["device_name", "git_state", "resolve_device", "seed_everything"]


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
    to the committed ledger (``paths.ledger=results/ledger.jsonl``) is not a code change."""
    if not (REPO_ROOT / "pyproject.toml").is_file():
        # A wheel install: git would answer for whatever repo holds the venv, if any.
        return {"commit": "unknown", "dirty": False}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                         ":(exclude)results"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": False}
    return {"commit": commit, "dirty": dirty}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
