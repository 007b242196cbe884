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

from datetime import datetime, timezone
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mbt import ledger
from mbt.config import ConfigError, register_configs, validate
from mbt.config_paths import CONF_DIR
from mbt.models import build_model
from mbt.optim.factory import build_optimizer
from mbt.runinfo import device_name, git_state, resolve_device, seed_everything
from mbt.train import _load_data, _notice, one_line_errors, run_and_print

__all__ = ["find_lr_run"]


def find_lr_run(cfg: DictConfig) -> dict[str, Any]:
    """Run (or skip, if already in the ledger) the search ``cfg`` describes; its record."""
    validate(cfg)
    cfg_dict = ledger.scrub_secrets(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    key = "lrsearch-" + ledger.run_key(cfg_dict)
    done = ledger.find(cfg.paths.ledger, key)
    if done is not None:
        _notice(f"{key}: already in {cfg.paths.ledger}; not searching again")
        return done
    device = resolve_device(cfg.trainer.device)
    seed_everything(cfg.seed)
    train_loader, _, info = _load_data(cfg, device)
    model = build_model(cfg.model.name.name, cfg.model.num_classes,
                        bn_init=cfg.model.bn_init.name, seed=cfg.seed).to(device)
    _, controller = build_optimizer(cfg.optim, model.parameters())
    if controller is None:
        raise ConfigError(f"find_lr needs an MBT optimizer (optim=mbt_gd|mbt_mmt|mbt_nag), "
                          f"got optim={cfg.optim.name}")
    train_loader.set_epoch(0)
    report = controller.finder.find(model, nn.CrossEntropyLoss(), train_loader,
                                    lr=float(cfg.optim.lr),
                                    dataset_size=cfg.data.rescale_size or train_loader.num_samples,
                                    batch_size=cfg.trainer.batch_size)
    git = git_state()
    record = {
        "kind": "lr_search", "run_key": key, "status": "finished",
        "protocol": cfg_dict["protocol"], "experiment": cfg_dict.get("experiment"),
        "model": cfg_dict["model"]["name"], "dataset": cfg_dict["data"]["name"],
        "optim": cfg_dict["optim"]["name"], "lr": cfg_dict["optim"]["lr"],
        "batch_size": cfg_dict["trainer"]["batch_size"], "seed": cfg_dict["seed"],
        "search_lr": report.lr, "search_mean_lr": report.mean_lr,
        "per_batch": list(report.per_batch), "func_evals": report.func_evals,
        "grad_evals": report.grad_evals, "seconds": report.seconds,
        "bound_hits": int(sum(bool(b) for b in report.bound_hits)),
        "device": str(device), "device_name": device_name(device),
        "torch_version": torch.__version__, "git_commit": git["commit"],
        "git_dirty": git["dirty"], "data": info, "synthetic": bool(info.get("synthetic")),
        "config": cfg_dict,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    ledger.append(cfg.paths.ledger, record)
    return record


register_configs()


@one_line_errors
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    run_and_print(find_lr_run, cfg)


if __name__ == "__main__":
    main()
