"""What every entrypoint does before its own work, in one place.

:func:`open_run` is the shared path of ``mbt.train`` and ``mbt.find_lr``: validate the
config, check that the ledger and run directories can be written, pick the device, seed,
load the data, derive the run identity (config + data fingerprint, :mod:`mbt.ledger`),
take the per-run lock, and look the key up in the ledger. :func:`provenance` is the part
of a ledger record every entrypoint writes the same way.

The per-run locks (``flock`` on ``<ledger dir>/.<ledger name>.<run_key>.lock``, then
on ``<paths.runs>/<run_key>/lock``) make two sweeps on one ledger safe, whatever their
``paths.runs``: the second process to reach a cell waits for the first, then finds its
record in the ledger and skips the cell instead of training it again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mbt import ledger
from mbt.config import ConfigError, validate
from mbt.data import DataError, build_loaders_from_config, load_dataset, write_synthetic
from mbt.runinfo import device_name, git_state, resolve_device, seed_everything

__all__ = ["Run", "RunIOError", "data_fingerprint", "load_data", "notice", "open_run",
           "probe_writable", "provenance", "run_identity", "uses_channels_last"]

_SYNTHETIC_SIZES = {"n_train": 2000, "n_test": 500}
LOCK = "lock"


class RunIOError(OSError):
    """A run directory or the ledger cannot be written; the message is one line."""


def notice(msg: str) -> None:
    """A one-line message for the person running the job (stderr, unbuffered)."""
    print(msg, file=sys.stderr, flush=True)


def _read_data(cfg: DictConfig, read: Callable[[dict], Any]) -> Any:
    """``read(data_cfg)`` of the run's ``data`` node; with ``data.synthetic_fallback``,
    of a generated CIFAR-layout set (labelled synthetic) where no CIFAR files are found."""
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True)
    try:
        return read(data_cfg)
    except DataError as err:
        if not data_cfg["synthetic_fallback"]:
            raise
        root = Path(cfg.paths.runs) / "synthetic-data"
        notice(f"no CIFAR data under {data_cfg['root']!r}: training on a generated "
               f"CIFAR-layout data set in {root} (labelled synthetic) [{err}]")
        root = write_synthetic(root, data_cfg["name"], seed=0, **_SYNTHETIC_SIZES)
        data_cfg.update(root=str(root), allow_partial=False)
        return read(data_cfg)


def uses_channels_last(cfg: DictConfig, device: torch.device) -> bool:
    """Whether the run keeps images and weights in channels_last: on CUDA, and on a CPU
    under bf16 autocast (oneDNN's bf16 convolutions are 1.3-1.7x faster in it here, its
    fp32 ones slower: a CPU fp32 run keeps NCHW and so its numbers)."""
    return bool(cfg.trainer.channels_last) and (
        device.type == "cuda" or (device.type == "cpu" and bool(cfg.trainer.amp_bf16)))


def load_data(cfg: DictConfig, device: torch.device):
    """``(train_loader, test_loader, info)`` of the run; with ``data.synthetic_fallback``,
    a generated CIFAR-layout set (labelled synthetic) where no CIFAR files are found."""
    kwargs = dict(batch_size=cfg.trainer.batch_size, seed=cfg.seed, device=device,
                  channels_last=uses_channels_last(cfg, device))
    return _read_data(cfg, lambda data_cfg: build_loaders_from_config(data_cfg, **kwargs))


def data_fingerprint(cfg: DictConfig, cache: dict | None = None) -> dict:
    """The fingerprint of the data the run ``cfg`` reads (``info["fingerprint"]`` of
    :func:`load_data`, the synthetic fallback included) without building loaders. With
    ``cache`` (a dict the caller keeps, e.g. for one sweep), the files of a (dataset, root,
    allow_partial) are read once; a :class:`DataError` is remembered and raised again."""
    d = cfg.data
    slot = (str(d.name), str(Path(str(d.root)).expanduser().resolve()), bool(d.allow_partial),
            bool(d.download), bool(d.synthetic_fallback) and str(cfg.paths.runs))
    if cache is not None and slot in cache:
        found = cache[slot]
    else:
        try:
            found = _read_data(cfg, lambda data_cfg: load_dataset(
                data_cfg["name"], data_cfg["root"], allow_partial=data_cfg["allow_partial"],
                download=data_cfg["download"],
                test_fraction=data_cfg["test_fraction"]).fingerprint)
        except DataError as err:
            found = err
        if cache is not None:
            cache[slot] = found
    if isinstance(found, DataError):
        raise DataError(str(found))
    return found


def run_identity(cfg: DictConfig, kind: str = "train", *, fingerprint: dict | None = None,
                 cache: dict | None = None) -> tuple[str, dict]:
    """``(run key, resolved config with secrets redacted)`` of the run ``cfg`` describes:
    validate -> resolve -> fingerprint of the data it reads -> :func:`mbt.ledger.run_key`.
    :func:`open_run` passes the ``fingerprint`` of the data it loaded; without one, the data
    files are read (:func:`data_fingerprint`, ``cache``), as a launcher does to find the
    cells of a sweep already in the ledger (:mod:`mbt.launchers`)."""
    validate(cfg)
    config = ledger.scrub_secrets(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    if fingerprint is None:
        fingerprint = data_fingerprint(cfg, cache)
    return ledger.run_key(config, fingerprint, kind), config


def probe_writable(directory: str | Path, what: str) -> None:
    """Write, fsync and remove a small file in ``directory``: a read-only or full disk is
    found before any work, not when the first checkpoint or the record is written."""
    directory = Path(directory)
    probe = directory / f".probe.{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if os.write(fd, b"\0" * 4096) != 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise RunIOError(f"cannot write the {what} directory {directory} "
                         f"({err.strerror or err}); free space or point {what} elsewhere "
                         f"before training") from err
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


@dataclass
class Run:
    """A run set up by :func:`open_run`: everything an entrypoint needs to do its work."""

    cfg: DictConfig
    config: dict            # resolved, secrets redacted: what the ledger stores
    key: str
    device: torch.device
    train_loader: Any
    test_loader: Any
    data_info: dict
    run_dir: Path
    done: dict | None       # the ledger's record of this key, if it already ran


def _take(fh, path: Path, key: str, required: bool) -> bool:
    """Lock ``fh`` exclusively, waiting for another holder; False where the file system
    has no working flock and the lock is not ``required``."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        notice(f"{key}: another process is running this cell ({path}); waiting for it")
        fcntl.flock(fh, fcntl.LOCK_EX)
    except OSError as err:  # ENOLCK / ENOSYS: Lustre mounted noflock, NFS without lockd
        if required:
            raise RunIOError(f"cannot lock {path} ({err.strerror or err}): this file system "
                             f"has no working flock; put paths.ledger on one that has "
                             f"(docs/cluster.md)") from err
        notice(f"{key}: no working flock for {path} ({err.strerror or err}); the ledger's "
               f"lock alone keeps this cell to one process")
        return False
    return True


@contextlib.contextmanager
def _flock(path: Path, key: str, *, required: bool = True) -> Iterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a")
    except OSError as err:
        raise RunIOError(f"cannot create the run lock {path} ({err.strerror or err})") from err
    with fh:
        locked = _take(fh, path, key, required)
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fh, fcntl.LOCK_UN)


def ledger_lock_path(ledger_path: str | Path, key: str) -> Path:
    """The lock of cell ``key`` on one ledger: a hidden file beside the ledger, so every
    process that appends to it meets the same lock whatever its ``paths.runs``."""
    ledger_path = Path(ledger_path).resolve()
    return ledger_path.parent / f".{ledger_path.name}.{key}.lock"


@contextlib.contextmanager
def _run_lock(run_dir: Path, ledger_path: str | Path, key: str) -> Iterator[None]:
    # Always the ledger's lock first, then the run directory's (which guards its
    # checkpoints when two ledgers share one paths.runs): one order, no deadlock.
    # (A runs directory on Lustre mounted noflock beside a ledger elsewhere, as
    # docs/cluster.md advises, has no working flock: its lock is then skipped.)
    with _flock(ledger_lock_path(ledger_path, key), key), \
            _flock(run_dir / LOCK, key, required=False):
        yield


def _link_hydra_job(run_dir: Path, key: str) -> None:
    """One place per run: the Hydra job's output directory gets ``run_key`` (a text file)
    and ``run_dir`` (a symlink to ``<paths.runs>/<run_key>``); the run directory gets a
    copy of the job's ``.hydra/`` (the latest job's composed config and overrides) and
    ``hydra_jobs.txt``, one line per job that opened it. No-op outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    try:
        job_dir = Path(HydraConfig.get().runtime.output_dir)
        (job_dir / "run_key").write_text(key + "\n")
        link = job_dir / "run_dir"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(run_dir.resolve(), target_is_directory=True)
        if (job_dir / ".hydra").is_dir():
            shutil.copytree(job_dir / ".hydra", run_dir / ".hydra", dirs_exist_ok=True)
        with open(run_dir / "hydra_jobs.txt", "a") as fh:
            fh.write(f"{job_dir.resolve()}\n")
    except OSError as err:  # a convenience: never a reason not to train
        notice(f"{key}: could not link the Hydra job directory and {run_dir} ({err})")


def _remove_stale_temp_files(run_dir: Path) -> None:
    # Under the run lock no other process writes here: any temp file is a dead writer's.
    for tmp in run_dir.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            notice(f"removed a stale temporary file {tmp} (an interrupted checkpoint save)")


@contextlib.contextmanager
def open_run(cfg: DictConfig, *, kind: str = "train") -> Iterator[Run]:
    """Set up the run ``cfg`` describes and hold its lock for the ``with`` body.

    Order: validate -> probe the ledger and runs directories -> device -> seed -> data ->
    run key (config + data fingerprint) -> per-run lock -> ledger lookup (after the lock,
    so a cell another process just finished is seen)."""
    validate(cfg)  # first: a bad value is reported before any I/O
    if Path(cfg.paths.ledger).is_dir():  # else found only at the first read, after the data
        raise ConfigError(f"paths.ledger={cfg.paths.ledger} is a directory; a ledger is a "
                          f"file (e.g. paths.ledger={Path(cfg.paths.ledger) / 'ledger.jsonl'})")
    probe_writable(Path(cfg.paths.ledger).parent, "paths.ledger")
    probe_writable(cfg.paths.runs, "paths.runs")
    try:
        device = resolve_device(cfg.trainer.device)
    except RuntimeError as err:
        raise ConfigError(str(err)) from err
    if device.type == "cuda":  # one batch shape per run: cuDNN times its algorithms once
        torch.backends.cudnn.benchmark = True
    seed_everything(cfg.seed)
    train_loader, test_loader, info = load_data(cfg, device)
    key, config = run_identity(cfg, kind, fingerprint=info["fingerprint"])
    run_dir = Path(cfg.paths.runs) / key
    notice(f"{key}: run folder {run_dir}")
    with _run_lock(run_dir, cfg.paths.ledger, key):
        _remove_stale_temp_files(run_dir)
        _link_hydra_job(run_dir, key)
        yield Run(cfg, config, key, device, train_loader, test_loader, info, run_dir,
                  ledger.find(cfg.paths.ledger, key))


def provenance(run: Run, kind: str, status: str) -> dict[str, Any]:
    """The fields every ledger record has, whatever wrote it (train, lr_search)."""
    c = run.config
    git = git_state()
    return {
        "kind": kind, "run_key": run.key, "key_schema": ledger.KEY_SCHEMA, "status": status,
        "protocol": c["protocol"], "experiment": c.get("experiment"),
        "model": c["model"]["name"], "bn_init": c["model"].get("bn_init", "torch"),
        "dataset": c["data"]["name"], "optim": c["optim"]["name"], "lr": c["optim"]["lr"],
        "batch_size": c["trainer"]["batch_size"], "seed": c["seed"],
        "device": str(run.device), "device_name": device_name(run.device),
        "torch_version": torch.__version__, "git_commit": git["commit"],
        "git_dirty": git["dirty"], "data": run.data_info,
        "synthetic": bool(run.data_info.get("synthetic")), "config": c,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
