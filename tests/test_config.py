"""Every config group instantiates and every experiment preset composes, for every protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from mbt import ledger
from mbt.config import ConfigError, validate
from mbt.config_paths import CONF_DIR
from mbt.data import build_loaders_from_config
from mbt.optim import LRRangeController, MBTController
from mbt.optim.factory import build_optimizer

OPTIMS = sorted(p.stem for p in (CONF_DIR / "optim").glob("*.yaml"))
PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
PROTOCOLS = ["full", "quick", "smoke"]


def without_hydra(cfg):
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def test_table2_optimizers_are_all_configured():
    paper = {"sgd", "mmt", "nag", "adagrad", "adadelta", "rmsprop", "adam", "adamax",
             "mbt_gd", "mbt_mmt", "mbt_nag"}
    assert paper <= set(OPTIMS)


@pytest.mark.parametrize("name", OPTIMS)
def test_every_optim_config_builds_and_steps(compose, name):
    cfg = compose(f"optim={name}")
    package = str(cfg.optim.builder._target_).split(".")[0]
    if package not in ("torch", "mbt"):
        pytest.importorskip(package)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    optimizer, controller = build_optimizer(cfg.optim, model.parameters())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.optim.lr)
    searches = isinstance(controller, (MBTController, LRRangeController))
    assert searches == (name.startswith("mbt_") or name == "lr_range_sgd")
    if callable(getattr(optimizer, "train", None)):  # schedule-free: the loop's mode switch
        optimizer.train()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def closure(backward=True):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if backward:
            optimizer.zero_grad()
            loss.backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step(closure)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_every_data_config_loads(compose, name, cifar10_root, cifar100_root):
    root = cifar10_root if name == "cifar10" else cifar100_root
    cfg = compose(f"data={name}", f"data.root={root}", "data.num_workers=0")
    data = OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True)
    train, test, info = build_loaders_from_config(data, batch_size=16, seed=0, device="cpu")
    x, y = next(iter(train))
    assert x.shape == (16, 3, 32, 32) and int(y.max()) < info["num_classes"]
    assert cfg.model.num_classes == info["num_classes"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_preset_composes_and_validates(compose, preset, protocol):
    cfg = compose(f"experiment={preset}", f"protocol={protocol}")
    validate(without_hydra(cfg))
    if preset != "demo":
        assert cfg.protocol.name == protocol
        # Presets that add cells to another target's table report under its name.
        assert cfg.experiment == {"table2_mbt": "table2", "autolr_grid": "autolr",
                                  "out_of_domain_grid": "out_of_domain",
                                  "out_of_domain_text": "out_of_domain",
                                  "out_of_domain_text_grid": "out_of_domain"}.get(preset, preset)


def test_protocol_files_only_exist_for_presets():
    presets = set(PRESETS)
    for path in (CONF_DIR / "experiment" / "protocols").glob("*.yaml"):
        preset, _, protocol = path.stem.rpartition("_")
        assert preset in presets and protocol in [*PROTOCOLS, "cpu"], path.name
        assert path.read_text().startswith("# @package _global_"), path.name


@pytest.mark.parametrize("preset", ["autolr", "autolr_grid"])
def test_cpu_protocol_is_real_data_sized_for_two_cores(compose, preset):
    cfg = compose(f"experiment={preset}", "protocol=cpu")
    validate(without_hydra(cfg))
    assert cfg.protocol.name == "cpu" and cfg.experiment == "autolr"
    assert cfg.data.subset == 2000 and cfg.trainer.epochs == 8
    assert cfg.data.synthetic_fallback is False, "cpu results must come from real images"


@pytest.mark.parametrize(("ours", "table2"), [
    (("experiment=autolr_grid", "optim=sgd", "optim.lr=10"),
     ("experiment=table2", "optim=sgd", "optim.lr=10")),
    (("experiment=autolr_grid", "optim=nag", "optim.lr=0.1", "seed=2"),
     ("experiment=table2", "optim=nag", "optim.lr=0.1", "seed=2")),
    (("experiment=autolr", "optim=mbt_nag", "seed=1"),
     ("experiment=table2_mbt", "optim=mbt_nag", "seed=1"))])
def test_cpu_autolr_cells_are_table2_cells(compose, ours, table2):
    """Issue 25: CIFAR's tuned SGD/NAG and MBT runs of the out-of-domain comparison are Table
    2's cpu runs, trained once: the same run key (the experiment is not part of it)."""
    data = {"n_train": 5170, "n_test": 1017, "files": "x"}
    keys = [ledger.run_key(OmegaConf.to_container(without_hydra(
        compose(*o, "protocol=cpu")), resolve=True, enum_to_str=True), data)
        for o in (ours, table2)]
    assert keys[0] == keys[1]


def test_cpu_protocol_is_refused_where_no_preset_defines_it(compose):
    with pytest.raises(ConfigError, match="protocol=cpu is defined only"):
        validate(without_hydra(compose("experiment=fig2b", "protocol=cpu")))


@pytest.mark.parametrize("experiment", ["table2", "table2_mbt", "table3", "fig3"])
def test_cpu_protocol_of_the_training_targets_is_real_images_in_bf16(compose, experiment):
    """Issue 23: the cpu presets train on real images only (no synthetic fallback), batch
    100, bf16 + channels_last; MBT keeps the paper's 20-mini-batch fp32 search."""
    cfg = compose(f"experiment={experiment}", "protocol=cpu")
    validate(without_hydra(cfg))
    assert (cfg.data.subset, cfg.data.synthetic_fallback, cfg.data.allow_partial) == (
        2000, False, True)
    assert (cfg.trainer.batch_size, cfg.trainer.amp_bf16, cfg.trainer.channels_last) == (
        100, True, True)
    assert cfg.trainer.epochs == (30 if experiment == "fig3" else 8)
    assert cfg.optim.builder.get("num_batches", 20) == 20


def test_cpu_table2_sweeps_the_papers_grid_and_mbt_three_seeds():
    grid = sweep_params("table2_cpu")
    assert grid == sweep_params("table2_full")
    mbt = sweep_params("table2_mbt_cpu")
    assert (mbt.optim, str(mbt.seed)) == ("mbt_gd,mbt_mmt,mbt_nag", "0,1,2")
    models = sweep_params("table3_cpu").model.split(",")
    assert len(models) == 5 and sweep_params("table3_cpu").data == "cifar10"


def test_table2_quick_uses_each_baselines_best_paper_lr(compose):
    for optim, lr in [("sgd", 0.1), ("adadelta", 1.0), ("adam", 0.001), ("adagrad", 0.01)]:
        cfg = compose("experiment=table2", "protocol=quick", f"optim={optim}")
        assert cfg.optim.lr == lr


def sweep_params(name: str):
    return OmegaConf.load(CONF_DIR / f"experiment/protocols/{name}.yaml").hydra.sweeper.params


def test_full_protocols_are_the_papers_grids(compose):
    t2 = sweep_params("table2_full")
    assert len(t2["optim"].split(",")) == 8 and len(t2["optim.lr"].split(",")) == 9
    assert sweep_params("table2_mbt_full")["optim"] == "mbt_gd,mbt_mmt,mbt_nag"
    assert sweep_params("table1_full")["trainer.batch_size"] == "12,25,50,100,200,400,800"
    t3 = sweep_params("table3_full")
    assert len(t3["model"].split(",")) == 5 and t3["data"] == "cifar10,cifar100"
    for preset in ("table2", "table3", "fig3"):
        full = compose(f"experiment={preset}", "protocol=full")
        assert full.trainer.epochs == 200 and full.trainer.batch_size == 200


@pytest.mark.parametrize("override,message", [
    ("optim.lr=0", "optim.lr must be > 0"),
    ("trainer.epochs=-3", "trainer.epochs must be > 0"),
    ("trainer.device=tpu", "trainer.device"),
])
def test_validate_rejects_out_of_range_values(compose, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose(override))


def test_conf_dir_is_the_repository_conf():
    assert (Path(CONF_DIR) / "train.yaml").exists()
