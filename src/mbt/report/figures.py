"""Figures 2(b) and 3 rebuilt from runs: ``results/<fig>.{png,csv,md}``.

Fig. 2(b): the learning rate of Two-way Backtracking GD against the iterate, full batch
(ResNet18 on 500 CIFAR10 images), one curve per run (BatchNorm init, α, start lr δ0 and
the seed, which draws both the subset and the weights, vary between runs), and where each
run settles: :func:`fig2b_settling`, the settling iterate of :mod:`mbt.settle` that
Figure 2(a) uses too. A full-batch epoch is one step, so ``history["lr"]`` is one value
per iterate; where a run kept ``step_lrs`` those are concatenated instead. A lower panel
shows the distribution of the settling iterate per init at α 1e-4 and where the paper's 40
falls in it (:mod:`.verdicts`).
Fig. 3: the learning rate MBT-MMT and MBT-NAG use in each epoch, ResNet18, (a) CIFAR10,
(b) CIFAR100, the plateau switch marked, and the verdicts on warm-up, decay and which is
steadier (:mod:`.verdicts`). Figures use ``matplotlib.figure.Figure`` directly: no pyplot,
no display.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from mbt.settle import GRID_RTOL, longest_constant_stretch, lr_changes, settled_after

from . import paper, verdicts
from .common import DISPLAY, Context, bn_init, fmt_lr, get
from .selection import Selection
from .writers import header, md_table, write_csv, write_md

__all__ = ["FIG2B_MIN_TAIL", "fig2b", "fig2b_settling", "fig3", "lr_series"]

log = logging.getLogger(__name__)

# A Fig. 2(b) run ends after its configured epochs (it is not cut short by a bound) and
# records every iterate, so it counts as settled once its last lr was used twice
# (mbt.settle explains the rule and Fig. 2(a)'s, for toy runs cut off at max_iters).
FIG2B_MIN_TAIL = 2


def lr_series(record: dict) -> tuple[list[float], str]:
    """(learning rates, "step" | "epoch"): per step where the run kept them, else per epoch."""
    history = record.get("history") or {}
    steps = history.get("step_lrs")
    if steps and any(steps):
        return [float(v) for epoch in steps for v in (epoch or [])], "step"
    return [float(v) for v in history.get("lr") or [] if v is not None], "epoch"


def fig2b_settling(lrs: list[float]) -> int | None:
    """The settling iterate k of a Fig. 2(b) run (:func:`mbt.settle.settling_iterate`: the
    lr never changes after iterate k), or None when it is not settled: the lr changed at
    the run's last iterate (fewer than :data:`FIG2B_MIN_TAIL` iterates share the last lr)."""
    return settled_after(lrs, min_tail=FIG2B_MIN_TAIL)


def _changes(lrs: list[float]) -> int:
    # Fig. 3's per-epoch lrs are means over an epoch's steps, not grid values.
    return lr_changes(lrs, rtol=1e-6)


def _label(r: dict, many_seeds: bool) -> str:
    name = DISPLAY.get(r.get("optim"), r.get("optim"))
    return f"{name}, seed {r.get('seed')}" if many_seeds else name


def _seed_sorted(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (str(r.get("dataset")), str(r.get("optim")),
                                          str(r.get("seed"))))


def _num(v: float | None) -> str:
    """α and δ0 as people write them: 1e-4, 0.5, 1, 0.1."""
    if v is None:
        return "—"
    v = float(v)
    return fmt_lr(v) if 0 < v < 1e-2 else f"{v:g}"


# --- Figure 2(b) --------------------------------------------------------------------------------

@dataclass
class _Fig2bRun:
    record: dict
    lrs: list[float]
    unit: str             # "epoch" | "step"
    settle: int | None    # fig2b_settling
    init: str             # BatchNorm init
    alpha: float | None   # Armijo's α (config optim.builder.alpha)
    lr0: float | None     # δ0, the start lr
    seed: object          # the subset (and run) seed

    @property
    def n(self) -> int:
        return len(self.lrs)

    @property
    def config(self) -> tuple:
        return self.init, self.alpha, self.lr0

    def parts(self, varying: set[str]) -> list[str]:
        """The settings that tell this run from the others (only those that vary)."""
        return [text for key, text in (("init", f"{self.init} init"),
                                       ("alpha", f"α {_num(self.alpha)}"),
                                       ("lr0", f"δ0 {_num(self.lr0)}"),
                                       ("seed", f"seed {self.seed}")) if key in varying]

    @property
    def stretch(self) -> tuple[int, int] | None:
        return longest_constant_stretch(self.lrs)

    def settles(self) -> str:
        if self.settle is None:
            return f"not settled in {self.n} iterates"
        return f"settles after iterate {self.settle}"


def _fig2b_run(r: dict) -> _Fig2bRun:
    lrs, unit = lr_series(r)
    alpha = get(r, "config", "optim", "builder", "alpha")
    lr0 = r.get("lr")
    return _Fig2bRun(r, lrs, unit, fig2b_settling(lrs), bn_init(r),
                     None if alpha is None else float(alpha),
                     None if lr0 is None else float(lr0), r.get("seed"))


def _order(v) -> tuple:
    return (v is None, v if isinstance(v, int | float) else 0.0, str(v))


def _fig2b_key(run: _Fig2bRun) -> tuple:
    # torch init first, then α ascending, δ0 descending (the paper's 1 first), seed
    return (run.init != "torch", run.init, _order(run.alpha),
            _order(None if run.lr0 is None else -run.lr0), _order(run.seed))


def _train_loss(r: dict) -> str:
    losses = [v for v in get(r, "history", "train_loss", default=None) or [] if v is not None]
    return f"{losses[0]:.3g} → {losses[-1]:.3g}" if losses else ""


def _fig2b_sentence(run: _Fig2bRun) -> str:
    if run.settle is None:
        tail = f"the lr changes at its last iterate ({run.lrs[-2]:.6g} → {run.lrs[-1]:.6g})" \
            if run.n > 1 else "a single iterate"
        return f"not settled in {run.n} iterates ({tail})"
    k = run.settle
    if k == 0:
        return f"the lr never changes ({run.lrs[0]:.6g} at all {run.n} iterates)"
    return (f"settles after iterate {k}: lr {run.lrs[k]:.6g} from iterate {k + 1} to "
            f"{run.n}, after {lr_changes(run.lrs)} changes")


_PAPER_ALPHA = 1e-4  # the paper's network α (Sec. 4), the one the settling claim is about


# From this many seeds of one setting on, the legend and the "Ours" sentence speak of the
# setting (one entry, its settling range) and leave each seed to the table: 8 seeds per
# init made an 18-line legend.
_SEEDS_GROUPED = 3


def _settle_range(runs: list[_Fig2bRun]) -> str:
    ks = sorted(run.settle for run in runs if run.settle is not None)
    if not ks:
        return f"none of {len(runs)} settles in up to {max(run.n for run in runs)} iterates"
    where = (f"iterate {ks[0]}" if len(ks) == 1 else
             f"iterate {ks[0]}–{ks[-1]} (median {statistics.median(ks):g})")
    return f"{len(ks)} of {len(runs)} settle after {where}"


def _group_label(group: list[_Fig2bRun], varying: set[str]) -> str:
    return (", ".join(["ours", *group[0].parts(varying - {"seed"})])
            + f", {len(group)} seeds: {_settle_range(group)}")


def _fig2b_curve(ax, run: _Fig2bRun, color, ls: str, varying: set[str],
                 label: str | None = None) -> list:
    """Draw one run; returns its table row. ``label``: the legend entry (default: the
    run's own; ``"_nolegend_"`` for the other seeds of a grouped setting)."""
    r, lrs = run.record, run.lrs
    if label is None:
        label = ", ".join(["ours", *run.parts(varying)]) + ": " + run.settles()
    ax.semilogy(range(1, run.n + 1), lrs, color=color, ls=ls, lw=1.5,
                marker="." if run.n <= 100 else None, ms=4, label=label)
    if run.settle is not None and run.settle > 0:
        # the last iterate with another lr: the line the paper's "after 40" matches
        ax.axvline(run.settle, color=color, ls=":", lw=1.2)
        ax.plot(run.settle, lrs[run.settle - 1], marker="o", ms=8, mfc="none",
                mec=color, mew=1.5, ls="none")
    return [run.init, _num(run.alpha), _num(run.lr0), run.seed,
            get(r, "data", "num_train", default=""),
            f"{run.n}" + (" steps" if run.unit == "step" else ""),
            "not settled" if run.settle is None else run.settle,
            "" if run.settle is None else f"{run.settle + 1}–{run.n}",
            "" if run.stretch is None else "{}–{}".format(*run.stretch),
            lr_changes(lrs), f"{lrs[0]:.6g}" if lrs else "",
            f"{lrs[-1]:.6g}" if lrs else "", _train_loss(r), r.get("status")]


def _fig2b_notes(run: _Fig2bRun) -> list[str]:
    """What keeps a run from being the paper's full-batch setting."""
    r, notes = run.record, []
    steps = (r.get("history") or {}).get("steps") or []
    if run.unit == "epoch" and any(s and s > 1 for s in steps):
        notes.append(f"Run `{r.get('run_key')}` took {max(steps)} steps per epoch (not "
                     "full batch) and kept no per-step lrs: its points are epoch means.")
    n_train = get(r, "data", "num_train")
    if n_train and r.get("batch_size") and r["batch_size"] < n_train:
        notes.append(f"Run `{r.get('run_key')}`: batch {r['batch_size']} < {n_train} "
                     "training images, so not full batch as in the paper.")
    return notes


def _fig2b_lr_axis(ax, runs: list[_Fig2bRun], paper_iter: int, protocol: str | None) -> None:
    ax.axvline(paper_iter, color="0.45", ls="--", lw=1.2,
               label=f"paper: settles after {paper_iter} iterates")
    if any(run.settle for run in runs):
        ax.plot([], [], marker="o", mfc="none", mec="0.3", ls=":", color="0.3",
                label="ours: iterate k, after which the lr never changes")
    values = sorted({v for run in runs for v in run.lrs if v > 0})
    if 0 < len(values) <= 8:
        # few distinct lrs (a grid δ0 β^k): label them, not the decades
        ax.yaxis.set_major_locator(FixedLocator(values))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_yticklabels([f"{v:.6g}" for v in values])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iterate (full-batch step)")
    ax.set_ylabel("learning rate")
    ax.set_title("Fig. 2(b): Two-way Backtracking GD, full batch"
                 + ("" if protocol == "full" else f" [{protocol}]"))
    if len(runs) > 3:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8, loc="upper right")


def _settling_groups(runs: list[_Fig2bRun]) -> dict[str, list[_Fig2bRun]]:
    """The runs at the paper's α, per BatchNorm init (and δ0 where several were run)."""
    mine = [run for run in runs if run.alpha is not None
            and math.isclose(run.alpha, _PAPER_ALPHA, rel_tol=1e-9)]
    several = len({run.lr0 for run in mine}) > 1
    groups: dict[str, list[_Fig2bRun]] = {}
    for run in mine:
        label = f"{run.init} init" + (f", δ0 {_num(run.lr0)}" if several else "")
        groups.setdefault(label, []).append(run)
    return groups


def _fig2b_cdf(ax, runs: list[_Fig2bRun], paper_iter: int, color_of) -> list[str]:
    """The distribution of the settling iterate per init (empirical CDF, unsettled runs
    never counted in: a curve below 1 at the right end), with the paper's iterate marked;
    returns one sentence per init: where the paper's iterate falls among our runs."""
    groups = _settling_groups(runs)
    end = max((run.n for run in runs), default=paper_iter)
    sentences = []
    for label, mine in groups.items():
        ks = sorted(run.settle for run in mine if run.settle is not None)
        ys = [i / len(mine) for i in range(len(ks) + 1)]
        ax.step([0, *ks, end], [*ys, ys[-1]], where="post", lw=1.5, color=color_of(mine[0]),
                label=f"{label} (n = {len(mine)})")
        sentences.append(verdicts.settling_sentence(
            label, [run.settle for run in mine], [run.n for run in mine], paper_iter))
    ax.axvline(paper_iter, color="0.45", ls="--", lw=1.2, label=f"paper: {paper_iter}")
    ax.set_xlabel("settling iterate k")
    ax.set_ylabel("share of runs settled")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"settling iterate at α {_num(_PAPER_ALPHA)}, empirical CDF per init"
                 + ("" if groups else f": no run at α {_num(_PAPER_ALPHA)}"))
    ax.legend(fontsize=8, loc="lower right")
    return sentences


def _by_setting(runs: list[_Fig2bRun]) -> dict[tuple, list[_Fig2bRun]]:
    groups: dict[tuple, list[_Fig2bRun]] = {}
    for run in runs:
        groups.setdefault(run.config, []).append(run)
    return groups


def _group_sentence(group: list[_Fig2bRun], varying: set[str]) -> str:
    unsettled = [run for run in group if run.settle is None]
    seeds = ", ".join(str(run.seed) for run in group)

    def why(run: _Fig2bRun) -> str:
        return (f"{run.lrs[-2]:.6g} → {run.lrs[-1]:.6g} at its last iterate" if run.n > 1
                else "a single iterate")

    return (", ".join([*group[0].parts(varying - {"seed"}), f"seeds {seeds}"]) + ": "
            + _settle_range(group)
            + ("; not settled: " + ", ".join(f"seed {run.seed} ({why(run)})"
                                            for run in unsettled) if unsettled else ""))


def _stabilised(run: _Fig2bRun) -> int | None:
    """The settling iterate; for a run that did not settle, the iterate before its longest
    one-lr stretch when that stretch is as long as a settled run's must be
    (:data:`FIG2B_MIN_TAIL`), else None."""
    if run.settle is not None or run.stretch is None:
        return run.settle
    first, last = run.stretch
    return first - 1 if last - first + 1 >= FIG2B_MIN_TAIL else None


def _stretch_line(runs: list[_Fig2bRun], paper_iter: int) -> str | None:
    """Where the paper's iterate falls when a run that did not settle is read as
    stabilising before its longest one-lr stretch; None when no run at the paper's α
    reads differently (the line would repeat the one above)."""
    groups = _settling_groups(runs)
    differ = [run for mine in groups.values() for run in mine
              if _stabilised(run) != run.settle]
    if not differ:
        return None
    held = "; ".join(f"{', '.join(run.parts({'init', 'lr0', 'seed'}))}: one lr over "
                     "iterates {}–{}".format(*run.stretch) for run in differ)
    where = "; ".join(verdicts.settling_sentence(label, [_stabilised(run) for run in mine],
                                                 [run.n for run in mine], paper_iter,
                                                 noun="stabilising iterate")
                      for label, mine in groups.items())
    return (f"**Read as the longest one-lr stretch** (the paper does not define "
            f"stabilising, and a run can hold one lr for many iterates, then change it "
            f"again as Two-way's search grows the step back: a run that did not settle "
            f"is read as stabilising at the iterate before its longest one-lr stretch of "
            f"{FIG2B_MIN_TAIL} or more iterates; settled runs keep their settling iterate; "
            f"{held}): {where}.")


def _fig2b_ours(runs: list[_Fig2bRun], varying: set[str]) -> str:
    if len(runs) == 1:
        return "**Ours**: " + _fig2b_sentence(runs[0]) + "."
    parts = []
    for group in _by_setting(runs).values():
        if len(group) >= _SEEDS_GROUPED:
            parts.append(_group_sentence(group, varying))
        else:
            parts += [", ".join(run.parts(varying)) + ": " + _fig2b_sentence(run)
                      for run in group]
    ks = sorted(run.settle for run in runs if run.settle is not None)
    return (f"**Ours**: {len(ks)} of {len(runs)} runs settle"
            + (f", after iterate {ks[0]}–{ks[-1]} (median {statistics.median(ks):g})"
               if ks else "") + "; " + "; ".join(parts) + ".")


_FIG2B_DEFINITION = (
    "**Settling iterate** k (`mbt.settle.settling_iterate`, the definition Figure 2(a) "
    "uses): the first iterate after which the learning rate never changes within the "
    f"run: iterates k+1, …, N all use one lr (equal within relative {fmt_lr(GRID_RTOL)}); "
    "k = 0 if it never changes. A Figure 2(b) run's iterates are its epochs (one "
    "full-batch step each); it ends after the epochs it was configured for, not cut "
    "short by a bound, so it counts as settled when its last lr was used at least "
    f"{FIG2B_MIN_TAIL} times (k ≤ N − {FIG2B_MIN_TAIL}), *not settled* when the lr "
    "changes at its last iterate. The paper's \"after 40 iterates\" is read the same "
    "way (k = 40). In the figure a dotted line and a circle mark iterate k of each run.")


def fig2b(sel: Selection, ctx: Context) -> list[Path]:
    claim, paper_iter = paper.CLAIMS["fig2b"]
    runs = sorted((_fig2b_run(r) for r in sel.records), key=_fig2b_key)
    varying = {key for key, values in (("init", {run.init for run in runs}),
                                       ("alpha", {run.alpha for run in runs}),
                                       ("lr0", {run.lr0 for run in runs}),
                                       ("seed", {str(run.seed) for run in runs}))
               if len(values) > 1}
    # One colour per setting (init, α, δ0), one line style per seed within it.
    configs = list(dict.fromkeys(run.config for run in runs))
    palette = matplotlib.colormaps["tab10" if len(configs) <= 10 else "tab20"].colors
    fig = Figure(figsize=(9 if len(runs) > 3 else 7, 7.4), layout="constrained")
    ax, cdf = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]})
    rows, csv_rows, notes, per_config = [], [], [], {}
    settings = _by_setting(runs)
    for run in runs:
        nth = per_config.setdefault(run.config, [])
        nth.append(run)
        group = settings[run.config]
        label = None if len(group) < _SEEDS_GROUPED else \
            _group_label(group, varying) if len(nth) == 1 else "_nolegend_"
        rows.append(_fig2b_curve(ax, run, palette[configs.index(run.config) % len(palette)],
                                 ("-", "--", "-.", ":")[(len(nth) - 1) % 4], varying,
                                 label))
        notes += _fig2b_notes(run)
        csv_rows += [{"run_key": run.record.get("run_key"), "bn_init": run.init,
                      "alpha": run.alpha, "lr0": run.lr0, "seed": run.seed, "iterate": i,
                      "lr": v, "per": run.unit, "settled_after": run.settle,
                      "stretch_first": run.stretch and run.stretch[0],
                      "stretch_last": run.stretch and run.stretch[1]}
                     for i, v in enumerate(run.lrs, 1)]
    _fig2b_lr_axis(ax, runs, paper_iter, sel.protocol)
    where = _fig2b_cdf(cdf, runs, paper_iter,
                       lambda run: palette[configs.index(run.config) % len(palette)])
    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "fig2b.png", dpi=120)
    spread = (f"**Where the paper's {paper_iter} falls** among our settling iterates at α "
              f"{_num(_PAPER_ALPHA)} (percentile rank: the share of runs that settle "
              f"before it, ties half; lower panel of the figure): "
              + ("; ".join(where) if where else f"n/a: no run at α {_num(_PAPER_ALPHA)}")
              + ".")
    lines = header("Figure 2(b): learning rate of Two-way Backtracking GD vs iterate, full "
                   "batch", sel, ctx, [f"**Paper**: {claim}.", _fig2b_ours(runs, varying),
                                       spread,
                                       *filter(None, [_stretch_line(runs, paper_iter)]),
                                       _FIG2B_DEFINITION, *notes])
    lines += ["![fig2b](fig2b.png)", "",
              *md_table(["BatchNorm init", "α", "δ0 (start lr)", "seed (subset and weights)",
                         "images", "iterates", "settles after iterate", "lr constant at iterates",
                         "longest one-lr stretch",
                         "lr changes", "first lr", "final lr", "train loss (first → final)",
                         "status"], rows), ""]
    return [write_md(out / "fig2b.md", lines), write_csv(out / "fig2b.csv",
                                                          pd.DataFrame(csv_rows)),
            out / "fig2b.png"]


# --- Figure 3 -------------------------------------------------------------------------------------

# What the paper's Figure 3 looks like, from its text (the figure prints no numbers).
FIG3_PAPER_SHAPE = (
    "the lr per epoch behaves like the common warm-up-then-decay scheme: it grows over the "
    "first epochs, then decays; the significant drop is where α switches from 1e-4 to 0.5 "
    "once training stalls (Sec. 3.5.2: no loss decrease in 5 consecutive epochs; momentum "
    "is switched off there too); MBT-NAG's lr stabilises better than MBT-MMT's "
    "(Sec. 4.2)")
FIG3_PAPER_SHAPE_SHORT = ("Paper's Fig. 3 (Sec. 4.2): warm-up, then decay; the big drop = "
                          "α switched 1e-4 → 0.5 when training stalls; MBT-NAG steadier.")


def _last_half_ratio(lrs: list[float]) -> float | None:
    tail = [v for v in lrs[len(lrs) // 2:] if v > 0]
    return max(tail) / min(tail) if tail else None


# MMT and NAG often take the same lrs in short runs: a solid line with filled circles and a
# dashed one with open squares stay visible on top of each other.
_FIG3_STYLES = {"mbt_mmt": dict(color="C0", ls="-", marker="o", ms=5),
                "mbt_nag": dict(color="C1", ls="--", marker="s", ms=8, mfc="none", mew=1.4)}


@dataclass
class _Fig3Rows:
    """What the panels collect for the tables: per-run rows, the CSV, the last-half
    max/min per (data set, optimizer) and the verdicts' shape numbers."""

    rows: list = field(default_factory=list)
    csv: list = field(default_factory=list)
    ratios: dict = field(default_factory=dict)
    shapes: list = field(default_factory=list)


def _fig3_run(ax, r: dict, ds: str, many: bool, out: _Fig3Rows) -> None:
    """One run's lr curve (and its plateau switch) on ``ax``, and its rows."""
    h = r.get("history") or {}
    lrs = [float(v) for v in h.get("lr") or []]
    epochs = h.get("epoch") or list(range(1, len(lrs) + 1))
    style = _FIG3_STYLES.get(r.get("optim"), dict(ls="-."))
    ax.semilogy(epochs, lrs, lw=1.5, label=_label(r, many),
                markevery=max(1, len(lrs) // 20), **style)
    switch = verdicts.switch_epoch(r)
    out.shapes.append((r, verdicts.fig3_shape(lrs, switch)))
    if switch is not None:
        ax.axvline(switch, color=style.get("color", "0.4"), ls=":", lw=1.2,
                   label=f"{_label(r, many)}: α switched, epoch {switch}")
    for i, (e, v) in enumerate(zip(epochs, lrs)):
        out.csv.append({
            "dataset": ds, "optim": r.get("optim"), "seed": r.get("seed"),
            "run_key": r.get("run_key"), "epoch": e, "lr": v,
            "search_mean_lr": _at(h.get("search_mean_lr"), i),
            "test_acc": _at(h.get("test_acc"), i)})
    ratio = _last_half_ratio(lrs)
    out.ratios.setdefault((ds, r.get("optim")), []).append(ratio)
    peak = max(range(len(lrs)), key=lrs.__getitem__) if lrs else None
    out.rows.append([DISPLAY.get(ds, ds), DISPLAY.get(r.get("optim"), r.get("optim")),
                     r.get("seed"), len(lrs), f"{lrs[0]:.4g}" if lrs else "",
                     f"{lrs[peak]:.4g} ({epochs[peak]})" if lrs else "",
                     f"{lrs[-1]:.4g}" if lrs else "",
                     "" if ratio is None else f"{ratio:.2f}", _changes(lrs),
                     _acc(r), r.get("status")])


def _fig3_panel(ax, letter: str, ds: str, runs: list[dict], many: bool, protocol,
                out: _Fig3Rows) -> None:
    """Panel (letter): every run on data set ``ds``, or a note that there is none."""
    mine = [r for r in runs if r.get("dataset") == ds]
    series = {tuple(float(v) for v in (r.get("history") or {}).get("lr") or []) for r in mine}
    for r in mine:
        _fig3_run(ax, r, ds, many, out)
    ax.set_title(f"({letter}) {DISPLAY.get(ds, ds)}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    if mine:
        same = len(mine) > 1 and len(series) == 1
        ax.legend(fontsize=8, title="same lr every epoch: the lines coincide" if same
                  else None, title_fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, f"no {DISPLAY.get(ds, ds)} runs"
                + ("" if protocol == "full" else f" under protocol {protocol}"),
                ha="center", va="center", transform=ax.transAxes, color="0.4")


def _fig3_steadiness(datasets: list[str], ratios: dict) -> list[str]:
    """Per data set: MBT-MMT's and MBT-NAG's mean last-half max/min lr, and which is
    steadier."""
    compare = []
    for ds in datasets:
        got = {o: [v for v in ratios.get((ds, o), []) if v is not None]
               for o in ("mbt_mmt", "mbt_nag")}
        if all(got.values()):
            mean = {o: sum(v) / len(v) for o, v in got.items()}
            if abs(mean["mbt_mmt"] - mean["mbt_nag"]) < 0.005:
                verdict = "equally steady"
            else:
                verdict = f"{DISPLAY[min(mean, key=mean.get)]} steadier"
            compare.append(f"{DISPLAY[ds] if ds in DISPLAY else ds}: last-half max/min lr "
                           f"MBT-MMT {mean['mbt_mmt']:.2f}, MBT-NAG {mean['mbt_nag']:.2f} "
                           f"({verdict})")
    return compare


def fig3(sel: Selection, ctx: Context) -> list[Path]:
    claim, _ = paper.CLAIMS["fig3"]
    runs = _seed_sorted(sel.records)
    datasets = ["cifar10", "cifar100", *sorted({str(r.get("dataset")) for r in runs}
                                              - {"cifar10", "cifar100"})]
    many = len({r.get("seed") for r in runs}) > 1
    fig = Figure(figsize=(6 * len(datasets), 4.2), layout="constrained")
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    got = _Fig3Rows()
    for ax, letter, ds in zip(axes, "abcdefgh", datasets):
        _fig3_panel(ax, letter, ds, runs, many, sel.protocol, got)
    fig.suptitle("Fig. 3: MBT-MMT and MBT-NAG learning rate per epoch, ResNet18"
                 + ("" if sel.protocol == "full" else f" [{sel.protocol}]"))
    fig.supxlabel(FIG3_PAPER_SHAPE_SHORT, fontsize=9, color="0.3")
    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "fig3.png", dpi=120)

    compare = _fig3_steadiness(datasets, got.ratios)
    notes = [f"**Paper**: \"{claim}\".",
             "**Ours**: " + ("; ".join(compare) if compare else "MBT-MMT and MBT-NAG not both "
                             "present for a data set; no comparison") + ". Per epoch, the lr "
             "is the mean lr of the epoch's steps; last-half max/min = ratio of the largest "
             "to the smallest lr over the second half of the epochs (1 = constant)."]
    lines = header("Figure 3: learning rate per epoch of MBT-MMT and MBT-NAG, ResNet18",
                   sel, ctx, notes)
    lines += ["![fig3](fig3.png)", "",
              "*Figure 3, ours: the learning rate of each epoch (the mean over its steps), "
              "log scale; MBT-MMT solid with filled circles, MBT-NAG dashed with open "
              "squares (the two coincide where only one shows). The paper's Figure 3, as its "
              f"text describes it: {FIG3_PAPER_SHAPE}. Compare that shape with ours, not the "
              "values.*", "",
              *md_table(["data", "optimizer", "seed", "epochs", "lr epoch 1", "peak lr (epoch)",
                         "final lr", "last-half max/min", "lr changes", "best acc (epoch)",
                         "status"], got.rows), "", *verdicts.fig3_lines(got.shapes, datasets)]
    return [write_md(out / "fig3.md", lines), write_csv(out / "fig3.csv", pd.DataFrame(got.csv)),
            out / "fig3.png"]


def _at(values, i):
    return values[i] if values and i < len(values) else None


def _acc(r: dict) -> str:
    best = r.get("best_test_acc")
    return "" if best is None else f"{best:.2f} ({r.get('best_epoch')})"

