"""Shared fixtures: tiny synthetic CIFAR copies, and the real partial copy (cifar-head)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mbt.data.synthetic import write_cifar

# The real first images of CIFAR-10/100 (see its README). Read in place, never copied.
CIFAR_HEAD = Path(
    os.environ.get("MBT_CIFAR_HEAD", Path(__file__).resolve().parents[2] / "shared/data/cifar-head")
)


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory) -> Path:
    """Root with a synthetic CIFAR-10 (64 train / 32 test) in the exact pickle layout."""
    root = tmp_path_factory.mktemp("cifar10")
    write_cifar(root, "cifar10", n_train=64, n_test=32, seed=0)
    return root


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory) -> Path:
    """Root with a synthetic CIFAR-100 (64 train / 32 test) in the exact pickle layout."""
    root = tmp_path_factory.mktemp("cifar100")
    write_cifar(root, "cifar100", n_train=64, n_test=32, seed=0)
    return root


@pytest.fixture(scope="session")
def cifar_head() -> Path:
    """Root of the real partial copy; skips the test where it is absent."""
    if not (CIFAR_HEAD / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real CIFAR head not found at {CIFAR_HEAD}")
    return CIFAR_HEAD


@pytest.fixture
def compose():
    """Compose the real ``conf/train.yaml`` with overrides (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mbt.config import register_configs
    from mbt.config_paths import CONF_DIR

    register_configs()

    def _compose(*overrides: str, config_name: str = "train"):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))

    return _compose
