"""Structured configs for ``python -m mbt.train`` (Hydra 1.3; the YAML lives in ``conf/``).

The dataclasses are the schema: OmegaConf rejects unknown keys and wrong types while
Hydra composes. Ranges (lr > 0, batch size >= 1, ...) cannot be expressed in a schema,
so :func:`validate` checks them before any work and raises :class:`ConfigError`,
whose message is one line the entrypoint prints as is.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from mbt.config_paths import CONF_DIR, install_hint
from mbt.data import DATA_INPUTS, DATASETS, PIPELINES
from mbt.data.transforms import AUGMENTS, NORMALIZES
from mbt.ledger import PROTOCOLS
from mbt.models import BN_INITS, MODEL_INPUTS, MODEL_NAMES

__all__ = ["ConfigError", "TrainConfig", "near_miss", "register_configs", "validate"]

ModelName = Enum("ModelName", {n: n for n in MODEL_NAMES})
BnInit = Enum("BnInit", {n: n for n in BN_INITS})
# Choices come from the modules that implement them: one list each.
Dataset = Enum("Dataset", {n: n for n in DATASETS})
Augment = Enum("Augment", {n: n for n in AUGMENTS})
Normalize = Enum("Normalize", {n: n for n in NORMALIZES})
Pipeline = Enum("Pipeline", {n: n for n in PIPELINES})
Protocol = Enum("Protocol", {n: n for n in PROTOCOLS})
WandbMode = Enum("WandbMode", {n: n for n in ("auto", "online", "offline", "disabled")})


class ConfigError(ValueError):
    """A configuration value out of range; the message is one line."""


@dataclass
class ModelConfig:
    name: ModelName = MISSING
    num_classes: int = MISSING
    # BatchNorm gamma init: torch (ones, PyTorch >= 1.2) | legacy (U(0, 1), PyTorch <= 1.1,
    # what the paper's 2019 code ran with); docs/fidelity.md.
    bn_init: BnInit = MISSING  # value in conf/model/*.yaml


@dataclass
class DataConfig:
    # Types here, values in conf/data/<name>.yaml (docs/config.md: one source per setting).
    name: Dataset = MISSING
    num_classes: int = MISSING
    root: str = MISSING
    download: bool = MISSING
    allow_partial: bool = MISSING
    subset: int | None = None
    augment: Augment = MISSING
    normalize: Normalize = MISSING
    pipeline: Pipeline = MISSING
    num_workers: int = MISSING
    test_batch_size: int = MISSING
    # Where no CIFAR files are found: train on a generated CIFAR-layout set instead of
    # failing (make demo). Such runs are labelled synthetic in the ledger and W&B.
    synthetic_fallback: bool = MISSING
    # Training-set size in the MBT rescaling rho = batch / size (Sec. 3.5.1); null: the
    # images loaded. 50000 makes a partial-copy or subset run comparable with the paper.
    rescale_size: int | None = None
    # Text data sets only (conf/data/fortunes.yaml): context length, and the fraction at the
    # end of each file kept for the test split.
    block_size: int | None = None
    test_fraction: float | None = None


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = MISSING  # the start learning rate, for every optimizer (Table 2)
    # Hydra-instantiable partial: called as builder(params=..., lr=...) and returning an
    # Optimizer or an (Optimizer, controller) pair (mbt.optim.factory).
    builder: dict[str, Any] = field(default_factory=dict)
    # Optional per-epoch torch.optim.lr_scheduler partial, called as scheduler(optimizer=...).
    scheduler: dict[str, Any] | None = None


@dataclass
class TrainerConfig:
    # Types here, values in conf/trainer/default.yaml.
    epochs: int = MISSING
    batch_size: int = MISSING
    device: str = MISSING  # auto | cpu | cuda | cuda:N
    channels_last: bool = MISSING  # applied on CUDA, and on a CPU under amp_bf16
    amp_bf16: bool = MISSING  # bf16 autocast (CUDA, or a CPU with bf16); off until parity is shown
    compile: bool = MISSING  # torch.compile the model
    # Divergence (recorded as status "diverged"): a non-finite loss ends a run, as in the
    # published code; with a factor, also a running mean train loss above this multiple of
    # the first mini-batch's loss (off for the paper's presets; docs/fidelity.md).
    diverge_factor: float | None = None
    check_every: int = MISSING  # steps between divergence checks (each costs one host sync)
    max_steps_per_epoch: int | None = None  # cap for smoke runs; null = whole epoch
    stop_after: int | None = None  # leave (resumable) after this many epochs in this process
    record_steps: bool = MISSING  # keep the per-step learning rate (Figure 2(b))
    eval_every: int = MISSING  # test-set evaluation every N epochs; 0: only after the last one
    progress: str = MISSING  # auto (tqdm on a terminal) | bar | line | none
    keep_checkpoint: bool = MISSING  # keep the last checkpoint of a finished run
    checkpoint_every: int = MISSING  # checkpoint every N epochs (always at the last/stop epoch)


@dataclass
class LoggerConfig:
    # Types here, values in conf/logger/<name>.yaml.
    name: str = MISSING  # wandb | none
    project: str = MISSING
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: WandbMode = MISSING  # auto: online with credentials, else offline
    init_timeout: float = MISSING  # seconds to reach W&B online before falling back to offline


@dataclass
class PathsConfig:
    # Values in conf/train.yaml (paths.runs: $MBT_RUNS or runs; paths.ledger inside it).
    runs: str = MISSING  # checkpoints and per-run files: <runs>/<run_key>/
    ledger: str = MISSING


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = MISSING  # value in conf/train.yaml
    protocol: Protocol = MISSING  # value in conf/protocol/*.yaml
    experiment: str | None = None  # set by conf/experiment/* presets
    # A label that enters the run key: `rerun=1` (or any text) trains a cell the ledger
    # already holds again and keeps both records (e.g. after a code change); null: none.
    rerun: str | None = None
    notes: str | None = None
    # Preset bookkeeping that interpolations read (e.g. Table 2's best lr per optimizer);
    # not part of the run key: what it changes shows up in the keys it sets.
    grid: dict[str, Any] = field(default_factory=dict)


def register_configs() -> None:
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def _positive(name: str, value, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not (value > 0 or (allow_zero and value == 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}, got {value}")


# Schema fields whose value is a free-form dict (optimizer kwargs, preset bookkeeping).
_FREE_FORM = {"optim.builder", "optim.scheduler", "grid"}


def _schema_at(path: list[str], schema: type = TrainConfig) -> type | None:
    """The dataclass of the node at ``path`` (``["trainer"]`` -> TrainerConfig), or None."""
    for name in path:
        fields = {f.name: f for f in dataclasses.fields(schema)}
        sub = fields[name].default_factory if name in fields else None
        if not (isinstance(sub, type) and dataclasses.is_dataclass(sub)):
            return None
        schema = sub
    return schema


def near_miss(key: str, schema: type | None = None) -> str | None:
    """The schema's name closest to the unknown dotted ``key`` (``trainer.epoch`` ->
    ``trainer.epochs``), or None. ``schema``: the dataclass that holds the key's last
    part, where known (Hydra names it); else found from :class:`TrainConfig` down."""
    *parents, last = key.split(".")
    schema = schema or _schema_at(parents)
    if schema is None or not dataclasses.is_dataclass(schema):
        return None
    match = difflib.get_close_matches(last, [f.name for f in dataclasses.fields(schema)], n=1,
                                      cutoff=0.6)
    return ".".join([*parents, match[0]]) if match else None


def _unknown_keys(node: DictConfig, schema: type, prefix: str = "") -> list[str]:
    """Keys of ``node`` the dataclass ``schema`` does not define (``+key=`` overrides add
    keys past OmegaConf's struct check)."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    out = []
    for k in node:
        path = f"{prefix}{k}"
        if k not in fields:
            out.append(path)
            continue
        sub = fields[k].default_factory
        if path not in _FREE_FORM and isinstance(sub, type) and dataclasses.is_dataclass(sub):
            out += _unknown_keys(node[k], sub, f"{path}.")
    return out


def _check_optimizer_args(cfg: DictConfig) -> None:
    # Build the optimizer once on a dummy parameter: its constructor's checks (alpha,
    # beta, momentum ranges ...) then fail here, before any data is loaded.
    import torch
    from hydra.errors import InstantiationException

    from mbt.optim.factory import build_optimizer

    try:
        build_optimizer(cfg.optim, [torch.zeros(1, requires_grad=True)])
    except (ValueError, TypeError, ImportError, InstantiationException) as err:
        missing = _missing_module(err)
        if missing:  # e.g. optim=prodigy without the autolr extra
            extra = _extra_providing(missing)
            how = install_hint(extra) if extra else f"install the package {missing!r}"
            raise ConfigError(f"optim={cfg.optim.name} needs {missing!r}, which is not "
                              f"installed: {how}") from err
        cause = err.__cause__ or err
        raise ConfigError(f"optim={cfg.optim.name}: {' '.join(str(cause).split())}") from err


def _missing_module(err: BaseException) -> str | None:
    """The top-level module whose absence caused ``err`` (Hydra wraps it: locate error ->
    ImportError -> ModuleNotFoundError), or None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, ModuleNotFoundError) and err.name:
            return err.name.split(".")[0]
        err = err.__cause__ or err.__context__
    return None


def _extra_providing(module: str) -> str | None:
    """The extra of mbt's metadata that installs ``module`` (its distribution name is the
    module's, or starts with it: dog -> dog-optimizer), a narrow one before ``dev``; None
    if there is none or mbt is not installed."""
    import importlib.metadata
    import re

    try:
        requires = importlib.metadata.requires("mbt") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    extras = []
    for req in requires:
        match = re.match(r"([A-Za-z0-9._-]+).*;.*extra\s*==\s*['\"]([\w-]+)['\"]", req)
        if match:
            dist, name = (s.lower().replace("_", "-") for s in (match.group(1), module))
            if dist == name or dist.startswith(f"{name}-"):
                extras.append(match.group(2))
    return min(extras, key=lambda e: e == "dev", default=None)


def _check_cpu_bf16(amp_bf16: bool, device: str) -> None:
    import torch

    from mbt.loop import cpu_bf16_supported

    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if amp_bf16 and on_cpu and not cpu_bf16_supported():
        raise ConfigError("trainer.amp_bf16=true needs a CPU with native bf16 (AVX512-BF16 or "
                          "AMX); this one has neither: set trainer.amp_bf16=false")


# What wandb.init accepts in WANDB_MODE (wandb.Settings.mode); anything else fails there,
# after the data is loaded, in a traceback.
_WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")


def _check_seed_and_env(cfg: DictConfig) -> None:
    if not 0 <= int(cfg.seed) < 2**32:  # numpy's seed range; torch's is wider
        raise ConfigError(f"seed must be in 0..2^32-1, got {cfg.seed}")
    env_mode = os.environ.get("WANDB_MODE")
    if cfg.logger.name == "wandb" and cfg.logger.mode != "disabled" and env_mode is not None \
            and env_mode not in _WANDB_MODES:
        raise ConfigError(f"WANDB_MODE={env_mode!r} is not a W&B mode "
                          f"({', '.join(_WANDB_MODES)}): fix or unset it, or use logger=none")


def _check_data_model(cfg: DictConfig) -> None:
    """The model takes what the data set yields; Fashion-MNIST's fixed options."""
    data, model = cfg.data.name.name, cfg.model.name.name
    if MODEL_INPUTS[model] != DATA_INPUTS[data]:
        fits = [m for m in MODEL_NAMES if MODEL_INPUTS[m] == DATA_INPUTS[data]]
        raise ConfigError(f"model={model} does not take data={data} ({DATA_INPUTS[data]} "
                          f"inputs); models for it: {', '.join(fits)}")
    if data == "fashion_mnist" and (cfg.data.augment.name != "none"
                                    or cfg.data.normalize.name != "true"):
        raise ConfigError("data=fashion_mnist takes data.augment=none and data.normalize=true "
                          "only (the paper's augmentation and constants are CIFAR's)")
    if DATA_INPUTS[data] == "bytes":
        _positive("data.block_size", cfg.data.block_size)
        if cfg.data.block_size is None:
            raise ConfigError(f"data={data} needs data.block_size")
        from mbt.models.char_transformer import MAX_CONTEXT

        if cfg.data.block_size > MAX_CONTEXT:
            raise ConfigError(f"data.block_size={cfg.data.block_size} exceeds the "
                              f"{MAX_CONTEXT}-character context of model={model}")


def validate(cfg: DictConfig) -> None:
    """Range checks the schema cannot express; raises :class:`ConfigError`."""
    unknown = _unknown_keys(cfg, TrainConfig)
    if unknown:
        unknown = [k + (f" (did you mean {m}?)" if (m := near_miss(k)) else "") for k in unknown]
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)} (the schema, "
                          f"mbt.config.TrainConfig, does not define them; a typo in a "
                          f"+key= override?)")
    if not math.isfinite(float(cfg.optim.lr)):
        raise ConfigError(f"optim.lr must be a finite number, got {cfg.optim.lr}")
    _positive("optim.lr", cfg.optim.lr)
    _check_seed_and_env(cfg)
    _positive("trainer.epochs", cfg.trainer.epochs)
    _positive("trainer.batch_size", cfg.trainer.batch_size)
    _positive("trainer.diverge_factor", cfg.trainer.diverge_factor)
    _positive("trainer.check_every", cfg.trainer.check_every)
    _positive("trainer.max_steps_per_epoch", cfg.trainer.max_steps_per_epoch)
    _positive("trainer.stop_after", cfg.trainer.stop_after)
    _positive("trainer.checkpoint_every", cfg.trainer.checkpoint_every)
    _positive("data.subset", cfg.data.subset)
    _positive("data.rescale_size", cfg.data.rescale_size)
    _positive("data.test_batch_size", cfg.data.test_batch_size)
    _positive("data.num_workers", cfg.data.num_workers, allow_zero=True)
    _positive("trainer.eval_every", cfg.trainer.eval_every, allow_zero=True)
    if cfg.get("rerun") is not None and not re.fullmatch(r"[\w.+-]+", str(cfg.rerun)):
        raise ConfigError(f"rerun must be a label of letters, digits and ._+- (it becomes "
                          f"part of the run folder's name), got {cfg.rerun!r}")
    _check_data_model(cfg)
    if cfg.data.num_classes != cfg.model.num_classes:
        raise ConfigError(f"model.num_classes={cfg.model.num_classes} differs from "
                          f"data.num_classes={cfg.data.num_classes}")
    if cfg.logger.name not in ("wandb", "none"):
        raise ConfigError(f"logger must be wandb or none, got {cfg.logger.name!r}")
    if cfg.trainer.progress not in ("auto", "bar", "line", "none"):
        raise ConfigError(f"trainer.progress must be auto|bar|line|none, "
                          f"got {cfg.trainer.progress!r}")
    device = str(cfg.trainer.device)
    if not (device in ("auto", "cpu", "cuda", "mps") or device.startswith("cuda:")):
        raise ConfigError(f"trainer.device must be auto, cpu, cuda or cuda:N, got {device!r}")
    _check_cpu_bf16(cfg.trainer.amp_bf16, device)
    if getattr(cfg.protocol, "name", cfg.protocol) == "cpu" and cfg.experiment and not (
            CONF_DIR / "experiment" / "protocols" / f"{cfg.experiment}_cpu.yaml").exists():
        raise ConfigError(f"protocol=cpu is defined only for experiments with a "
                          f"conf/experiment/protocols/<name>_cpu.yaml; "
                          f"{cfg.experiment!r} has none")
    if "_target_" not in cfg.optim.builder:
        raise ConfigError(f"optim {cfg.optim.name!r} has no builder._target_")
    _check_optimizer_args(cfg)
