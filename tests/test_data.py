"""mbt.data: layout, validation, subsets, both pipelines, and device-vs-PIL augmentation."""

from __future__ import annotations

import functools
import json
import logging
import math
import pickle
import shutil
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.functional as TF
from omegaconf import OmegaConf
from PIL import Image

from mbt.config_paths import CONF_DIR
from mbt.data import (
    DataError,
    DeviceLoader,
    TorchLoader,
    build_loaders,
    build_loaders_from_config,
    default_pipeline,
    load_cifar,
)
from mbt.data import device_loader as dl
from mbt.data import transforms as tf
from mbt.data.cifar import SYNTHETIC_MANIFEST, ArrayDataset, epoch_seed, subset_indices
from mbt.data.synthetic import make_images

DATASETS = {
    "cifar10": ("cifar-10-batches-py", "data_batch_1"),
    "cifar100": ("cifar-100-python", "train"),
}


@pytest.fixture
def roots(cifar10_root, cifar100_root):
    return {"cifar10": cifar10_root, "cifar100": cifar100_root}


def _norm(x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(tf.CODE_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(tf.CODE_STD).view(1, 3, 1, 1)
    return (x - m) / s


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize("name", DATASETS)
def test_synthetic_loads_through_torchvision(name, roots, monkeypatch):
    folder, first = DATASETS[name]
    root = roots[name]
    # As on the CIFAR page: encoding='bytes' gives b'data' keys, uint8 (N, 3072) planes.
    with open(root / folder / first, "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert {b"data", b"batch_label", b"filenames"} <= set(raw)
    assert raw[b"data"].dtype == np.uint8 and raw[b"data"].shape[1] == 3072
    # torchvision's real classes read it (md5 check off: synthetic sums are not the published).
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    data = load_cifar(name, root)
    for train, split in ((True, data.train), (False, data.test)):
        ds = cls(str(root), train=train)
        assert np.array_equal(ds.data, split.images)
        assert np.array_equal(np.asarray(ds.targets), split.labels)
    assert len(ds.classes) == (10 if name == "cifar10" else 100)
    assert data.synthetic and not data.partial


def test_synthetic_layout_matches_real_files(cifar10_root, cifar100_root, cifar_head):
    def keys(path):
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        return {k.decode() if isinstance(k, bytes) else k for k in d}, d

    for root, folder, files in (
        (cifar10_root, "cifar-10-batches-py", ("data_batch_1", "test_batch", "batches.meta")),
        (cifar100_root, "cifar-100-python", ("train", "test", "meta")),
    ):
        for fname in files:
            real_keys, real = keys(cifar_head / folder / fname)
            syn_keys, syn = keys(root / folder / fname)
            assert real_keys <= syn_keys, fname  # the head's CIFAR-10 batches lack filenames
            for k in real:
                rk = k.decode() if isinstance(k, bytes) else k
                sv = syn[rk.encode()]
                assert type(sv) is type(real[k]), (fname, rk)
                if isinstance(sv, np.ndarray):
                    assert sv.dtype == real[k].dtype and sv.shape[1:] == real[k].shape[1:]


# ---------------------------------------------------------------- build_loaders


@pytest.mark.parametrize("pipeline", ["dataloader", "device"])
@pytest.mark.parametrize("name", DATASETS)
def test_build_loaders_shapes(name, pipeline, roots):
    train, test, info = build_loaders(
        name, roots[name], batch_size=24, pipeline=pipeline, num_workers=0, test_batch_size=10
    )
    assert (len(train), len(test)) == (math.ceil(64 / 24), math.ceil(32 / 10))
    assert (train.num_samples, test.num_samples) == (64, 32)
    sizes = []
    for x, y in train:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (3, 32, 32) and x.shape[0] == y.shape[0]
        sizes.append(len(y))
    assert sizes == [24, 24, 16]  # drop_last False
    xt, yt = next(iter(test))
    assert xt.shape == (10, 3, 32, 32)
    k = 10 if name == "cifar10" else 100
    assert int(yt.min()) >= 0 and int(yt.max()) < k
    expect = {"dataset": name, "num_train": 64, "num_test": 32, "num_classes": k,
              "partial": False, "synthetic": True, "root": str(roots[name].resolve())}  # fmt: skip
    assert expect.items() <= info.items()


def test_dataloader_workers_and_channels_last(cifar10_root):
    train, _, _ = build_loaders(
        "cifar10", cifar10_root, batch_size=32, num_workers=2, channels_last=True
    )
    batches = list(train)
    assert len(batches) == 2
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)


def test_device_channels_last(cifar10_root):
    train, _, _ = build_loaders(
        "cifar10", cifar10_root, batch_size=32, pipeline="device", channels_last=True
    )
    x, _ = next(iter(train))
    assert x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("pipeline", ["dataloader", "device"])
def test_shuffle_reproducible_per_epoch(pipeline, cifar10_root):
    kw = {"batch_size": 16, "augment": "none", "pipeline": pipeline, "num_workers": 0}
    train, _, _ = build_loaders("cifar10", cifar10_root, seed=3, **kw)

    def order(loader, epoch):
        loader.set_epoch(epoch)
        return torch.cat([x.flatten(1)[:, :8] for x, _ in loader])

    a = order(train, 5)
    assert torch.equal(a, order(train, 5))
    assert not torch.equal(a, order(train, 6))
    assert not torch.equal(a, torch.cat([x.flatten(1)[:, :8] for x, _ in train]))  # epoch 7
    again, _, _ = build_loaders("cifar10", cifar10_root, seed=3, **kw)
    assert torch.equal(a, order(again, 5))


@pytest.mark.parametrize("name", DATASETS)
def test_config_files(name, roots, monkeypatch):
    monkeypatch.setenv("MBT_DATA_ROOT", str(roots[name]))
    cfg = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
    assert cfg.root == str(roots[name]) and cfg.name == name
    assert (cfg.augment, cfg.normalize, cfg.pipeline, cfg.download) == (
        "paper", "code", default_pipeline(), False,
    )  # fmt: skip
    assert default_pipeline("cpu") == "dataloader" and default_pipeline("cuda:1") == "device"
    train, test, info = build_loaders_from_config(
        cfg, batch_size=32, seed=0, device="cpu", num_workers=0
    )
    assert info["num_classes"] == cfg.num_classes and len(train) == 2 and len(test) == 1


def test_normalize_true_uses_dataset_stats(cifar100_root):
    *_, info = build_loaders("cifar100", cifar100_root, batch_size=8, normalize="true")
    assert (tuple(info["mean"]), tuple(info["std"])) == tf.TRUE_STATS["cifar100"]
    *_, info = build_loaders("cifar100", cifar100_root, batch_size=8)
    assert tuple(info["std"]) == tf.CODE_STD


# ---------------------------------------------------------------- errors and partial copies


def test_missing_data_raises_one_line(tmp_path):
    with pytest.raises(DataError) as e:
        build_loaders("cifar10", tmp_path / "nowhere", batch_size=8)
    msg = str(e.value)
    assert isinstance(e.value, RuntimeError) and "\n" not in msg
    assert str((tmp_path / "nowhere").resolve()) in msg
    for part in ("cifar-10-batches-py", "data_batch_1..5", "test_batch", "data.download=true",
                 torchvision.datasets.CIFAR10.url):  # fmt: skip
        assert part in msg


def test_download_failure_is_data_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution\n(offline)")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as e:
        build_loaders("cifar100", tmp_path, batch_size=8, download=True)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path.resolve()) in msg
    assert torchvision.datasets.CIFAR100.url in msg


def test_md5_mismatch_and_allow_partial(cifar10_root, tmp_path, caplog):
    root = tmp_path / "copy"
    shutil.copytree(cifar10_root, root)
    base = root / "cifar-10-batches-py"
    (base / SYNTHETIC_MANIFEST).unlink()  # now judged against the published md5 sums
    with pytest.raises(DataError, match="md5.*allow_partial") as e:
        build_loaders("cifar10", root, batch_size=8)
    assert "\n" not in str(e.value) and str(root.resolve()) in str(e.value)

    (base / "data_batch_5").unlink()  # 12 of the 64 images (np.array_split)
    with caplog.at_level(logging.INFO, logger="mbt.data"):
        train, test, info = build_loaders("cifar10", root, batch_size=8, allow_partial=True)
    assert info["partial"] and not info["synthetic"]
    assert (info["num_train"], info["num_test"]) == (52, 32)
    assert train.num_samples == 52
    assert "52 train / 32 test" in caplog.text and "data_batch_5" in caplog.text


def test_allow_partial_needs_a_test_batch(cifar100_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(cifar100_root, root)
    (root / "cifar-100-python" / "test").unlink()
    with pytest.raises(DataError, match="test"):
        build_loaders("cifar100", root, batch_size=8, allow_partial=True)


def test_corrupt_manifest_checked(cifar100_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(cifar100_root, root)
    man = root / "cifar-100-python" / SYNTHETIC_MANIFEST
    d = json.loads(man.read_text())
    d["md5"]["train"] = "0" * 32
    man.write_text(json.dumps(d))
    with pytest.raises(DataError, match="md5"):
        build_loaders("cifar100", root, batch_size=8)


# ---------------------------------------------------------------- subsets


def test_subset_reproducible_and_seeded(cifar10_root):
    full = load_cifar("cifar10", cifar10_root).train
    kw = {"batch_size": 8, "subset": 20, "pipeline": "device", "augment": "none"}
    a, _, info = build_loaders("cifar10", cifar10_root, seed=1, **kw)
    b, _, _ = build_loaders("cifar10", cifar10_root, seed=1, **kw)
    c, _, _ = build_loaders("cifar10", cifar10_root, seed=2, **kw)
    rows = subset_indices(64, 20, 1)  # the rows of the full split the subset keeps
    assert len(set(rows.tolist())) == 20 and a.num_samples == 20 and len(a) == 3
    assert not np.array_equal(rows, subset_indices(64, 20, 2))
    assert (info["num_train"], info["num_train_found"], info["subset"]) == (20, 64, 20)
    full_nchw = torch.as_tensor(full.images).permute(0, 3, 1, 2)
    assert torch.equal(a.images, full_nchw[rows]) and torch.equal(a.images, b.images)
    assert torch.equal(a.labels, torch.as_tensor(full.labels[rows]))
    assert not torch.equal(a.images, c.images)
    with pytest.raises(DataError, match="subset=65"):
        build_loaders("cifar10", cifar10_root, seed=1, **{**kw, "subset": 65})


# ---------------------------------------------------------------- device vs PIL augmentation


def test_none_device_equals_dataloader(cifar10_root):
    data = load_cifar("cifar10", cifar10_root)
    mean, std = tf.norm_stats("cifar10", "true")
    ds = ArrayDataset(data.train.images, data.train.labels, tf.train_transform("none", mean, std))
    tl = TorchLoader(ds, batch_size=16, shuffle=False)
    dv = DeviceLoader(data.train.images, data.train.labels, batch_size=16, mean=mean, std=std)
    for (x1, y1), (x2, y2) in zip(tl, dv, strict=True):
        assert torch.equal(y1, y2)
        torch.testing.assert_close(x1, x2, rtol=0, atol=1e-5)
    # build_loaders' test loaders, both pipelines: identical evaluation batches.
    _, t1, _ = build_loaders("cifar10", cifar10_root, batch_size=8, num_workers=0)
    _, t2, _ = build_loaders("cifar10", cifar10_root, batch_size=8, pipeline="device")
    for (x1, y1), (x2, y2) in zip(t1, t2, strict=True):
        assert torch.equal(y1, y2)
        torch.testing.assert_close(x1, x2, rtol=0, atol=1e-5)


def test_flip_probability_half():
    x = torch.randint(0, 256, (4000, 3, 8, 8), dtype=torch.uint8)
    out = dl.crop_flip(x, 0, 0.5, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert abs(flipped.float().mean().item() - 0.5) < 0.03


def test_crop_offsets_uniform_and_exact():
    n, pad = 2700, 4
    rows = torch.arange(1, 33, dtype=torch.uint8).view(32, 1).expand(32, 32)
    x = torch.stack([rows, rows.T, torch.zeros_like(rows)]).expand(n, 3, 32, 32).contiguous()
    out = dl.crop_flip(x, pad, 0.0, torch.Generator().manual_seed(1))
    # Output pixel (8, 8) is original (oy + 4, ox + 4), always inside the image.
    oy, ox = out[:, 0, 8, 8].long() - 5, out[:, 1, 8, 8].long() - 5
    xp = torch.nn.functional.pad(x, (pad,) * 4)
    for i in range(0, n, 97):
        assert torch.equal(out[i], xp[i, :, oy[i] : oy[i] + 32, ox[i] : ox[i] + 32])
    for off in (oy, ox):
        counts = torch.bincount(off, minlength=9)
        assert len(counts) == 9 and int(counts.min()) > n / 9 * 0.75


def test_rotation_matches_torchvision():
    x = torch.rand(64, 3, 32, 32)
    out = dl.rotate(x, 20.0, torch.Generator().manual_seed(2))
    angles = torch.rand(64, generator=torch.Generator().manual_seed(2)) * 40 - 20
    ref = torch.stack([TF.rotate(x[i], float(angles[i])) for i in range(64)])
    assert (out != ref).float().mean().item() < 1e-3  # nearest: identical up to ties


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation", "hue"])
def test_color_ops_match_torchvision(op):
    n = 64
    x = torch.rand(n, 3, 32, 32)
    kw = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, op: 0.3}
    out = dl.color_jitter(x, **kw, gen=torch.Generator().manual_seed(3), pil_rounding=False)
    g = torch.Generator().manual_seed(3)  # replay the draws: b, c, s, then h
    draws = {k: dl._uniform(n, 1 - kw[k], 1 + kw[k], g) for k in ("brightness", "contrast")}
    draws["saturation"] = dl._uniform(n, 1 - kw["saturation"], 1 + kw["saturation"], g)
    draws["hue"] = dl._uniform(n, -kw["hue"], kw["hue"], g)
    fn = getattr(TF, f"adjust_{op}")
    ref = torch.stack([fn(x[i], float(draws[op][i])) for i in range(n)])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


# The device pipeline as first written (commit 6788936): hue by nonzero() per jitter step,
# F.affine_grid per rotation, constants made per call. The GPU-friendly version must give
# the same batches bit for bit; a frozen copy keeps the check independent of the CPU.
def _ref_rotate(x, degrees, gen):
    a = dl._uniform(x.shape[0], -degrees, degrees, gen) * (math.pi / 180)
    cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="nearest", padding_mode="zeros",
                                           align_corners=False)


def _ref_hsv_to_rgb(x):
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    sector = torch.tensor([[0, 1, 2, 2, 3, 0], [3, 0, 0, 1, 2, 2], [2, 2, 3, 0, 0, 1]])
    idx = sector[:, i.long() % 6].permute(1, 0, 2, 3)
    return torch.stack([v, q, p, t], 1).gather(1, idx)


def _ref_color_jitter(x, brightness, contrast, saturation, hue, gen):
    n = x.shape[0]
    b = dl._uniform(n, 1 - brightness, 1 + brightness, gen).view(n, 1, 1, 1)
    c = dl._uniform(n, 1 - contrast, 1 + contrast, gen).view(n, 1, 1, 1)
    s = dl._uniform(n, 1 - saturation, 1 + saturation, gen).view(n, 1, 1, 1)
    h = dl._uniform(n, -hue, hue, gen)
    order = torch.rand(n, 4, generator=gen).argsort(1)
    zero = torch.zeros(())
    for k in range(4):
        op = order[:, k].view(n, 1, 1, 1)
        is_b, is_c, is_s = (op == 0), (op == 1), (op == 2)
        grey = dl._grey(x)
        f = torch.where(is_b, b, torch.where(is_c, c, torch.where(is_s, s, torch.ones_like(b))))
        d = torch.where(is_c, grey.mean((2, 3), keepdim=True), torch.where(is_s, grey, zero))
        blended = torch.floor((f * x + (1 - f) * d).clamp(0.0, 1.0) * 255 + 1e-3) / 255
        sel = order[:, k].eq(3).nonzero().squeeze(1)
        hsv = dl.rgb_to_hsv(blended[sel])
        hshift = torch.remainder(hsv[:, 0] + h[sel].view(-1, 1, 1), 1.0)
        hued = _ref_hsv_to_rgb(torch.stack([hshift, hsv[:, 1], hsv[:, 2]], 1))
        x = blended.index_copy(0, sel, torch.round(hued * 255) / 255)
    return x


def _ref_batches(images, labels, *, batch_size, augment, seed, epoch, mean, std):
    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    u8 = torch.as_tensor(images).permute(0, 3, 1, 2).contiguous()
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    order = torch.randperm(len(labels), generator=gen)
    for i in range(0, len(labels), batch_size):
        idx = order[i : i + batch_size]
        x = u8[idx]
        if augment != "none":
            x = dl.crop_flip(x, tf.CROP_PADDING, tf.FLIP_P, gen)
        x = x.float().div_(255)
        if augment == "paper":
            x = _ref_rotate(x, tf.AFFINE_DEGREES, gen)
            x = _ref_rotate(x, tf.ROTATION_DEGREES, gen)
            x = _ref_color_jitter(x, **tf.JITTER, gen=gen)
        yield (x - m) / s, torch.as_tensor(labels, dtype=torch.int64)[idx]


@pytest.mark.parametrize("static_shapes", [False, True])
@pytest.mark.parametrize("augment", ["paper", "standard", "none"])
def test_device_batches_equal_the_first_implementation(augment, static_shapes, cifar10_root,
                                                       monkeypatch):
    if static_shapes:  # the CUDA path (no nonzero(): hue on every sample, then a select)
        monkeypatch.setattr(dl, "color_jitter", functools.partial(dl.color_jitter,
                                                                  static_shapes=True))
    data = load_cifar("cifar10", cifar10_root).train
    mean, std = tf.norm_stats("cifar10", "code")
    loader = DeviceLoader(data.images, data.labels, batch_size=24, mean=mean, std=std,
                          augment=augment, shuffle=True, seed=3)
    for epoch in range(2):  # 24, 24, 16 images: the short last batch too
        ref = _ref_batches(data.images, data.labels, batch_size=24, augment=augment, seed=3,
                           epoch=epoch, mean=mean, std=std)
        for (x1, y1), (x2, y2) in zip(loader, ref, strict=True):
            assert torch.equal(y1, y2) and torch.equal(x1, x2), (augment, epoch)


def _aug_stats(v: torch.Tensor):
    black = _norm(torch.zeros(1, 3, 1, 1))
    return v.mean((0, 2, 3)), v.std((0, 2, 3)), (v == black).all(1).float().mean()


def _compare_pipelines(images: np.ndarray, augment: str, reps: int, seed: int):
    torch.manual_seed(seed)  # the PIL transforms draw from the global RNG
    t = tf.train_transform(augment, tf.CODE_MEAN, tf.CODE_STD)
    pil = torch.stack([t(Image.fromarray(im)) for _ in range(reps) for im in images])
    u8 = torch.as_tensor(images).permute(0, 3, 1, 2).repeat(reps, 1, 1, 1)
    dev = _norm(dl.augment_batch(u8, augment, torch.Generator().manual_seed(seed)))
    return _aug_stats(pil), _aug_stats(dev)


@pytest.mark.parametrize("augment", ["paper", "standard"])
def test_device_augmentation_matches_dataloader_in_distribution(augment, cifar10_root):
    images = load_cifar("cifar10", cifar10_root).train.images
    (m1, s1, z1), (m2, s2, z2) = _compare_pipelines(images, augment, reps=8, seed=0)
    # 512 samples: augmentation noise on a channel mean is ~0.02 (normalized units).
    assert (m1 - m2).abs().max() < 0.08, (m1, m2)
    assert (s1 - s2).abs().max() < 0.06, (s1, s2)
    assert abs(z1 - z2) < 0.015, (z1, z2)  # black fill from padding and rotated corners


def test_synthetic_images_learnable():
    y = np.arange(400) % 10
    x = make_images(y, 10, np.random.default_rng(0))
    feats = torch.nn.functional.avg_pool2d(
        _norm(torch.as_tensor(x).permute(0, 3, 1, 2).float() / 255), 8
    ).flatten(1)
    labels = torch.as_tensor(y)
    torch.manual_seed(0)
    lin = torch.nn.Linear(feats.shape[1], 10)
    opt = torch.optim.SGD(lin.parameters(), lr=0.5)
    for _ in range(50):  # plain full-batch GD on 4x4-pooled pixels
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(feats[:300]), labels[:300]).backward()
        opt.step()
    acc = (lin(feats[300:]).argmax(1) == labels[300:]).float().mean().item()
    assert acc > 0.5  # chance: 0.1


def test_channel_stats_layouts():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    rows = hwc.transpose(0, 3, 1, 2).reshape(10, 3072)
    mean, std = tf.channel_stats(hwc)
    ref = hwc.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, ref.mean(0), atol=1e-9)
    np.testing.assert_allclose(std, ref.std(0), atol=1e-9)
    assert tf.channel_stats(rows) == (mean, std)


# ---------------------------------------------------------------- real partial copy (slow)


@pytest.mark.slow
def test_cifar_head_counts(cifar_head, caplog):
    for name, counts in (("cifar10", (5170, 1017)), ("cifar100", (486, 916))):
        with pytest.raises(DataError, match="md5"):
            load_cifar(name, cifar_head)
        with caplog.at_level(logging.INFO, logger="mbt.data"):
            train, test, info = build_loaders(
                name, cifar_head, batch_size=500, allow_partial=True, pipeline="device"
            )
        assert (info["num_train"], info["num_test"]) == counts
        assert info["partial"] and not info["synthetic"]
        assert f"{counts[0]} train / {counts[1]} test" in caplog.text
        assert test.num_samples == counts[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_channel_stats_near_cited_values(name, cifar_head):
    images = load_cifar(name, cifar_head, allow_partial=True).train.images
    mean, std = tf.channel_stats(images)
    cited_mean, cited_std = tf.TRUE_STATS[name]
    np.testing.assert_allclose(mean, cited_mean, atol=0.02)
    np.testing.assert_allclose(std, cited_std, atol=0.02)
    # The code constants are not the pixel std (they are about the mean per-image std).
    assert min(std) > max(tf.CODE_STD) + 0.03


@pytest.mark.slow
def test_device_augmentation_on_real_images(cifar_head):
    images = load_cifar("cifar10", cifar_head, allow_partial=True).train.images[:512]
    (m1, s1, z1), (m2, s2, z2) = _compare_pipelines(images, "paper", reps=4, seed=1)
    assert (m1 - m2).abs().max() < 0.04, (m1, m2)
    assert (s1 - s2).abs().max() < 0.03, (s1, s2)
    assert abs(z1 - z2) < 0.01, (z1, z2)


def test_an_unknown_augment_is_refused_at_each_public_entry(cifar10_root):
    images, labels = np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64)
    for call in (lambda: build_loaders("cifar10", cifar10_root, batch_size=8, augment="flip"),
                 lambda: dl.DeviceLoader(images, labels, batch_size=2, mean=(0.5,) * 3,
                                         std=(0.5,) * 3, augment="flip"),
                 lambda: tf.train_transform("flip", (0.5,) * 3, (0.5,) * 3)):
        with pytest.raises(ValueError, match=r"augment must be one of \('paper', 'standard', "
                                             r"'none'\), got 'flip'"):
            call()
    assert len(tf.train_transform("none", (0.5,) * 3, (0.5,) * 3).transforms) == 2
