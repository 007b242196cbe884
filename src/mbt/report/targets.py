"""Every report target, once: what it shows, which ledger records are its cells, how it is
built, and what its full protocol runs. ``python -m mbt.report <name>`` and the index
(``results/README.md``) read this list and nothing else. The analytic targets (Examples
3.6-3.7, Figure 2(a)) are computed from toy runs, not read from the ledger:
:data:`TOY_TARGETS`, which ``scripts/reproduce_toy.py`` (``make reproduce-toy``) runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import autolr, figures, mbt_gap, out_of_domain, tables
from .common import PLAIN, Shared, Target, lr_key, table2_setting
from .paper import LR_GRID
from .selection import select_majority_settings

__all__ = ["OTHER_RESULTS", "TARGETS", "TOY_TARGETS", "ToyTarget", "by_name", "names"]

_MBT_AT_1E2 = ("mbt_gd", "mbt_mmt", "mbt_nag")
TABLE2_BASELINES = ("sgd", "mmt", "nag", "adagrad", "adadelta", "rmsprop", "adam", "adamax")


def _mbt_at_1e2(optims: tuple[str, ...]):
    return lambda r: r.get("optim") in optims and lr_key(r.get("lr", 0)) == 0.01


def _table2_cell(r: dict) -> bool:
    """One of Table 2's cells in its setting (:func:`.common.table2_setting`): a baseline at
    one of the 9 start lrs or MBT at 1e-2."""
    return table2_setting(r) and (
        (r.get("optim") in TABLE2_BASELINES and lr_key(r.get("lr") or 0.0) in LR_GRID)
        or _mbt_at_1e2(_MBT_AT_1E2)(r))


TARGETS: tuple[Target, ...] = (
    Target(
        "table1", "Table 1", "lr found by MBT-GD, 9 start lrs × 7 batch sizes",
        kind="lr_search", cell_of=lambda r: (int(r["batch_size"]), lr_key(r["lr"])),
        build=tables.table1, variants=None,
        protocol_note="ResNet18 / CIFAR10, 20 random mini-batches per start lr, α = 1e-4, "
                      "β = 0.5"),
    # The presets share cells (conf/experiment: table2_mbt, table3 and fig3 make the same
    # ResNet18 runs at start lr 1e-2; common.Shared).
    Target(
        "table2", "Table 2", "best accuracy, 11 optimizers × 9 start lrs, ResNet18 / CIFAR10",
        kind="train", cell_of=lambda r: (r["optim"], lr_key(r["lr"])), build=tables.table2,
        protocol_note="ResNet18 / CIFAR10, 200 epochs, batch size 200",
        # autolr's cpu preset has Table 2's cpu settings, so its SGD/NAG/MBT runs are Table
        # 2's cells (one run key): whichever preset trained a cell first labels it.
        shared=Shared(("table3", "fig3", "autolr", "mbt_gap"), _table2_cell)),
    Target(
        "table3", "Table 3", "MBT-MMT / MBT-NAG accuracy, 5 models × CIFAR10/100",
        kind="train", cell_of=lambda r: (r["model"], r["dataset"], r["optim"]),
        build=tables.table3, protocol_note="200 epochs, start lr 1e-2",
        # autolr's cpu preset ran MBT-MMT's seeds 1-2 at 1e-2, Table 2's cells (one run
        # key), so Table 3's ResNet18 row takes them as Table 2 does.
        shared=Shared(("table2", "fig3", "mbt_gap", "autolr"),
                      _mbt_at_1e2(("mbt_mmt", "mbt_nag")))),
    Target(
        "fig2b", "Fig. 2(b)", "Two-way Backtracking GD lr vs iterate, full batch",
        kind="train", build=figures.fig2b, variants=None,
        # The variants Fig. 2(b)'s evidence compares (issue 13): start lr δ0 and α.
        cell_of=lambda r: (r.get("model"), r.get("dataset"), r.get("optim"),
                           lr_key(r.get("lr") or 0.0),
                           ((r.get("config") or {}).get("optim") or {}).get("builder", {})
                           .get("alpha")),
        protocol_note="ResNet18, full batch on 500 CIFAR10 images"),
    # Fig. 3's runs are also Table 3's ResNet18 cells and Table 2's MBT cells.
    Target(
        "fig3", "Fig. 3", "MBT-MMT / MBT-NAG lr per epoch, ResNet18, CIFAR10/100",
        kind="train", cell_of=lambda r: (r.get("dataset"), r.get("optim")), build=figures.fig3,
        protocol_note="ResNet18, CIFAR10 / CIFAR100, the Table 2 settings",
        shared=Shared(("table2", "table3"), lambda r: r.get("model") == "resnet18"
                      and _mbt_at_1e2(("mbt_mmt", "mbt_nag"))(r))),
    Target(
        "autolr", "Beyond: autolr", "automatic-lr methods vs tuned lr grids, tuning cost counted",
        kind="train", build=autolr.autolr, beyond_paper=True,
        # autolr cpu went from 3 epochs / 1 seed to Table 2's 8 epochs / 3 seeds: one
        # setting per report, the one most runs have.
        selector=select_majority_settings,
        # Its cpu SGD/NAG grid and MBT runs are Table 2's cells (see table2's shared).
        shared=Shared(("table2", "table3", "mbt_gap"), _table2_cell),
        cell_of=lambda r: (r.get("model"), r.get("dataset"), r.get("optim"),
                           lr_key(r.get("lr") or 0.0)),
        protocol_note="ResNet18 / CIFAR10, 200 epochs, batch 200; tuned baselines over the "
                      "paper's 9 start lrs"),
    # Three of its cells are Table 2's (MBT-MMT/NAG with the buffers cleared, NAG at 1e-2);
    # Table 2's presets or its own make them, whichever runs first (one run key).
    Target(
        "mbt_gap", "Beyond: MBT's gap", "why MBT trails the best tuned baseline in Table 2: "
        "momentum kept across searches, NAG at MBT's lr",
        kind="train", cell_of=mbt_gap.cell_of, build=mbt_gap.mbt_gap, beyond_paper=True,
        variants=frozenset({PLAIN, PLAIN + "+kept_momentum"}), make="mbt-gap",
        shared=Shared(("table2", "table3", "fig3", "autolr"), mbt_gap.is_cell),
        protocol_note="cpu only: Table 2's cpu cells (2000 real images, batch 100, 8 epochs)"),
    # Its runs are out_of_domain's and, for CIFAR-10, autolr's and Table 2's (same run
    # keys): its own selector, not the shared-cells rule (settings differ per task).
    Target(
        "out_of_domain", "Beyond: out of domain",
        "MBT-GD/MMT/NAG and 8 other automatic-lr methods vs tuned baselines, 3 tasks",
        kind="train", build=out_of_domain.out_of_domain, beyond_paper=True,
        selector=out_of_domain.select_runs, make="ood",
        cell_of=lambda r: (r.get("model"), r.get("dataset"), r.get("optim"),
                           lr_key(r.get("lr") or 0.0)),
        protocol_note="Fashion-MNIST 30 epochs, text 30 epochs, CIFAR-10 as autolr; 3 seeds; "
                      "tuned grids at seed 0"),
)


@dataclass(frozen=True)
class ToyTarget:
    """A target computed from analytic toy runs (:mod:`mbt.toy.reproduce`; CPU, float64,
    deterministic): ``build(out, quick)`` runs them and writes ``<out>/<name>.*``. The
    report itself never runs anything: only ``scripts/reproduce_toy.py`` calls ``build``."""

    name: str                              # output stem: results/<name>.{md,csv,png}
    title: str
    what: str                              # one line for the index
    command: str                           # what regenerates it
    only: str                              # its scripts/reproduce_toy.py --only value
    build: Callable[[Path, bool], None]


def _toy(function: str) -> Callable[[Path, bool], None]:
    def build(out: Path, quick: bool = False) -> None:
        # Imported here, not at the top: the report package reads the ledger and never
        # imports the code that runs anything (tests/test_packaging.py's layers).
        from mbt.toy import reproduce

        getattr(reproduce, function)(out, quick)
    return build


TOY_TARGETS: tuple[ToyTarget, ...] = (
    ToyTarget("toy_examples", "Examples 3.6-3.7", "toy examples, paper vs ours",
              "make reproduce-toy", "examples", _toy("examples")),
    ToyTarget("fig2a", "Fig. 2(a)", "Two-way Backtracking GD on the Mexican hat",
              "make reproduce-fig2a", "fig2a", _toy("fig2a")),
)
# Listed in the index when present: (stem, title, what, command).
OTHER_RESULTS = tuple((t.name, t.title, t.what, t.command) for t in TOY_TARGETS)


def names() -> tuple[str, ...]:
    return tuple(t.name for t in TARGETS)


def by_name(name: str) -> Target:
    for t in TARGETS:
        if t.name == name:
            return t
    from .common import ReportError

    raise ReportError(f"unknown target {name!r}; choose from {', '.join(names())}")
