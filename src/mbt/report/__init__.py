"""``mbt.report``: the paper's tables and figures rebuilt from the run ledger, never by training.

``python -m mbt.report <table1|table2|table3|fig2b|fig3|autolr|out_of_domain|mbt_gap|all>`` writes
``results/<target>.{md,csv}`` (+ ``.png`` for figures, Table 1 and autolr), each beside the
paper's numbers (``results/paper/*.csv``) with a header naming protocol, devices, seeds,
commits and data flags; ``all`` also rewrites the index ``results/README.md``. ``autolr``
goes beyond the paper: automatic-lr methods against tuned lr grids, tuning cost counted;
``out_of_domain`` asks the same on Fashion-MNIST, a character language model and CIFAR-10;
``mbt_gap`` puts controls beside Table 2's MBT cells to find why they trail tuned NAG.

Library use::

    from mbt.report import build, load_ledger
    result = build("table2", load_ledger("runs/ledger.jsonl"), out=Path("results"))
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .common import Context, ReportError, plural
from .selection import Selection, load_ledger, select
from .targets import OTHER_RESULTS, TARGETS, by_name, names
from .wandb_source import load_wandb
from .writers import cells_phrase, commands, commits_of, guard, md_table, stamp, write_md

__all__ = ["TARGETS", "BuildResult", "Context", "ReportError", "build", "load_ledger",
           "load_wandb", "missing_message", "names", "status_line", "write_index"]

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    target: str
    selection: Selection
    written: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.written)


def build(target: str, records: list[dict], out: str | Path = "results", *,
          protocol: str | None = None, ctx: Context | None = None) -> BuildResult:
    """Write ``target``'s outputs from ``records``; writes nothing when it has no runs."""
    ctx = ctx or Context(out=Path(out))
    spec = by_name(target)
    sel = select(records, spec, protocol)
    if not sel.records:
        return BuildResult(target, sel)
    where = guard(target, sel.protocol, len(sel.records), sel.cells, ctx.out, ctx.force)
    if where != ctx.out:
        ctx = dataclasses.replace(ctx, out=where)
    written = spec.build(sel, ctx)
    log.info("%s: wrote %s", target, ", ".join(map(str, written)))
    return BuildResult(target, sel, written)


def missing_message(sel: Selection) -> str:
    """One line: which command produces the runs ``sel`` lacks."""
    p = sel.protocol
    where = f"no {p} runs" if p else "no runs"
    also = (f" (present: {', '.join(sel.others)})" if sel.others and p else "")
    make = sel.spec.reproduce if sel.spec else f"reproduce-{sel.target}"
    cmd = f"make {make}" + (f" PROTOCOL={p}" if p else "")
    return f"{sel.target}: {where} of experiment {sel.target!r}{also}; `{cmd}` produces them"


def status_line(sel: Selection) -> str:
    """``full · 75 runs / 75 cells · seeds 0 1 · commit abc12345`` or ``not run``; the cell
    count is the table header's (:func:`~mbt.report.writers.cells_phrase`)."""
    if not sel.records:
        return "not run"
    seeds = sorted({str(r.get("seed")) for r in sel.records})
    commits = sorted({c.split(" ")[0] for r in sel.records for c in commits_of(r)})
    flags = [f for f, on in (("SYNTHETIC data", any(r.get("synthetic") for r in sel.records)),
                             ("partial data", any((r.get("data") or {}).get("partial")
                                                  for r in sel.records))) if on]
    parts = [sel.protocol or "?", f"{plural(len(sel.records), 'run')} / {cells_phrase(sel)}",
             f"seeds {' '.join(seeds)}", f"commit {', '.join(commits) or '?'}", *flags]
    return " · ".join(parts)


def write_index(out: str | Path, records: list[dict], *, protocol: str | None = None,
                ctx: Context | None = None) -> Path:
    """Write ``<out>/README.md``: every target with its status and the commands."""
    out = Path(out)
    ctx = ctx or Context(out=out)
    rows, total, cells = [], 0, 0
    for spec in TARGETS:
        sel = select(records, spec, protocol)
        files = ", ".join(f"[`{p.name}`]({p.name})" for p in sorted(out.glob(f"{spec.name}.*")))
        make_cmd, report_cmd = commands(spec.name, sel.protocol, ctx, spec.reproduce)
        rows.append([spec.title, spec.what, status_line(sel), files,
                     f"`{make_cmd}`, `{report_cmd}`"])
        total += len(sel.records)
        cells += sel.cells
    for stem, name, what, cmd in OTHER_RESULTS:
        files = sorted(out.glob(f"{stem}.*"))
        rows.append([name, what, "present" if files else "not run",
                     ", ".join(f"[`{p.name}`]({p.name})" for p in files), f"`{cmd}`"])
    # The index covers every target: an emptier ledger must not replace it (guard).
    guard("README", "index", total, cells, out, ctx.force)
    lines = [stamp("README", "index", total, cells), "# Results", "",
             "Every table and figure here is rebuilt from the run ledger "
             f"(`{ctx.source}`) by `python -m mbt.report all`, which also rewrites this index; "
             "the paper's numbers are in [`paper/`](paper/README.md). A status other than "
             "`full` is not the paper's protocol.", "",
             *md_table(["target", "what", "status", "files", "commands"], rows), ""]
    return write_md(out / "README.md", lines)
