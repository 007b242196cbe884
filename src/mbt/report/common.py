"""Shared pieces of :mod:`mbt.report`: reading runs, choosing a protocol, cell statistics,
the provenance header every output starts with, and file writing.

Runs come from the ledger (``mbt.ledger.read``) or, with ``--source wandb``, from the
W&B public API, rebuilt into the same record dicts. Nothing here trains.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import statistics
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from mbt import ledger

__all__ = [
    "DISPLAY", "PROTOCOLS", "TARGETS", "Context", "ReportError", "Selection", "Shared", "Stat",
    "accuracies", "bn_init", "chance_acc", "commands", "fmt_delta", "fmt_lr", "guard",
    "header", "load_ledger", "read_stamp", "stamp",
    "load_wandb", "lr_key", "md_table", "plural", "record_from_wandb", "select", "stat",
    "write_csv", "write_md",
]

log = logging.getLogger(__name__)

TARGETS = ("table1", "table2", "table3", "fig2b", "fig3", "autolr")
# Targets whose reports show runs of both BatchNorm inits side by side (model.bn_init);
# the others take the torch-init runs only.
VARIANT_TARGETS = ("table1", "fig2b")
# Preference order when several protocols cover the same number of cells.
PROTOCOLS = ("full", "quick", "cpu", "smoke", "custom")
# What the paper did, for the warning on any other protocol (Sec. 4, captions of
# Tables 1-3 and Figs. 2-3).
PAPER_PROTOCOL = {
    "table1": "ResNet18 / CIFAR10, 20 random mini-batches per start lr, α = 1e-4, β = 0.5",
    "table2": "ResNet18 / CIFAR10, 200 epochs, batch size 200",
    "table3": "200 epochs, start lr 1e-2",
    "fig2b": "ResNet18, full batch on 500 CIFAR10 images",
    "fig3": "ResNet18, CIFAR10 / CIFAR100, the Table 2 settings",
}
# Targets beyond the paper: what their `full` protocol runs, for the same warning.
FULL_PROTOCOL = {
    "autolr": "ResNet18 / CIFAR10, 200 epochs, batch 200; tuned baselines over the paper's "
              "9 start lrs",
}
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
_HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                 "epoch_time", "search_time", "search_mean_lr", "search_evals", "steps")


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


@dataclass
class Selection:
    """The runs of one target under one protocol."""

    target: str
    protocol: str | None
    records: list[dict]
    cells: int = 0
    others: dict[str, int] = field(default_factory=dict)  # other protocol -> cells covered
    borrowed: dict[str, int] = field(default_factory=dict)  # other experiment -> runs shared


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


def stat(values: Iterable[float]) -> Stat | None:
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


# --- reading runs -------------------------------------------------------------------

def load_ledger(path: str | Path) -> list[dict]:
    """Finished and diverged records of the current key schema; a ``run_key`` written twice
    keeps its last record. Lines that are not records are reported by :func:`ledger.read`;
    records of an older key schema are counted and skipped with one warning (their keys
    cannot be compared with today's: ``python -m mbt.ledger_migrate`` re-keys them).
    A missing file is a :class:`ReportError`, never an empty report."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"no ledger at {path} (run the experiments first, or pass "
                          f"--ledger results/ledger.jsonl for the committed runs)")
    by_key: dict[str, dict] = {}
    old = 0
    for i, record in enumerate(ledger.read(path)):
        if record.get("status") not in ledger.FINAL_STATUSES:
            continue
        if record.get("key_schema") != ledger.KEY_SCHEMA:
            old += 1
            continue
        by_key[record.get("run_key") or f"#{i}"] = record
    if old:
        log.warning("%s: skipped %s of an older key schema (no data fingerprint in their run "
                    "keys); `python -m mbt.ledger_migrate %s` re-keys them", path,
                    plural(old, "record"), path)
    return list(by_key.values())


def bn_init(r: dict) -> str:
    return r.get("bn_init") or _get(r, "config", "model", "bn_init") or "torch"


def _one_per_cell_and_seed(records: list[dict], target: str,
                           cell_of: Callable[[dict], Hashable]) -> list[dict]:
    """One sample per (cell, seed, BatchNorm init): the newest (last in ledger order) wins,
    with a warning naming the runs it replaces (e.g. the same cell on other data)."""
    newest: dict[Hashable, dict] = {}
    replaced: dict[Hashable, list[str]] = {}
    for r in records:
        k = (cell_of(r), r.get("seed"), bn_init(r))
        if k in newest:
            replaced.setdefault(k, []).append(str(newest[k].get("run_key")))
        newest[k] = r
    for k, keys in replaced.items():
        log.warning("%s: cell %s seed %s counted once, from %s; not counted: %s", target,
                    k[0], k[1], newest[k].get("run_key"), ", ".join(keys))
    return list(newest.values())


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_wandb(project: str, entity: str | None = None, *, protocol: str | None = None,
               timeout: int = 20) -> list[dict]:
    """Runs of the report targets from the W&B public API, as ledger-like records.

    Raises :class:`ReportError` (one line) without credentials, offline, or on any API error.
    """
    from mbt.tracking import resolve_mode

    mode, _ = resolve_mode("auto")
    if mode != "online":
        raise ReportError(f"--source wandb needs W&B online (mode {mode!r}: no WANDB_API_KEY / "
                          "`wandb login`, or WANDB_MODE set); use --source ledger")
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:  # fail in seconds offline instead of inside wandb's retry loop
        socket.create_connection((url.hostname, url.port or 443), timeout=5).close()
    except OSError as err:
        raise ReportError(f"--source wandb: cannot reach {url.hostname} ({_first_line(err)}); "
                          "offline? use --source ledger") from err
    path = f"{entity}/{project}" if entity else project
    filters: dict[str, Any] = {"config.experiment": {"$in": list(TARGETS)}}
    if protocol:
        filters["config.protocol"] = protocol
    try:
        import wandb

        runs = wandb.Api(timeout=timeout).runs(path, filters=filters)
        records = [r for run in runs if (r := record_from_wandb(run)) is not None]
    except Exception as err:  # wandb raises CommError, HTTPError, ValueError, ...
        raise ReportError(f"--source wandb: reading runs of {path!r} failed "
                          f"({_first_line(err)})") from err
    log.info("read %d runs from W&B project %s", len(records), path)
    return records


def _get(node: dict, *keys, default=None):
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            return default
        node = node[k]
    return node


def record_from_wandb(run) -> dict | None:
    """A ledger-like record from a W&B run (``run.config`` is the resolved config that
    ``mbt.train`` logged; the history holds one row per epoch). W&B does not know which
    data were actually loaded (synthetic fallback, partial copy): those fields are None."""
    cfg = dict(run.config)
    raw = getattr(run, "summary", None) or {}
    summary = dict(getattr(raw, "_json_dict", raw))
    status = summary.get("status") or ("finished" if run.state == "finished" else None)
    if status not in ledger.FINAL_STATUSES:
        return None
    try:  # wandb-metadata.json is a file download that may be missing
        meta = run.metadata or {}
    except Exception:  # noqa: BLE001 - metadata is optional provenance
        meta = {}
    common = {
        "run_key": run.name, "status": status, "protocol": cfg.get("protocol"),
        "experiment": cfg.get("experiment"), "model": _get(cfg, "model", "name"),
        "dataset": _get(cfg, "data", "name"), "optim": _get(cfg, "optim", "name"),
        "lr": _get(cfg, "optim", "lr"), "batch_size": _get(cfg, "trainer", "batch_size"),
        "seed": cfg.get("seed"), "device": None, "device_name": meta.get("gpu"),
        "git_commit": _get(meta, "git", "commit"), "git_dirty": None,
        "data": {"num_classes": _get(cfg, "data", "num_classes")}, "synthetic": None,
        "config": cfg, "source": "wandb",
        "wandb": {"id": run.id, "url": getattr(run, "url", None)},
    }
    if "search_lr" in summary:  # an lr_search run (Table 1)
        return {"kind": "lr_search", **common,
                **{k: summary.get(k) for k in ("search_lr", "search_mean_lr", "func_evals",
                                               "seconds")}}
    rows = sorted((r for r in run.scan_history() if r.get("epoch") is not None),
                  key=lambda r: r["epoch"])
    history = {k: [r.get(k) for r in rows] for k in _HISTORY_KEYS}
    accs = history["test_acc"]
    measured = [i for i, a in enumerate(accs) if a is not None]  # trainer.eval_every skips
    best = max(measured, key=accs.__getitem__) if measured else None
    return {
        "kind": "train", **common, "epochs": _get(cfg, "trainer", "epochs"),
        "epochs_completed": len(rows), "early_stopped": None,
        "best_test_acc": accs[best] if measured else summary.get("best_test_acc"),
        "best_epoch": history["epoch"][best] if measured else None,
        "final_test_acc": accs[measured[-1]] if measured else None, "history": history,
    }


# --- choosing the runs of a target ----------------------------------------------------

@dataclass(frozen=True)
class Shared:
    """Cells ``target`` shares with other experiments' presets: ``experiment`` is not part of
    the run key, so a run one preset already made is skipped by the next and stays
    recorded under the first (e.g. Table 3's ResNet18 cells are Fig. 3's runs)."""

    experiments: tuple[str, ...]
    fits: Callable[[dict], bool]   # the record is a cell of the target


def _experiments(r: dict) -> set:
    return {r.get("experiment"), *(r.get("experiments") or ())}


def _settings(r: dict) -> tuple:
    # What the presets of one protocol fix for every cell (the sweep varies the rest).
    return r.get("epochs"), r.get("batch_size"), _get(r, "data", "subset")


def select(records: Iterable[dict], target: str, kind: str,
           cell_of: Callable[[dict], Hashable], protocol: str | None = None,
           shared: Shared | None = None) -> Selection:
    """The records of ``target`` (``record["experiment"]``) and ``kind`` under ``protocol``;
    by default the protocol covering the most cells, ties going to full > quick > smoke.

    With ``shared``, runs recorded under those experiments that are cells of ``target``
    join, when they have the settings (epochs, batch size, subset) of one of the target's
    own runs under that protocol, or when the target has none of its own there."""
    records = [r for r in records if r.get("kind", "train") == kind]
    if target not in VARIANT_TARGETS:
        legacy = [r for r in records if bn_init(r) != "torch"]
        if legacy:
            log.warning("%s: %s with model.bn_init other than torch left out (only %s "
                        "report both inits)", target, plural(len(legacy), "run"),
                        ", ".join(VARIANT_TARGETS))
            records = [r for r in records if bn_init(r) == "torch"]
    own: dict[str, list[dict]] = {}
    other: dict[str, list[dict]] = {}
    for r in records:
        p = str(r.get("protocol"))
        if target in _experiments(r):
            own.setdefault(p, []).append(r)
        elif shared and _experiments(r) & set(shared.experiments) and shared.fits(r):
            other.setdefault(p, []).append(r)
    by_protocol: dict[str, list[dict]] = {}
    for p in {*own, *other}:
        mine = own.get(p, [])
        settings = {_settings(r) for r in mine}
        by_protocol[p] = mine + [r for r in other.get(p, [])
                                 if not settings or _settings(r) in settings]
    by_protocol = {p: rs for p, rs in by_protocol.items() if rs}
    cells = {p: len({(cell_of(r), bn_init(r)) for r in rs}) for p, rs in by_protocol.items()}

    def rank(p: str) -> tuple[int, int]:
        return (-cells[p], PROTOCOLS.index(p) if p in PROTOCOLS else len(PROTOCOLS))

    chosen = protocol if protocol is not None else min(cells, key=rank, default=None)
    chosen_records = _one_per_cell_and_seed(by_protocol.get(chosen, []), target, cell_of) \
        if chosen is not None else []
    others = {p: cells[p] for p in sorted(cells, key=rank) if p != chosen}
    borrowed: dict[str, int] = {}
    for r in chosen_records:
        if target not in _experiments(r):
            borrowed[str(r.get("experiment"))] = borrowed.get(str(r.get("experiment")), 0) + 1
    return Selection(target, chosen if chosen_records else protocol, chosen_records,
                     cells.get(chosen, 0), others, borrowed)


# --- the provenance header --------------------------------------------------------------

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
    n = _get(r, "data", "num_train")
    if n is None:
        return None
    return f"{n} (random subset)" if _get(r, "data", "subset") else str(n)


def commands(target: str, protocol: str | None, ctx: Context) -> tuple[str, str]:
    p = protocol or "full"
    return (f"make reproduce-{target} PROTOCOL={p}",
            f"python -m mbt.report {target} --protocol {p}{ctx.report_args}")


def header(title: str, sel: Selection, ctx: Context, notes: Iterable[str] = ()) -> list[str]:
    """Markdown lines: title, loud warnings (synthetic / partial data, not the paper's
    protocol), then a provenance table (protocol, runs, seeds, epochs, devices, commits)."""
    rs = sel.records
    n = len(rs)
    lines = [stamp(sel.target, sel.protocol, n, sel.cells), f"# {title}", ""]
    warnings = []
    synthetic = sum(bool(r.get("synthetic") or _get(r, "data", "synthetic")) for r in rs)
    partial = sum(bool(_get(r, "data", "partial")) for r in rs)
    unknown = sum(r.get("synthetic") is None and _get(r, "data", "synthetic") is None
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
    if sel.protocol != "full" and sel.target in PAPER_PROTOCOL:
        warnings.append(f"**Protocol `{sel.protocol}` is NOT the paper's protocol "
                        f"({PAPER_PROTOCOL[sel.target]}): compare trends, not numbers.**")
    elif sel.protocol != "full":
        warnings.append(f"**Protocol `{sel.protocol}` is NOT this experiment's full protocol "
                        f"({FULL_PROTOCOL.get(sel.target, '?')}): compare trends, not "
                        "numbers.**")
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
    make_cmd, report_cmd = commands(sel.target, sel.protocol, ctx)
    if sel.borrowed:
        run_line += "; " + ", ".join(f"{plural(k, 'run')} recorded under experiment `{e}`"
                                     for e, k in sorted(sel.borrowed.items())) + \
            " (the same runs: the run key leaves out the experiment)"
    rows = [
        ("protocol", f"`{sel.protocol}`" + (f" (also in the source: {others})" if others else "")),
        ("runs", run_line + "; " + plural(sel.cells, "cell")),
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
        ("source", f"`{ctx.source}`"),
        ("regenerate", f"`{make_cmd}` (runs what is missing, then this report); "
                       f"`{report_cmd}` (report only)"),
    ]
    lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    for note in notes:
        lines += [note, ""]
    return lines


# --- writing ------------------------------------------------------------------------------

_STAMP = re.compile(r"^<!-- mbt-report (\{.*\}) -->$")


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
