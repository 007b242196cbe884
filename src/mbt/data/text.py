"""A byte-level character corpus for a small language model: the plain-text fortune files
of Debian's ``fortunes`` packages (``/usr/share/games/fortunes/``), or any folder of text.

Corpus: every regular file of the folder (symlinks such as ``*.u8``, the ``*.dat`` indexes
of strfile and hidden files are skipped) in sorted name order. A line holding only ``%``
(fortune's entry separator) becomes an empty line, so entries end up separated by a blank
line. Vocabulary: the 256 byte values, fixed whatever the corpus, so no character of the
test split can be unknown and ``num_classes`` does not depend on the files (the fortunes
are ASCII but for about ten lines of UTF-8: bits per byte = bits per character there).

Split by position: the last ``test_fraction`` of each file is test text, the rest training
text (per file rather than the end of the concatenation: the test set then holds every
file's style instead of the alphabetically last topics).

Batches keep the loop of the image classifiers unchanged: ``x`` is (B, T) byte ids, ``y``
the next bytes *flattened* to (B*T,), the shape of the (B*T, V) logits the character
models return (:mod:`mbt.models.char_transformer`). Cross-entropy and "accuracy" in
:mod:`mbt.loop` and the line searches are then per character (nats; next-character
accuracy) with no text-specific code there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cifar import SYNTHETIC_MANIFEST, DataError, epoch_seed

__all__ = ["INSTALL_HINT", "TextData", "TextLoader", "load_text", "write_text_corpus"]

log = logging.getLogger(__name__)

INSTALL_HINT = "sudo apt-get install fortunes (or: make data-ood)"
VOCAB = 256


@dataclass
class TextData:
    train: np.ndarray  # uint8 byte ids
    test: np.ndarray
    synthetic: bool
    root: Path
    md5: dict[str, str]  # of every file read

    @property
    def fingerprint(self) -> dict:
        """Sizes (in characters) and a hash of the files' md5s: enters the run key."""
        files = hashlib.sha256(json.dumps(sorted(self.md5.items())).encode()).hexdigest()
        return {"n_train": len(self.train), "n_test": len(self.test), "files": files[:16]}


def _corpus_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir()
                  if p.is_file() and not p.is_symlink() and p.suffix != ".dat"
                  and not p.name.startswith(".") and p.name != SYNTHETIC_MANIFEST)


def _strip_separators(raw: bytes) -> bytes:
    lines = raw.split(b"\n")
    return b"\n".join(b"" if line.rstrip(b"\r") == b"%" else line for line in lines)


def load_text(root: str | Path, *, test_fraction: float = 0.1) -> TextData:
    """Read the corpus under ``root`` and split it; :class:`DataError` (one line, with the
    install command) when the folder is missing or holds no text."""
    root = Path(root).expanduser().resolve()
    if not 0 < test_fraction < 1:
        raise DataError(f"data.test_fraction must be in (0, 1), got {test_fraction}")
    files = _corpus_files(root) if root.is_dir() else []
    if not files:
        raise DataError(f"no text corpus under {root} (expected plain-text fortune files); "
                        f"install it with: {INSTALL_HINT}")
    train, test, md5 = [], [], {}
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise DataError(f"cannot read {path}: {e.strerror or e}") from e
        md5[path.name] = hashlib.md5(raw).hexdigest()
        text = _strip_separators(raw).rstrip(b"\n") + b"\n\n"
        cut = len(text) - math.ceil(len(text) * test_fraction)
        train.append(text[:cut])
        test.append(text[cut:])
    data = TextData(np.frombuffer(b"".join(train), np.uint8).copy(),
                    np.frombuffer(b"".join(test), np.uint8).copy(),
                    synthetic=(root / SYNTHETIC_MANIFEST).is_file(), root=root, md5=md5)
    log.log(logging.WARNING if data.synthetic else logging.INFO,
            "%stext corpus at %s: %d files, %d train / %d test characters",
            "SYNTHETIC " if data.synthetic else "", root, len(files), len(data.train),
            len(data.test))
    return data


class TextLoader:
    """(x (B, T) int64, y (B*T,) int64) batches of ``block_size`` contexts from ``tokens``,
    with the interface of :class:`mbt.data.cifar.TorchLoader` (``len``, ``num_samples``,
    ``set_epoch``).

    An epoch covers the text once: non-overlapping windows from an offset drawn per epoch
    (training; 0 for evaluation), in an order shuffled per epoch, both reproducible from
    (seed, epoch). With ``limit`` (``data.subset``) a training epoch is the first ``limit``
    windows of that shuffle: a fresh random draw from the whole text each epoch, so short
    epochs still cover the corpus over a run. ``num_samples`` counts the windows of an
    epoch (the MBT rescaling rho = batch / size then compares windows with windows)."""

    def __init__(self, tokens: np.ndarray, *, block_size: int, batch_size: int,
                 shuffle: bool, seed: int = 0, device: str | torch.device = "cpu",
                 limit: int | None = None):
        # One window less than fits when shuffling, so every offset in [0, T) leaves room
        # for the last window's targets.
        fit = (len(tokens) - 1) // block_size - (1 if shuffle else 0)
        if fit < 1:
            raise DataError(f"a text split of {len(tokens)} characters is too short for "
                            f"data.block_size={block_size}")
        self.tokens = torch.as_tensor(tokens, dtype=torch.int64)
        self.block_size, self.batch_size = block_size, batch_size
        self.shuffle, self.seed, self.device = shuffle, seed, torch.device(device)
        self.fit = fit
        self.windows = fit if limit is None or not shuffle else min(fit, limit)
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return self.windows

    def __len__(self) -> int:
        return math.ceil(self.windows / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        self.epoch += 1
        t = self.block_size
        offset = int(torch.randint(0, t, (1,), generator=gen)) if self.shuffle else 0
        starts = offset + t * torch.arange(self.fit)
        if self.shuffle:
            starts = starts[torch.randperm(self.fit, generator=gen)[:self.windows]]
        span = torch.arange(t + 1)
        for i in range(len(self)):
            chunk = self.tokens[starts[i * self.batch_size:(i + 1) * self.batch_size, None]
                                + span]
            yield (chunk[:, :-1].to(self.device), chunk[:, 1:].reshape(-1).to(self.device))


def write_text_corpus(root: str | Path, n_chars: int = 20000, seed: int = 0) -> Path:
    """A tiny generated fortune-style corpus (three files, ``%`` separators) under ``root``,
    marked synthetic by a ``SYNTHETIC.json``; learnable: words from a small fixed set."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away"]
    for name in ("alpha", "beta", "gamma"):
        entries, size = [], 0
        while size < n_chars // 3:
            entry = " ".join(rng.choice(words, size=int(rng.integers(4, 12)))) + ".\n"
            entries.append(entry)
            size += len(entry) + 2
        (root / name).write_text("%\n".join(entries))
        (root / f"{name}.dat").write_bytes(b"\0" * 24)  # strfile's index: must be skipped
    (root / SYNTHETIC_MANIFEST).write_text(json.dumps(
        {"synthetic": True, "writer": "mbt.data.text.write_text_corpus", "seed": seed}) + "\n")
    return root
