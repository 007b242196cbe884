"""Beyond the paper (issue 25): Fashion-MNIST from idx files, a byte-level text corpus, their
models, and one run of each through ``mbt.train``. Generated stand-ins always; the real
Debian files (``make data-ood``) where installed."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from clirun import one_error_line, run_module
from mbt.config import ConfigError, validate
from mbt.data import DataError, build_loaders, load_dataset, write_synthetic
from mbt.data.fashion_mnist import (
    FILES,
    load_fashion_mnist,
    read_idx,
    write_fashion_mnist,
    write_idx,
)
from mbt.data.text import TextLoader, load_text, write_text_corpus
from mbt.data.transforms import TRUE_STATS
from mbt.models import build_model

FMNIST = Path("/usr/share/datasets/fashion-mnist")
FORTUNES = Path("/usr/share/games/fortunes")
real_fmnist = pytest.mark.skipif(not (FMNIST / "train-images-idx3-ubyte.gz").is_file(),
                                 reason="dataset-fashion-mnist not installed (make data-ood)")
real_fortunes = pytest.mark.skipif(not (FORTUNES / "fortunes").is_file(),
                                   reason="fortunes not installed (make data-ood)")


@pytest.fixture(scope="module")
def fm_root(tmp_path_factory) -> Path:
    return write_fashion_mnist(tmp_path_factory.mktemp("fm"), n_train=200, n_test=50)


@pytest.fixture(scope="module")
def text_root(tmp_path_factory) -> Path:
    return write_text_corpus(tmp_path_factory.mktemp("txt"), n_chars=9000)


# --- idx format and Fashion-MNIST -------------------------------------------------------

def test_idx_round_trip_and_header_checks(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    assert raw[:4] == b"\0\0\x08\x03" and raw[4:8] == (2).to_bytes(4, "big")
    assert np.array_equal(read_idx(raw, "a"), a)
    with pytest.raises(DataError, match="bad magic"):
        read_idx(b"\x01" + raw[1:], "a")
    with pytest.raises(DataError, match="element type"):
        read_idx(raw[:2] + b"\x0d" + raw[3:], "a")  # 0x0d: float
    with pytest.raises(DataError, match="holds 23"):
        read_idx(raw[:-1], "a")


def test_stand_in_reads_as_fashion_mnist(fm_root):
    data = load_fashion_mnist(fm_root)
    assert data.train.images.shape == (200, 28, 28, 1) and data.train.images.dtype == np.uint8
    assert data.test.images.shape == (50, 28, 28, 1) and data.test.labels.dtype == np.int64
    assert sorted(np.unique(data.train.labels)) == list(range(10))
    assert data.synthetic and not data.partial
    assert data.fingerprint["n_train"] == 200 and len(data.fingerprint["files"]) == 16
    assert load_dataset("fashion_mnist", fm_root).fingerprint == data.fingerprint


def test_uncompressed_files_read_the_same(fm_root, tmp_path):
    for f in fm_root.iterdir():
        target = tmp_path / f.name
        if f.suffix == ".gz":
            target.with_suffix("").write_bytes(gzip.decompress(f.read_bytes()))
        else:
            target.write_bytes(f.read_bytes())
    a, b = load_fashion_mnist(fm_root), load_fashion_mnist(tmp_path)
    assert np.array_equal(a.train.images, b.train.images) and a.md5 == b.md5


def test_missing_files_one_line_with_install_command(fm_root, tmp_path):
    for f in fm_root.iterdir():
        if not f.name.startswith("t10k-labels"):
            (tmp_path / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError) as err:
        load_fashion_mnist(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "missing t10k-labels-idx1-ubyte" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "make data-ood" in msg


def test_md5_mismatch_refused_unless_allow_partial(fm_root, tmp_path):
    # Without the stand-in's manifest the published (decompressed) md5s apply: they fail.
    for name in FILES:
        (tmp_path / f"{name}.gz").write_bytes((fm_root / f"{name}.gz").read_bytes())
    with pytest.raises(DataError, match="fails the md5 check for train-images-idx3-ubyte"):
        load_fashion_mnist(tmp_path)
    assert len(load_fashion_mnist(tmp_path, allow_partial=True).train.labels) == 200


def test_loaders_both_pipelines_same_test_batches(fm_root):
    out = {}
    for pipeline in ("device", "dataloader"):
        train, test, info = build_loaders("fashion_mnist", fm_root, batch_size=32,
                                          augment="none", normalize="true", pipeline=pipeline,
                                          num_workers=0, test_batch_size=50)
        x, y = next(iter(train))
        assert x.shape == (32, 1, 28, 28) and y.shape == (32,)
        assert info["num_classes"] == 10 and info["mean"] == [0.2860]
        out[pipeline] = next(iter(test))
    assert torch.allclose(out["device"][0], out["dataloader"][0], atol=1e-6)
    assert torch.equal(out["device"][1], out["dataloader"][1])


@real_fmnist
def test_real_fashion_mnist_is_whole_and_checked():
    data = load_fashion_mnist(FMNIST)  # md5-checked: raises on any other content
    assert (len(data.train.labels), len(data.test.labels)) == (60000, 10000)
    assert not data.partial and not data.synthetic
    assert np.bincount(data.train.labels).tolist() == [6000] * 10
    pixels = data.train.images.astype(np.float64) / 255
    (mean,), (std,) = TRUE_STATS["fashion_mnist"]
    assert abs(pixels.mean() - mean) < 1e-4 and abs(pixels.std() - std) < 1e-4


# --- text corpus ---------------------------------------------------------------------------

def test_corpus_skips_indexes_and_symlinks_and_splits_each_file(text_root):
    link = text_root / "alpha.u8"
    if not link.exists():
        link.symlink_to(text_root / "alpha")
    data = load_text(text_root, test_fraction=0.1)
    assert sorted(data.md5) == ["alpha", "beta", "gamma"]  # no .dat, no symlink, no manifest
    assert data.synthetic
    train, test = bytes(data.train).decode(), bytes(data.test).decode()
    assert "\n%\n" not in train + test and "\n\n" in train
    # The end of each file is test text: gamma's last entry ends the test split.
    gamma = (text_root / "gamma").read_text().rstrip("\n")
    assert test.rstrip("\n").endswith(gamma.rsplit("%\n", 1)[-1].rstrip("\n"))
    assert 0.09 < len(test) / (len(train) + len(test)) < 0.11


def test_text_loader_windows_targets_and_epochs(text_root):
    tokens = load_text(text_root).train
    loader = TextLoader(tokens, block_size=16, batch_size=8, shuffle=True, seed=3)
    assert loader.num_samples == (len(tokens) - 1) // 16 - 1
    x, y = next(iter(loader))
    assert x.shape == (8, 16) and y.shape == (8 * 16,) and x.dtype == torch.int64
    assert torch.equal(y.view(8, 16)[:, :-1], x[:, 1:])  # targets: the next characters
    # One epoch: every window once, all at one offset (start = offset + 16k: disjoint).
    rows = torch.cat([xb for xb, _ in loader]).numpy()
    assert len(rows) == loader.num_samples
    views = np.lib.stride_tricks.sliding_window_view(tokens, 16)
    starts = [set(np.flatnonzero((views == row).all(1)) % 16) for row in rows]
    assert set.intersection(*starts)
    loader.set_epoch(5)
    a = torch.cat([xb for xb, _ in loader])
    loader.set_epoch(5)
    assert torch.equal(a, torch.cat([xb for xb, _ in loader]))  # reproducible per epoch
    assert not torch.equal(a, torch.cat([xb for xb, _ in loader]))  # epoch 6 differs
    assert a.shape[0] == loader.num_samples
    test = TextLoader(tokens, block_size=16, batch_size=8, shuffle=False)
    assert torch.equal(next(iter(test))[0][0], torch.as_tensor(tokens[:16], dtype=torch.int64))


def test_missing_corpus_one_line_with_install_command(tmp_path):
    with pytest.raises(DataError) as err:
        load_text(tmp_path / "nowhere")
    assert "\n" not in str(err.value) and "apt-get install fortunes" in str(err.value)


@real_fortunes
def test_real_fortunes_corpus():
    data = load_text(FORTUNES)
    assert len(data.md5) >= 40 and "fortunes" in data.md5
    assert len(data.train) > 2_000_000 and 0.09 < len(data.test) / len(data.train) < 0.12
    assert b"\n%\n" not in bytes(data.train[:200_000])


@pytest.mark.parametrize("name", ["fashion_mnist", "fortunes", "cifar10"])
def test_synthetic_fallback_writes_a_readable_stand_in(tmp_path, name):
    # data.synthetic_fallback (mbt.run) reads from the root this returns.
    root = write_synthetic(tmp_path, name, n_train=40, n_test=20)
    data = load_dataset(name, root)
    assert data.synthetic and data.fingerprint["n_train"] > 0


# --- models ----------------------------------------------------------------------------------

def test_fmnist_cnn_shapes_and_size():
    torch.manual_seed(0)
    model = build_model("fmnist_cnn", 10)
    assert sum(p.numel() for p in model.parameters()) == 29_178
    out = model(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10)
    torch.nn.functional.cross_entropy(out, torch.arange(4)).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_char_transformer_flat_logits_and_causal():
    torch.manual_seed(0)
    model = build_model("char_transformer", 256).eval()
    assert 800_000 < sum(p.numel() for p in model.parameters()) < 900_000
    x = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2 * 12, 256)
        # Initial loss near log(256): logits start small (N(0, 0.02) weights).
        targets = torch.randint(0, 256, (2 * 12,))
        assert abs(torch.nn.functional.cross_entropy(out, targets) - math.log(256)) < 0.3
        changed = x.clone()
        changed[:, 7] = (changed[:, 7] + 1) % 256
        out2 = model(changed).view(2, 12, 256)
    out = out.view(2, 12, 256)
    assert torch.allclose(out[:, :7], out2[:, :7], atol=1e-6)  # no look-ahead
    assert not torch.allclose(out[:, 7:], out2[:, 7:])


# --- config and whole runs -------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "match"), [
    (("data=fashion_mnist", "model=resnet18"), "model=resnet18 does not take data=fashion_mnist"),
    (("data=cifar10", "model=char_transformer"), "models for it: resnet18"),
    (("data=fashion_mnist", "model=fmnist_cnn", "data.augment=paper"), "augment=none"),
    (("data=fortunes", "model=char_transformer", "data.block_size=0"), "block_size must be > 0"),
    (("data=fortunes", "model=char_transformer", "data.block_size=300"), "256-character"),
])
def test_config_refuses_pairs_that_do_not_fit(compose, overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(compose(*overrides, "logger=none"))


def _run(compose, tmp_path, *overrides):
    from mbt.train import train

    return train(compose(f"paths.runs={tmp_path / 'runs'}", "logger=none",
                         "trainer.progress=none", "trainer.epochs=1", *overrides))


def test_fashion_mnist_trains_with_mbt(compose, fm_root, tmp_path):
    record = _run(compose, tmp_path, "data=fashion_mnist", f"data.root={fm_root}",
                  "model=fmnist_cnn", "optim=mbt_gd", "optim.builder.num_batches=3",
                  "trainer.batch_size=25")
    assert record["status"] == "finished" and record["synthetic"]
    assert record["run_key"].startswith("fmnist_cnn-fashion_mnist-mbt_gd-")
    assert record["data"]["fingerprint"] == load_fashion_mnist(fm_root).fingerprint
    assert record["history"]["search_evals"][0] > 0 and record["history"]["steps"] == [8]
    assert record["history"]["test_acc"][0] > 30  # chance: 10


def test_char_model_trains_per_character(compose, text_root, tmp_path):
    record = _run(compose, tmp_path, "data=fortunes", f"data.root={text_root}",
                  "model=char_transformer", "data.block_size=32", "trainer.batch_size=16",
                  "optim=adam", "optim.lr=3e-3", "trainer.max_steps_per_epoch=12")
    h = record["history"]
    assert record["status"] == "finished" and record["dataset"] == "fortunes"
    assert record["data"]["num_train_chars"] == len(load_text(text_root).train)
    # A loss per character in nats: from log(256) = 5.55 towards the few-word corpus's.
    assert h["train_loss"][0] < math.log(256) and h["test_loss"][0] < 3.5
    assert 0 <= h["test_acc"][0] <= 100


@pytest.mark.integration
@pytest.mark.parametrize(("data", "model", "hint"), [
    ("fashion_mnist", "fmnist_cnn", "apt-get install dataset-fashion-mnist"),
    ("fortunes", "char_transformer", "apt-get install fortunes"),
])
def test_cli_missing_data_is_one_error_line(tmp_path, data, model, hint):
    proc = run_module("mbt.train", f"data={data}", f"model={model}",
                      f"data.root={tmp_path / 'nowhere'}", f"paths.runs={tmp_path / 'runs'}",
                      "logger=none", cwd=tmp_path)
    assert proc.returncode == 2
    assert hint in one_error_line(proc)


def test_text_subset_draws_fresh_contexts_each_epoch(text_root):
    tokens = load_text(text_root).train
    loader = TextLoader(tokens, block_size=16, batch_size=8, shuffle=True, seed=0, limit=20)
    assert loader.num_samples == 20 and len(loader) == 3
    epochs = [torch.cat([xb for xb, _ in loader]) for _ in range(3)]
    assert all(e.shape == (20, 16) for e in epochs)
    views = np.lib.stride_tricks.sliding_window_view(tokens, 16)
    first = [int(np.flatnonzero((views == r.numpy()).all(1))[0]) for e in epochs for r in e]
    # Drawn from the whole text, not its first 20 windows (which end at 20 * 16 = 320).
    assert max(first) > len(tokens) // 2
    assert not torch.equal(epochs[0], epochs[1])
    evaluation = TextLoader(tokens, block_size=16, batch_size=8, shuffle=False, limit=20)
    assert evaluation.num_samples == (len(tokens) - 1) // 16  # the test split stays whole


def _sweep(name: str) -> dict:
    from omegaconf import OmegaConf

    from mbt.config_paths import CONF_DIR

    return OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml").hydra.sweeper.params


@pytest.mark.parametrize(("preset", "model", "data"), [
    ("out_of_domain", "fmnist_cnn", "fashion_mnist"),
    ("out_of_domain_grid", "fmnist_cnn", "fashion_mnist"),
    ("out_of_domain_text", "char_transformer", "fortunes"),
    ("out_of_domain_text_grid", "char_transformer", "fortunes"),
])
def test_out_of_domain_presets(compose, preset, model, data):
    cfg = compose(f"experiment={preset}", "protocol=cpu")
    validate(cfg)
    assert (cfg.model.name.name, cfg.data.name.name) == (model, data)
    assert cfg.experiment == "out_of_domain" and cfg.data.synthetic_fallback is False
    assert cfg.data.subset == (4096 if data == "fortunes" else None)  # all 60 000 images
    if data == "fortunes":  # context 64, 128-step epochs (the levelling check's sizes)
        assert (cfg.data.block_size, cfg.trainer.batch_size, cfg.trainer.epochs) == (64, 32, 16)
    else:
        assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (128, 12)


def test_out_of_domain_sweeps_every_method_at_three_seeds_and_grids_at_seed_0():
    auto = _sweep("out_of_domain")["optim"].split(",")
    for method in ("mbt_gd", "mbt_mmt", "mbt_nag", "sls", "prodigy", "dadapt_sgd",
                   "sgd_schedulefree", "dog", "lr_range_sgd"):
        assert method in auto
    assert _sweep("out_of_domain_grid")["optim"] == "sgd,nag"
    assert _sweep("out_of_domain_text_grid")["optim"] == "adamw"
    for name in ("out_of_domain", "protocols/out_of_domain_cpu",
                 "protocols/out_of_domain_text_cpu"):
        assert _sweep(name)["seed"] == "0,1,2", name
    # Tuned grids run at seed 0; seeds 1-2 follow at its best lr (mbt.report.best_lr).
    for name in ("out_of_domain_grid", "out_of_domain_text_grid",
                 "protocols/out_of_domain_grid_cpu", "protocols/out_of_domain_text_grid_cpu"):
        assert str(_sweep(name)["seed"]) == "0", name
