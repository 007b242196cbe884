"""Beyond the paper: every automatic-learning-rate method in one harness against tuned
baselines, with the tuning cost counted: ``results/autolr.{md,csv,png}``.

Runs are the ``autolr`` experiment's (``experiment=autolr`` for the automatic methods,
``experiment=autolr_grid`` for the tuned grids, both recorded as ``autolr``). Per model and
data set, a method (``optim`` config name) is *tuned* when it has runs at more than one
start lr in the selected protocol, else *automatic*.

- cost: per seed, the sum of ``wall_time`` over all the method's runs of that seed (a
  tuned method pays for its whole grid; an automatic method's one run includes its own
  search: MBT's line searches, the LR-range test), then mean ± std over seeds. A tuned
  method's extra seeds, run at the chosen lr only, reuse that tuning: they do not count,
  or they would dilute its price;
- accuracy: best-epoch and final-epoch test accuracy, mean ± std over seeds, at the grid
  point (start lr) with the best mean best-epoch accuracy over the seeds that ran the whole
  grid (here seed 0, where ``mbt.report.best_lr`` picked the lr the extra seeds ran at),
  else over every seed; ties go to the larger lr (:func:`.common.tuned_lr`). A point is
  never chosen for having fewer, luckier seeds. A diverged run counts as chance;
- accuracy at the median grid point: at the lr in the middle of the sorted grid (the
  lower middle one for an even grid), what a tuner who guessed instead of searching gets;
  an automatic method's own accuracy.

The figure: (a) accuracy against cost per seed (log x), error bars over seeds, each point
named (labels moved apart by the ``adjustText`` package, ``pip install 'mbt[report]'``,
when installed); (b) the per-epoch lr (``history["lr"]``) of every automatic method's runs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from mbt.config_paths import install_hint

from .common import (
    DISPLAY,
    Context,
    Stat,
    accuracies,
    fmt_lr,
    join_and,
    lr_key,
    round_or_none,
    run_seconds,
    seed_order,
    stat,
    tuned_lr,
)
from .selection import Selection
from .writers import header, md_table, write_csv, write_md

__all__ = ["MethodRow", "autolr", "method_rows",
           "mbt_verdicts"]

log = logging.getLogger(__name__)

NAMES = {
    **DISPLAY, "sls": "SLS", "prodigy": "Prodigy", "dadapt_sgd": "D-Adapt SGD",
    "dadapt_adam": "D-Adapt Adam", "sgd_schedulefree": "Schedule-Free SGD",
    "adamw_schedulefree": "Schedule-Free AdamW", "dog": "DoG",
    "lr_range_sgd": "LR-range test + SGD", "sgd_cosine": "SGD + cosine (lr 0.1)",
}
MBT = ("mbt_mmt", "mbt_nag")
# Methods whose ``lr`` is a multiplier on a step size they estimate internally. The loop
# logs that step (mbt.optim.step_size); records from before it logged the multiplier,
# recognisable as a curve flat at the configured lr.
MULTIPLIER = ("prodigy", "dadapt_sgd", "dadapt_adam", "dog")
# The tuned baselines of the preset (autolr_grid), for a note when one has a single lr.
TUNED_BASELINES = ("sgd", "mmt", "nag", "adam")
_ACC_TIE = 0.005   # accuracy differences that print as +0.00
_TIME_TIE = 0.005  # time ratios that print as 1.00


def _name(optim) -> str:
    return NAMES.get(optim, str(optim))


@dataclass(frozen=True)
class Point:
    """The runs of one start lr of one method: best- and final-epoch accuracy over seeds."""

    lr: float
    best: Stat | None
    final: Stat | None
    n: int
    n_div: int
    chance: float | None

    def fmt(self, which: str = "best") -> str:
        s = self.best if which == "best" else self.final
        if s is None:
            return ""
        if self.n_div == self.n:
            return f"{self.chance:.2f} (div, n={self.n})"
        div = f", {self.n_div} div" if self.n_div else ""
        return f"{s.fmt(2)} (n={self.n}{div})"


@dataclass
class MethodRow:
    model: str
    dataset: str
    optim: str
    kind: str                    # automatic | tuned
    grid: list[float]            # start lrs, ascending
    seeds: list
    runs: int                    # in all, every seed
    runs_per_seed: float
    time: Stat | None            # seconds per seed (sum over the method's runs of the seed)
    time_per_seed: list[float]
    search: Stat | None          # of which in the searches (history["search_time"])
    device: str                  # cuda | cpu | mixed
    estimated_time: int          # runs without wall_time (sum of epoch times instead)
    best_point: Point
    median_point: Point
    missing: list[str]           # "seed 1 lacks 1e-3", for incomplete grids

    @property
    def name(self) -> str:
        return _name(self.optim)

    @property
    def acc(self) -> float | None:
        return None if self.best_point.best is None else self.best_point.best.mean

    @property
    def final(self) -> float | None:
        return None if self.best_point.final is None else self.best_point.final.mean

    @property
    def seconds(self) -> float | None:
        return None if self.time is None else self.time.mean


def _point(lr: float, runs: list[dict]) -> Point:
    triples = [accuracies(r) for r in runs]
    n_div = sum(t[2] for t in triples)
    return Point(lr, stat(t[0] for t in triples), stat(t[1] for t in triples), len(runs),
                 n_div, triples[0][0] if n_div else None)


def _on_cuda(r: dict) -> bool:
    device = r.get("device")
    if device:
        return str(device).startswith("cuda")
    name = str(r.get("device_name") or "")
    return bool(name) and not name.startswith("CPU")


def _method(model: str, dataset: str, optim: str, runs: list[dict]) -> MethodRow:
    by_lr: dict[float, list[dict]] = {}
    by_seed: dict = {}
    for r in runs:
        by_lr.setdefault(lr_key(r.get("lr") or 0.0), []).append(r)
        by_seed.setdefault(r.get("seed"), []).append(r)
    grid = sorted(by_lr)
    points = {lr: _point(lr, by_lr[lr]) for lr in grid}
    seeds = sorted(by_seed, key=seed_order)
    lrs_of = {s: {lr_key(r.get("lr") or 0.0) for r in by_seed[s]} for s in seeds}
    whole = [s for s in seeds if len(lrs_of[s]) == len(grid)]
    # chosen on the seeds that ran the whole grid, as the extra seeds' lr was: a 3-seed
    # mean must not lose to one lucky seed at another lr
    choosers = [_point(lr, [r for r in by_lr[lr] if r.get("seed") in whole]) for lr in grid] \
        if whole else list(points.values())
    best_lr = tuned_lr({p.lr: None if p.best is None else p.best.mean for p in choosers})
    # seeds run at the chosen lr only reuse the grid's tuning; they are not incomplete grids
    extra = {s for s in seeds if whole and len(grid) > 1 and lrs_of[s] == {best_lr}}
    paying = [s for s in seeds if s not in extra]
    per_seed, search, estimated = [], [], 0
    for s in paying:
        secs = [run_seconds(r) for r in by_seed[s]]
        estimated += sum(e for _, e in secs)
        per_seed.append(sum(v for v, _ in secs))
        search.append(sum(t for r in by_seed[s]
                          for t in (r.get("history") or {}).get("search_time") or []
                          if t is not None))
    cuda = [_on_cuda(r) for r in runs]
    missing = [f"seed {s} lacks {', '.join(fmt_lr(lr) for lr in grid if lr not in lrs_of[s])}"
               for s in paying if len(lrs_of[s]) < len(grid)]
    return MethodRow(
        model=model, dataset=dataset, optim=optim,
        kind="tuned" if len(grid) > 1 else "automatic", grid=grid, seeds=seeds,
        runs=len(runs), runs_per_seed=sum(len(by_seed[s]) for s in paying) / len(paying),
        time=stat(per_seed),
        time_per_seed=per_seed, search=stat(search),
        device="cuda" if all(cuda) else "cpu" if not any(cuda) else "mixed",
        estimated_time=estimated, best_point=points[best_lr],
        median_point=points[grid[(len(grid) - 1) // 2]], missing=missing)


def _sort_key(row: MethodRow) -> tuple:
    return (row.acc is None, -(row.acc or 0.0), row.seconds if row.seconds is not None
            else math.inf, row.optim)


def method_rows(records: list[dict]) -> dict[tuple[str, str], list[MethodRow]]:
    """Per (model, data set): one row per method, best best-epoch accuracy first."""
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in records:
        key = (str(r.get("model")), str(r.get("dataset")))
        groups.setdefault(key, {}).setdefault(str(r.get("optim")), []).append(r)
    return {key: sorted((_method(*key, optim, runs) for optim, runs in methods.items()),
                        key=_sort_key)
            for key, methods in sorted(groups.items())}


# --- the MBT verdict ----------------------------------------------------------------------------

def _versus(m: MethodRow, ref: MethodRow, role: str) -> str:
    wins, loses, ties = [], [], []
    spread = max((s.std for s in (m.best_point.best, ref.best_point.best, m.best_point.final,
                                  ref.best_point.final) if s is not None and s.n > 1),
                 default=0.0)
    for label, ours, theirs in (("best-epoch accuracy", m.acc, ref.acc),
                                ("final-epoch accuracy", m.final, ref.final)):
        if ours is None or theirs is None:
            continue
        d = ours - theirs
        noise = ", within the seed std" if spread and abs(d) <= spread else ""
        text = f"{label} ({d:+.2f} points{noise})"
        (ties if abs(d) < _ACC_TIE else wins if d > 0 else loses).append(text)
    if m.seconds is not None and ref.seconds:
        ratio = m.seconds / ref.seconds
        text = f"time ({ratio:.2f}× as long: {m.seconds:.1f} s vs {ref.seconds:.1f} s per seed)"
        (ties if abs(ratio - 1) < _TIME_TIE else wins if ratio < 1 else loses).append(text)
    parts = [f"{verb} on {join_and(items)}" for verb, items in (("wins", wins), ("loses", loses),
                                                            ("ties", ties)) if items]
    if ref.kind == "tuned":
        what = (f"{ref.name}, the best {role} (start lr {fmt_lr(ref.best_point.lr)}, the best "
                f"of {len(ref.grid)} tried, {ref.runs_per_seed:g} runs per seed)")
    else:
        what = f"{ref.name}, the best {role}"
    return f"{m.name} against {what}: " + ("; ".join(parts) or "nothing to compare") + "."


def mbt_verdicts(rows: list[MethodRow]) -> list[str]:
    """Plain sentences: where MBT-MMT / MBT-NAG win and lose against the best other
    automatic method and the best tuned method (by best-epoch accuracy)."""
    scored = [r for r in rows if r.acc is not None]
    mbt = [r for r in scored if r.optim in MBT]
    if not mbt:
        return ["MBT-MMT / MBT-NAG have no runs here: no verdict."]
    auto = [r for r in scored if r.kind == "automatic" and not r.optim.startswith("mbt_")]
    tuned = [r for r in scored if r.kind == "tuned"]
    out = []
    for m in sorted(mbt, key=lambda r: r.optim):
        said = [_versus(m, ref, role) for ref, role in
                ((auto[0] if auto else None, "other automatic method"),
                 (tuned[0] if tuned else None, "tuned method")) if ref is not None]
        if not auto:
            said.append(f"{m.name}: no other automatic method has runs here.")
        if not tuned:
            said.append(f"{m.name}: no tuned method (runs at more than one start lr) here.")
        if m.kind == "tuned":
            said.insert(0, f"{m.name} has runs at {len(m.grid)} start lrs, so it counts as "
                           "tuned here, at its best grid point.")
        out.append(" ".join(said))
    return out


# --- formatting -------------------------------------------------------------------------------

def _fmt_time(row: MethodRow) -> str:
    if row.time is None:
        return ""
    s = (f"{row.time.mean:.1f} ± {row.time.std:.1f}" if row.time.n > 1
         else f"{row.time.mean:.1f}")
    est = f" (≈ {row.estimated_time} runs w/o wall_time)" if row.estimated_time else ""
    if row.device == "cuda":
        return f"{s} s ({row.time.mean / 3600:.3g} GPU-h){est}"
    if row.device == "cpu":
        return f"{s} CPU s{est}"
    return f"{s} s (CPU and GPU runs){est}"


def _fmt_lrs(row: MethodRow) -> str:
    if row.kind == "automatic":
        return fmt_lr(row.grid[0])
    return (f"{fmt_lr(row.best_point.lr)} best, {fmt_lr(row.median_point.lr)} median of "
            f"{len(row.grid)}")


def _md_rows(rows: list[MethodRow]) -> list[list]:
    return [[row.name, row.kind, _fmt_lrs(row), f"{row.runs_per_seed:g}", _fmt_time(row),
             row.best_point.fmt("best"), row.best_point.fmt("final"),
             row.median_point.fmt("best"), " ".join(str(s) for s in row.seeds)]
            for row in rows]


def _csv_row(row: MethodRow, protocol) -> dict:
    b, m = row.best_point, row.median_point
    return {
        "model": row.model, "dataset": row.dataset, "optim": row.optim, "method": row.name,
        "kind": row.kind, "grid_lrs": " ".join(fmt_lr(lr) for lr in row.grid),
        "n_grid": len(row.grid), "runs_per_seed": row.runs_per_seed, "runs_total": row.runs,
        "seeds": " ".join(str(s) for s in row.seeds), "n_seeds": len(row.seeds),
        "time_s_mean": round_or_none(row.seconds, 3),
        "time_s_std": round_or_none(None if row.time is None else row.time.std, 3),
        "time_s_per_seed": " ".join(f"{v:g}" for v in row.time_per_seed),
        "gpu_hours_mean": (round_or_none(row.seconds / 3600, 6)
                           if row.device == "cuda" and row.seconds is not None else None),
        "device": row.device, "runs_without_wall_time": row.estimated_time,
        "search_s_mean": round_or_none(None if row.search is None else row.search.mean, 3),
        "best_lr": fmt_lr(b.lr),
        "best_acc_mean": round_or_none(b.best and b.best.mean), "best_acc_std": round_or_none(
            b.best and b.best.std), "best_acc_n": b.n, "best_n_diverged": b.n_div,
        "final_acc_mean": round_or_none(b.final and b.final.mean),
        "final_acc_std": round_or_none(b.final and b.final.std),
        "median_lr": fmt_lr(m.lr), "median_acc_mean": round_or_none(m.best and m.best.mean),
        "median_acc_std": round_or_none(m.best and m.best.std), "median_acc_n": m.n,
        "median_n_diverged": m.n_div, "complete_grid": not row.missing, "protocol": protocol,
    }


# --- the figure -------------------------------------------------------------------------------

def _lr_curve(r: dict) -> tuple[list, list[float]]:
    h = r.get("history") or {}
    lrs = h.get("lr") or []
    epochs = h.get("epoch") or list(range(1, len(lrs) + 1))
    pts = [(e, float(v)) for e, v in zip(epochs, lrs) if v is not None and float(v) > 0]
    return [e for e, _ in pts], [v for _, v in pts]


def _logged_multiplier(r: dict) -> bool:
    """A record from before step-size logging: a multiplier method's curve flat at its lr."""
    lrs = _lr_curve(r)[1]
    return (str(r.get("optim")) in MULTIPLIER and bool(lrs)
            and all(math.isclose(v, float(r.get("lr") or 0)) for v in lrs))


def _ink(color) -> tuple[float, float, float]:
    """A text colour for a marker colour: the light half of tab20 darkened to be legible."""
    rgb = to_rgb(color)
    light = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 0.55
    return tuple(v * 0.6 for v in rgb) if light else rgb


def _seconds_axis(ax) -> None:
    """Plain numbers (100, 200, 300) on a log time axis, not 2 × 10^2: within a decade
    and a half the 2s, 3s and 5s are labelled too."""
    lo, hi = ax.get_xlim()
    decade = 10 ** math.floor(math.log10(lo))
    if lo < 1.25 * decade:  # reach down to the round number just below
        lo = decade
        ax.set_xlim(lo, hi)
    few = hi / lo < 30

    def fmt(v, _pos) -> str:
        lead = round(v / 10 ** math.floor(math.log10(v) + 1e-9), 6)
        return f"{v:g}" if lead == 1 or (few and lead in (2, 3, 5)) else ""

    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.xaxis.set_minor_formatter(FuncFormatter(fmt))


def _place_labels(fig: Figure, ax, texts: list, xs: list[float], ys: list[float],
                  markers: list) -> None:
    """Move the point labels of ``ax`` apart so that none overlaps another or a point, each
    with a thin leader line to its point (adjustText). A fixed number of iterations, not
    adjustText's default time limit, keeps the figure the same from one build to the next.
    Without adjustText the labels stay at their offsets (and may overlap)."""
    try:
        from adjustText import adjust_text
    except ImportError:
        log.warning(f"autolr: adjustText is not installed ({install_hint('report')}): point "
                    "labels in panel (a) may overlap")
        return
    if not texts:
        return
    fig.draw_without_rendering()  # final layout and axis limits before measuring the texts
    # The markers' extents, not just their centres, are obstacles, so that no label covers
    # a point: adjustText reads a Line2D as its data point only, so pass boxes (data
    # coordinates) of each marker's extent, 2 px wider all round.
    to_data = ax.transData.inverted()
    boxes = [m.get_window_extent().padded(2).transformed(to_data) for m in markers]
    adjust_text(texts, x=xs, y=ys, objects=boxes, ax=ax, iter_lim=400, time_lim=None,
                expand=(1.3, 1.7), force_text=(0.3, 0.5), min_arrow_len=8,
                arrowprops=dict(arrowstyle="-", color="0.5", lw=0.6))


def _figure(groups: dict, records: list[dict], path: Path, protocol) -> Path:
    """``autolr.png``: per task, accuracy against total cost and accuracy per epoch.

    Longer than 60 lines: one figure of two panels per task, drawn top to bottom; its
    labels, limits and legends are set where each panel is drawn."""
    fig = Figure(figsize=(15, 5.2 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 2, squeeze=False)
    # One colour per method across panels; past 10 methods tab10 would repeat colours,
    # so tab20 and a line style tell them apart in (b).
    optims = list(dict.fromkeys(row.optim for rows in groups.values() for row in rows))
    palette = matplotlib.colormaps["tab10" if len(optims) <= 10 else "tab20"].colors
    colors = {o: palette[i % len(palette)] for i, o in enumerate(optims)}
    styles = {o: "--" if len(optims) > 10 and i % 2 else "-" for i, o in enumerate(optims)}
    for (model, dataset), (ax_a, ax_b) in zip(groups, axes):
        rows = groups[(model, dataset)]
        where = f"{_name(model)} / {_name(dataset)}"
        labels, xs, ys, markers = [], [], [], []
        for row in rows:
            if row.acc is None or row.seconds is None:
                continue
            c, b = colors[row.optim], row.best_point.best
            mbt = row.optim.startswith("mbt_")
            bar = ax_a.errorbar(row.seconds, row.acc,
                                xerr=row.time.std if row.time.n > 1 else None,
                                yerr=b.std if b.n > 1 else None, color=c, capsize=3,
                                marker="s" if row.kind == "tuned" else "o", ms=9 if mbt else 6,
                                mec="k" if mbt else c, ls="none")
            if row.kind == "tuned" and row.median_point.best is not None:
                ax_a.plot([row.seconds] * 2, [row.median_point.best.mean, row.acc], color=c,
                          ls=":", lw=1)
                markers += ax_a.plot(row.seconds, row.median_point.best.mean, marker="s",
                                     mfc="none", color=c, ms=6, ls="none")
            markers.append(bar.lines[0])
            labels.append(ax_a.text(row.seconds, row.acc, row.name, fontsize=8, color=_ink(c),
                                    fontweight="bold" if mbt else "normal"))
            xs.append(row.seconds)
            ys.append(row.acc)
        ax_a.set_xscale("log")
        ax_a.margins(x=0.08, y=0.06)  # room for the labels of the outermost points
        _seconds_axis(ax_a)
        ax_a.set_xlabel("total time per seed (s, log; a tuned method pays for its grid)")
        ax_a.set_ylabel("best-epoch test accuracy (%)")
        ax_a.set_title(f"(a) accuracy vs cost, {where}", fontsize=10)
        ax_a.plot([], [], "ko", label="automatic (one run)")
        ax_a.plot([], [], "ks", label="tuned: best grid point")
        ax_a.plot([], [], "ks", mfc="none", label="tuned: median grid point")
        ax_a.legend(fontsize=7, loc="best")
        _place_labels(fig, ax_a, labels, xs, ys, markers)

        auto = {row.optim for row in rows if row.kind == "automatic"}
        drawn = set()
        for r in sorted(records, key=lambda r: (str(r.get("optim")), str(r.get("seed")))):
            if (str(r.get("model")), str(r.get("dataset"))) != (model, dataset):
                continue
            optim = str(r.get("optim"))
            if optim not in auto:
                continue
            epochs, lrs = _lr_curve(r)
            if not lrs:
                continue
            ax_b.semilogy(epochs, lrs, color=colors[optim], ls=styles[optim],
                          lw=1.8 if optim in MBT else 1.1,
                          marker="." if len(lrs) < 3 else None,
                          label=None if optim in drawn else _name(optim)
                          + (" (multiplier)" if _logged_multiplier(r) else ""))
            drawn.add(optim)
        ax_b.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_b.set_xlabel("epoch")
        ax_b.set_ylabel("logged learning rate (mean over the epoch's steps)")
        ax_b.set_title(f"(b) lr per epoch of the automatic methods, {where}", fontsize=10)
        if drawn:
            # beside the panel: inside, it hides the flat curves at the top
            ax_b.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax_b.text(0.5, 0.5, "no lr logged", ha="center", va="center",
                      transform=ax_b.transAxes)
    fig.suptitle("Automatic learning-rate methods vs tuned baselines, tuning cost counted"
                 + ("" if protocol == "full" else f" [{protocol}]"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


# --- the target -------------------------------------------------------------------------------

def _notes(groups: dict, records: list[dict]) -> list[str]:
    rows = [row for rs in groups.values() for row in rs]
    notes = [
        "**Method.** A method is *tuned* when it has runs at more than one start lr here, "
        "else *automatic*. Time per seed = the sum of `wall_time` over all the method's runs "
        "of one seed (a tuned method pays for its whole grid; an automatic method's run "
        "includes its own search), mean ± std over seeds; runs paid = runs per seed. A tuned "
        "method's extra seeds, run at its chosen start lr only, reuse that tuning: they count "
        "for accuracy, not for cost. Accuracy = test accuracy (%) at the best grid point (the "
        "start lr with the best mean best-epoch accuracy over the seeds that ran the whole "
        "grid, where the extra seeds ran; else over every seed; ties: the larger lr), "
        "mean ± sample std over n seeds, best epoch and final "
        "epoch; a diverged run counts as chance accuracy. Accuracy at the median grid point "
        "= best-epoch accuracy at the middle start lr of the sorted grid (the lower middle "
        "one for an even grid): what a guess costs instead of a search; for an automatic "
        "method, its own accuracy. Sorted by best-epoch accuracy.",
    ]
    few = [row.name for row in rows if row.acc is not None and row.best_point.best.n < 2]
    if few:
        who = "Every method has" if len(few) == len(rows) else f"{join_and(few)} have"
        notes.append(f"**{who} one seed**: no error bars, and the wins and losses above "
                     "can be seed noise; `ARGS='seed=0,1,2'` runs three.")
    devices = {str(r.get("device_name") or r.get("device")) for r in records}
    if len(devices) > 1:
        notes.append(f"**The runs ran on {len(devices)} devices ({', '.join(sorted(devices))})"
                     ": time differences mix hardware with method.**")
    missing = [f"{row.name}: {'; '.join(row.missing)}" for row in rows if row.missing]
    if missing:
        notes.append("**Incomplete grids** (their time undercounts the grid, their best "
                     "point may be missed): " + "; ".join(missing) + ".")
    single = [row.name for row in rows if row.optim in TUNED_BASELINES and len(row.grid) == 1]
    if single:
        notes.append(f"{join_and(single)}: runs at one start lr only so far, so counted as "
                     "automatic (one run, no tuning cost); run `autolr_grid` for its grid.")
    estimated = sum(row.estimated_time for row in rows)
    if estimated:
        notes.append(f"{estimated} runs carry no `wall_time` (W&B source): their time is the "
                     "sum of their epoch times, without evaluation.")
    automatic = {row.optim for row in rows if row.kind == "automatic"}
    flat = sorted({str(r.get("optim")) for r in records
                   if str(r.get("optim")) in automatic and _logged_multiplier(r)})
    if flat:
        notes.append(f"In (b), the logged lr of {join_and([_name(o) for o in flat])} is the user "
                     "multiplier on the step size they estimate internally, not that step "
                     "size: these runs predate the step-size logging (mbt.optim.step_size); "
                     "plotted anyway, flat at the multiplier. Rerun them for the real curve.")
    return notes


def autolr(sel: Selection, ctx: Context) -> list[Path]:
    groups = method_rows(sel.records)
    verdicts = {key: mbt_verdicts(rows) for key, rows in groups.items()}
    many = len(groups) > 1
    summary = []
    for (model, dataset), said in verdicts.items():
        prefix = f"{_name(model)} / {_name(dataset)}: " if many else ""
        summary += [f"**MBT.** {prefix}{s}" for s in said]
    notes = [*summary, *_notes(groups, sel.records), *(f"**Left out.** {n}" for n in sel.notes)]
    lines = header("Beyond the paper: automatic learning-rate methods vs tuned baselines, "
                   "tuning cost counted", sel, ctx, notes)
    lines += ["![autolr](autolr.png)", ""]
    cols = ["method", "kind", "start lr", "runs paid (per seed)", "total time per seed",
            "best-epoch acc (mean ± std, n)", "final-epoch acc", "acc at median grid point",
            "seeds"]
    for (model, dataset), rows in groups.items():
        lines += [f"## {_name(model)} / {_name(dataset)}: every method, best accuracy first",
                  "", *md_table(cols, _md_rows(rows)), ""]
    out = ctx.out
    png = _figure(groups, sel.records, out / "autolr.png", sel.protocol)
    frame = pd.DataFrame([_csv_row(row, sel.protocol) for rows in groups.values()
                          for row in rows])
    return [write_md(out / "autolr.md", lines), write_csv(out / "autolr.csv", frame), png]

