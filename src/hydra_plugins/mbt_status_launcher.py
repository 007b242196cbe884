"""``hydra/launcher=status`` (``make reproduce-<target> LAUNCHER=status``): what a sweep
would still run, without running anything.

Each cell of the sweep is composed and keyed as the launchers that skip finished cells do
(:func:`mbt.launchers.finished_cells`); the launcher prints one line per sweep,
``status: <experiment> <protocol>: N of M cells in <ledger>``, then one line per missing
cell with the overrides that tell the cells apart (all of them for a one-cell sweep), and
returns the found cells' records. A cell whose run key cannot be derived (its data missing,
a bad value) counts as missing, and a line says how many and why. ``job_device``: what
``trainer.device=auto`` becomes where the cells ran (``cuda`` for a ledger made on GPUs,
checked from a CPU node: CIFAR's input pipeline, part of the key, follows the device).
No job runs and nothing is written but Hydra's sweep folder. A task other than
``mbt.train`` / ``mbt.find_lr`` has no ledger to look in: the launcher says so.

Hydra instantiates only launcher classes under the ``hydra_plugins`` namespace package,
hence this module; it imports mbt's code only when a sweep launches.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher

__all__ = ["StatusLauncher"]


def _varying(job_overrides: Sequence[Sequence[str]]) -> set[str]:
    """The override keys whose values differ between the cells of the batch."""
    cells = [dict(o.partition("=")[::2] for o in overrides) for overrides in job_overrides]
    return {key for key in set().union(*cells) if len({c.get(key) for c in cells}) > 1}


class StatusLauncher(Launcher):
    """Prints which cells of each batch the ledger holds; runs none."""

    def __init__(self, show_missing: int = 40, job_device: str | None = None) -> None:
        self.show_missing = show_missing
        self.job_device = job_device
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from mbt.launchers import finished_cells, task_kind

        kind = task_kind(self.task_function)
        if kind is None:
            print("status: this task writes no ledger record; nothing to look up", flush=True)
            return []
        errors: list = []
        done, _ = finished_cells(self.config, self.hydra_context.config_loader,
                                 job_overrides, initial_job_idx, kind,
                                 job_device=self.job_device, errors=errors)
        choices = self.config.hydra.runtime.get("choices") or {}
        parts = (choices.get("experiment") or self.config.get("experiment"),
                 self.config.get("protocol"))
        name = " ".join(getattr(v, "name", str(v)) for v in parts if v is not None)
        missing = [overrides for num, overrides in enumerate(job_overrides, initial_job_idx)
                   if num not in done]
        print(f"status: {name}: {len(done)} of {len(job_overrides)} cells in "
              f"{self.config.paths.ledger}" + (f"; to run: {len(missing)}" if missing else ""),
              flush=True)
        if errors:  # counted as missing, as a launcher would submit them: say why
            num, err = errors[0]
            print(f"  {len(errors)} of them could not be keyed, e.g. #{num}: "
                  f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                  flush=True)
        keys = _varying(job_overrides) or {o.partition("=")[0] for ov in job_overrides
                                           for o in ov}
        for overrides in missing[:self.show_missing]:
            print("  " + " ".join(o for o in overrides if o.partition("=")[0] in keys), flush=True)
        if len(missing) > self.show_missing:
            print(f"  ... and {len(missing) - self.show_missing} more", flush=True)
        return [done[num] for num in sorted(done)]
