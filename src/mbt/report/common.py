"""Small shared pieces of :mod:`mbt.report`: what a report target is, where outputs go,
cell statistics and number formatting. Reading runs is :mod:`.selection` (ledger) and
:mod:`.wandb_source` (W&B); writing is :mod:`.writers`; the targets are :mod:`.targets`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbt.ledger import PROTOCOLS  # the preference order of reports

__all__ = [
    "DISPLAY", "PROTOCOLS", "Context", "ReportError", "Shared", "Stat", "Target",
    "accuracies", "bn_init", "bn_slices", "chance_acc", "fmt_delta", "fmt_lr", "get", "join_and",
    "lr_key", "plural", "reset_momentum", "round_or_none", "run_seconds", "stat", "variant",
]

_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
# The paper's names for our config names.
DISPLAY = {
    "sgd": "SGD", "mmt": "MMT", "nag": "NAG", "adagrad": "Adagrad", "adadelta": "Adadelta",
    "rmsprop": "RMSprop", "adam": "Adam", "adamax": "Adamax", "mbt_gd": "MBT-GD",
    "mbt_mmt": "MBT-MMT", "mbt_nag": "MBT-NAG", "two_way_gd": "Two-way Backtracking GD",
    "resnet18": "ResNet18", "preact_resnet18": "PreActResNet18", "mobilenetv2": "MobileNetV2",
    "senet18": "SENet18", "densenet121": "DenseNet121", "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
}


class ReportError(Exception):
    """A one-line, user-facing reason why a report cannot be built."""

@dataclass
class Context:
    """Where outputs go and how to name the commands that regenerate them."""

    out: Path
    paper_dir: Path | None = None
    source: str = "runs/ledger.jsonl"   # shown in headers
    report_args: str = ""               # extra CLI args to repeat, e.g. " --ledger x.jsonl"
    force: bool = False                 # replace committed outputs whatever they hold


@dataclass(frozen=True)
class Shared:
    """Cells ``target`` shares with other experiments' presets: ``experiment`` is not part of
    the run key, so a run one preset already made is skipped by the next and stays
    recorded under the first (e.g. Table 3's ResNet18 cells are Fig. 3's runs)."""

    experiments: tuple[str, ...]
    fits: Callable[[dict], bool]   # the record is a cell of the target


# The variant of a plain run: torch BatchNorm init, one slice, MBT momentum cleared.
PLAIN = "torch"

@dataclass(frozen=True)
class Target:
    """One report target: everything :mod:`mbt.report` needs to know about it, in one place
    (the list is :data:`mbt.report.targets.TARGETS`)."""

    name: str                       # CLI name and output stem: results/<name>.{md,csv,png}
    title: str                      # "Table 1"
    what: str                       # one line for the index
    kind: str                       # ledger record kind: "train" | "lr_search"
    cell_of: Callable[[dict], Hashable]  # a record's cell (the key n seeds share)
    build: Callable[..., list[Path]]  # (Selection, Context) -> files written
    protocol_note: str              # what the `full` protocol runs (the paper's, or ours)
    beyond_paper: bool = False      # not one of the paper's tables/figures
    shared: Shared | None = None    # cells made by other presets' runs
    # The variants it shows (:func:`variant`); None: every one. Others are left out with a
    # warning that names them.
    variants: frozenset[str] | None = frozenset({PLAIN})
    # Its own choice of runs (records, spec, protocol) -> Selection, where the plain one
    # (:func:`.selection.select`) cannot express it (out_of_domain: runs of several presets
    # with per-task settings).
    selector: Callable[..., Any] | None = None
    make: str | None = None         # its Makefile target is reproduce-<make> (default: name)

    @property
    def reproduce(self) -> str:
        return f"reproduce-{self.make or self.name}"


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float   # sample std (ddof 1); 0 for one value
    n: int

    def fmt(self, digits: int = 2) -> str:
        if self.n > 1:
            return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"
        return f"{self.mean:.{digits}f}"

def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def join_and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def round_or_none(v, digits: int = 4) -> float | None:
    return None if v is None else round(float(v), digits)


def run_seconds(r: dict) -> tuple[float, bool]:
    """(seconds the run took, estimated): ``wall_time``, else the sum of its epoch times
    (W&B records carry no wall_time; epoch times leave out evaluation)."""
    wall = r.get("wall_time")
    if wall is not None and math.isfinite(float(wall)):
        return float(wall), False
    times = (r.get("history") or {}).get("epoch_time") or []
    return float(sum(t for t in times if t is not None)), True


def stat(values: Iterable[float | None]) -> Stat | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return Stat(statistics.fmean(vals), std, len(vals))

def lr_key(lr: float) -> float:
    """A learning rate rounded so 1e-2 from YAML, JSON and the paper CSV compare equal."""
    return float(f"{float(lr):.6g}")

def fmt_lr(lr: float) -> str:
    """``1e-2`` for exact powers of ten (the paper's grid), ``%g`` otherwise."""
    lr = float(lr)
    if lr > 0:
        e = round(math.log10(lr))
        if math.isclose(lr, 10.0 ** e, rel_tol=1e-9):
            return f"1e{e}"
    return f"{lr:g}"

def fmt_delta(ours: float | None, paper: float | None, digits: int = 2) -> str:
    if ours is None or paper is None or not math.isfinite(paper):
        return ""
    return f"{ours - paper:+.{digits}f}"

def chance_acc(record: dict) -> float:
    """Chance accuracy in percent, 100 / number of classes (how the paper prints divergence)."""
    n = (record.get("data") or {}).get("num_classes") or _NUM_CLASSES.get(record.get("dataset"))
    return 100.0 / n if n else float("nan")

def accuracies(record: dict, *, diverged_best: str = "chance"
               ) -> tuple[float | None, float | None, bool]:
    """(best, final, diverged). A diverged run's final accuracy is chance; its best is
    chance too (``diverged_best="chance"``), or the best finite epoch it reached
    (``"epoch"``: what the published code reports, as it never stops a run; the paper's
    10.19 / 10.22 / 10.01 cells fit that; docs/fidelity.md)."""
    if record.get("status") == "diverged":
        c = chance_acc(record)
        best = record.get("best_test_acc")
        finite = isinstance(best, int | float) and math.isfinite(best)
        return (best if diverged_best == "epoch" and finite else c), c, True
    return record.get("best_test_acc"), record.get("final_test_acc"), False

def bn_init(r: dict) -> str:
    """The record's ``model.bn_init`` (records from before it existed: ``torch``)."""
    return r.get("bn_init") or get(r, "config", "model", "bn_init") or "torch"

def bn_slices(r: dict) -> int:
    """The record's ``optim.builder.bn_slices`` (the MBT search's BatchNorm slices; 1, the
    published code on one GPU, where it is absent)."""
    return int(get(r, "config", "optim", "builder", "bn_slices", default=1) or 1)

def reset_momentum(r: dict) -> bool:
    """The record's ``optim.builder.reset_momentum`` (MBT-MMT/NAG; True, the published
    code's, where absent)."""
    return bool(get(r, "config", "optim", "builder", "reset_momentum", default=True))


def seed_order(seed) -> tuple:
    """Sort key for seeds: integers in numeric order (2 before 10), then anything else by
    its text, None last."""
    return (seed is None, not isinstance(seed, int), seed if isinstance(seed, int) else str(seed))


def tuned_lr(scores: dict[float, float | None]) -> float:
    """The start lr a tuner picks: the best score (larger is better; None or NaN is the worst),
    ties going to the larger lr. Every report tunes a baseline on one seed (seed 0) with this
    rule, the one :mod:`mbt.report.best_lr` sends the extra seeds to."""
    def score(lr: float) -> float:
        v = scores[lr]
        return v if v is not None and math.isfinite(v) else -math.inf
    return max(scores, key=lambda lr: (score(lr), lr))


def table2_setting(r: dict) -> bool:
    """A ResNet18 / CIFAR-10 run without a divergence cut-off: Table 2's setting (it never
    stops a run early; autolr's non-cpu presets do, and those runs are other cells)."""
    return (r.get("model") == "resnet18" and r.get("dataset") == "cifar10"
            and get(r, "config", "trainer", "diverge_factor") is None)


def variant(r: dict) -> str:
    """What separates runs of one cell that a report must never pool: the BatchNorm init,
    ``+slices<k>`` for an MBT search over ``k`` BatchNorm slices (``legacy+slices2``),
    ``+kept_momentum`` for MBT-MMT/NAG that keep their momentum across searches, and
    ``+subset<n>`` for a learning-rate search over ``n`` of the training images (the data
    reuse ablation of Table 1). A training run's subset is not a variant: it is a setting
    the protocol fixes for every cell (``selection._settings``)."""
    k = bn_slices(r)
    v = bn_init(r) + (f"+slices{k}" if k != 1 else "")
    v += "" if reset_momentum(r) else "+kept_momentum"
    n = get(r, "data", "subset")
    return v + (f"+subset{n}" if r.get("kind") == "lr_search" and n is not None else "")

def get(node: dict, *keys, default=None):
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            return default
        node = node[k]
    return node

