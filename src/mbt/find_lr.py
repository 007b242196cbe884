"""``python -m mbt.find_lr``: one MBT search, no training (paper Table 1, Sec. 4.3).

Uses the same config as :mod:`mbt.train` (``conf/train.yaml``; the ``optim`` group must
be an MBT one): builds the data and a freshly initialised model from ``seed``, runs one
MBT search from ``optim.lr`` on ``optim.builder.num_batches`` mini-batches of
``trainer.batch_size`` and appends a ``kind: "lr_search"`` record to the ledger.

Table 1 reports the *rescaled* average (``search_lr`` = mean accepted eta x sqrt(rho)
under ``rescale=code``): the published ``lr_main.py`` stores ``lr_finder_BT.lr_BT``,
which is the rescaled mean, and the table's values grow like sqrt(batch size), which
only the rescaled number does. The raw mean is kept as ``search_mean_lr``.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mbt import ledger
from mbt.config import ConfigError, register_configs
from mbt.config_paths import CONF_DIR
from mbt.entry import one_line_errors, run_and_print
from mbt.models import build_model
from mbt.optim import MBTController
from mbt.optim.factory import build_optimizer
from mbt.run import notice, open_run, provenance
from mbt.runinfo import already_done
from mbt.tracking import make_tracker

__all__ = ["find_lr_run"]


def find_lr_run(cfg: DictConfig) -> dict[str, Any]:
    """Run (or skip, if already in the ledger) the search ``cfg`` describes; its record."""
    with open_run(cfg, kind="lr_search") as run:
        if run.done is not None:
            notice(already_done(run.key, cfg.paths.ledger, run.done, "searching"))
            return run.done
        model = build_model(cfg.model.name.name, cfg.model.num_classes,
                            bn_init=cfg.model.bn_init.name, seed=cfg.seed).to(run.device)
        _, controller = build_optimizer(cfg.optim, model.parameters())
        if not isinstance(controller, MBTController):
            raise ConfigError(f"find_lr needs an MBT optimizer (optim=mbt_gd|mbt_mmt|mbt_nag), "
                              f"got optim={cfg.optim.name}")
        # One W&B run per search (job type lr_search, group <experiment>-<protocol>); the
        # ledger record below is written whatever the logger.
        tracker = make_tracker(OmegaConf.to_container(cfg.logger, resolve=True,
                                                      enum_to_str=True),
                               run_key=run.key, config=run.config, run_dir=run.run_dir,
                               notice=notice, job_type="lr_search",
                               provenance=provenance(run, "lr_search", "running"))
        run.train_loader.set_epoch(0)
        report = controller.finder.find(
            model, nn.CrossEntropyLoss(), run.train_loader, lr=float(cfg.optim.lr),
            dataset_size=cfg.data.rescale_size or run.train_loader.num_samples,
            batch_size=cfg.trainer.batch_size)
        record = {
            **provenance(run, "lr_search", "finished"),
            "search_lr": report.lr, "search_mean_lr": report.mean_lr,
            "per_batch": list(report.per_batch), "func_evals": report.func_evals,
            "grad_evals": report.grad_evals, "seconds": report.seconds,
            "bound_hits": int(sum(bool(b) for b in report.bound_hits)),
            "wandb": tracker.info,
        }
        ledger.append(cfg.paths.ledger, record)
        tracker.log_search(report)
        tracker.finish({"status": "finished"})
        return record


register_configs()


@one_line_errors
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    run_and_print(find_lr_run, cfg)


if __name__ == "__main__":
    main()
