"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from the original idx files, as Debian's
``dataset-fashion-mnist`` installs them (``/usr/share/datasets/fashion-mnist/``).

The four files are read gzipped (``<name>.gz``) or not (``<name>``) and parsed here (the idx
format: a big-endian magic number whose low bytes give the element type and the number of
dimensions, then one big-endian uint32 per dimension, then the data), so no download code
and no torchvision dataset class is involved.

Checksums: Zalando's README (and torchvision's ``FashionMNIST.resources``) publish the md5
of the *gzipped* files, e.g. ``8d4fb7e6...`` for train-images. Debian's package ships the
same data recompressed (each .gz 24 bytes shorter, header without the original file name),
so those sums cannot match its files. We therefore check the md5 of the *decompressed* idx
bytes, which any recompression keeps: the values below are what the Debian files
decompress to, and they agree with the uncompressed md5s listed by several independent
public loaders of the original release (Zalando itself does not publish them).

Images are kept HWC like CIFAR's (N, 28, 28, 1) uint8, so the loaders and the run key
(:attr:`mbt.data.cifar.CifarData.fingerprint`) treat both alike.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import struct
import zlib
from pathlib import Path

import numpy as np

from .cifar import SYNTHETIC_MANIFEST, CifarData, DataError, Split

__all__ = ["FILES", "INSTALL_HINT", "load_fashion_mnist", "read_idx", "write_fashion_mnist",
           "write_idx"]

log = logging.getLogger(__name__)

TITLE = "Fashion-MNIST"
NUM_CLASSES = 10
FULL = (60000, 10000)
# md5 of the decompressed idx files (module docstring: why not the published .gz sums).
FILES = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
INSTALL_HINT = "sudo apt-get install dataset-fashion-mnist (or: make data-ood)"

_UBYTE = 0x08  # the idx element type byte of unsigned bytes


def read_idx(raw: bytes, where: str) -> np.ndarray:
    """The uint8 array an idx file's bytes hold; :class:`DataError` if they are not one."""
    if len(raw) < 4 or raw[:2] != b"\0\0":
        raise DataError(f"{where} is not an idx file (bad magic number)")
    dtype, ndim = raw[2], raw[3]
    if dtype != _UBYTE:
        raise DataError(f"{where}: idx element type 0x{dtype:02x}, expected unsigned bytes")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{where}: idx header truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != size:
        raise DataError(f"{where}: idx header says {dims} ({size} bytes), file holds "
                        f"{len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) as an idx file, gzipped when ``path`` ends in .gz."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, _UBYTE, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)


def _read_file(root: Path, name: str) -> bytes | None:
    """The decompressed bytes of ``name`` under ``root`` (``name.gz`` first); None if absent."""
    for path, unzip in ((root / f"{name}.gz", True), (root / name, False)):
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
            return gzip.decompress(data) if unzip else data
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot read {path}: {e}") from e
    return None


def _split(raw: dict[str, bytes], root: Path, prefix: str) -> Split:
    images = read_idx(raw[f"{prefix}-images-idx3-ubyte"], f"{root}/{prefix}-images")
    labels = read_idx(raw[f"{prefix}-labels-idx1-ubyte"], f"{root}/{prefix}-labels")
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
        raise DataError(f"{root}: {prefix} images {images.shape} / labels {labels.shape} are "
                        f"not Fashion-MNIST's (N, 28, 28) / (N,)")
    if len(images) != len(labels):
        raise DataError(f"{root}: {len(images)} {prefix} images but {len(labels)} labels")
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise DataError(f"{root}: {prefix} labels outside 0..{NUM_CLASSES - 1}")
    return Split(images[..., None].copy(), labels.astype(np.int64))


def load_fashion_mnist(root: str | Path, *, allow_partial: bool = False) -> CifarData:
    """Validate ``root`` and read both splits into memory (:class:`CifarData`, the CIFAR
    loaders' container). The decompressed files are md5-checked against :data:`FILES` (or
    the ``SYNTHETIC.json`` manifest of :func:`write_fashion_mnist`) unless ``allow_partial``.
    Raises :class:`DataError` (one line, with the install command) on any problem."""
    root = Path(root).expanduser().resolve()
    manifest_path = root / SYNTHETIC_MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    raw = {name: _read_file(root, name) for name in FILES}
    missing = [name for name, data in raw.items() if data is None]
    if missing:
        raise DataError(f"{TITLE} not found under {root}: missing {', '.join(missing)} "
                        f"(.gz or not); install it with: {INSTALL_HINT}")
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in raw.items()}
    sums = manifest["md5"] if manifest is not None else FILES
    bad = [name for name in FILES if md5[name] != sums.get(name)]
    if bad and not allow_partial:
        raise DataError(f"{TITLE} under {root} fails the md5 check for {', '.join(bad)} "
                        f"(corrupt or altered copy?); reinstall it ({INSTALL_HINT}) or set "
                        f"data.allow_partial=true to read it anyway")
    train, test = _split(raw, root, "train"), _split(raw, root, "t10k")
    full = (manifest["n_train"], manifest["n_test"]) if manifest is not None else FULL
    partial = (len(train.labels), len(test.labels)) != tuple(full)
    log.log(logging.WARNING if manifest is not None else logging.INFO,
            "%s%s at %s: %d train / %d test images", "SYNTHETIC " if manifest else "", TITLE,
            root, len(train.labels), len(test.labels))
    return CifarData(train, test, partial=partial, synthetic=manifest is not None, root=root,
                     md5=md5)


def write_fashion_mnist(root: str | Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """A small learnable stand-in in the real layout (four idx .gz files) under ``root``,
    marked synthetic by a ``SYNTHETIC.json`` manifest holding its md5s; returns ``root``.

    Class c is a bright horizontal bar at row 2 + 2.5c on a noisy background: a small CNN
    separates the classes within an epoch."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    md5 = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.uint8)
        images = rng.normal(40, 20, size=(n, 28, 28))
        for i, c in enumerate(labels):
            row = 2 + int(2.5 * c)
            images[i, row:row + 2, 4:24] += 180
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            write_idx(root / f"{name}.gz", array)
            md5[name] = hashlib.md5(_read_file(root, name)).hexdigest()
    manifest = {"synthetic": True, "writer": "mbt.data.fashion_mnist.write_fashion_mnist",
                "dataset": "fashion_mnist", "seed": seed, "n_train": n_train,
                "n_test": n_test, "md5": md5}
    (root / SYNTHETIC_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return root
