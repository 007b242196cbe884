"""The command-line contract every ``@hydra.main`` entrypoint of mbt keeps.

* A known error (bad config value, missing data, unwritable ledger) is ONE ``error:``
  line on stderr: exit 2 for what the user must change (config, data), 1 for I/O. Where
  Hydra's text does not say the fix, the line does (``+experiment=`` -> ``experiment=``;
  a launcher whose extra is not installed -> the ``pip install`` to run).
* Ctrl-C is one line and exit 130 (the checkpoint of the last whole epoch stays);
  ``kill`` (SIGTERM) the same line and exit 143.
* In a multirun, a cell that fails that way is reported and skipped; the sweep goes on
  and the process exits non-zero at the end, naming the failed cells. Under a submitit
  launcher (SLURM, submitit_local) each cell is its own job: the job logs its ``error:``
  line and fails, the other jobs run, and the launching process exits 1 with one line.
* The job's result is the last stdout line: one summary line (status, accuracy or searched
  lr, the ledger, the run folder), or with ``--json`` (or ``MBT_JSON=1``) the whole ledger
  record as JSON. ``--json`` is ours, not Hydra's: it is taken out of the arguments
  before Hydra reads them and passed to the jobs as ``MBT_JSON=1`` (so a SLURM job's log
  ends with the record too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from mbt.checkpoint import CheckpointError
from mbt.config import ConfigError, near_miss
from mbt.config_paths import install_hint
from mbt.data import DataError
from mbt.ledger import LedgerError, strict
from mbt.run import RunIOError

__all__ = ["JSON_ENV", "one_line_errors", "run_and_print", "summary"]

# (exit code, error types) for errors whose message is already one line.
_KNOWN = ((2, (ConfigError, DataError)), (1, (LedgerError, RunIOError, CheckpointError)))
_KNOWN_TYPES = tuple(t for _, types in _KNOWN for t in types)
# Cells of the current multirun that failed: (job number, overrides, message).
_FAILED: list[tuple[str, str, str]] = []
# Set by --json; an environment variable so that the jobs of a submitit launcher see it too.
JSON_ENV = "MBT_JSON"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's stop) raised where the run is, like Ctrl-C: the
    same cleanup runs and the same line is printed; the exit status stays 128 + 15."""

    signum = signal.SIGTERM


def _terminate(signum, frame):
    raise Terminated()


def _exit_status(err: KeyboardInterrupt) -> int:
    return 128 + int(getattr(err, "signum", signal.SIGINT))


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_and_print(job: Callable[[DictConfig], dict], cfg: DictConfig) -> None:
    """Run ``job(cfg)`` under the contract above; print its summary (or record) last."""
    try:
        record = job(cfg)
    except KeyboardInterrupt as err:
        print(f"interrupted{' (SIGTERM)' if isinstance(err, Terminated) else ''}: the last "
              "whole epoch is checkpointed; run the same command again to resume",
              file=sys.stderr, flush=True)
        sys.exit(_exit_status(err))
    except _KNOWN_TYPES as err:
        code = next(c for c, types in _KNOWN if isinstance(err, types))
        print(f"error: {err}", file=sys.stderr, flush=True)
        if not _multirun():
            sys.exit(code)
        if os.environ.get("SUBMITIT_EXECUTOR"):
            # A submitit job is a process of its own: returning would end it as a success
            # and the launcher would exit 0. Raised, the error marks the job's JobReturn
            # failed; Hydra's sweeper re-raises it in the launching process once every job
            # of the batch has run, and one_line_errors prints it there.
            raise
        job_cfg = HydraConfig.get().job
        _FAILED.append((str(job_cfg.num), " ".join(job_cfg.override_dirname.split(",")),
                        str(err)))
        return
    if os.environ.get(JSON_ENV) == "1":
        print(json.dumps(strict(record), default=str), flush=True)  # strict JSON, as the ledger
    else:
        print(summary(record), flush=True)


def _acc(value) -> str:
    return "-" if value is None else f"{value:.2f}%"


def summary(record: dict) -> str:
    """One line for a job's result: what the run gave, where its record and files are."""
    key, status = record.get("run_key", "?"), record.get("status", "?")
    if record.get("kind") == "lr_search":
        lr, mean = (record.get(k) for k in ("search_lr", "search_mean_lr"))
        what = (f"search lr {'-' if lr is None else f'{lr:.6g}'} (mean accepted "
                f"{'-' if mean is None else f'{mean:.6g}'}, {record.get('func_evals')} "
                f"evaluations, {record.get('seconds') or 0:.1f} s)")
    elif status in ("finished", "diverged"):
        what = (f"{status}, {record.get('epochs_completed')}/{record.get('epochs')} epochs, "
                f"best test {_acc(record.get('best_test_acc'))} (epoch "
                f"{record.get('best_epoch') or '-'}), final {_acc(record.get('final_test_acc'))}, "
                f"{record.get('wall_time') or 0:.1f} s")
    else:  # trainer.stop_after: no record yet
        what = f"{status} after {record.get('epochs_completed')} epoch(s), resumable"
    paths = (record.get("config") or {}).get("paths") or {}
    where = [f"ledger {paths['ledger']}"] if status in ("finished", "diverged") and paths else []
    run_dir = record.get("run_dir") or (paths and f"{paths['runs']}/{key}")
    where += [f"run folder {run_dir}"] if run_dir else []
    return f"{key}: {what}" + "".join(f"; {w}" for w in where)


_DETAIL = ("full_key:", "reference_type=", "object_type=", "Set the environment")


def _condense(err: BaseException) -> str:
    """Hydra's composition error as one line: its message, the options it lists
    (tab-indented in Hydra's text) and the OmegaConf cause, without the detail lines."""
    text, seen = "", set()
    for e in (err, err.__cause__):
        for raw in str(e or "").split("Config search path:")[0].splitlines():
            line = raw.strip()
            if not line or line.startswith(_DETAIL) or line in seen:
                continue
            seen.add(line)
            sep = " " if text.endswith(":") else ", " if raw.startswith("\t") else "; "
            text = f"{text}{sep}{line}" if text else line
    return text


_PLUS_GROUP = re.compile(r"Multiple values for (\S+?)\. To override a value use "
                         r"'override \1: ?(\S+?)'")
_SUBMITIT = ("hydra_submitit_launcher", "submitit")
_SLURM_EXTRA = ("the submitit launcher (hydra/launcher=slurm|local_gpus) is not installed: "
                + install_hint("slurm"))


def _hint(err: BaseException) -> str:
    """What to do about a composition error whose fix Hydra's text does not say."""
    text = str(err)
    plus = _PLUS_GROUP.search(text)
    if plus:  # `+experiment=table2`: the group already has a default (null) in train.yaml
        group, option = plus.groups()
        return (f" (hint: `{group}` is already in the defaults list: write "
                f"{group}={option}, without the +)")
    if "hydra/launcher/submitit" in text:  # conf/hydra/launcher/slurm.yaml's base config
        return f" ({_SLURM_EXTRA})"
    return _did_you_mean(f"{text} {err.__cause__ or ''}")


_NOT_IN = re.compile(r"Could not override '([\w.]+)'.*?Key '\w+' not in '(\w+)'", re.S)


def _did_you_mean(text: str) -> str:
    """`` (did you mean trainer.epochs=3?)`` for an override of a key the schema lacks,
    where it names one close to it (Hydra's own hint there is to add a key with +)."""
    found = _NOT_IN.search(text)
    if not found:
        return ""
    key, holder = found.groups()
    schema = next((obj for mod in (sys.modules.get("mbt.config"), sys.modules.get("__main__"),
                                   sys.modules.get("mbt.toy.__main__"))
                   if mod is not None and isinstance(obj := getattr(mod, holder, None), type)
                   and dataclasses.is_dataclass(obj)), None)
    match = near_miss(key, schema) if schema is not None else None
    value = re.search(rf"\+{re.escape(key)}=(\S+)", text)
    return f" (did you mean {match}{'=' + value[1] if value else ''}?)" if match else ""


def _missing_launcher(err: BaseException) -> bool:
    """The submitit launcher plugin or submitit itself is missing: Hydra fails to find
    the plugin class (RuntimeError) or the plugin fails to import submitit."""
    if isinstance(err, ImportError):
        return (err.name or "").split(".")[0] in ("submitit", "hydra_plugins") and any(
            s in str(err) for s in _SUBMITIT)
    return "Unknown plugin class" in str(err) and _SUBMITIT[0] in str(err)


def _hydra_io(err: OSError) -> bool:
    """The error is Hydra's own I/O (its output directory, the saved config, the job log):
    raised in Hydra's code, not in the job's (a job's known errors never get here)."""
    frames = traceback.extract_tb(err.__traceback__)
    inside = [i for i, f in enumerate(frames) if f"{os.sep}hydra{os.sep}" in f.filename]
    ours = [i for i, f in enumerate(frames) if f"{os.sep}mbt{os.sep}" in f.filename]
    return bool(inside) and inside[-1] > max(ours, default=-1)


class _CellError(Exception):
    """A cell of a sweep whose config cannot be composed: its overrides and the error."""

    def __init__(self, overrides: Sequence[str], error: Exception):
        super().__init__(overrides, error)
        self.overrides, self.error = " ".join(overrides), error


@contextlib.contextmanager
def _cells_named() -> Iterator[None]:
    """Hydra's sweeper composes every cell of a batch before launching it (a cell that
    cannot be composed stops the sweep before any cell runs), but its error does not say
    which cell: ``optim=mbt_gd,sgd optim.builder.beta=0.5`` fails for sgd alone."""
    from hydra.plugins.sweeper import Sweeper

    validate = Sweeper.validate_batch_is_legal

    def naming_the_cell(self, batch: Sequence[Sequence[str]]) -> None:
        for overrides in batch:
            try:
                validate(self, [overrides])
            except (HydraException, OmegaConfBaseException) as err:
                raise _CellError(overrides, err) from err

    Sweeper.validate_batch_is_legal = naming_the_cell
    try:
        yield
    finally:
        Sweeper.validate_batch_is_legal = validate


def one_line_errors(hydra_main: Callable[[], None]) -> Callable[[], None]:
    """Wrap a ``@hydra.main`` function: Hydra prints a bad override (``model=resnet19``)
    over several lines and exits 1; we print one ``error:`` line and exit 2.
    ``HYDRA_FULL_ERROR=1`` set by the user keeps Hydra's full report. After a multirun,
    exit 1 if any cell failed (the others ran)."""
    @functools.wraps(hydra_main)
    def entry() -> None:
        if "--json" in sys.argv[1:]:
            sys.argv = [a for a in sys.argv if a != "--json"]
            os.environ[JSON_ENV] = "1"
        signal.signal(signal.SIGTERM, _terminate)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            hydra_main()
        else:
            os.environ["HYDRA_FULL_ERROR"] = "1"  # so composition errors reach us unprinted
            try:
                with _cells_named():
                    hydra_main()
            except _CellError as err:
                print(f"error: the sweep's cell [{err.overrides}] cannot be composed: "
                      f"{_condense(err.error)}{_hint(err.error)}; no cell was run (fix or drop "
                      f"that value)", file=sys.stderr, flush=True)
                sys.exit(2)
            except (HydraException, OmegaConfBaseException) as err:
                print(f"error: {_condense(err)}{_hint(err)}", file=sys.stderr, flush=True)
                sys.exit(2)
            except _KNOWN_TYPES as err:  # a submitit job's, re-raised by Hydra's sweeper
                print(f"error: a cell of the sweep failed in its job: {err} (Hydra names its "
                      "overrides above; the batch's other jobs ran, their records are in the "
                      "ledger; each job's log is under the sweep dir's .submitit/)",
                      file=sys.stderr, flush=True)
                sys.exit(1)
            except OSError as err:
                if not _hydra_io(err):
                    raise
                where = f": {err.filename}" if err.filename else ""
                print(f"error: cannot write Hydra's output directory ({err.strerror or err}"
                      f"{where}); free space, or set hydra.run.dir (hydra.sweep.dir with -m) "
                      f"elsewhere", file=sys.stderr, flush=True)
                sys.exit(1)
            except (ImportError, RuntimeError) as err:
                if not _missing_launcher(err):
                    raise
                print(f"error: {_SLURM_EXTRA}", file=sys.stderr, flush=True)
                sys.exit(2)
            except KeyboardInterrupt as err:
                print("interrupted", file=sys.stderr, flush=True)
                sys.exit(_exit_status(err))
        if _FAILED:
            print(f"error: {len(_FAILED)} cell(s) of the sweep failed and were skipped: "
                  + "; ".join(f"#{n} [{o}]: {m}" for n, o, m in _FAILED),
                  file=sys.stderr, flush=True)
            sys.exit(1)
    return entry
