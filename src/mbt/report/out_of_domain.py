"""Beyond the paper (issue 25): do MBT and the other automatic-lr methods find a good lr
outside the paper's setting, without tuning? ``results/out_of_domain.{md,csv,png}``.

Three tasks, each a (model, data set) pair:

- Fashion-MNIST (``fmnist_cnn``), records of ``experiment=out_of_domain``: test accuracy (%),
  higher is better;
- text (``char_transformer`` on ``fortunes``), ``experiment=out_of_domain``: test loss in nats
  per character (the minimum over evaluated epochs), lower is better; a diverged run counts
  as ln(256), uniform over the byte vocabulary;
- CIFAR-10 (``resnet18``): the ``autolr`` runs of the protocol, and Table 2's runs of the
  same methods (MBT-GD/MMT/NAG at start lr 1e-2), with the settings (epochs, batch, subset)
  most of the listed methods' runs share (every task: runs of other settings are left out,
  and the report names them).

Tuning protocol: a *tuned* method's lr grid runs at seed 0 and its start lr is chosen on
seed 0 alone (ties: the larger lr); seeds 1 and 2 then run at that lr. Its metric is mean ±
std over the seeds at that lr; its cost is the tuning cost, the summed ``wall_time`` of the
seed-0 grid. An *automatic* method runs at one start lr (MBT: 1e-2; the others: the lr most
of their runs share; runs at other lrs are left out, never read as a grid); its cost is the
mean ``wall_time`` of one run, its own searches included.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .autolr import MBT, NAMES
from .common import (
    Context,
    Stat,
    Target,
    accuracies,
    fmt_lr,
    join_and,
    lr_key,
    plural,
    round_or_none,
    run_seconds,
    stat,
    tuned_lr,
)
from .paper import LR_GRID
from .selection import (
    Selection,
    choose_protocol,
    experiments_of,
    majority_settings,
    one_per_cell_and_seed,
    shown_variants,
)
from .verdicts import ranks_high_first, switch_epoch
from .writers import header, md_table, write_csv, write_md

__all__ = ["AUTOMATIC", "TUNED", "OodRow", "best_tuned_lrs", "out_of_domain", "rows_by_task",
           "select_runs", "tuned_choices"]

log = logging.getLogger(__name__)

AUTOMATIC = ("mbt_gd", "mbt_mmt", "mbt_nag", "sls", "prodigy", "dadapt_sgd", "dadapt_adam",
             "sgd_schedulefree", "adamw_schedulefree", "dog", "lr_range_sgd")
TUNED = ("sgd", "nag", "adamw")
# The tuned baselines each task's verdict compares with (other tuned methods are shown).
FMNIST, TEXT = ("fmnist_cnn", "fashion_mnist"), ("char_transformer", "fortunes")
CIFAR = ("resnet18", "cifar10")
BASELINES = {FMNIST: ("sgd", "nag"), TEXT: ("adamw",), CIFAR: ("sgd", "nag")}
MBT_LR = 0.01  # MBT's default start lr (the paper's); its other start lrs are a sweep, not a grid
TASKS = {FMNIST: "Fashion-MNIST (fmnist_cnn)", TEXT: "Text: fortunes (char_transformer)",
         CIFAR: "CIFAR-10 (ResNet18)"}
# The presets that run each task's tuned grid (their seeds 1-2: best_tuned_lrs); CIFAR's
# tuned cells are Table 2's, whose own best_lr lines run them.
GRID_PRESET = {FMNIST: "out_of_domain_grid", TEXT: "out_of_domain_text_grid"}
# The seed-0 grids the presets run (conf/experiment/*_grid.yaml and protocols/*_grid_<p>.yaml;
# tests/test_report_out_of_domain.py checks they agree), for "incomplete grid".
GRIDS: dict[tuple[str, str], dict[str | None, tuple[float, ...]]] = {
    FMNIST: {"cpu": (0.3, 0.1, 0.03, 0.01), None: (1.0, 0.3, 0.1, 0.03, 0.01, 0.003)},
    TEXT: {"cpu": (0.01, 0.003, 0.001, 0.0003), None: (0.01, 0.003, 0.001, 0.0003, 0.0001)},
    CIFAR: {None: LR_GRID},
}
CIFAR_EXPERIMENTS = ("autolr", "table2", "table2_mbt", "table3", "mbt_gap")
SEEDS = 3              # seeds every method should have at its lr
ACC_TOL, LOSS_TOL = 1.0, 0.02  # "no worse than": 1 accuracy point, 0.02 nats per character
_NAMES = {**NAMES, "adamw": "AdamW"}


def _name(optim: str) -> str:
    return _NAMES.get(optim, optim)


def _task_name(task: tuple[str, str]) -> str:
    return TASKS.get(task, f"{task[0]} / {task[1]}")


def _task(r: dict) -> tuple[str, str]:
    return str(r.get("model")), str(r.get("dataset"))


def lower_is_better(task: tuple[str, str]) -> bool:
    return task[1] == TEXT[1]


# --- which runs -----------------------------------------------------------------------------

def _candidate(r: dict) -> bool:
    """A run of the experiment: any out_of_domain run; on CIFAR-10, a run of the method list
    under any preset that makes its cells (autolr's cpu runs share Table 2's run keys, so
    whichever trained a cell first labels it; older autolr presets' MMT, Adam and SGD +
    cosine are not on the list), MBT at 1e-2 only, the tuned baselines on the 9-lr grid
    (mbt_gap's NAG at 0.016 is a control, not a grid point)."""
    exps = experiments_of(r)
    if "out_of_domain" in exps:
        return True
    optim = r.get("optim")
    lr = lr_key(r.get("lr") or 0.0)
    return (_task(r) == CIFAR and bool(exps & set(CIFAR_EXPERIMENTS))
            and optim in AUTOMATIC + TUNED
            and (not str(optim).startswith("mbt_") or lr == MBT_LR)
            and (optim not in TUNED or lr in LR_GRID))


def _settled(task: tuple[str, str], runs: list[dict]) -> tuple[list[dict], str | None]:
    """The task's runs at the settings most of its listed methods' runs share. Only the
    method list votes: CIFAR's older autolr runs of other methods (MMT, Adam, SGD + cosine)
    must not keep an old setting in place."""
    votes = [r for r in runs if r.get("optim") in AUTOMATIC + TUNED] or runs
    return majority_settings(runs, votes, _task_name(task), "most runs of the listed methods")


def select_runs(records: list[dict], spec: Target, protocol: str | None = None) -> Selection:
    """The target's runs under ``protocol`` (default: the one covering the most cells): the
    out_of_domain runs, CIFAR's autolr runs and Table 2's runs of the same methods, per task
    at one setting, one record per run key (the last), one per (cell, seed)."""
    plain = shown_variants([r for r in records
                            if r.get("kind", "train") == spec.kind and _candidate(r)], spec)
    by_protocol: dict[str, dict[str, dict]] = {}
    for i, r in enumerate(plain):  # one record per run key: the latest
        by_protocol.setdefault(str(r.get("protocol")), {})[r.get("run_key") or f"#{i}"] = r
    cells = {p: len({spec.cell_of(r) for r in rs.values()}) for p, rs in by_protocol.items()}

    chosen, others = choose_protocol(cells, protocol)
    tasks: dict[tuple[str, str], list[dict]] = {}
    for r in by_protocol.get(str(chosen), {}).values():
        tasks.setdefault(_task(r), []).append(r)
    kept, notes = [], []
    for task in sorted(tasks):
        runs_of_task, note = _settled(task, tasks[task])
        kept += runs_of_task
        notes += [note] if note else []
    kept = one_per_cell_and_seed(kept, spec.name, spec.cell_of)
    borrowed = Counter(str(r.get("experiment")) for r in kept
                       if "out_of_domain" not in experiments_of(r))
    return Selection(spec.name, chosen if kept else protocol, kept, spec,
                     len({spec.cell_of(r) for r in kept}),
                     others,
                     dict(sorted(borrowed.items())), notes)


# --- one run's metric -----------------------------------------------------------------------

def _uniform_loss(r: dict) -> float:
    return math.log((r.get("data") or {}).get("num_classes") or 256)


def _metric(r: dict, task: tuple[str, str]) -> tuple[float | None, float | None]:
    """(best-epoch, final-epoch) metric of one run: accuracy (%), or for text the test
    loss (nats per character; best = the lowest over evaluated epochs)."""
    if not lower_is_better(task):
        best, final, _ = accuracies(r)
        return best, final
    if r.get("status") == "diverged":
        return (_uniform_loss(r),) * 2
    losses = [float(v) for v in (r.get("history") or {}).get("test_loss") or []
              if v is not None and math.isfinite(float(v))]
    return (min(losses), losses[-1]) if losses else (None, None)


def _score(value: float | None, task) -> float:
    """Larger is better, whatever the metric; no value is the worst."""
    if value is None:
        return -math.inf
    return -value if lower_is_better(task) else value


# --- one row per method ---------------------------------------------------------------------

@dataclass
class OodRow:
    task: tuple[str, str]
    optim: str
    kind: str                      # tuned | automatic
    lr: float                      # tuned: chosen on seed 0; automatic: its one start lr
    grid: list[float]              # tuned: the seed-0 grid, ascending
    seeds: list                    # at lr
    metric: Stat | None            # best-epoch metric over seeds at lr
    final: Stat | None
    accuracy: Stat | None          # text: best next-character accuracy (%) over the epochs
    cost: Stat | None              # tuned: seed-0 grid's summed wall_time (n=1); else per run
    runs_paid: int
    n_div: int
    missing: list[str] = field(default_factory=list)
    left_out: int = 0              # automatic: runs at other start lrs
    found_lr: float | None = None  # MBT: the lr its searches found, mean over epochs and seeds
    bound_hits: int | None = None
    switch: list = field(default_factory=list)  # MBT: plateau-switch epoch per seed (None)
    rank: float | None = None

    @property
    def name(self) -> str:
        return _name(self.optim)

    @property
    def mean(self) -> float | None:
        return None if self.metric is None else self.metric.mean

    @property
    def few(self) -> bool:
        return len(self.seeds) < SEEDS


def _mbt_evidence(row: OodRow, runs: list[dict]) -> None:
    found, hits = [], []
    for r in runs:
        h = r.get("history") or {}
        lrs = [v for v in h.get("search_lr") or [] if v is not None] or \
            [v for v in h.get("lr") or [] if v is not None]
        found += [float(v) for v in lrs]
        hits += [int(v) for v in h.get("search_bound_hits") or [] if v is not None]
    row.found_lr = sum(found) / len(found) if found else None
    row.bound_hits = sum(hits) if hits else None
    row.switch = [switch_epoch(r) for r in sorted(runs, key=lambda r: str(r.get("seed")))]


def _at(task, optim, kind, lr, runs: list[dict]) -> OodRow:
    metrics = [_metric(r, task) for r in runs]
    return OodRow(task, optim, kind, lr, [], sorted({r.get("seed") for r in runs}, key=str),
                  stat(m[0] for m in metrics), stat(m[1] for m in metrics),
                  stat(accuracies(r)[0] for r in runs) if lower_is_better(task) else None,
                  None, 1, sum(r.get("status") == "diverged" for r in runs))


def _seed_note(row: OodRow) -> list[str]:
    return ([f"{len(row.seeds)} of {SEEDS} seeds at {fmt_lr(row.lr)}"]
            if row.few else [])


def _tuned(task, optim, runs: list[dict], protocol) -> OodRow:
    seed0 = {lr_key(r.get("lr") or 0.0): r for r in runs if r.get("seed") == 0}
    pool = seed0 or {lr_key(r.get("lr") or 0.0): r for r in runs}
    # seed 0 alone picks the lr (ties: the larger lr); without seed 0, any seed's run
    lr = tuned_lr({v: _score(_metric(r, task)[0], task) for v, r in pool.items()})
    row = _at(task, optim, "tuned", lr, [r for r in runs if lr_key(r.get("lr") or 0.0) == lr])
    row.grid = sorted(seed0)
    row.runs_paid = len(seed0)
    row.cost = stat([sum(run_seconds(r)[0] for r in seed0.values())]) if seed0 else None
    expected = GRIDS.get(task, {})
    want = expected.get(protocol, expected.get(None, ()))
    lacking = [fmt_lr(v) for v in want if lr_key(v) not in seed0]
    row.missing = ((["no seed-0 grid"] if not seed0 else
                    [f"seed-0 grid lacks {', '.join(lacking)}"] if lacking else [])
                   + _seed_note(row))
    return row


def _automatic(task, optim, runs: list[dict]) -> OodRow:
    lrs = Counter(lr_key(r.get("lr") or 0.0) for r in runs)
    lr = MBT_LR if optim.startswith("mbt_") and MBT_LR in lrs else max(
        lrs, key=lambda v: (lrs[v], v))
    at = [r for r in runs if lr_key(r.get("lr") or 0.0) == lr]
    row = _at(task, optim, "automatic", lr, at)
    row.cost = stat(run_seconds(r)[0] for r in at)
    row.left_out = len(runs) - len(at)
    row.missing = _seed_note(row)
    if optim.startswith("mbt_"):
        _mbt_evidence(row, at)
    return row


def _rank(rows: list[OodRow]) -> None:
    """1 = the best mean metric; ties share the mean of their places."""
    scored = [r for r in rows if r.metric is not None]
    for r, k in zip(scored, ranks_high_first([_score(r.mean, r.task) for r in scored])):
        r.rank = k


def _task_order(task: tuple[str, str]) -> tuple:
    known = list(TASKS)
    return (known.index(task), task) if task in known else (len(known), task)


def rows_by_task(records: list[dict], protocol) -> dict[tuple[str, str], list[OodRow]]:
    """Every known task (empty where it has no runs) and any other one with runs: one row
    per method, ranked, best first."""
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {t: {} for t in TASKS}
    for r in records:
        groups.setdefault(_task(r), {}).setdefault(str(r.get("optim")), []).append(r)
    out = {}
    for task in sorted(groups, key=_task_order):
        rows = []
        for optim, runs in sorted(groups[task].items()):
            several = len({lr_key(r.get("lr") or 0.0) for r in runs}) > 1
            tuned = optim in TUNED or (optim not in AUTOMATIC and several)
            rows.append(_tuned(task, optim, runs, protocol) if tuned
                        else _automatic(task, optim, runs))
        _rank(rows)
        out[task] = sorted(rows, key=lambda r: (r.rank is None, r.rank or 0, r.optim))
    return out


def mean_ranks(groups: dict) -> list[tuple[str, float, dict]]:
    """(optim, mean rank over the tasks where it ran, {task: rank}), best first."""
    per: dict[str, dict] = {}
    for task, rows in groups.items():
        for r in rows:
            if r.rank is not None:
                per.setdefault(r.optim, {})[task] = r.rank
    means = [(o, sum(ranks.values()) / len(ranks), ranks) for o, ranks in per.items()]
    return sorted(means, key=lambda m: (m[1], m[0]))


# --- the tuned seeds to run next ------------------------------------------------------------

def tuned_choices(records: list[dict], protocol: str) -> tuple[list[str], list[str]]:
    """(Hydra override lines for the seeds 1-2 of each tuned grid at its seed-0 best lr,
    the methods skipped for an incomplete seed-0 grid): Fashion-MNIST and text only, each
    task's baselines only (the grid presets run those)."""
    from .targets import by_name  # the target list imports this module

    sel = select_runs(records, by_name("out_of_domain"), protocol)
    lines, skipped = [], []
    for task, rows in rows_by_task(sel.records, protocol).items():
        if task not in GRID_PRESET:
            continue
        for row in rows:
            if row.kind != "tuned" or row.optim not in BASELINES[task]:
                continue  # another tuned method (one run by hand) is not the preset's
            incomplete = [m for m in row.missing if m.startswith(("seed-0", "no seed-0"))]
            if incomplete:
                skipped.append(f"{_task_name(task)}: {row.optim}: {incomplete[0]}")
                continue
            lines.append(f"experiment={GRID_PRESET[task]} optim={row.optim} "
                         f"optim.lr={row.lr:g}")
    return lines, skipped


def best_tuned_lrs(records: list[dict], protocol: str) -> list[str]:
    return tuned_choices(records, protocol)[0]


# --- the MBT verdict ------------------------------------------------------------------------

def _unit(task) -> tuple[str, float, int]:
    return ("nats", LOSS_TOL, 3) if lower_is_better(task) else ("points", ACC_TOL, 2)


def _gap(m: OodRow, ref: OodRow) -> tuple[float, float, str]:
    """(how much better MBT is, positive = better; the larger seed std; the phrase)."""
    unit, _, d = _unit(m.task)
    better = _score(m.mean, m.task) - _score(ref.mean, m.task)
    spread = max(m.metric.std if m.metric else 0.0, ref.metric.std if ref.metric else 0.0)
    within = "within" if abs(better) <= spread else "outside"
    diff = (m.mean or 0.0) - (ref.mean or 0.0)
    return better, spread, (f"{diff:+.{d}f} {unit} against {ref.name} ({ref.kind}, "
                            f"{ref.mean:.{d}f}; {within} the larger seed std, "
                            f"{spread:.{d}f})")


def _evidence(m: OodRow) -> str:
    parts = []
    if m.found_lr is not None:
        parts.append(f"its searches found lr {m.found_lr:.3g} on average")
    if m.bound_hits is not None:
        parts.append(f"{plural(m.bound_hits, 'search bound hit')}")
    if m.switch:
        parts.append("plateau switch " + ", ".join(
            f"epoch {e}" if e is not None else "never" for e in m.switch) + " (per seed)")
    return "; ".join(parts)


def verdict(rows: list[OodRow], optim: str) -> tuple[str, bool | None]:
    """(the sentence, holds without tuning? None: nothing to judge)."""
    m = next((r for r in rows if r.optim == optim and r.metric is not None), None)
    if m is None:
        return f"{_name(optim)}: no runs.", None
    tuned = [r for r in rows if r.kind == "tuned" and r.metric is not None
             and r.optim in BASELINES.get(m.task, TUNED)]
    auto = [r for r in rows if r.optim in AUTOMATIC and not r.optim.startswith("mbt_")
            and r.metric is not None]
    said = []
    holds = None
    for ref in (tuned[0] if tuned else None, auto[0] if auto else None):
        if ref is not None:
            said.append(_gap(m, ref)[2])
    if tuned:
        better, spread, _ = _gap(m, tuned[0])
        unit, tol, d = _unit(m.task)
        limit = max(tol, spread)
        holds = -better <= limit
        said.append(("holds without tuning" if holds else "does not hold")
                    + f" (worse by at most {limit:.{d}f} {unit} allowed)")
    else:
        said.append("no tuned baseline here: no verdict")
    ev = _evidence(m)
    flag = f" [{plural(len(m.seeds), 'seed')}]" if m.few else ""
    return (f"**{m.name}**{flag}, mean {m.mean:.{_unit(m.task)[2]}f}: " + "; ".join(said)
            + (f". Evidence: {ev}." if ev else "."), holds)


def _verdict_short(rows: list[OodRow], optim: str, task) -> list[str]:
    """What the verdict on ``optim`` rests on and still lacks runs of: its own row and the
    task's tuned baselines (missing seeds or grid lrs, or no runs at all). Other methods'
    rows do not change it."""
    by_optim = {r.optim: r for r in rows}
    short = []
    for name in (optim, *BASELINES.get(task, TUNED)):
        row = by_optim.get(name)
        if row is None or row.missing:
            short.append(_name(name))
    return short


def _overall(groups: dict) -> list[str]:
    out = []
    for optim in MBT:
        holds: list[str] = []
        fails: list[str] = []
        for task, rows in groups.items():
            h = verdict(rows, optim)[1]
            if h is not None:
                short = _verdict_short(rows, optim, task)
                (holds if h else fails).append(_task_name(task) + (
                    f" (interim: runs of {join_and(short)} still missing)" if short else ""))
        if not holds and not fails:
            out.append(f"**{_name(optim)}, overall:** no task with runs and a tuned "
                       "baseline yet.")
            continue
        said = ([f"holds without tuning on {join_and(holds)}"] if holds else []) + \
            ([f"does not hold on {join_and(fails)}"] if fails else [])
        out.append(f"**{_name(optim)}, overall:** " + "; ".join(said) + ".")
    return out


# --- formatting -----------------------------------------------------------------------------

def _fmt_stat(s: Stat | None, digits: int) -> str:
    return "" if s is None else f"{s.fmt(digits)} (n={s.n})"


def _fmt_cost(row: OodRow) -> str:
    if row.cost is None:
        return ""
    if row.kind == "tuned":
        return f"{row.cost.mean:.1f} (tuning, {plural(row.runs_paid, 'run')} paid)"
    return f"{row.cost.fmt(1)} per run"


def _fmt_lrs(row: OodRow) -> str:
    if row.kind == "tuned":
        return f"{fmt_lr(row.lr)} of {' '.join(fmt_lr(v) for v in row.grid) or 'no seed-0 grid'}"
    return fmt_lr(row.lr) + (f" ({plural(row.left_out, 'run')} at other lrs left out)"
                             if row.left_out else "")


def _fmt_rank(row: OodRow) -> str:
    return "" if row.rank is None else f"{row.rank:g}" + (" *" if row.few else "")


def _mbt_cells(row: OodRow) -> list[str]:
    if not row.optim.startswith("mbt_"):
        return ["", "", ""]
    return [f"{row.found_lr:.3g}" if row.found_lr is not None else "",
            "" if row.bound_hits is None else str(row.bound_hits),
            ", ".join("—" if e is None else str(e) for e in row.switch)]


def _columns(task) -> list[str]:
    metric = ("test loss (nats/char, mean ± std, n)" if lower_is_better(task)
              else "best-epoch test acc (%, mean ± std, n)")
    extra = ["bits/char", "next-char acc (%)"] if lower_is_better(task) else []
    return ["rank", "method", "kind", "start lr", "seeds", metric, "final epoch", *extra,
            "cost (s)", "found lr (MBT)", "search bound hits", "plateau switch (epoch/seed)",
            "missing"]


def _md_row(row: OodRow) -> list:
    d = _unit(row.task)[2]
    extra = []
    if lower_is_better(row.task):
        bits = "" if row.mean is None else f"{row.mean / math.log(2):.{d}f}"
        extra = [bits, _fmt_stat(row.accuracy, 2)]
    div = f" ({row.n_div} div)" if row.n_div else ""
    return [_fmt_rank(row), row.name, row.kind, _fmt_lrs(row),
            " ".join(str(s) for s in row.seeds), _fmt_stat(row.metric, d) + div,
            _fmt_stat(row.final, d), *extra, _fmt_cost(row), *_mbt_cells(row),
            "; ".join(row.missing)]


def _csv_row(row: OodRow, ranks: dict, protocol) -> dict:
    m, f, a, c = row.metric, row.final, row.accuracy, row.cost
    return {
        "task": _task_name(row.task), "model": row.task[0], "dataset": row.task[1],
        "optim": row.optim, "method": row.name, "kind": row.kind,
        "metric": "test_loss_nats" if lower_is_better(row.task) else "test_acc",
        "lr": fmt_lr(row.lr), "grid_lrs": " ".join(fmt_lr(v) for v in row.grid),
        "runs_paid": row.runs_paid, "seeds": " ".join(str(s) for s in row.seeds),
        "n_seeds": len(row.seeds), "metric_mean": round_or_none(m and m.mean),
        "metric_std": round_or_none(m and m.std), "final_mean": round_or_none(f and f.mean),
        "final_std": round_or_none(f and f.std), "next_char_acc_mean": round_or_none(a and a.mean),
        "n_diverged": row.n_div, "cost_s": round_or_none(c and c.mean, 3),
        "cost_kind": "tuning (seed-0 grid)" if row.kind == "tuned" else "per run",
        "rank": row.rank, "few_seeds": row.few, "mean_rank": round_or_none(ranks.get(row.optim)),
        "found_lr": round_or_none(row.found_lr, 6), "bound_hits": row.bound_hits,
        "switch_epochs": " ".join("" if e is None else str(e) for e in row.switch),
        "left_out_other_lrs": row.left_out, "missing": "; ".join(row.missing),
        "protocol": protocol,
    }


# --- the figure -----------------------------------------------------------------------------

_KIND_COLOR = {"tuned": "tab:orange", "automatic": "tab:blue"}


def _metric_panel(ax, task, rows: list[OodRow]) -> None:
    shown = [(r, r.metric) for r in rows if r.metric is not None]
    ax.set_title(_task_name(task), fontsize=10)
    if not shown:
        ax.text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    xs = range(len(shown))
    ax.bar(xs, [m.mean for _, m in shown], yerr=[m.std for _, m in shown], capsize=3,
           color=[_KIND_COLOR.get(r.kind, "0.5") for r, _ in shown],
           edgecolor=["k" if r.optim in MBT else "none" for r, _ in shown])
    ax.set_xticks(list(xs), [r.name for r, _ in shown], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test loss (nats/char, lower is better)" if lower_is_better(task)
                  else "best-epoch test acc (%)")
    lo = min(m.mean - m.std for _, m in shown)
    hi = max(m.mean + m.std for _, m in shown)
    pad = 0.1 * (hi - lo) or 1.0
    ax.set_ylim(max(0.0, lo - pad), hi + pad)


def _rank_panel(ax, ranks: list[tuple[str, float, dict]], kinds: dict) -> None:
    ax.set_title("mean rank over the tasks where it ran (1 = best)", fontsize=10)
    if not ranks:
        ax.text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=ax.transAxes)
        return
    ys = range(len(ranks))
    ax.barh(list(ys), [m for _, m, _ in ranks],
            color=[_KIND_COLOR.get(kinds.get(o, ""), "0.5") for o, _, _ in ranks])
    ax.set_yticks(list(ys), [f"{_name(o)} ({len(t)})" for o, _, t in ranks], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("mean rank (tasks)")


def _figure(groups: dict, ranks, path: Path, protocol) -> Path:
    n = len(groups) + 1
    fig = Figure(figsize=(5.0 * n, 5.0), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (task, rows) in zip(axes, groups.items()):
        _metric_panel(ax, task, rows)
    kinds = {r.optim: r.kind for rows in groups.values() for r in rows}
    _rank_panel(axes[-1], ranks, kinds)
    axes[-1].legend(handles=[Patch(color=c, label=k) for k, c in _KIND_COLOR.items()],
                    fontsize=7, loc="upper right")  # the shortest bars are at the top
    fig.suptitle("Out of domain: automatic lr methods vs tuned baselines (mean ± std over "
                 "seeds)" + ("" if protocol == "full" else f" [{protocol}]"))
    path.parent.mkdir(parents=True, exist_ok=True)
    # no version stamp: the same ledger gives the same bytes (`make report` diffs nothing)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return path


# --- the target -----------------------------------------------------------------------------

_METHOD_NOTE = (
    "**Method.** *Tuned* (SGD, NAG; AdamW for text): the start lr is chosen on seed 0's "
    "runs over the grid (best-epoch accuracy, or the lowest test loss for text; ties to the "
    "larger lr); seeds 1 and 2 run at that lr. Metric = mean ± sample std over the seeds at "
    "that lr; cost = tuning cost, the summed `wall_time` of the seed-0 grid (runs paid = "
    "its size). *Automatic*: its runs at its one start lr (MBT: 1e-2; the others: the lr "
    "most of their runs share), cost = mean `wall_time` of one run, its searches included. "
    "Text metric: test loss in nats per character, the lowest over the evaluated epochs (bits "
    "per character = nats / ln 2); a diverged run counts as ln 256 (uniform over bytes), a "
    "diverged image run as chance accuracy. Rank 1 = the best mean metric in the task; "
    "`*` = fewer than 3 seeds (ranked, but the rank may be seed noise). MBT's verdict: "
    "*holds without tuning* when its mean is worse than the best tuned baseline's by no more "
    "than max(1 accuracy point or 0.02 nats, the larger seed std); the references are the "
    "task's tuned baselines (SGD and NAG; AdamW for text) and the automatic methods other "
    "than MBT listed in issue 25, each the best by mean metric.")


def _best_so_far(r: dict, task) -> list[tuple[int, float]]:
    """(epoch, best metric up to that epoch) at each evaluated epoch of one run."""
    h = r.get("history") or {}
    values = h.get("test_loss" if lower_is_better(task) else "test_acc") or []
    out: list[tuple[int, float]] = []
    for e, v in zip(h.get("epoch") or range(1, len(values) + 1), values, strict=False):
        if v is None or not math.isfinite(float(v)):
            continue
        v = float(v)
        best = v if not out else (min if lower_is_better(task) else max)(out[-1][1], v)
        out.append((int(e), best))
    return out


def levelling(task, row: OodRow, records: list[dict]) -> str | None:
    """How much the top method's best-so-far metric still moved over the last quarter of its
    epochs (mean over seeds): whether the protocol's epoch count let the ranking settle."""
    runs = [r for r in records if _task(r) == task and r.get("optim") == row.optim
            and lr_key(r.get("lr") or 0.0) == lr_key(row.lr) and r.get("status") != "diverged"]
    curves = [c for c in (_best_so_far(r, task) for r in runs) if len(c) >= 2]
    if not curves:
        return None
    last = min(c[-1][0] for c in curves)
    cut = max(1, round(last * 0.75))
    moves = []
    for c in curves:  # every curve read at the shortest one's end
        before = [v for e, v in c if e <= cut]
        until = [v for e, v in c if e <= last]
        if before:
            moves.append(until[-1] - before[-1])
    if not moves:
        return None
    move = sum(moves) / len(moves)
    unit, _, digits = _unit(task)
    return (f"**Levelling.** {row.name}, first here, moved its best-so-far "
            f"{'test loss' if lower_is_better(task) else 'test accuracy'} by "
            f"{move:+.{digits}f} {unit} from epoch {cut} to epoch {last} (the last quarter; "
            f"mean over {plural(len(moves), 'seed')}).")


def _task_lines(task, rows: list[OodRow], records: list[dict]) -> list[str]:
    lines = [f"## {_task_name(task)}", ""]
    if not rows:
        return lines + ["No runs yet.", ""]
    best = "lowest test loss first" if lower_is_better(task) else "best accuracy first"
    lines += [f"Ranked, {best}.", "", *md_table(_columns(task), [_md_row(r) for r in rows]),
              ""]
    settled = levelling(task, rows[0], records)
    lines += [settled, ""] if settled else []
    lines += [f"- {verdict(rows, optim)[0]}" for optim in MBT] + [""]
    return lines


def out_of_domain(sel: Selection, ctx: Context) -> list[Path]:
    groups = rows_by_task(sel.records, sel.protocol)
    ranks = mean_ranks(groups)
    notes = [*_overall(groups), _METHOD_NOTE, *[f"**Left out.** {n}" for n in sel.notes]]
    lines = header("Beyond the paper: out of domain, automatic lr methods (MBT included) vs "
                   "tuned baselines on Fashion-MNIST, text and CIFAR-10", sel, ctx, notes)
    lines += ["![out_of_domain](out_of_domain.png)", ""]
    for task, rows in groups.items():
        lines += _task_lines(task, rows, sel.records)
    lines += ["## Across tasks: mean rank", "",
              *md_table(["method", "mean rank", "tasks", *map(_task_name, groups)],
                        [[_name(o), f"{m:.2f}", len(t),
                          *(f"{t[k]:g}" if k in t else "" for k in groups)]
                         for o, m, t in ranks]), ""]
    by_optim = {o: m for o, m, _ in ranks}
    frame = pd.DataFrame([_csv_row(r, by_optim, sel.protocol) for rows in groups.values()
                          for r in rows])
    if "bound_hits" in frame:  # counts, not 6.0, where some rows have none
        frame["bound_hits"] = frame["bound_hits"].astype("Int64")
    out = ctx.out
    png = _figure(groups, ranks, out / "out_of_domain.png", sel.protocol)
    return [write_md(out / "out_of_domain.md", lines),
            write_csv(out / "out_of_domain.csv", frame), png]

