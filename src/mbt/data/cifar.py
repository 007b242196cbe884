"""Finding, validating and reading CIFAR-10/100 in the original python pickle layout, and
the classic DataLoader pipeline over the arrays read.

We read the pickles ourselves instead of going through ``torchvision.datasets.CIFAR10``
because (a) a partial copy (e.g. ``/work/shared/data/cifar-head``) fails torchvision's md5
check and may lack batches, and (b) the failure must be a one-line :class:`DataError` the
entry points can print. File names, checksums and URLs still come from torchvision's
classes, and ``download=True`` still uses torchvision's downloader. The arrays are exactly
torchvision's ``.data`` / ``.targets`` (HWC uint8, int labels).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)

# Written by mbt.data.synthetic next to the pickles: marks the data set as synthetic and
# holds the md5 of each file, which then replace the published checksums.
SYNTHETIC_MANIFEST = "SYNTHETIC.json"


class DataError(RuntimeError):
    """The data set is missing, corrupt or incomplete. The message is a single line."""

    def __init__(self, msg: str):
        # Entry points print str(e) without a traceback: keep it to one line.
        super().__init__(" ".join(str(msg).splitlines()))


@dataclass(frozen=True)
class CifarSpec:
    name: str
    title: str
    tv_class_name: str  # in torchvision.datasets: file names, checksums, URL, downloader
    num_classes: int
    label_key: str
    full_train: int
    full_test: int

    @property
    def tv_class(self) -> type:
        # Imported here, not at module level: `import torchvision` costs ~2 s (its ops pull
        # in torch._dynamo), which a config error or `--help` should not pay.
        from torchvision import datasets

        return getattr(datasets, self.tv_class_name)

    @property
    def base_folder(self) -> str:
        return self.tv_class.base_folder

    @property
    def train_files(self) -> list[tuple[str, str]]:
        return [tuple(f) for f in self.tv_class.train_list]

    @property
    def test_files(self) -> list[tuple[str, str]]:
        return [tuple(f) for f in self.tv_class.test_list]

    @property
    def meta_file(self) -> tuple[str, str]:
        return self.tv_class.meta["filename"], self.tv_class.meta["md5"]


SPECS = {
    "cifar10": CifarSpec("cifar10", "CIFAR-10", "CIFAR10", 10, "labels", 50000, 10000),
    "cifar100": CifarSpec("cifar100", "CIFAR-100", "CIFAR100", 100, "fine_labels", 50000, 10000),
}


def _check_integrity(path: str, md5: str) -> bool:
    from torchvision.datasets.utils import check_integrity  # lazily: see CifarSpec.tv_class

    return check_integrity(path, md5)


def get_spec(name: str) -> CifarSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(SPECS)}") from None


@dataclass
class Split:
    """One split in memory: HWC uint8 images (N, 32, 32, 3) and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray


@dataclass
class CifarData:
    train: Split
    test: Split
    partial: bool
    synthetic: bool
    root: Path
    md5: dict[str, str]  # of every data file read

    @property
    def fingerprint(self) -> dict:
        """What identifies the images read, wherever they live: their numbers and a hash
        of the data files' md5 sums (part of the run key, :mod:`mbt.ledger`)."""
        files = hashlib.sha256(json.dumps(sorted(self.md5.items())).encode()).hexdigest()
        return {"n_train": len(self.train.labels), "n_test": len(self.test.labels),
                "files": files[:16]}


class _CifarUnpickler(pickle.Unpickler):
    """Admits what a CIFAR batch holds (dicts, lists, str/bytes, ints and numpy arrays)
    and nothing else: a pickle naming any other global (``os.system``, ...) is refused
    before it can run (pickle runs code through such globals)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how Python 3 pickles of numpy arrays store raw bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: a CIFAR "
                                     f"batch holds only dicts, lists, strings and arrays")


def _unpickle(data: bytes):
    # latin1 as torchvision does: the originals are Python 2 pickles.
    return _CifarUnpickler(io.BytesIO(data), encoding="latin1").load()


def _files_summary(spec: CifarSpec) -> str:
    names = [f for f, _ in spec.train_files]
    if len(names) > 1:  # data_batch_1..5
        stem = names[0].rsplit("_", 1)[0]
        names = [f"{stem}_1..{len(names)}"]
    names += [f for f, _ in spec.test_files] + [spec.meta_file[0]]
    return f"{spec.base_folder}/{{{', '.join(names)}}}"


def _how_to_get(spec: CifarSpec, root: Path) -> str:
    hint = ""
    if root.name == spec.base_folder:
        hint = f" (root must be the folder that contains {spec.base_folder}/, not that folder)"
    return (
        f"download with data.download=true on a machine with internet, or fetch "
        f"{spec.tv_class.url} and extract it into {root}{hint}"
    )


def _download(spec: CifarSpec, root: Path) -> None:
    """torchvision's own download+extract+md5 check; any failure becomes a DataError."""
    root.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s into %s", spec.title, root)
    try:
        spec.tv_class(str(root), train=True, download=True)
    except Exception as e:  # URLError, OSError, RuntimeError (bad md5) ...
        msg = " ".join(str(e).split())
        raise DataError(
            f"{spec.title} download into {root} failed ({type(e).__name__}: {msg}); "
            f"fetch {spec.tv_class.url} by hand and extract it into {root}"
        ) from e


def _read_manifest(base: Path) -> dict | None:
    path = base / SYNTHETIC_MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"unreadable synthetic-data manifest {path}: {e}") from e


def _read_batch(path: Path, raw: bytes, spec: CifarSpec) -> Split:
    try:
        entry = _unpickle(raw)
        if not isinstance(entry, dict):
            raise pickle.UnpicklingError(f"holds a {type(entry).__name__}, not a dict")
        # Originals give str keys under latin1; copies re-pickled by Python 3 give bytes keys.
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[spec.label_key], dtype=np.int64)
    except Exception as e:
        raise DataError(f"cannot read {spec.title} batch {path}: {type(e).__name__}: {e}") from e
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path} is not a CIFAR batch: data {data.shape}, {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{path} has labels outside 0..{spec.num_classes - 1}")
    # Rows are 3 channel planes of 32x32, row-major; HWC like torchvision's .data.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels)


def _read_files(base: Path, files: list[tuple[str, str]]) -> dict[str, bytes]:
    """The bytes of those ``files`` present under ``base`` (read once for md5 and parsing)."""
    out = {}
    for f, _ in files:
        try:
            out[f] = (base / f).read_bytes()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise DataError(f"cannot read {base / f}: {e.strerror or e}") from e
    return out


def _parse_split(base: Path, raw: dict[str, bytes], spec: CifarSpec) -> Split:
    parts = [_read_batch(base / f, data, spec) for f, data in raw.items()]
    return Split(
        np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts])
    )


def load_cifar(
    name: str, root: str | Path, *, allow_partial: bool = False, download: bool = False
) -> CifarData:
    """Validate ``root`` and read both splits of CIFAR ``name`` into memory.

    Complete copies are md5-checked against torchvision's published sums (or, for data written
    by :func:`mbt.data.synthetic.write_cifar`, against its manifest). ``allow_partial`` skips
    the md5 check and reads whichever batches exist, which is how the truncated real copy in
    cifar-head is used. Raises :class:`DataError` (one-line message) on any problem.

    Longer than 60 lines: each check (layout, partial copy, md5s, synthetic marker) ends
    in its own one-line error, in the order a user fixes them."""
    spec = get_spec(name)
    root = Path(root).expanduser().resolve()
    base = root / spec.base_folder
    data_files = spec.train_files + spec.test_files
    manifest = _read_manifest(base)

    if download:
        if manifest is not None:
            log.warning("%s holds synthetic data; data.download=true ignored", base)
        elif not all(_check_integrity(str(base / f), md5) for f, md5 in data_files):
            _download(spec, root)

    missing = [f for f, _ in data_files if not (base / f).is_file()]
    if allow_partial:
        have_train = any((base / f).is_file() for f, _ in spec.train_files)
        have_test = any((base / f).is_file() for f, _ in spec.test_files)
        if not (have_train and have_test):
            raise DataError(
                f"{spec.title} not found under {root}: expected {_files_summary(spec)} "
                f"(allow_partial needs at least one training batch and the test batch); "
                f"{_how_to_get(spec, root)}"
            )
    else:
        if missing:
            raise DataError(
                f"{spec.title} not found under {root}: expected {_files_summary(spec)}, "
                f"missing {', '.join(missing)}; {_how_to_get(spec, root)}"
            )
    raw_train = _read_files(base, spec.train_files)
    raw_test = _read_files(base, spec.test_files)
    md5 = {f: hashlib.md5(b).hexdigest() for f, b in {**raw_train, **raw_test}.items()}
    if not allow_partial:
        sums = manifest["md5"] if manifest is not None else dict(data_files)
        # A sum missing from a manifest fails the check.
        bad = [f for f, _ in data_files if md5.get(f) != sums.get(f)]
        if bad:
            raise DataError(
                f"{spec.title} under {root} fails the md5 check for {', '.join(bad)} "
                f"(partial or corrupt copy?); set data.allow_partial=true to read it anyway, "
                f"or re-download ({_how_to_get(spec, root)})"
            )
    train = _parse_split(base, raw_train, spec)
    test = _parse_split(base, raw_test, spec)
    del raw_train, raw_test
    if manifest is not None:
        full = (int(manifest["n_train"]), int(manifest["n_test"]))
    else:
        full = (spec.full_train, spec.full_test)
    partial = bool(missing) or (len(train.labels), len(test.labels)) != full
    # Synthetic data at warning level: it must not pass unnoticed in a real run's log.
    log.log(
        logging.WARNING if manifest is not None else logging.INFO,
        "%s%s at %s: %d train / %d test images%s",
        "SYNTHETIC " if manifest is not None else "",
        spec.title,
        base,
        len(train.labels),
        len(test.labels),
        f" (partial copy; missing: {', '.join(missing) or 'none'})" if partial else "",
    )
    return CifarData(train, test, partial=partial, synthetic=manifest is not None, root=root,
                     md5=md5)


def subset_indices(n_available: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a reproducible random subset of ``n`` of ``n_available`` images."""
    if n <= 0:
        raise ValueError(f"subset must be positive, got {n}")
    if n > n_available:
        raise DataError(f"subset={n} asks for more training images than the {n_available} found")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n_available, generator=g)[:n]
    return np.sort(idx.numpy())


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 64-bit seed for (run seed, epoch): reproducible per-epoch shuffling."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])


class ArrayDataset(Dataset):
    """HWC uint8 images + labels -> (transform(PIL image), label), like torchvision's CIFAR10."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        # A grey (H, W, 1) image (Fashion-MNIST) is a PIL "L" image of (H, W).
        image = image[..., 0] if image.shape[-1] == 1 else image
        return self.transform(Image.fromarray(image)), int(self.labels[i])


class TorchLoader:
    """A classic ``DataLoader`` (PIL transforms in ``num_workers`` processes) with the
    :class:`mbt.data.device_loader.DeviceLoader` interface, yielding batches on ``device``.

    The shuffle generator is reseeded from (seed, epoch) at each ``iter()``; the DataLoader
    derives its worker seeds from it too, so with ``num_workers > 0`` augmentation is also
    reproducible per epoch (workers are not persistent for that reason). With
    ``num_workers = 0`` augmentation draws from torch's global RNG.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        num_workers: int = 0,
        device: str | torch.device = "cpu",
        channels_last: bool = False,
    ):
        self.device = torch.device(device)
        self.seed = seed
        self.channels_last = channels_last
        self.epoch = 0
        self._gen = torch.Generator()
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=self._gen,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
        )

    @property
    def num_samples(self) -> int:
        return len(self.loader.dataset)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self._gen.manual_seed(epoch_seed(self.seed, self.epoch))
        self.epoch += 1
        return self._batches(iter(self.loader))

    def _batches(self, it):
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for x, y in it:
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
            yield x, y.to(self.device, non_blocking=True)
