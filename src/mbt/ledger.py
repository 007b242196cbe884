"""The run ledger: one JSON line per finished (or diverged) training run.

Report code reads only this file (``mbt.report``), so every table can be rebuilt
without re-training. Appends take an exclusive ``flock`` on a side lock file and write
the whole line with one ``write`` on an ``O_APPEND`` descriptor, so concurrent runs
(a multirun sweep, several SLURM jobs on a shared file system with working locks)
never interleave lines.

The run key names a cell of an experiment: a readable prefix plus a hash of the
resolved config without the keys that do not change what is computed (where files
live, logging, progress display, the device string), so ``run_key`` is stable across
machines and a sweep can skip cells that are already in the ledger.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["FINAL_STATUSES", "append", "find", "read", "run_key", "scrub_secrets"]

FINAL_STATUSES = ("finished", "diverged")

# Keys that do not change the numbers a run produces.
_KEY_IGNORES = {
    ("data", "root"), ("data", "download"), ("data", "allow_partial"),
    ("data", "num_workers"), ("data", "test_batch_size"), ("data", "synthetic_fallback"),
    ("trainer", "device"), ("trainer", "progress"), ("trainer", "stop_after"),
    ("trainer", "keep_checkpoint"), ("trainer", "check_every"),
    ("logger",), ("paths",), ("notes",), ("experiment",), ("grid",),
}
_SECRET = re.compile(r"(api[_-]?key|token|secret|password)", re.IGNORECASE)


def _strip(node: Any, path: tuple = ()) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v, (*path, k)) for k, v in sorted(node.items())
                if (*path, k) not in _KEY_IGNORES}
    return node


def run_key(config: dict) -> str:
    """``<model>-<data>-<optim>-lr<lr>-b<batch>-e<epochs>-s<seed>-<hash8>`` of a resolved config."""
    digest = hashlib.sha256(json.dumps(_strip(config), sort_keys=True,
                                       default=str).encode()).hexdigest()[:8]
    t = config["trainer"]
    lr = f"{float(config['optim']['lr']):g}"
    return (f"{config['model']['name']}-{config['data']['name']}-{config['optim']['name']}"
            f"-lr{lr}-b{t['batch_size']}-e{t['epochs']}-s{config['seed']}-{digest}")


def scrub_secrets(node: Any) -> Any:
    """A copy of ``node`` without values under keys that look like credentials."""
    if isinstance(node, dict):
        return {k: ("<redacted>" if _SECRET.search(str(k)) else scrub_secrets(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [scrub_secrets(v) for v in node]
    return node


def append(path: str | Path, record: dict) -> None:
    """Append ``record`` as one line, atomically with respect to other appenders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(scrub_secrets(record), sort_keys=True, allow_nan=True) + "\n").encode()
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read(path: str | Path) -> Iterator[dict]:
    """The records in file order; a torn last line (a crash mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with path.open() as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def find(path: str | Path, key: str) -> dict | None:
    """The last finished or diverged record with ``run_key == key``, if any."""
    found = None
    for record in read(path):
        if record.get("run_key") == key and record.get("status") in FINAL_STATUSES:
            found = record
    return found
