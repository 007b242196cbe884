"""Sweep launchers that submit only the cells not yet in the ledger.

hydra-submitit-launcher submits one job per cell of a sweep; a relaunch of a finished
sweep used to submit them all again, and each job stopped within seconds on finding its
record in the ledger (:func:`mbt.run.open_run`). :class:`SkipFinished`, mixed into the
plugin's ``SlurmLauncher`` and ``LocalLauncher`` (``conf/hydra/launcher/slurm.yaml``,
``local_gpus.yaml``), composes each cell's config as the job will, derives its run key
with :func:`mbt.run.run_identity` (the function ``open_run`` uses; the data files of a
sweep are read once) and looks it up in the cell's ledger (``paths.ledger``). A cell found
there is not submitted: its result is the ledger record, and the launcher prints one line,
``N of M cells already in <ledger>: not submitted``. Any error while deriving a cell's key
submits the cell as before: a job is skipped only when its record is certainly there.

Only the tasks of ``mbt.train`` (kind ``train``) and ``mbt.find_lr`` (``lr_search``) are
filtered; any other task function gets every cell submitted.

Hydra instantiates only launcher classes under the ``hydra_plugins`` namespace package, so
the concrete classes are in ``hydra_plugins.mbt_hydra_submitit_launcher``; this module
imports neither submitit nor the plugin (both come with the ``slurm`` extra).
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from mbt import ledger

__all__ = ["KINDS", "SkipFinished", "SlurmSkipFinished", "finished_cells", "task_kind"]

log = logging.getLogger(__name__)

# Task module -> the kind of ledger record its jobs write (mbt.ledger.run_key).
KINDS = {"mbt.train": "train", "mbt.find_lr": "lr_search"}
# Where hydra-submitit-launcher logs "\t#<job number> : <overrides>" for each job.
_PLUGIN_LOGGER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher"


def task_kind(task_function: Callable | None) -> str | None:
    """``train`` / ``lr_search`` for the task function of ``mbt.train`` / ``mbt.find_lr``
    (also run as ``python -m``, where its module is ``__main__``); None for any other."""
    fn = inspect.unwrap(task_function) if task_function is not None else None
    spec = getattr(fn, "__globals__", {}).get("__spec__")
    return KINDS.get(spec.name if spec is not None else getattr(fn, "__module__", None))


def _ledger_index(path: str) -> dict[str, dict]:
    """run_key -> the record :func:`mbt.ledger.find` returns for it (the last finished or
    diverged one), for every key of the ledger at ``path``: one read for the whole sweep."""
    index = {}
    for record in ledger.read(path, on_bad=lambda *_: None):
        if record.get("status") in ledger.FINAL_STATUSES and "run_key" in record:
            index[record["run_key"]] = record
    return index


def _cell(config: DictConfig, config_loader: Any, overrides: Sequence[str], num: int,
          kind: str, job_device: str | None, cache: dict, ledgers: dict[str, dict],
          run_identity: Callable) -> tuple[str, JobReturn] | None:
    """(ledger, the cell's JobReturn) when job ``num``'s record is in its ledger, else None."""
    sweep_config = config_loader.load_sweep_config(config, list(overrides))
    with read_write(sweep_config), open_dict(sweep_config):  # as the launcher and run_job do
        sweep_config.hydra.job.num = num
        sweep_config.hydra.runtime.output_dir = os.path.abspath(os.path.join(
            str(sweep_config.hydra.sweep.dir), str(sweep_config.hydra.sweep.subdir)))
    hydra = HydraConfig.instance()
    saved = hydra.cfg
    try:
        hydra.set_config(sweep_config)  # ${hydra:...} in the task config: this cell's values
        task_cfg = copy.deepcopy(sweep_config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
            if job_device is not None and str(task_cfg.trainer.device) == "auto":
                task_cfg.trainer.device = job_device  # resolve what depends on it as the job
        key, _ = run_identity(task_cfg, kind, cache=cache)
        path = str(task_cfg.paths.ledger)
        if path not in ledgers:
            ledgers[path] = _ledger_index(path)
        record = ledgers[path].get(key)
        if record is None:
            return None
        ret = JobReturn(overrides=OmegaConf.to_container(sweep_config.hydra.overrides.task),
                        cfg=task_cfg, hydra_cfg=copy.deepcopy(hydra.cfg),
                        working_dir=os.getcwd(), task_name=str(sweep_config.hydra.job.name),
                        status=JobStatus.COMPLETED)
        ret.return_value = record
        return path, ret
    finally:
        hydra.cfg = saved


def finished_cells(config: DictConfig, config_loader: Any,
                   job_overrides: Sequence[Sequence[str]], initial_job_idx: int, kind: str,
                   *, job_device: str | None = None, errors: list | None = None,
                   ) -> tuple[dict[int, JobReturn], list[str]]:
    """The cells of a sweep batch already in their ledger: ``({job number: JobReturn with
    the ledger record as return value}, [the ledgers they were found in])``.

    Each cell is composed as Hydra's launchers compose it
    (``config_loader.load_sweep_config``, ``hydra.job.num``) and keyed by
    :func:`mbt.run.run_identity`, the data files read once per (dataset, root,
    allow_partial). ``job_device``: what ``trainer.device=auto`` becomes in the job
    (``cuda`` on a GPU node), for config values that depend on it; None: as here. A cell
    whose key cannot be derived (bad value, data missing, ...) counts as not finished;
    ``errors``, if given, receives ``(job number, exception)`` for each such cell."""
    from mbt.run import run_identity  # torch and the data code: only where a sweep needs them

    cache: dict = {}
    ledgers: dict[str, dict] = {}
    done: dict[int, JobReturn] = {}
    found_in: list[str] = []
    for num, overrides in enumerate(job_overrides, initial_job_idx):
        try:
            found = _cell(config, config_loader, overrides, num, kind, job_device, cache,
                          ledgers, run_identity)
        except Exception as err:  # never skip a cell on doubt: its job says what is wrong
            log.debug("job %d (%s): run key not derived, submitting it: %s", num,
                      " ".join(overrides), err)
            if errors is not None:
                errors.append((num, err))
            continue
        if found is not None:
            path, done[num] = found
            if path not in found_in:
                found_in.append(path)
    return done, found_in


def _stale(returns) -> str:
    """`` (K of them made by code that has changed since ...)`` for the skipped cells."""
    from mbt.runinfo import code_since

    stale = sum(code_since(r.return_value or {})[1] for r in returns)
    return (f" ({stale} of them made by other code than this checkout's src/mbt and conf, "
            f"or by code that cannot be compared; rerun=1 runs them again beside their "
            f"records)") if stale else ""


class _JobNumbers(logging.Filter):
    """Rewrites the plugin's ``\\t#<i> : ...`` lines: position i of the submitted cells ->
    the cell's job number in the sweep."""

    def __init__(self, nums: list[int]):
        super().__init__()
        self.nums = nums

    def filter(self, record: logging.LogRecord) -> bool:
        match = re.match(r"\t#(\d+) : ", str(record.msg))
        if match and not record.args and int(match[1]) < len(self.nums):
            record.msg = f"\t#{self.nums[int(match[1])]} : {record.msg[match.end():]}"
        return True


class SkipFinished:
    """Mixin for a hydra-submitit-launcher launcher: ``launch`` submits only the cells of
    the batch that are not in the ledger (:func:`finished_cells`) and returns, in the
    batch's order, the submitted jobs' results and the skipped cells' ledger records.
    Submitted jobs keep their job numbers in the sweep (``hydra.job.num``, the cell's
    output directory)."""

    _job_nums: list[int] | None = None  # job number of each submitted job, by position

    def job_device(self) -> str | None:
        """What ``trainer.device=auto`` resolves to in this launcher's jobs; None: as in
        the launching process."""
        return None

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        kind = task_kind(self.task_function)
        done: dict[int, JobReturn] = {}
        if kind is not None:
            done, found_in = finished_cells(self.config, self.hydra_context.config_loader,
                                            job_overrides, initial_job_idx, kind,
                                            job_device=self.job_device())
        self._job_nums = None
        if not done:
            return super().launch(job_overrides, initial_job_idx)
        print(f"{len(done)} of {len(job_overrides)} cells already in {', '.join(found_in)}: "
              f"not submitted{_stale(done.values())}", file=sys.stderr, flush=True)
        nums = range(initial_job_idx, initial_job_idx + len(job_overrides))
        todo = [(num, overrides) for num, overrides in zip(nums, job_overrides, strict=True)
                if num not in done]
        if todo:
            self._job_nums = [num for num, _ in todo]
            relabel = _JobNumbers(self._job_nums)
            plugin_log = logging.getLogger(_PLUGIN_LOGGER)
            plugin_log.addFilter(relabel)
            try:
                returns = super().launch([overrides for _, overrides in todo], 0)
            finally:
                plugin_log.removeFilter(relabel)
            done.update(zip(self._job_nums, returns, strict=True))
        return [done[num] for num in nums]

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int,
                 job_id: str, singleton_state: dict) -> JobReturn:
        # Runs in the job: the plugin numbers the submitted jobs 0..k-1.
        if self._job_nums is not None:
            job_num = self._job_nums[job_num]
        return super().__call__(sweep_overrides, job_dir_key, job_num, job_id,
                                singleton_state)


def _asks_for_gpus(params: dict) -> bool:
    extra = {str(k).replace("-", "_"): v for k, v in
             (params.get("additional_parameters") or {}).items()}
    gpus = [params.get("gpus_per_node"), params.get("gpus_per_task"),
            *(v for k, v in extra.items() if k.startswith("gpus") or k.endswith("_gpus"))]
    gres = " ".join(str(g) for g in (params.get("gres"), extra.get("gres")) if g)
    return any(g not in (None, 0, "0", "") for g in gpus) or "gpu" in gres


class SlurmSkipFinished(SkipFinished):
    """:class:`SkipFinished` for SLURM: jobs that ask for a GPU (``gpus_per_node``,
    ``gpus_per_task``, a ``gpu`` gres) resolve ``trainer.device=auto`` to ``cuda``, the
    others to ``cpu``, whatever the launching (login) node has."""

    params: dict

    def job_device(self) -> str | None:
        return "cuda" if _asks_for_gpus(self.params) else "cpu"
