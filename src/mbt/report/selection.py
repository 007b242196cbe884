"""Choosing the runs of a report target from the ledger: current key schema only, one
sample per (cell, seed, init), the protocol covering the most cells, shared cells joined."""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mbt import ledger

from .common import PLAIN, PROTOCOLS, ReportError, Target, get, plural, variant

__all__ = ["Selection", "choose_protocol", "experiments_of", "load_ledger",
           "majority_settings", "one_per_cell_and_seed", "select", "select_majority_settings"]

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """The runs of one target under one protocol."""

    target: str
    protocol: str | None
    records: list[dict]
    spec: Target | None = None
    cells: int = 0
    others: dict[str, int] = field(default_factory=dict)  # other protocol -> cells covered
    borrowed: dict[str, int] = field(default_factory=dict)  # other experiment -> runs shared
    notes: list[str] = field(default_factory=list)  # what a custom selector left out, and why


# What every target's cell_of, filter or label reads of a record: a hand edit that drops
# one (or nulls it) would end the report in a KeyError/TypeError.
# (ledger.read already refuses a bool or a string where a number belongs.)
_REQUIRED = {"model": str, "dataset": str, "optim": str, "lr": numbers.Real,
             "batch_size": numbers.Real}


def _unusable(record: dict) -> str | None:
    if record.get("status") not in ledger.FINAL_STATUSES:
        return None
    lacking = [k for k, kind in _REQUIRED.items() if not isinstance(record.get(k), kind)]
    if not lacking:
        return None
    return (f"record {record.get('run_key', '?')} has no {', no '.join(lacking)} "
            f"(a hand edit?); not reported")


def load_ledger(path: str | Path) -> list[dict]:
    """Finished and diverged records of the current key schema; a ``run_key`` written twice
    keeps its last record. Lines that are not records, or records without a field every
    report reads (a hand edit), are reported by :func:`ledger.read`, one warning each;
    records of an older key schema are counted and skipped with one warning (their keys
    cannot be compared with today's: ``python -m mbt.ledger_migrate`` re-keys them).
    A missing file is a :class:`ReportError`, never an empty report."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"no ledger at {path} (run the experiments first, or pass "
                          f"--ledger results/ledger.jsonl for the committed runs)")
    by_key: dict[str, dict] = {}
    old: list[str] = []
    migrated: set[str] = set()
    for i, record in enumerate(ledger.read(path, check=_unusable)):
        if record.get("status") not in ledger.FINAL_STATUSES:
            continue
        if record.get("key_schema") != ledger.KEY_SCHEMA:
            old.append(str(record.get("run_key")))
            continue
        if record.get("migrated_from"):
            migrated.add(record["migrated_from"])
        by_key[record.get("run_key") or f"#{i}"] = record
    left = [k for k in old if k not in migrated]
    if left:
        log.warning("%s: skipped %s of an older key schema (no data fingerprint in their run "
                    "keys); `python -m mbt.ledger_migrate %s` re-keys them", path,
                    plural(len(left), "record"), path)
    return list(by_key.values())


def one_per_cell_and_seed(records: list[dict], target: str,
                           cell_of: Callable[[dict], Hashable]) -> list[dict]:
    """One sample per (cell, seed, variant): the newest (last in ledger order) wins, with a
    warning naming the runs it replaces (e.g. the same cell on other data). A variant
    (:func:`~mbt.report.common.variant`: BatchNorm init, MBT bn_slices) is never pooled."""
    newest: dict[Hashable, dict] = {}
    replaced: dict[Hashable, list[str]] = {}
    for r in records:
        k = (cell_of(r), r.get("seed"), variant(r))
        if k in newest:
            replaced.setdefault(k, []).append(str(newest[k].get("run_key")))
        newest[k] = r
    for k, keys in replaced.items():
        log.warning("%s: cell %s seed %s counted once, from %s; not counted: %s", target,
                    k[0], k[1], newest[k].get("run_key"), ", ".join(keys))
    return list(newest.values())


def experiments_of(r: dict) -> set:
    """The experiments a record counts for: its own and any it was shared with."""
    return {r.get("experiment"), *(r.get("experiments") or ())}


def _settings(r: dict) -> tuple:
    # What the presets of one protocol fix for every cell (the sweep varies the rest).
    return (r.get("epochs"), r.get("batch_size"), get(r, "data", "subset"),
            get(r, "data", "block_size"))


def shown_variants(records: list[dict], spec: Target) -> list[dict]:
    """The records of the variants ``spec`` shows (``spec.variants``; None: every one),
    with a warning that names the variants left out and how many runs each has."""
    shown = spec.variants
    if shown is None:
        return records
    other = Counter(variant(r) for r in records if variant(r) not in shown)
    if other:
        what = ("plain runs only: torch init, one BatchNorm slice, momentum cleared by MBT"
                if shown == {PLAIN} else "only " + ", ".join(sorted(shown)))
        log.warning("%s: %s of other variants left out (this report shows %s): %s",
                    spec.name, plural(sum(other.values()), "run"), what,
                    ", ".join(f"{v} {n}" for v, n in sorted(other.items())))
    return [r for r in records if variant(r) in shown]


def select(records: Iterable[dict], spec: Target, protocol: str | None = None) -> Selection:
    """The records of target ``spec`` (``record["experiment"]``, ``spec.kind``) under
    ``protocol``; by default the protocol covering the most cells, ties going to
    full > quick > smoke.

    With ``spec.shared``, runs recorded under those experiments that are cells of the
    target join, when they have the settings (epochs, batch size, subset) of one of the
    target's own runs under that protocol, or, when the target has none of its own there,
    those of the first experiment in ``shared.experiments`` that has runs.
    A target takes the variants in ``spec.variants`` (by default the plain runs: torch init,
    one BatchNorm slice, MBT momentum cleared) and warns of the others. A target with its
    own ``selector`` chooses its runs itself."""
    if spec.selector is not None:
        return spec.selector(records, spec, protocol)
    target, cell_of, shared = spec.name, spec.cell_of, spec.shared
    experiments = {target, *(shared.experiments if shared else ())}
    records = [r for r in records
               if r.get("kind", "train") == spec.kind and experiments_of(r) & experiments]
    # after the experiment filter, so that the warning counts runs of the target's presets
    # (some of another preset's may still not fit its cells)
    records = shown_variants(records, spec)
    own: dict[str, list[dict]] = {}
    other: dict[str, list[dict]] = {}
    for r in records:
        p = str(r.get("protocol"))
        if target in experiments_of(r):
            own.setdefault(p, []).append(r)
        elif shared and experiments_of(r) & set(shared.experiments) and shared.fits(r):
            other.setdefault(p, []).append(r)
    by_protocol: dict[str, list[dict]] = {}
    for p in {*own, *other}:
        mine = own.get(p, [])
        settings = {_settings(r) for r in mine}
        if not settings and shared:
            # None of its own runs yet: the settings of the first sharing experiment that has
            # runs (Table 3 takes Table 2's 8-epoch runs, not Figure 3's 30-epoch ones).
            first = next((e for e in shared.experiments
                          if any(e in experiments_of(r) for r in other.get(p, []))), None)
            settings = {_settings(r) for r in other.get(p, []) if first in experiments_of(r)}
        by_protocol[p] = mine + [r for r in other.get(p, [])
                                 if not settings or _settings(r) in settings]
    by_protocol = {p: rs for p, rs in by_protocol.items() if rs}
    cells = {p: len({(cell_of(r), variant(r)) for r in rs}) for p, rs in by_protocol.items()}

    chosen, others = choose_protocol(cells, protocol)
    chosen_records = one_per_cell_and_seed(by_protocol.get(chosen, []), target, cell_of) \
        if chosen is not None else []
    borrowed: dict[str, int] = {}
    for r in chosen_records:
        if target not in experiments_of(r):
            borrowed[str(r.get("experiment"))] = borrowed.get(str(r.get("experiment")), 0) + 1
    return Selection(target, chosen if chosen_records else protocol, chosen_records, spec,
                     cells.get(chosen, 0), others, borrowed)


def _fmt_settings(s: tuple) -> str:
    epochs, batch, subset, block = s
    return (f"{epochs} epochs, batch {batch}" + (f", subset {subset}" if subset else "")
            + (f", context {block}" if block else ""))


def majority_settings(runs: list[dict], votes: list[dict], what: str, who: str
                      ) -> tuple[list[dict], str | None]:
    """``runs`` at the settings (epochs, batch, subset) most of ``votes`` share, and a note
    naming what was left out (None: nothing was). One protocol's preset can change between
    sessions (autolr cpu went from 3 to 8 epochs); its older records stay in the append-only
    ledger and must never be pooled with the new ones. Ties go to the larger settings."""
    counts = Counter(_settings(r) for r in votes or runs)
    if not counts:
        return runs, None
    # None (all the images, the default context) is the largest setting
    best = max(counts, key=lambda s: (counts[s], tuple(math.inf if v is None else v for v in s)))
    kept = [r for r in runs if _settings(r) == best]
    other = Counter(_settings(r) for r in runs if _settings(r) != best)
    if not other:
        return kept, None
    left = "; ".join(f"{_fmt_settings(s)}: {plural(n, 'run')}" for s, n in sorted(
        other.items(), key=lambda kv: str(kv[0])))
    return kept, (f"{what}: the runs with {_fmt_settings(best)} ({who}); left out, other "
                  f"settings: {left}.")


def select_majority_settings(records: Iterable[dict], spec: Target,
                             protocol: str | None = None) -> Selection:
    """:func:`select`, then only the runs at the settings most of them share (autolr)."""
    sel = select(records, dataclasses.replace(spec, selector=None), protocol)
    kept, note = majority_settings(sel.records, sel.records, spec.title, "most of its runs")
    if note is None:
        return sel
    return dataclasses.replace(sel, records=kept, cells=len({spec.cell_of(r) for r in kept}),
                               notes=[*sel.notes, note])


def choose_protocol(cells: dict[str, int], protocol: str | None
                    ) -> tuple[str | None, dict[str, int]]:
    """(``protocol``, or the one covering the most cells, ties going to full > quick > cpu >
    smoke; the other protocols' cell counts in that order)."""
    def rank(p: str) -> tuple[int, int]:
        return (-cells[p], PROTOCOLS.index(p) if p in PROTOCOLS else len(PROTOCOLS))

    chosen = protocol if protocol is not None else min(cells, key=rank, default=None)
    return chosen, {p: cells[p] for p in sorted(cells, key=rank) if p != chosen}
