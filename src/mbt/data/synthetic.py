"""Tiny, learnable, clearly-labelled synthetic CIFAR data sets in the exact original layout.

Used by the tests and by offline smoke runs. The files are byte-compatible with the CIFAR
python pickles: a Python-2-style pickle (protocol 2) of a dict whose keys and strings are
*py2 str* objects, so ``pickle.load(f, encoding="bytes")`` gives ``b'data'`` keys (as the CIFAR
web page documents) and ``encoding="latin1"`` gives ``'data'`` keys (what torchvision reads).
``data`` is a uint8 (N, 3072) array of row-major R, G, B planes.

Every image of class c has a class-specific pair of colours laid out as a checkerboard with a
class-specific cell size, a random phase, brightness and pixel noise: a small CNN learns it in a
few steps, even under the paper's augmentation. Synthetic data are marked three ways: a
``SYNTHETIC.json`` manifest next to the pickles (it also holds their md5 sums, which the loader
checks instead of the published ones), ``synthetic`` in every batch label and file name.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import logging
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from .cifar import SYNTHETIC_MANIFEST, get_spec

log = logging.getLogger(__name__)


class _Py2Pickler(pickle._Pickler):
    """Pure-Python pickler that writes ``bytes`` as Python 2 ``str`` (SHORT_BINSTRING /
    BINSTRING opcodes), like the cPickle files of the CIFAR distribution."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _write_whole(path: Path, data: bytes) -> None:
    # Write then rename: parallel sweep jobs regenerate the same files, and a job reading
    # while another writes must see a whole file, never a truncated one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _dump(obj, path: Path) -> str:
    """Pickle ``obj`` to ``path`` as CIFAR's Python 2 pickles are; return its md5."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    data = buf.getvalue()
    _write_whole(path, data)
    return hashlib.md5(data).hexdigest()


def _class_look(c: int, num_classes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Foreground/background RGB (0..255) and checker cell size of class c."""
    golden = 0.618033988749895
    fg = colorsys.hsv_to_rgb((c * golden) % 1.0, 0.85, 0.95)
    bg = colorsys.hsv_to_rgb((c * golden + 0.5) % 1.0, 0.6, 0.35 + 0.3 * ((c // 7) % 2))
    cell = (2, 3, 4, 6, 8)[c % 5]
    return np.array(fg) * 255, np.array(bg) * 255, cell


def make_images(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """HWC uint8 (N, 32, 32, 3) images for ``labels``."""
    n = len(labels)
    yy, xx = np.mgrid[0:32, 0:32]
    out = np.empty((n, 32, 32, 3), dtype=np.float64)
    for i, c in enumerate(labels):
        fg, bg, cell = _class_look(int(c), num_classes)
        dy, dx = rng.integers(0, cell * 2, size=2)
        mask = (((yy + dy) // cell + (xx + dx) // cell) % 2).astype(bool)
        out[i] = np.where(mask[..., None], fg, bg)
    out *= rng.uniform(0.8, 1.2, size=(n, 1, 1, 1))
    out += rng.normal(0.0, 12.0, size=out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced labels (every class present when n >= num_classes), shuffled."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _rows(images: np.ndarray) -> np.ndarray:
    """HWC (N, 32, 32, 3) -> CIFAR rows (N, 3072): R plane, G plane, B plane, row-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))


def _names(prefix: str, labels: np.ndarray) -> list[bytes]:
    return [f"synthetic_{prefix}_{c}_{i:06d}.png".encode() for i, c in enumerate(labels)]


def write_cifar(root: str | Path, name: str, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write a synthetic ``name`` ('cifar10' | 'cifar100') under ``root``; return its folder.

    CIFAR-10: ``cifar-10-batches-py/data_batch_1..5`` (``n_train`` split over the five),
    ``test_batch``, ``batches.meta``. CIFAR-100: ``cifar-100-python/train``, ``test``, ``meta``.

    Longer than 60 lines: it writes each file of the real layout in turn (batches, meta,
    md5 marker), as torchvision expects them."""
    spec = get_spec(name)
    rng = np.random.default_rng(seed)
    base = Path(root) / spec.base_folder
    base.mkdir(parents=True, exist_ok=True)
    k = spec.num_classes
    y_train, y_test = _labels(n_train, k, rng), _labels(n_test, k, rng)
    x_train, x_test = make_images(y_train, k, rng), make_images(y_test, k, rng)
    md5 = {}

    if name == "cifar10":
        parts = np.array_split(np.arange(n_train), len(spec.train_files))
        for j, ((fname, _), idx) in enumerate(zip(spec.train_files, parts, strict=True), 1):
            batch = {
                b"batch_label": f"synthetic training batch {j} of {len(parts)}".encode(),
                b"labels": y_train[idx].tolist(),
                b"data": _rows(x_train[idx]),
                b"filenames": _names("train", y_train[idx]),
            }
            md5[fname] = _dump(batch, base / fname)
        test = {
            b"batch_label": b"synthetic testing batch 1 of 1",
            b"labels": y_test.tolist(),
            b"data": _rows(x_test),
            b"filenames": _names("test", y_test),
        }
        md5[spec.test_files[0][0]] = _dump(test, base / spec.test_files[0][0])
        meta = {
            b"num_cases_per_batch": max(len(p) for p in parts),
            b"label_names": [f"synthetic_{c}".encode() for c in range(k)],
            b"num_vis": 3072,
        }
    else:
        for (fname, _), x, y, split in (
            (spec.train_files[0], x_train, y_train, "training"),
            (spec.test_files[0], x_test, y_test, "testing"),
        ):
            batch = {
                b"filenames": _names(fname, y),
                b"batch_label": f"synthetic {split} batch 1 of 1".encode(),
                b"fine_labels": y.tolist(),
                b"coarse_labels": (y // 5).tolist(),  # 20 coarse classes of 5 fine ones
                b"data": _rows(x),
            }
            md5[fname] = _dump(batch, base / fname)
        meta = {
            b"fine_label_names": [f"synthetic_{c}".encode() for c in range(k)],
            b"coarse_label_names": [f"synthetic_coarse_{c}".encode() for c in range(k // 5)],
        }
    md5[spec.meta_file[0]] = _dump(meta, base / spec.meta_file[0])
    manifest = {
        "synthetic": True,
        "writer": "mbt.data.synthetic.write_cifar",
        "dataset": name,
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
        "md5": md5,
    }
    _write_whole(base / SYNTHETIC_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    log.info("wrote synthetic %s (%d train / %d test) to %s", spec.title, n_train, n_test, base)
    return base
