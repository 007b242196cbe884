"""The run ledger: one JSON line per finished (or diverged) training run or lr search.

Report code reads only this file (``mbt.report``), so every table can be rebuilt
without re-training. The file is append-only and every append is whole or absent: it
takes an exclusive ``flock`` on a side lock file, writes the line with one ``write`` on
an ``O_APPEND`` descriptor, checks the byte count and fsyncs; on any failure (a full
disk) it truncates the file back to its size before the write and raises
:class:`LedgerError`. Concurrent runs (a sweep, SLURM jobs on a file system with working
locks) therefore never interleave or tear lines, and a line torn by an earlier crash
never swallows the next record (the append starts on a fresh line). Lines are strict JSON
(a NaN or inf is written ``null``; older lines holding ``NaN`` still read as they did), and
a line that cannot be read (torn, not UTF-8, not a record) costs that line only.

Run identity (key schema 2, :data:`KEY_SCHEMA`): a readable prefix plus a hash of

* the resolved config, without the keys that do not change what is computed (where files
  live, logging, progress display, the device string; :data:`_KEY_IGNORES`) and without
  keys added after schema 2 while they hold their neutral value (:data:`KEY_NEUTRAL`), so
  adding a config key with a default leaves every existing key valid;
* a fingerprint of the data actually loaded (numbers of train/test images and a hash of
  the files' md5 sums, not their path): a run on the 5170-image partial copy never
  satisfies a full-CIFAR cell, and the same files at another path still match.

Records written under an older schema are migrated with ``python -m mbt.ledger migrate``
(appends re-keyed copies; nothing is rewritten).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import numbers
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["EXPLODED_FACTOR", "FINAL_STATUSES", "KEY_NEUTRAL", "KEY_SCHEMA", "PROTOCOLS",
           "LedgerError", "append", "exploded", "find", "identity", "locked", "read", "run_key",
           "scrub_secrets", "strict"]

log = logging.getLogger(__name__)

FINAL_STATUSES = ("finished", "diverged")
# How a record was made (config `protocol`): full = the paper's; the order is the
# preference of reports when several cover a target equally.
PROTOCOLS = ("full", "quick", "cpu", "smoke", "custom")
KEY_SCHEMA = 2

# Keys that do not change the numbers a run produces. data.root/allow_partial/download
# are replaced by the fingerprint of the files actually read.
_KEY_IGNORES = {
    ("data", "root"), ("data", "download"), ("data", "allow_partial"),
    ("data", "test_batch_size"), ("data", "synthetic_fallback"),
    ("trainer", "device"), ("trainer", "progress"), ("trainer", "stop_after"),
    ("trainer", "keep_checkpoint"), ("trainer", "checkpoint_every"),
    ("logger",), ("paths",), ("notes",), ("experiment",), ("grid",),
}
# Keys added after key schema 2, with the value that reproduces what ran before them: a
# key at its neutral value is left out of the hash, so old keys stay valid. A new config
# key that changes the numbers goes here (tests/test_ledger.py pins a reference key and
# fails when a key is added without an entry).
KEY_NEUTRAL: dict[tuple[str, ...], Any] = {
    ("model", "bn_init"): "torch",
    ("optim", "builder", "bn_slices"): 1,
    ("rerun",): None,
    ("data", "block_size"): None,  # text data sets only (conf/data/fortunes.yaml)
    ("data", "test_fraction"): None,
    ("optim", "builder", "reset_momentum"): True,  # MBT-MMT/NAG (conf/optim/mbt_*.yaml)
}
_SECRET = re.compile(r"(api[_-]?key|token|secret|password)", re.IGNORECASE)


class LedgerError(OSError):
    """The ledger could not be written or read as asked; the message is one line."""


def _strip(node: Any, path: tuple = ()) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v, (*path, k)) for k, v in sorted(node.items())
                if (*path, k) not in _KEY_IGNORES
                and not ((*path, k) in KEY_NEUTRAL and v == KEY_NEUTRAL[(*path, k)])}
    return node


# What an lr search (mbt.find_lr, Table 1) reads of ``trainer``: only the batch size; the
# training settings (epochs, divergence rule, precision, ...) do not change its number.
_SEARCH_TRAINER_KEYS = ("batch_size",)


def identity(config: dict, data: dict, kind: str = "train") -> dict:
    """What the run key hashes: the config that changes the numbers + the data fingerprint
    (``kind="lr_search"``: of ``trainer``, only what a search reads)."""
    cfg = _strip(config)
    if (config.get("data") or {}).get("pipeline") == "device":
        cfg.get("data", {}).pop("num_workers", None)  # only the DataLoader pipeline uses it
    if kind == "lr_search":
        cfg["trainer"] = {k: v for k, v in cfg.get("trainer", {}).items()
                          if k in _SEARCH_TRAINER_KEYS}
        cfg.get("optim", {}).pop("scheduler", None)
    fingerprint = {k: data[k] for k in ("n_train", "n_test", "files") if k in data}
    return {"key_schema": KEY_SCHEMA, "config": cfg, "data": fingerprint}


def run_key(config: dict, data: dict, kind: str = "train") -> str:
    """``<model>-<data>-<optim>-lr<lr>-b<batch>-e<epochs>-s<seed>-<hash8>`` of a resolved
    config and the fingerprint (``CifarData.fingerprint``) of the data it loaded; an lr
    search (``kind="lr_search"``): ``lrsearch-<model>-<data>-<optim>-lr<lr>-b<batch>-s<seed>-
    <hash8>``. With ``rerun=LABEL``, ``-r<LABEL>`` follows the seed."""
    digest = hashlib.sha256(json.dumps(identity(config, data, kind), sort_keys=True,
                                       default=str).encode()).hexdigest()[:8]
    t = config["trainer"]
    lr = f"{float(config['optim']['lr']):g}"
    search = kind == "lr_search"
    rerun = "" if config.get("rerun") is None else f"-r{config['rerun']}"
    return (f"{'lrsearch-' if search else ''}{config['model']['name']}-{config['data']['name']}"
            f"-{config['optim']['name']}-lr{lr}-b{t['batch_size']}"
            f"{'' if search else '-e' + str(t['epochs'])}-s{config['seed']}{rerun}-{digest}")


def scrub_secrets(node: Any) -> Any:
    """A copy of ``node`` without values under keys that look like credentials."""
    if isinstance(node, dict):
        return {k: ("<redacted>" if _SECRET.search(str(k)) else scrub_secrets(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [scrub_secrets(v) for v in node]
    return node


def strict(node: Any) -> Any:
    """A copy of ``node`` with every NaN/inf float as None: ``json.dumps`` writes NaN, which
    strict JSON parsers (Python's with ``parse_constant``, jq, most languages) reject. A
    diverged run's losses and accuracy are the usual source."""
    if isinstance(node, float) and not math.isfinite(node):
        return None
    if isinstance(node, dict):
        return {k: strict(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [strict(v) for v in node]
    return node


# A finished run whose last epoch's train loss is this many times its starting loss blew up
# without leaving the floats (1e14): the divergence rule (a non-finite loss) never fired,
# so its status stays finished and its numbers stay what the rule gives, but it is flagged.
EXPLODED_FACTOR = 100.0


def exploded(record: dict) -> bool:
    """Whether ``record``'s loss exploded but stayed finite: the last finite epoch train
    loss above :data:`EXPLODED_FACTOR` x the starting loss, the lower of the first epoch's
    and chance's (ln classes, an initialised net's loss: a run that explodes within its
    first epoch counts too). Read from the history, so records older than the
    ``exploded`` field are judged the same way."""
    losses = [v for v in ((record.get("history") or {}).get("train_loss") or [])
              if isinstance(v, numbers.Real) and math.isfinite(v)]
    if not losses:
        return False
    classes = (record.get("data") or {}).get("num_classes") or 10
    return losses[-1] > EXPLODED_FACTOR * min(losses[0], math.log(classes))


def _lock(path: Path):
    return open(path.with_name(path.name + ".lock"), "a")


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[Callable[[dict], None]]:
    """Hold the ledger's lock; yields ``append(record)`` for appends under it. What was
    read inside stays true until the block ends: :mod:`mbt.ledger_merge` checks a run key
    and appends its record without another process appending that key in between."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock(path)
    except OSError as err:
        raise LedgerError(f"cannot write the ledger {path}: {err.strerror or err}") from err
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError as err:  # ENOLCK / ENOSYS: Lustre mounted noflock, NFS without lockd
            raise LedgerError(f"cannot lock the ledger {path} ({err.strerror or err}): this file "
                              f"system has no working flock; use one ledger per job "
                              f"(docs/cluster.md)") from err
        yield lambda record: _append_held(path, record)


def append(path: str | Path, record: dict) -> None:
    """Append ``record`` as one whole line, or nothing: raises :class:`LedgerError` (and
    leaves the file as it was) when the line cannot be written in full."""
    with locked(path) as append_held:
        append_held(record)


def _append_held(path: Path, record: dict) -> None:
    line = (json.dumps(strict(scrub_secrets(record)), sort_keys=True, allow_nan=False)
            + "\n").encode()
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as err:
        raise LedgerError(f"cannot write the ledger {path}: {err.strerror}") from err
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a torn last line stays a bad line of its own
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        except OSError as err:
            os.ftruncate(fd, size)
            raise LedgerError(f"could not append to the ledger {path} "
                              f"({err.strerror or err}); the file is unchanged, the record "
                              f"was not saved (disk full?)") from err
    finally:
        os.close(fd)


def _bad_line(path: Path, number: int, why: str) -> None:
    log.warning("%s line %d: %s; skipped", path, number, why)


# Fields a report does arithmetic on: a record whose value is not a number is refused.
_NUMERIC = ("lr", "batch_size", "epochs", "seed", "best_test_acc", "final_test_acc",
            "search_lr", "search_mean_lr", "wall_time", "seconds", "func_evals")


def _problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"not a JSON object ({type(record).__name__})"
    for k in _NUMERIC:
        v = record.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
            return f"{k} is {type(v).__name__} {v!r}, not a number"
    return None


def read(path: str | Path, on_bad: Callable[[Path, int, str], None] = _bad_line,
         check: Callable[[dict], str | None] | None = None) -> Iterator[dict]:
    """The records in file order. A line that is not a UTF-8 JSON object with numbers where
    numbers belong (a torn write, a hand edit), or that ``check`` finds a problem with, is
    skipped and reported through ``on_bad(path, line_number, why)`` (default: a warning
    naming the line). No line stops the reading: training looks keys up here too."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as fh:  # bytes: one bad byte must cost its line, not the file
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                on_bad(path, number, f"not UTF-8 (byte {raw[err.start]:#04x} at column "
                                     f"{err.start + 1})")
                continue
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                on_bad(path, number, f"not valid JSON ({err.msg}, torn write?)")
                continue
            why = _problem(record) or (check(record) if check else None)
            if why:
                on_bad(path, number, why)
                continue
            yield record


def _quiet(*_):
    pass


def find(path: str | Path, key: str) -> dict | None:
    """The last finished or diverged record with ``run_key == key``, if any."""
    found = None
    for record in read(path, on_bad=_quiet):
        if record.get("run_key") == key and record.get("status") in FINAL_STATUSES:
            found = record
    return found
