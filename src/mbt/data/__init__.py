"""CIFAR-10/100 loaders: ``build_loaders`` is the one entry point the training code needs.

Beyond the paper (issue 25) it also loads Fashion-MNIST (:mod:`mbt.data.fashion_mnist`,
through the same image pipelines) and a byte-level text corpus (``fortunes``,
:mod:`mbt.data.text`, its own loader); :func:`load_dataset` reads any of them for a
fingerprint (the run key's data part).

Two pipelines share one interface (``iter`` -> (x float32 NCHW normalized, y int64) on the
device, ``len`` = batches per epoch, ``num_samples``, ``set_epoch``):

* ``dataloader``: torch DataLoader + torchvision PIL transforms (the paper's own setup);
* ``device``: the whole uint8 split on the device, augmentation batched there
  (:mod:`mbt.data.device_loader`), same distribution without CPU workers.

The configs' default (``conf/data/*.yaml``: an ``${mbt.pipeline:...}`` interpolation of
``trainer.device``, :func:`default_pipeline`) is ``device`` on CUDA and ``dataloader``
elsewhere. It resolves before a run key is derived, so keys and records name the pipeline
that ran, and a CPU run keeps the key it had when ``dataloader`` was the default.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf

from . import transforms as tf
from .cifar import (
    SPECS,
    ArrayDataset,
    CifarData,
    DataError,
    Split,
    TorchLoader,
    epoch_seed,
    load_cifar,
    subset_indices,
)
from .device_loader import DeviceLoader
from .fashion_mnist import load_fashion_mnist, write_fashion_mnist
from .text import TextData, TextLoader, load_text, write_text_corpus
from .transforms import channel_stats, norm_stats

__all__ = [
    "DATASETS",
    "DATA_INPUTS",
    "SPECS",
    "DataError",
    "DeviceLoader",
    "TorchLoader",
    "build_loaders",
    "build_loaders_from_config",
    "channel_stats",
    "default_pipeline",
    "epoch_seed",
    "load_cifar",
    "load_dataset",
    "norm_stats",
    "subset_indices",
    "write_synthetic",
]

log = logging.getLogger(__name__)

PIPELINES = ("dataloader", "device")
# What each data set yields (mbt.models.MODEL_INPUTS: what each model takes).
DATA_INPUTS = {"cifar10": "rgb32", "cifar100": "rgb32", "fashion_mnist": "grey28",
               "fortunes": "bytes"}
DATASETS = tuple(DATA_INPUTS)
NUM_CLASSES = {"fashion_mnist": 10, "fortunes": 256, **{n: s.num_classes for n, s in SPECS.items()}}


def load_dataset(name: str, root: str | Path, *, allow_partial: bool = False,
                 download: bool = False, test_fraction: float | None = None
                 ) -> CifarData | TextData:
    """Read data set ``name`` (one of :data:`DATASETS`) under ``root``; its ``fingerprint``
    is the run key's data part. Raises :class:`DataError` (one line)."""
    if name == "fashion_mnist":
        return load_fashion_mnist(root, allow_partial=allow_partial)
    if name == "fortunes":
        return load_text(root, test_fraction=0.1 if test_fraction is None else test_fraction)
    return load_cifar(name, root, allow_partial=allow_partial, download=download)


def write_synthetic(root: str | Path, name: str, *, n_train: int, n_test: int,
                    seed: int = 0) -> Path:
    """A generated, labelled-synthetic stand-in for ``name`` under ``root``; returns the
    ``data.root`` to read it from (for the entry points' ``data.synthetic_fallback``)."""
    from .synthetic import write_cifar

    root = Path(root)
    if name == "fashion_mnist":
        return write_fashion_mnist(root / name, n_train, n_test, seed=seed)
    if name == "fortunes":
        return write_text_corpus(root / name, n_chars=20 * (n_train + n_test), seed=seed)
    write_cifar(root, name, n_train, n_test, seed=seed)
    return root


def default_pipeline(device: str = "auto") -> str:
    """The pipeline for a ``trainer.device`` value: ``device`` on CUDA (a GPU need not wait
    for PIL workers), ``dataloader`` elsewhere (CPU workers run beside the model)."""
    device = str(device)
    cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    return "device" if cuda else "dataloader"


# conf/data/*.yaml: `pipeline: ${mbt.pipeline:${oc.select:trainer.device,auto}}`.
OmegaConf.register_new_resolver("mbt.pipeline", default_pipeline, replace=True)


def build_loaders(
    name: str,
    root: str | Path,
    *,
    batch_size: int,
    augment: str = "paper",
    normalize: str = "code",
    pipeline: str = "dataloader",
    subset: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    allow_partial: bool = False,
    download: bool = False,
    num_workers: int = 2,
    test_batch_size: int | None = 1000,
    channels_last: bool = False,
    block_size: int | None = None,
    test_fraction: float | None = None,
):
    """Train and test loaders for ``name`` (CIFAR-10/100, Fashion-MNIST; text: see
    :func:`_text_loaders`) under ``root``.

    ``subset`` keeps a reproducible random ``subset`` training images (chosen with ``seed``);
    the test split is always whole. The train loader shuffles (reseeded per epoch from
    ``seed``) and augments; the test loader does neither. ``num_workers`` only matters for
    the ``dataloader`` pipeline. Returns ``(train_loader, test_loader, info)``; info holds
    dataset, num_train, num_test, num_classes, partial, synthetic, root and the settings.
    Raises :class:`DataError` (one-line message) if the data are missing or unusable.

    Longer than 60 lines: the one place where the data set, subset, pipeline and
    normalisation meet; the two pipelines' branches share every argument."""
    if name == "fortunes":
        return _text_loaders(root, batch_size=batch_size, seed=seed, device=device,
                             subset=subset, block_size=block_size, test_fraction=test_fraction,
                             test_batch_size=test_batch_size)
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
    tf.check_augment(augment)
    mean, std = norm_stats(name, normalize)
    data = load_dataset(name, root, allow_partial=allow_partial, download=download)
    train, test = data.train, data.test
    if subset is not None:
        indices = subset_indices(len(train.labels), int(subset), seed)
        train = Split(train.images[indices], train.labels[indices])
        log.info("using a random subset of %d training images (seed %d)", len(indices), seed)
    test_bs = test_batch_size or batch_size

    if pipeline == "device":
        common = {"mean": mean, "std": std, "device": device, "channels_last": channels_last}
        train_loader = DeviceLoader(
            train.images, train.labels, batch_size=batch_size, augment=augment, shuffle=True,
            seed=seed, **common,
        )  # fmt: skip
        test_loader = DeviceLoader(test.images, test.labels, batch_size=test_bs, **common)
    else:
        common = {"device": device, "channels_last": channels_last, "num_workers": num_workers}
        train_ds = ArrayDataset(train.images, train.labels, tf.train_transform(augment, mean, std))
        test_ds = ArrayDataset(test.images, test.labels, tf.eval_transform(mean, std))
        train_loader = TorchLoader(
            train_ds, batch_size=batch_size, shuffle=True, seed=seed, **common
        )
        test_loader = TorchLoader(test_ds, batch_size=test_bs, shuffle=False, **common)

    info = {
        "dataset": name,
        "num_train": len(train.labels),
        "num_train_found": len(data.train.labels),  # before subset
        "num_test": len(test.labels),
        "num_classes": NUM_CLASSES[name],
        "partial": data.partial,
        "synthetic": data.synthetic,
        "root": str(data.root),
        "subset": None if subset is None else int(subset),
        "augment": augment,
        "normalize": normalize,
        "mean": list(mean),
        "std": list(std),
        "pipeline": pipeline,
        "fingerprint": data.fingerprint,  # part of the run key (mbt.ledger)
    }
    return train_loader, test_loader, info


def _text_loaders(root, *, batch_size, seed, device, subset, block_size, test_fraction,
                  test_batch_size):
    """``(train_loader, test_loader, info)`` of a text corpus: :class:`TextLoader` contexts
    of ``block_size`` characters; ``subset``: N random training contexts per epoch."""
    if block_size is None:
        raise ValueError("a text data set needs data.block_size")
    data = load_text(root, test_fraction=0.1 if test_fraction is None else test_fraction)
    common = {"block_size": block_size, "seed": seed, "device": device}
    train = TextLoader(data.train, batch_size=batch_size, shuffle=True, limit=subset, **common)
    test = TextLoader(data.test, batch_size=test_batch_size or batch_size, shuffle=False,
                      **common)
    info = {
        "dataset": "fortunes", "num_train": train.num_samples, "num_test": test.num_samples,
        "num_train_chars": len(data.train), "num_test_chars": len(data.test),
        "num_classes": NUM_CLASSES["fortunes"], "partial": False, "synthetic": data.synthetic,
        "root": str(data.root), "subset": subset, "block_size": block_size,
        "fingerprint": data.fingerprint,  # part of the run key (mbt.ledger)
    }
    return train, test, info


def build_loaders_from_config(data_cfg, **kwargs):
    """:func:`build_loaders` from a ``conf/data/*.yaml`` node; ``kwargs`` adds the run's
    settings (batch_size, seed, device, channels_last) and may override config keys."""
    # Keys the run uses, not the loaders: num_classes (models), synthetic_fallback and
    # rescale_size (mbt.train).
    skip = {"num_classes", "synthetic_fallback", "rescale_size"}
    opts = {k: data_cfg[k] for k in data_cfg if k not in skip}
    opts.update(kwargs)
    return build_loaders(opts.pop("name"), opts.pop("root"), **opts)
