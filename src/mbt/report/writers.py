"""Writing reports: the provenance header every output starts with, the stamp that guards
committed results against being replaced by less, and the file writers."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .common import PROTOCOLS, Context, ReportError, get, plural, variant
from .selection import Selection

__all__ = ["cells_by_commit", "cells_phrase", "commands", "commits_of", "guard", "header",
           "md_table", "read_stamp", "stamp", "write_csv", "write_md"]

log = logging.getLogger(__name__)

_STAMP = re.compile(r"^<!-- mbt-report (\{.*\}) -->$")


def _values(records: list[dict], key: Callable[[dict], Any]) -> list:
    seen: dict = {}
    for r in records:
        v = key(r)
        if v is not None:
            seen[v] = seen.get(v, 0) + 1
    return list(seen.items())

def _join(items: list, fmt=str) -> str:
    def order(kv):  # numbers by value (12 before 100), then the rest by text
        v = kv[0]
        number = isinstance(v, int | float) and not isinstance(v, bool)
        return (0, v, "") if number else (1, 0, str(v))

    items = sorted(items, key=order)
    if len(items) == 1:
        return fmt(items[0][0])
    return ", ".join(f"{fmt(v)} ×{n}" for v, n in items) if items else "—"

def commits_of(r: dict) -> list[str]:
    """The commits that trained the run (``trained_at_commits``, per epoch), else the one
    that recorded it (records from before per-epoch commits); 8 characters each."""
    trained = r.get("trained_at_commits")
    if trained:
        return [c.split("+")[0][:8] + (" (dirty)" if c.endswith("+dirty") else "")
                for c in trained]
    c = r.get("git_commit")
    if not c:
        return []
    dirty = r.get("git_dirty")
    return [str(c)[:8] + (" (dirty)" if dirty else "" if dirty is False else " (dirty?)")]

def _commit(r: dict) -> str | None:
    return ", ".join(commits_of(r)) or None

def _train_images(r: dict) -> str | None:
    n = get(r, "data", "num_train")
    if n is None:
        return None
    return f"{n} (random subset)" if get(r, "data", "subset") else str(n)

def commands(target: str, protocol: str | None, ctx: Context,
             make: str | None = None) -> tuple[str, str]:
    p = protocol or "full"
    return (f"make {make or 'reproduce-' + target} PROTOCOL={p}",
            f"python -m mbt.report {target} --protocol {p}{ctx.report_args}")

def header(title: str, sel: Selection, ctx: Context, notes: Iterable[str] = ()) -> list[str]:
    """Markdown lines: title, loud warnings (synthetic / partial data, not the paper's
    protocol), then a provenance table (protocol, runs, seeds, epochs, devices, commits).

    Longer than 60 lines: each provenance row is a few lines of its own, in the order the
    table shows them."""
    rs = sel.records
    n = len(rs)
    lines = [stamp(sel.target, sel.protocol, n, sel.cells), f"# {title}", ""]
    warnings = []
    synthetic = sum(bool(r.get("synthetic") or get(r, "data", "synthetic")) for r in rs)
    partial = sum(bool(get(r, "data", "partial")) for r in rs)
    unknown = sum(r.get("synthetic") is None and get(r, "data", "synthetic") is None
                  for r in rs)
    if synthetic:
        warnings.append(f"**WARNING: {synthetic} of {n} runs trained on SYNTHETIC data (no "
                        "CIFAR found): these numbers say nothing about the paper.**")
    if partial:
        warnings.append(f"**WARNING: {partial} of {n} runs used a PARTIAL copy of the data "
                        "set (fewer images than CIFAR has).**")
    if unknown:
        warnings.append(f"**WARNING: for {unknown} of {n} runs the data actually loaded is "
                        "unknown (W&B does not record it; the ledger does).**")
    note = sel.spec.protocol_note if sel.spec else "?"
    if sel.protocol != "full" and not (sel.spec and sel.spec.beyond_paper):
        warnings.append(f"**Protocol `{sel.protocol}` is NOT the paper's protocol "
                        f"({note}): compare trends, not numbers.**")
    elif sel.protocol != "full":
        warnings.append(f"**Protocol `{sel.protocol}` is NOT this experiment's full protocol "
                        f"({note}): compare trends, not numbers.**")
    for w in warnings:
        lines += [f"> {w}", ">"]
    if warnings:
        lines[-1] = ""

    statuses = _values(rs, lambda r: r.get("status"))
    run_line = plural(n, "run") + (f" ({_join(statuses)})" if len(statuses) > 1 else
                         f" ({statuses[0][0]})" if statuses else "")
    early = sum(bool(r.get("early_stopped")) for r in rs)
    if early:
        run_line += f", {early} stopped early by the MBT controller"
    others = ", ".join(f"{p}: {plural(c, 'cell')}" for p, c in sel.others.items())
    make_cmd, report_cmd = commands(sel.target, sel.protocol, ctx,
                                    sel.spec.reproduce if sel.spec else None)
    if sel.borrowed:
        run_line += "; " + ", ".join(f"{plural(k, 'run')} recorded under experiment `{e}`"
                                     for e, k in sorted(sel.borrowed.items())) + \
            " (the same runs: the run key leaves out the experiment)"
    rows = [
        ("protocol", f"`{sel.protocol}`" + (f" (also in the source: {others})" if others else "")),
        ("runs", run_line + "; " + cells_phrase(sel)),
        ("seeds", ", ".join(str(s) for s, _ in sorted(_values(rs, lambda r: r.get("seed")))
                            ) or "—"),
    ]
    if any("epochs" in r for r in rs):
        done = [r.get("epochs_completed") for r in rs if r.get("epochs_completed") is not None]
        rows.append(("epochs", _join(_values(rs, lambda r: r.get("epochs")))
                     + (f" (completed {min(done)}–{max(done)})" if done else "")))
    rows += [
        ("batch size", _join(_values(rs, lambda r: r.get("batch_size")))),
        ("model / data", _join(_values(rs, lambda r: f"{r.get('model')} / {r.get('dataset')}"))),
        ("training images", _join(_values(rs, _train_images))),
        ("device(s)", _join(_values(rs, lambda r: r.get("device_name") or r.get("device")))),
        ("commit(s)", _join(_values(rs, _commit))),
        *([("cells by commit", by_commit)] if (by_commit := cells_by_commit(sel)) else []),
        ("source", f"`{ctx.source}`"),
        ("regenerate", f"`{make_cmd}` (runs what is missing, then this report); "
                       f"`{report_cmd}` (report only)"),
    ]
    lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    for note in notes:
        lines += [note, ""]
    return lines


def cells_by_commit(sel: Selection) -> str | None:
    """Where a target's runs come from different commits, which cells each commit made
    (the commit with the most cells as "the other N"); None where one commit made all."""
    by: dict[str, set] = {}
    for r in sel.records if sel.spec is not None else ():
        by.setdefault(_commit(r) or "unknown", set()).add(sel.spec.cell_of(r))
    if len(by) < 2:
        return None
    most = max(by, key=lambda c: (len(by[c]), c))

    def cell(c) -> str:
        return "/".join(str(v) for v in c) if isinstance(c, tuple) else str(c)

    parts = [f"{c}: {', '.join(sorted(map(cell, cells)))}" for c, cells in sorted(by.items())
             if c != most]
    return "; ".join(parts) + f"; {most}: all the others ({plural(len(by[most]), 'cell')})"


def cells_phrase(sel: Selection) -> str:
    """``75 cells``; with several variants (BatchNorm init, slices, subset), the target's own cells
    (batch size, lr, ...) and the cells each variant covers, so that a variant's runs do
    not read as extra cells. ``sel.cells`` (the overwrite guard's unit) counts each
    (cell, variant) pair instead."""
    by_variant: dict[str, set] = {}
    for r in sel.records if sel.spec is not None else ():
        by_variant.setdefault(variant(r), set()).add(sel.spec.cell_of(r))
    if len(by_variant) < 2:
        return plural(sel.cells, "cell")
    cells = len(set().union(*by_variant.values()))
    per = ", ".join(f"{v} {len(c)}" for v, c in sorted(by_variant.items(),
                                                       key=lambda kv: (-len(kv[1]), kv[0])))
    return f"{plural(cells, 'cell')} (per variant: {per})"


def stamp(target: str, protocol: str | None, runs: int, cells: int) -> str:
    """The first line of every report .md: what it was built from, for the overwrite guard."""
    return "<!-- mbt-report " + json.dumps({"target": target, "protocol": protocol,
                                            "runs": runs, "cells": cells}) + " -->"

def read_stamp(path: Path) -> dict | None:
    """The stamp of an existing report file, or None (absent, or written before stamps)."""
    try:
        with path.open() as fh:
            m = _STAMP.match(fh.readline().strip())
    except OSError:
        return None
    return json.loads(m.group(1)) if m else None

def protocol_rank(protocol: str | None) -> int:
    """0 for full, larger for lower protocols (the order of :data:`PROTOCOLS`)."""
    return PROTOCOLS.index(protocol) if protocol in PROTOCOLS else len(PROTOCOLS)

def guard(target: str, protocol: str | None, runs: int, cells: int, out: Path,
          force: bool) -> Path:
    """Where ``target``'s outputs may go without destroying committed results.

    A lower protocol never replaces a higher one's files: it is written to
    ``<out>/<protocol>/`` instead (with a warning). The same protocol built from fewer runs
    or cells (an empty or partial ledger) is refused with :class:`ReportError`.
    ``force`` writes in place whatever is there."""
    old = read_stamp(out / f"{target}.md")
    if force or old is None:
        return out
    if protocol_rank(protocol) > protocol_rank(old.get("protocol")):
        log.warning("%s: %s holds protocol %s (%s); writing the %s report to %s instead "
                    "(--force replaces it)", target, out / f"{target}.md", old["protocol"],
                    plural(old["runs"], "run"), protocol, out / str(protocol))
        return out / str(protocol)
    if protocol == old.get("protocol") and (runs < old["runs"] or cells < old["cells"]):
        raise ReportError(f"{target}: {out / (target + '.md')} holds {plural(old['runs'], 'run')}"
                          f" / {plural(old['cells'], 'cell')} of protocol {protocol}; this "
                          f"ledger gives {runs} / {cells}: not replacing it (wrong --ledger? "
                          f"--force replaces it)")
    return out

def write_md(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
    return path

def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path

def md_table(columns: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join("—" if v in (None, "") else str(v) for v in row) + " |"
            for row in rows]
    return out
