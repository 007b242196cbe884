"""Claim-level verdicts (issue 23): each of the paper's claims as a number beside the
paper's, computed from the same cells the tables and figures show.

* Table 2: works / fails per cell and agreement with the paper's classification, the
  Spearman correlation of our cells with the paper's, MBT minus the best tuned baseline,
  the spread of each optimizer over the 9 start lrs, and the lr MBT found per start lr
  (:func:`table2_lines`).
* Table 3: our ranking of the models against the paper's (:func:`table3_lines`).
* Fig. 3: does the lr rise, then fall after the plateau switch; which of MBT-MMT and
  MBT-NAG is steadier (:func:`fig3_shape`, :func:`fig3_lines`).
* Fig. 2(b): where the paper's 40 falls in the distribution of our settling iterates
  (:func:`percentile_of`, :func:`settling_sentence`).

Rank correlations are computed here (average ranks for ties) so that the reports need no
SciPy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import pandas as pd

from .common import DISPLAY, accuracies, chance_acc, fmt_lr, get, plural, tuned_lr
from .paper import LR_GRID
from .writers import md_table

__all__ = [
    "FAIL_MARGIN", "cell_fails", "fig3_lines", "fig3_shape", "kendall", "paper_fails",
    "percentile_of", "run_fails", "settling_sentence", "spearman", "switch_epoch",
    "table2_lines", "table3_lines",
]

# A cell "fails" when its best accuracy is within this many points of chance (or diverged).
FAIL_MARGIN = 5.0
_PAPER_CHANCE = 10.0  # Tables 2-3's CIFAR10 (Table 2 is CIFAR10 only)
_BASELINES = ("sgd", "mmt", "nag", "adagrad", "adadelta", "rmsprop", "adam", "adamax")
_MBT = ("mbt_mmt", "mbt_nag")


# --- statistics ---------------------------------------------------------------------------

def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ: Pearson's correlation of the average ranks; None when undefined
    (fewer than 2 pairs, or one side constant)."""
    if len(x) != len(y) or len(x) < 2:
        return None
    rx = pd.Series(x, dtype=float).rank(method="average").to_numpy()
    ry = pd.Series(y, dtype=float).rank(method="average").to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def kendall(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's τ-b (ties on either side leave the pair out of the numerator and shrink
    the denominator); None when undefined."""
    if len(x) != len(y) or len(x) < 2:
        return None
    concordant = discordant = tied_x = tied_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tied_x += 1
            elif dy == 0:
                tied_y += 1
            elif dx == dy:
                concordant += 1
            else:
                discordant += 1
    both = concordant + discordant
    denom = math.sqrt((both + tied_x) * (both + tied_y))
    return (concordant - discordant) / denom if denom else None


def percentile_of(value: float, sample: Sequence[float]) -> float | None:
    """The percentile rank of ``value`` in ``sample``: the share (%) of the sample below
    it, ties counting half; None for an empty sample."""
    if not sample:
        return None
    below = sum(v < value for v in sample)
    ties = sum(v == value for v in sample)
    return 100.0 * (below + 0.5 * ties) / len(sample)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _corr(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


# --- works / fails ------------------------------------------------------------------------

def run_fails(record: dict) -> bool:
    """A run fails when it diverged or its best accuracy is below chance + FAIL_MARGIN."""
    best, _, diverged = accuracies(record)
    return diverged or best is None or best < chance_acc(record) + FAIL_MARGIN


def cell_fails(records: list[dict]) -> tuple[bool, int]:
    """(fails, runs that fail): a cell fails when at least half of its runs fail."""
    failed = sum(run_fails(r) for r in records)
    return 2 * failed >= len(records), failed


def paper_fails(value: float, chance: float = _PAPER_CHANCE) -> bool:
    """The same rule on a paper number (the paper prints a diverged run near chance)."""
    return value < chance + FAIL_MARGIN


def _word(fails: bool) -> str:
    return "fails" if fails else "works"


# --- Table 2 ------------------------------------------------------------------------------

def _paper_value(row: dict) -> float | None:
    return float(row["paper"]) if row.get("paper") not in (None, "") else None


def _name(row: dict) -> str:
    return f"{DISPLAY.get(row['optim'], row['optim'])} {fmt_lr(row['lr'])}"


def _classify(rows: list[dict], runs_of: dict[Hashable, list[dict]]) -> list[dict]:
    """Per cell: ours and the paper's works / fails (None where not there)."""
    out = []
    for r in rows:
        runs = runs_of.get((r["optim"], r["lr"]), [])
        ours, failed = cell_fails(runs) if runs else (None, 0)
        p = _paper_value(r)
        out.append({"row": r, "ours": ours, "failed": failed, "n": len(runs),
                     "paper": None if p is None else paper_fails(p)})
    return out


def _agreement_lines(cells: list[dict]) -> list[str]:
    both = [c for c in cells if c["ours"] is not None and c["paper"] is not None]
    baseline = [c for c in both if c["row"]["optim"] in _BASELINES]
    agree = [c for c in both if c["ours"] == c["paper"]]
    if not both:
        return ["- **Works / fails**: n/a: no cell both run by us and printed by the paper."]
    text = (f"- **Works / fails**: {len(agree)} of the {len(both)} cells both have agree "
            f"with the paper's classification (the paper's 72 baseline cells: {len(baseline)} "
            f"run, {sum(c['ours'] == c['paper'] for c in baseline)} agree; its other 3 are "
            "MBT-GD/MMT/NAG at 1e-2).")
    differ = [f"{_name(c['row'])} (ours {_word(c['ours'])}"
              + (f", {c['row']['ours_best_mean']:.2f}"
                 if c["row"].get("ours_best_mean") is not None else "")
              + (f", {c['failed']}/{c['n']} runs fail" if 0 < c["failed"] < c["n"] else "")
              + f"; paper {_word(c['paper'])}, {c['row']['paper']})"
              for c in both if c["ours"] != c["paper"]]
    return [text + (" Disagree: " + "; ".join(differ) + "." if differ else "")]


def _class_grid(cells: list[dict]) -> list[str]:
    optims = list(dict.fromkeys(c["row"]["optim"] for c in cells))
    lrs = list(dict.fromkeys(c["row"]["lr"] for c in cells))
    at = {(c["row"]["optim"], c["row"]["lr"]): c for c in cells}

    def show(c: dict | None) -> str:
        if c is None or (c["ours"] is None and c["paper"] is None):
            return ""
        ours = "—" if c["ours"] is None else _word(c["ours"])
        paper_ = "—" if c["paper"] is None else _word(c["paper"])
        mark = " ≠" if None not in (c["ours"], c["paper"]) and c["ours"] != c["paper"] else ""
        return f"{ours} / {paper_}{mark}"

    return md_table(["", *(fmt_lr(lr) for lr in lrs)],
                    [[DISPLAY.get(o, o), *(show(at.get((o, lr))) for lr in lrs)]
                     for o in optims])


def _spearman_line(rows: list[dict]) -> str:
    pairs = [(r["ours_best_mean"], _paper_value(r)) for r in rows
             if r.get("ours_best_mean") is not None and _paper_value(r) is not None]
    rho = spearman([o for o, _ in pairs], [p for _, p in pairs])
    return (f"- **Rank correlation** (Spearman ρ, our cell means vs the paper's, over the "
            f"{plural(len(pairs), 'cell')} both have): {_corr(rho)}"
            + (" (needs 2 or more cells, not all equal)." if rho is None else "."))


def _best_baseline(rows: list[dict], value: Callable[[dict], float | None]):
    cells = [(value(r), r) for r in rows if r["optim"] in _BASELINES and value(r) is not None]
    return max(cells, key=lambda c: c[0], default=(None, None)), len(cells)


def _tuned_rows(rows: list[dict], runs_of: dict[Hashable, list[dict]]) -> list[dict]:
    """Each baseline's cell at its tuned start lr: the lr where its seed-0 run did best
    (ties: the larger lr), as :mod:`mbt.report.best_lr` chose where the extra seeds ran,
    then scored by the mean over its seeds. The best of all cell means would favour a lucky
    one-seed cell over a 3-seed mean. A baseline without seed-0 runs offers every cell."""
    out = []
    for optim in _BASELINES:
        mine = [r for r in rows if r["optim"] == optim and r.get("ours_best_mean") is not None]
        seed0 = {r["lr"]: accuracies(run)[0] for r in mine
                 for run in runs_of.get((r["optim"], r["lr"]), []) if run.get("seed") == 0}
        lr = tuned_lr(seed0) if seed0 else None
        out += [r for r in mine if r["lr"] == lr] if seed0 else mine
    return out


def _mbt_gain_line(rows: list[dict], runs_of: dict[Hashable, list[dict]]) -> str:
    """MBT-MMT/NAG at 1e-2 minus the best tuned baseline: ours, each baseline at its tuned
    start lr (:func:`_tuned_rows`); the paper's, its best baseline cell (one run each)."""
    tuned = _tuned_rows(rows, runs_of)
    sides = {}
    for who, value, pool, of in (
            ("ours", lambda r: r.get("ours_best_mean"), tuned, "tuned baseline"),
            ("paper", _paper_value, rows, "baseline cell")):
        (best, at), n = _best_baseline(pool, value)
        parts = []
        for optim in _MBT:
            mine = [value(r) for r in rows if r["optim"] == optim and r["lr"] == 0.01]
            if mine and mine[0] is not None and best is not None:
                parts.append(f"{DISPLAY[optim]} {mine[0] - best:+.2f}")
        where = "" if at is None else f" (best of {plural(n, of)}: {_name(at)}, {best:.2f})"
        sides[who] = ", ".join(parts) + where if parts else \
            "n/a: " + ("no baseline cell" if best is None else "no MBT-MMT/NAG run at 1e-2")
    return (f"- **MBT minus the best tuned baseline** (MBT at start lr 1e-2, mean over seeds, "
            f"minus the best baseline: ours, each of the 8 at the start lr its seed 0 did "
            f"best at, mean over its seeds; the paper, the best of its cells): ours "
            f"{sides['ours']}; paper {sides['paper']}.")


def _spread(values: list[float]) -> tuple[float, float] | None:
    if len(values) < 2:
        return None
    return max(values) - min(values), statistics.stdev(values)


def _spread_cols(spread: tuple[float, float] | None) -> list[str]:
    return ["", ""] if spread is None else [f"{spread[0]:.2f}", f"{spread[1]:.2f}"]


def _spread_lines(rows: list[dict]) -> list[str]:
    grid = set(LR_GRID)
    body, ours_spread = [], {}
    for optim in [*_BASELINES, *_MBT]:
        mine = [r for r in rows if r["optim"] == optim and r["lr"] in grid]
        ours = _spread([r["ours_best_mean"] for r in mine if r.get("ours_best_mean") is not None])
        paper_ = _spread([p for p in map(_paper_value, mine) if p is not None])
        n_ours = sum(r.get("ours_best_mean") is not None for r in mine)
        if ours:
            ours_spread[optim] = ours[0]
        body.append([DISPLAY[optim], n_ours, *_spread_cols(ours), *_spread_cols(paper_)])
    text = []
    for optim in _MBT:
        if optim not in ours_spread:
            text.append(f"{DISPLAY[optim]}: n/a (fewer than 2 start lrs run)")
            continue
        others = [v for o, v in ours_spread.items() if o in _BASELINES]
        if not others:
            text.append(f"{DISPLAY[optim]} {ours_spread[optim]:.2f} points; no baseline has "
                        "2 or more start lrs run")
            continue
        narrower = sum(ours_spread[optim] < v for v in others)
        text.append(f"{DISPLAY[optim]} {ours_spread[optim]:.2f} points, narrower than "
                    f"{narrower} of the {len(others)} baselines with 2 or more start lrs run")
    return [f"- **Spread over the start lrs** (max − min of the cell means over the 9 start "
            f"lrs run; the paper ran MBT at 1e-2 only): {'; '.join(text)}.", "",
            *md_table(["optimizer", "start lrs run (ours)", "ours max − min", "ours std",
                       "paper max − min", "paper std"], body)]


def _found_lr(run: dict) -> float | None:
    """The lr MBT's searches found in one run: the mean over its epochs (finite values)."""
    lrs = [float(v) for v in get(run, "history", "lr", default=None) or []
           if v is not None and math.isfinite(float(v))]
    return statistics.fmean(lrs) if lrs else None


def _lr_range(values: list[float]) -> str:
    return f"{min(values):.3g}–{max(values):.3g} (max/min {max(values) / min(values):.2f})"


def _found_lr_line(runs_of: dict[Hashable, list[dict]]) -> str:
    """Why MBT is flat in the start lr: the start lr is only where each search's two-way
    backtracking (Sec. 3.3, grown up to lr_max as the published code does) begins, so the
    lr it finds should not move with it. Across start lrs one seed (0, as every start lr
    has it), beside how far the found lr moves between seeds at one start lr."""
    parts = []
    for optim in _MBT:
        seed0 = {lr: v for lr in LR_GRID for r in runs_of.get((optim, lr), [])
                 if r.get("seed") == 0 and (v := _found_lr(r)) is not None}
        if len(seed0) < 2:
            continue
        # the cell with most seeds; on a tie the paper's default start lr, 1e-2
        lr = max(LR_GRID, key=lambda x: (len(runs_of.get((optim, x), [])),
                                         math.isclose(x, 1e-2)))
        by_seed = [v for r in runs_of.get((optim, lr), []) if (v := _found_lr(r)) is not None]
        noise = (f"; its {len(by_seed)} seeds at start lr {fmt_lr(lr)}: "
                 f"{_lr_range(by_seed)}" if len(by_seed) >= 2 else "")
        parts.append(f"{DISPLAY[optim]}, seed 0 over {len(seed0)} start lrs: "
                     f"{_lr_range(list(seed0.values()))}{noise}")
    if not parts:
        return ""
    return ("- **The lr MBT found** (each run's mean over its epochs; the start lr is only "
            "where each search's two-way backtracking begins: it grows or shrinks by β "
            "until Armijo's test flips, within [`lr_min`, `lr_max`]): " + "; ".join(parts) + ".")


def table2_lines(rows: list[dict], records: list[dict],
                 cell_of: Callable[[dict], Hashable]) -> list[str]:
    """The claim-level verdicts of Table 2, as Markdown lines (a section)."""
    runs_of: dict[Hashable, list[dict]] = {}
    for r in records:
        runs_of.setdefault(cell_of(r), []).append(r)
    cells = _classify(rows, runs_of)
    return ["## Claim-level verdicts: ours / paper", "",
            f"A cell **fails** when it diverged or its best accuracy is below chance + "
            f"{FAIL_MARGIN:g} points (CIFAR10: below {_PAPER_CHANCE + FAIL_MARGIN:g} %); a "
            "cell of several seeds fails when at least half of its runs do. The paper's "
            "cells are classified by the same rule on its printed numbers (it prints a "
            "diverged run near 10 %, chance).", "",
            *_agreement_lines(cells), _spearman_line(rows), _mbt_gain_line(rows, runs_of),
            *_spread_lines(rows), "", *filter(None, [_found_lr_line(runs_of)]), "",
            "### Works / fails per cell: ours / paper (≠: they disagree)", "",
            *_class_grid(cells), ""]


# --- Table 3 ------------------------------------------------------------------------------

def ranks_high_first(values: list[float]) -> list[float]:
    """1 = highest accuracy; ties share the average rank."""
    return list(pd.Series(values, dtype=float).rank(method="average", ascending=False))


def _rank(v: float) -> str:
    return f"{v:g}"


def _best_first(values: list[float], models: list[str]) -> str:
    pairs = sorted(zip(values, models), key=lambda p: -p[0])
    return " > ".join(DISPLAY.get(m, m) for _, m in pairs)


def _pooled_std(rows: list[dict]) -> float | None:
    """The seed std pooled over the models run with 2 or more seeds,
    √(Σ (nᵢ − 1) sᵢ² / Σ (nᵢ − 1)); None when none has. A std of 0 (two equal seeds, or one
    finite best of two runs) estimates nothing and is left out."""
    seeded = [(r["n"], r["ours_best_std"]) for r in rows
              if (r.get("n") or 0) > 1 and (r.get("ours_best_std") or 0) > 0]
    if not seeded:
        return None
    return math.sqrt(sum((n - 1) * s * s for n, s in seeded) / sum(n - 1 for n, _ in seeded))


def _pairs_apart(ours: list[float], seeds: list[int], paper_: list[float],
                 noise: float | None) -> str:
    """How many model pairs differ (ours) by more than two std of the difference of their
    means, 2·σ·√(1/nᵢ + 1/nⱼ) over nᵢ and nⱼ seeds, and how many of those the paper orders
    the same way (a pair the paper ties is not in its order): a smaller gap is not a
    ranking."""
    if noise is None:
        return "n/a (no seed std: no model with 2 or more seeds that differ)"
    pairs = [(i, j) for i in range(len(ours)) for j in range(i + 1, len(ours))]
    apart = [(i, j) for i, j in pairs if abs(ours[i] - ours[j])
             > 2 * noise * math.sqrt(1 / seeds[i] + 1 / seeds[j])]
    same = sum((ours[i] - ours[j]) * (paper_[i] - paper_[j]) > 0 for i, j in apart)
    return f"{same} of {len(apart)} ({len(apart)} of {len(pairs)} pairs apart)"


def table3_lines(rows: list[dict]) -> list[str]:
    """Our ranking of the models against the paper's, per data set and optimizer, over the
    models both have (the paper's rank among those same models)."""
    columns = list(dict.fromkeys((r["dataset"], r["optim"]) for r in rows))
    summary, per_model = [], {}
    for ds, optim in columns:
        both = [r for r in rows if (r["dataset"], r["optim"]) == (ds, optim)
                and r.get("ours_best_mean") is not None and _paper_value(r) is not None]
        label = f"{DISPLAY.get(ds, ds)} {DISPLAY.get(optim, optim)}"
        ours = [r["ours_best_mean"] for r in both]
        paper_ = [_paper_value(r) for r in both]
        for r, ro, rp in zip(both, ranks_high_first(ours), ranks_high_first(paper_)):
            mean, std = r["ours_best_mean"], r.get("ours_best_std")
            ours_text = f"{mean:.2f}" + (f" ± {std:.2f}" if (r.get("n") or 0) > 1 else "")
            per_model.setdefault(r["model"], {})[label] = (
                f"{ours_text} ({_rank(ro)}) / {r['paper']} ({_rank(rp)})")
        models = [r["model"] for r in both]
        noise, seeds = _pooled_std(both), [r.get("n") or 1 for r in both]
        summary.append([label, len(both), _best_first(ours, models),
                        _best_first(paper_, models), _corr(spearman(ours, paper_)),
                        _corr(kendall(ours, paper_)),
                        "—" if noise is None else f"{noise:.2f}",
                        _pairs_apart(ours, seeds, paper_, noise) if len(both) > 1 else "n/a"])
    labels = [s[0] for s in summary]
    return ["## Claim-level verdicts: our ranking of the models / the paper's", "",
            "Per data set and optimizer, the models both we and the paper have, ranked by "
            "best accuracy (ours: mean ± sample std over seeds; 1 = best; ties share the "
            "average rank; the paper's rank is among the same models). Spearman ρ and "
            "Kendall τ-b "
            "between the two rankings; n/a with fewer than 2 models or all equal. Seed std "
            "σ: the sample std pooled over the models run with 2 or more seeds "
            "(√(Σ (nᵢ − 1) sᵢ² / Σ (nᵢ − 1))); a pair of models run with nᵢ and nⱼ seeds "
            "counts as *apart* when our mean accuracies differ by more than "
            "2·σ·√(1/nᵢ + 1/nⱼ) (two std of the difference of the two means; 2·√2·σ for "
            "two one-seed models), and the last column says how many of those pairs the paper "
            "orders the same way (a closer pair is within seed noise, whatever the ranking "
            "says).", "",
            *md_table(["data, optimizer", "models", "ours, best first", "paper, best first",
                       "Spearman ρ", "Kendall τ", "seed std",
                       "pairs apart: in the paper's order"], summary), "",
            "### Accuracy per model: ours (rank) / paper (rank)", "",
            *(md_table(["model", *labels],
                       [[DISPLAY.get(m, m), *(cells.get(c, "") for c in labels)]
                        for m, cells in per_model.items()])
              if per_model else ["n/a: no model run that the paper has."]), ""]


# --- Figure 3 -----------------------------------------------------------------------------

def switch_epoch(record: dict) -> int | None:
    """The first epoch (1-based) whose MBT search ran with the plateau α, or None when the
    switch did not fire. Read from ``history["alpha"]`` where the run recorded it, else
    replayed from the per-epoch training loss and test accuracy with the controller's rule
    (:class:`mbt.optim.mbt_schedule.MBTController`: at the start of an epoch, patience =
    min(epochs without a training-loss gain, epochs without a test-accuracy gain); the
    switch fires once it exceeds ``plateau_patience``)."""
    history = record.get("history") or {}
    alphas = history.get("alpha")
    if alphas and any(a is not None for a in alphas):
        first = alphas[0]
        return next((i for i, a in enumerate(alphas, 1) if a is not None and a != first), None)
    if not str(record.get("optim", "mbt_")).startswith("mbt_"):
        return None  # only the MBT controller switches
    limit = get(record, "config", "optim", "builder", "plateau_patience", default=5)
    losses, accs = history.get("train_loss") or [], history.get("test_acc") or []
    best_loss, best_acc, no_loss, no_acc = math.inf, 0.0, 0, 0
    for i, loss in enumerate(losses):
        if min(no_loss, no_acc) > limit:
            return i + 1
        loss = math.nan if loss is None else float(loss)
        if math.isnan(loss) or loss > best_loss:
            no_loss += 1
        else:
            no_loss, best_loss = 0, loss
        acc = accs[i] if i < len(accs) else None
        if acc is None:
            no_acc = no_loss
        elif float(acc) > best_acc:
            no_acc, best_acc = 0, float(acc)
        else:
            no_acc += 1
    return None


def _cv(values: list[float]) -> float | None:
    """Coefficient of variation, sample std / mean (None for fewer than 2 values)."""
    if len(values) < 2 or statistics.fmean(values) == 0:
        return None
    return statistics.stdev(values) / statistics.fmean(values)


def fig3_shape(lrs: list[float], switch: int | None) -> dict:
    """The numbers behind "warm-up, then decay after the switch" for one run's lr per epoch:
    peak / first lr, the peak's epoch (1-based), whether the lr rises (peak after epoch 1),
    mean lr from the switch on / mean lr before it (< 1: it falls), and the coefficient of
    variation of the lr before the switch (every epoch when it did not fire)."""
    if not lrs:
        return {}
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    before = lrs[:switch - 1] if switch else lrs
    after = lrs[switch - 1:] if switch else []
    fall = (statistics.fmean(after) / statistics.fmean(before)
            if before and after and statistics.fmean(before) else None)
    return {"peak_ratio": lrs[peak] / lrs[0] if lrs[0] else None, "peak_epoch": peak + 1,
            "rises": peak > 0 and lrs[peak] > lrs[0], "switch": switch, "fall": fall,
            "cv": _cv(before), "epochs": len(lrs)}


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "" if v is None else format(v, spec)


def _steadier(shapes: dict[str, list[dict]]) -> str:
    """MBT-NAG vs MBT-MMT by the mean CV of their runs' lr before the switch."""
    cv = {o: [s["cv"] for s in shapes.get(o, []) if s.get("cv") is not None] for o in _MBT}
    if not all(cv.values()):
        return "n/a (needs both MBT-MMT and MBT-NAG runs of 2 or more epochs)"
    mean = {o: statistics.fmean(v) for o, v in cv.items()}
    text = f"CV MBT-MMT {mean['mbt_mmt']:.3f}, MBT-NAG {mean['mbt_nag']:.3f}: "
    if math.isclose(mean["mbt_mmt"], mean["mbt_nag"], rel_tol=0.05, abs_tol=1e-3):
        return text + "equally steady (within 5 %)"
    nag = mean["mbt_nag"] < mean["mbt_mmt"]
    return text + ("MBT-NAG steadier, as the paper says" if nag
                   else "MBT-MMT steadier, unlike the paper")


def fig3_lines(runs: list[tuple[dict, dict]], datasets: list[str]) -> list[str]:
    """The Fig. 3 verdicts for (record, :func:`fig3_shape`) pairs, as Markdown lines."""
    body, by = [], {}
    for r, s in runs:
        if not s:
            continue
        ds, optim = r.get("dataset"), r.get("optim")
        by.setdefault(ds, {}).setdefault(optim, []).append(s)
        fired = s["switch"] is not None
        body.append([DISPLAY.get(ds, ds), DISPLAY.get(optim, optim), r.get("seed"), s["epochs"],
                     _fmt(s["peak_ratio"]), s["peak_epoch"], "yes" if s["rises"] else "no",
                     s["switch"] if fired else f"did not fire within {s['epochs']} epochs",
                     _fmt(s["fall"]), ("yes" if s["fall"] < 1 else "no")
                     if s["fall"] is not None else "", _fmt(s["cv"], ".3f")])
    shapes = [s for _, s in runs if s]
    fired = [s for s in shapes if s["switch"] is not None]
    falls = sum(s["fall"] is not None and s["fall"] < 1 for s in fired)
    steady = [f"{DISPLAY.get(ds, ds)}: {_steadier(by.get(ds, {}))}" for ds in datasets
              if ds in by]
    return ["## Claim-level verdicts", "",
            f"- **Warm-up**: the lr rises after epoch 1 in {sum(s['rises'] for s in shapes)} "
            f"of {len(shapes)} runs (peak / first lr and the peak's epoch below).",
            f"- **Decay after the switch** (α 1e-4 → 0.5 once training stalls): the switch "
            f"fired in {len(fired)} of {len(shapes)} runs"
            + (f"; the lr falls after it in {falls} of {len(fired)} (mean lr from the switch "
               "epoch on / mean lr before it < 1)" if fired else "") + ".",
            "- **MBT-NAG stabilises better** (coefficient of variation, std / mean, of the lr "
            "over the epochs before the switch, or all epochs where it did not fire; lower "
            "is steadier; mean over seeds): " + ("; ".join(steady) or "n/a") + ".", "",
            "The switch epoch is the first epoch whose search ran with α 0.5 (recorded, or "
            "replayed from the per-epoch training loss and test accuracy with the "
            "controller's rule); in the figure a dotted vertical line marks it.", "",
            *md_table(["data", "optimizer", "seed", "epochs", "peak / first lr", "peak epoch",
                       "rises", "switch epoch", "after / before switch", "falls",
                       "CV before switch"], body), ""]


# --- Figure 2(b) --------------------------------------------------------------------------

def settling_sentence(label: str, settles: list[int | None], iterates: list[int],
                      paper_k: int, noun: str = "settling iterate") -> str:
    """Where the paper's settling iterate falls among runs: the percentile rank of
    ``paper_k`` among the runs' settling iterates. A run that did not settle changed its lr
    at its last iterate N, so it settles after N − 1 or later: above ``paper_k`` when
    N − 1 > paper_k, unknown (left out) otherwise. ``noun`` names the runs' iterates."""
    known = [k if k is not None else math.inf for k, n in zip(settles, iterates)
             if k is not None or n - 1 > paper_k]
    left_out = len(settles) - len(known)
    tail = (f"; left out: {plural(left_out, 'unsettled run')} too short to place against "
            f"{paper_k}" if left_out else "")
    p = percentile_of(paper_k, known)
    if p is None:
        return f"{label}: n/a (no run to compare){tail}"
    runs = plural(len(known), "run")
    finite = sorted(k for k in known if k != math.inf)
    span = (f"{noun}s {finite[0]}–{finite[-1]}" if len(finite) > 1 else
            f"{noun} {finite[0]}" if finite else "none settled")
    unsettled = len(known) - len(finite)
    span += f", {unsettled} not settled" if unsettled and finite else ""
    if all(k < paper_k for k in known):
        where = f"above all {runs}"
    elif all(k > paper_k for k in known):
        where = f"below all {runs}"
    else:
        where = (f"at the {_ordinal(round(p))} percentile of {runs} "
                 f"({sum(k < paper_k for k in known)} settle before it)")
    return f"{label}: {paper_k} falls {where} ({span}){tail}"
