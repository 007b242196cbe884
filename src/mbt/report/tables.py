"""Tables 1-3 rebuilt from runs, beside the paper's numbers: ``results/<table>.{md,csv}``
(and ``table1.png``, a heat map of ours beside the paper's).

Accuracy tables use the paper's measure, the best test accuracy over the epochs, with the
final-epoch accuracy beside it; a diverged run enters with the best accuracy of its finite
epochs (the published code's measure, which never stops a run) and chance (100 / classes)
as its final accuracy, printed ``10.32 (div)``; a finished run whose loss exploded but
stayed finite (:func:`mbt.ledger.exploded`) keeps its numbers, marked ``(exploded)``.
Several seeds of one cell give mean ± sample std and n.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mbt import ledger

from . import paper, verdicts
from .common import (
    DISPLAY,
    Context,
    Stat,
    accuracies,
    fmt_delta,
    fmt_lr,
    get,
    plural,
    stat,
    variant,
)
from .selection import Selection
from .writers import header, md_table, write_csv, write_md

__all__ = ["table1", "table2", "table3"]

log = logging.getLogger(__name__)



def _group(records: list[dict], cell_of) -> dict[Hashable, list[dict]]:
    groups: dict[Hashable, list[dict]] = {}
    for r in records:
        groups.setdefault(cell_of(r), []).append(r)
    return groups


def _seeds(runs: list[dict]) -> str:
    return " ".join(str(s) for s in sorted({r.get("seed") for r in runs}, key=str))


def _cells(paper_keys: list[tuple], ours: dict) -> list[tuple]:
    """The paper's cells in its order, then cells only we ran (sorted)."""
    extra = sorted((k for k in ours if k not in set(paper_keys)), key=str)
    return [*paper_keys, *extra]


# --- accuracy tables (2 and 3) --------------------------------------------------------------

def _acc_cell(runs: list[dict]) -> dict:
    """Statistics of one cell's runs; a diverged run enters with its best finite epoch
    (the published code's measure), its final accuracy as chance."""
    triples = [accuracies(r, diverged_best="epoch") for r in runs]
    best, final = stat(t[0] for t in triples), stat(t[1] for t in triples)
    n, n_div = len(runs), sum(t[2] for t in triples)
    n_exp = sum(not t[2] and ledger.exploded(r) for t, r in zip(triples, runs))
    flag = "" if not n_exp else " (exploded)" if n_exp == n else f" ({n_exp}/{n} exploded)"

    def show(s: Stat | None) -> str:
        if s is None:
            return ""
        if n_div == n:
            return f"{s.mean:.2f} (div)"
        return s.fmt(2) + (f" ({n_div}/{n} div)" if n_div else "") + flag

    epochs = stat(r.get("best_epoch") for r in runs if r.get("status") != "diverged")
    return {
        "ours": show(best), "short": "" if best is None else
        (f"{best.mean:.2f}" + (" (div)" if n_div == n else " (exploded)" if n_exp else "")),
        "ours_best_mean": None if best is None else round(best.mean, 4),
        "ours_best_std": None if best is None else round(best.std, 4),
        "n": n, "n_diverged": n_div, "n_exploded": n_exp, "ours_final": show(final),
        "ours_final_mean": None if final is None else round(final.mean, 4),
        "ours_final_std": None if final is None else round(final.std, 4),
        "best_epoch_mean": None if epochs is None else round(epochs.mean, 1),
        "seeds": _seeds(runs),
    }


def _accuracy_rows(sel: Selection, table: str, ctx: Context) -> tuple[list[dict], list[str]]:
    """One dict per cell (paper's first): keys, paper, ours, delta, final, n, ..."""
    ref = paper.load(table, ctx.paper_dir)
    keys, _ = paper.TABLES[table]
    match = [k if k != "lr" else "lr_key" for k in keys]
    paper_by = {tuple(row[k] for k in match): row for row in ref.to_dict("records")}
    ours = {k: _acc_cell(runs) for k, runs in _group(sel.records, sel.spec.cell_of).items()}
    rows = []
    for cell in _cells(list(paper_by), ours):
        p, o = paper_by.get(cell), ours.get(cell)
        row = dict(zip(keys, cell))
        row.update(paper=p["paper_str"] if p else "", ours="", n=0, n_diverged=0, delta="")
        if o:
            row.update(o)
            row["delta"] = fmt_delta(o["ours_best_mean"], p["paper"] if p else None)
        row["protocol"] = sel.protocol
        rows.append(row)
    return rows, list(keys)


def _acc_csv(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    cols = [*keys, "paper", "ours", "delta", "ours_final", "n", "n_diverged", "ours_best_mean",
            "ours_best_std", "ours_final_mean", "ours_final_std", "best_epoch_mean", "seeds",
            "protocol"]
    frame = pd.DataFrame(rows).reindex(columns=cols)
    if "lr" in frame:
        frame["lr"] = frame["lr"].map(fmt_lr)
    return frame


def _long_md(rows: list[dict], keys: list[str], protocol: str | None) -> list[str]:
    names = {"optim": "optimizer", "lr": "start lr", "model": "model", "dataset": "data"}
    cols = [*(names[k] for k in keys), "paper", f"ours ({protocol})", "n", "Δ ours − paper",
            "ours, final epoch", "best epoch", "seeds"]
    body = []
    for r in rows:
        label = [fmt_lr(r[k]) if k == "lr" else DISPLAY.get(r[k], r[k]) for k in keys]
        body.append([*label, r["paper"], r["ours"], r["n"] or "", r["delta"],
                     r.get("ours_final", ""), r.get("best_epoch_mean", ""), r.get("seeds", "")])
    return md_table(cols, body)


def _grid_md(rows: list[dict], row_key, col_key, col_label) -> list[str]:
    """A wide grid in the paper's layout, each cell ``ours / paper``."""
    row_ids = list(dict.fromkeys(row_key(r) for r in rows))
    col_ids = list(dict.fromkeys(col_key(r) for r in rows))
    cells = {(row_key(r), col_key(r)): r for r in rows}
    body = []
    for ri in row_ids:
        line = [DISPLAY.get(ri, ri)]
        for ci in col_ids:
            r = cells.get((ri, ci))
            if r is None or (not r["paper"] and not r["ours"]):
                line.append("")
            else:
                line.append(f"{r.get('short') or '—'} / {r['paper'] or '—'}")
        body.append(line)
    return md_table(["", *(col_label(c) for c in col_ids)], body)


def _accuracy_table(sel: Selection, ctx: Context, table: str, title: str, grid,
                    claims=None) -> list[Path]:
    """``claims(rows)``: the claim-level verdicts section (:mod:`.verdicts`), if any."""
    rows, keys = _accuracy_rows(sel, table, ctx)
    note = ("Ours: best test accuracy over the epochs (the paper's measure), mean ± sample "
            "std over n seeds; a diverged run (a non-finite loss ended it) enters with the best "
            "accuracy of its finite epochs, as the published code reports it, shown `(div)`; its "
            "final-epoch accuracy counts as chance (100 / classes). "
            + (f"`(exploded)`: a run that finished but whose train loss ended over "
               f"{ledger.EXPLODED_FACTOR:g}× its start (its numbers are kept). "
               if any(r.get("n_exploded") for r in rows) else "")
            + "Δ = ours − paper. Paper: " + paper_ref(table) + ".")
    lines = header(title, sel, ctx, [note])
    lines += [f"## In the paper's layout: ours ({sel.protocol}) / paper", "", *grid(rows), ""]
    lines += claims(rows) if claims else []
    lines += ["## Every cell", "", *_long_md(rows, keys, sel.protocol), ""]
    out = ctx.out
    return [write_md(out / f"{table}.md", lines), write_csv(out / f"{table}.csv",
                                                             _acc_csv(rows, keys))]


def paper_ref(table: str) -> str:
    return {"table1": "Table 1 (l. 1412-1431)", "table2": "Table 2 (l. 1451-1479)",
            "table3": "Table 3 (l. 1481-1497)"}[table] + ", `results/paper/" + table + ".csv`"


def table2(sel: Selection, ctx: Context) -> list[Path]:
    def grid(rows):
        return _grid_md(rows, lambda r: r["optim"], lambda r: r["lr"], fmt_lr)

    return _accuracy_table(sel, ctx, "table2", "Table 2: best test accuracy (%) of optimizers "
                           "× start learning rate, ResNet18 / CIFAR10", grid,
                           lambda rows: verdicts.table2_lines(rows, sel.records,
                                                              sel.spec.cell_of))


def table3(sel: Selection, ctx: Context) -> list[Path]:
    def grid(rows):
        return _grid_md(rows, lambda r: r["model"], lambda r: (r["dataset"], r["optim"]),
                        lambda c: f"{DISPLAY.get(c[0], c[0])} {DISPLAY.get(c[1], c[1])}")

    return _accuracy_table(sel, ctx, "table3", "Table 3: best test accuracy (%) of MBT-MMT "
                           "and MBT-NAG across models and data sets", grid,
                           verdicts.table3_lines)


# --- Table 1: the learning rate MBT-GD finds ------------------------------------------------

def _lr_cell(runs: list[dict]) -> dict:
    # One run per seed (selection keeps the newest of a cell, seed and variant).
    by_seed = {r.get("seed"): r["search_lr"] for r in runs
               if isinstance(r.get("search_lr"), int | float)}
    s = stat(by_seed.values())
    evals, secs = stat(r.get("func_evals") for r in runs), stat(r.get("seconds") for r in runs)
    raw = stat(r.get("search_mean_lr") for r in runs)
    return {
        "ours": "" if s is None else s.fmt(4), "ours_mean": None if s is None else s.mean,
        "ours_std": None if s is None else s.std, "n": len(runs),
        "search_mean_lr_mean": None if raw is None else raw.mean,
        "func_evals_mean": None if evals is None else evals.mean,
        "seconds_mean": None if secs is None else round(secs.mean, 3), "seeds": _seeds(runs),
        "by_seed": by_seed,
        "images": _same(runs, "data", "num_train"),
        "num_batches": _same(runs, "config", "optim", "builder", "num_batches"),
    }


def _same(runs: list[dict], *keys):
    """The value every run of a cell shares (the searched images, the mini-batches), or
    None where it is missing or differs."""
    values = {get(r, *keys) for r in runs}
    return values.pop() if len(values) == 1 else None


INITS = ("torch", "legacy")  # model.bn_init, in the order Table 1 shows them
_INIT_NAME = {"torch": "torch init (γ = 1)", "legacy": "legacy init (γ ~ U(0,1))"}


def table1(sel: Selection, ctx: Context) -> list[Path]:
    """Paper | ours under each BatchNorm init, the ratio to the paper per cell and the
    per-row spread (docs/fidelity.md: the init is what separates us from the paper).


    Longer than 60 lines: one document (grids per init, ratios, spreads, ablations)
    written top to bottom."""
    ref = paper.load("table1", ctx.paper_dir)
    paper_by = {(r["batch_size"], r["lr_key"]): r for r in ref.to_dict("records")}
    found = {variant(r) for r in sel.records}
    ours = {v: {k: _lr_cell(g) for k, g in _group(
        [r for r in sel.records if variant(r) == v], sel.spec.cell_of).items()}
        for v in (*INITS, *sorted(found - set(INITS)))}
    inits = [i for i in INITS if ours[i]]
    extras = sorted(found - set(INITS))  # e.g. legacy+slices2: beside the table, not in it
    rows = []
    for cell in _cells(list(paper_by), {k: 1 for i in inits for k in ours[i]}):
        p = paper_by.get(cell)
        pv = p["paper"] if p else None
        row = {"batch_size": cell[0], "lr": fmt_lr(cell[1]), "paper": p["paper_str"] if p else "",
               "protocol": sel.protocol}
        for i in (*inits, *extras):
            o = ours[i].get(cell, {})
            om = o.get("ours_mean")
            row.update({f"{i}_{k}": o.get(k) for k in (
                "ours_mean", "ours_std", "search_mean_lr_mean", "func_evals_mean",
                "seconds_mean", "seeds", "by_seed", "images", "num_batches")})
            row[f"{i}_n"] = o.get("n", 0)
            row[f"{i}_ratio"] = None if om is None or not pv else round(om / pv, 4)
        rows.append(row)
    frame = pd.DataFrame(rows).filter(regex=r"^(?!.*_by_seed$)")  # the md's, not the csv's
    batches = list(dict.fromkeys(r["batch_size"] for r in rows))
    lrs = list(dict.fromkeys(r["lr"] for r in rows))
    cell = {(r["batch_size"], r["lr"]): r for r in rows}

    def grid(value) -> list[str]:
        body = [[b, *(value(cell[(b, lr)]) if (b, lr) in cell else "" for lr in lrs)]
                for b in batches]
        return md_table(["batch \\ start lr", *lrs], body)

    note = ("Ours: `search_lr` of `python -m mbt.find_lr` (the rescaled averaged lr the "
            "paper reports) under each BatchNorm init (`model.bn_init`: `torch` = γ 1, "
            "PyTorch ≥ 1.2; `legacy` = γ ~ U(0,1), PyTorch ≤ 1.1, which the paper's 2019 "
            "code ran with), mean ± sample std over n seeds; ratio = ours / paper. "
            "Grey (—) cells: not run. Paper: " + paper_ref("table1") + ".")
    lines = header("Table 1: learning rate found by MBT-GD, start lr × batch size "
                   "(ResNet18 / CIFAR10)", sel, ctx, [note])
    lines += ["## Paper", "", *grid(lambda r: r["paper"]), ""]
    for i in inits:
        lines += [f"## Ours, {_INIT_NAME[i]} ({sel.protocol})", "",
                  *grid(lambda r, i=i: _num(r.get(f"{i}_ours_mean"), ".4f")), "",
                  f"### ratio ours / paper, {i} init", "",
                  *grid(lambda r, i=i: _num(r.get(f"{i}_ratio"), ".2f")), ""]
    lines += ["## Per batch size: spread across start lrs (the paper's claim: close values "
              "for every start lr) and ratio to the paper", "",
              *_stability_md(rows, batches, inits), "",
              "## Every cell", "",
              *md_table(["batch", "start lr", "paper",
                         *(f"{i} init (n)" for i in inits), *(f"ratio {i}" for i in inits),
                         *(f"evals {i}" for i in inits), *(f"s {i}" for i in inits)],
                        [[r["batch_size"], r["lr"], r["paper"],
                          *(_with_n(r, i) for i in inits),
                          *(_num(r.get(f"{i}_ratio"), ".2f") for i in inits),
                          *(_num(r.get(f"{i}_func_evals_mean"), ".0f") for i in inits),
                          *(_num(r.get(f"{i}_seconds_mean"), ".1f") for i in inits)]
                         for r in rows]), ""]
    lines += _seeds_md(rows, (*inits, *extras))
    lines += _variants_md(rows, extras, sel.protocol)
    out = ctx.out
    png = _heatmap(rows, batches, lrs, inits, out / "table1.png", sel.protocol)
    return [write_md(out / "table1.md", lines), write_csv(out / "table1.csv", frame), png]


def _seeds_md(rows: list[dict], variants: tuple[str, ...]) -> list[str]:
    """Cells searched from several seeds. The seed draws the model's weights (and γ under
    the legacy init), the batch order and the augmentation; a row of one seed shares all
    of them across its start lrs, where each of the paper's cells is a run of its own, so
    this spread is what a single paper cell carries and a one-seed row does not."""
    body = []
    for r in rows:
        for v in variants:
            if r.get(f"{v}_n", 0) < 2:
                continue
            m, sd, values = r[f"{v}_ours_mean"], r[f"{v}_ours_std"], r[f"{v}_by_seed"].values()
            lo, hi = min(values), max(values)
            pv = float(r["paper"]) if r["paper"] else None
            body.append([r["batch_size"], r["lr"], r["paper"], v, r[f"{v}_seeds"],
                         f"{m:.4f} ± {sd:.4f}", f"{lo:.4f}–{hi:.4f} (×{hi / lo:.2f})",
                         _num(sd / m, ".2f"),
                         f"{lo / pv:.2f}–{hi / pv:.2f}" if pv else ""])
    if not body:
        return []
    return ["## One cell, several seeds: the spread a single run carries", "",
            *md_table(["batch", "start lr", "paper", "variant", "seeds", "mean ± std",
                       "min–max (max/min)", "std / mean", "seeds / paper"], body), ""]


def _variants_md(rows: list[dict], extras: list[str], protocol: str | None) -> list[str]:
    """Each ablation variant (``legacy+slices2``, ``legacy+subset1200``) cell by cell beside
    the same init's plain search of the same seeds: one section per kind of ablation."""
    sections = []
    for kind, title, columns, describe, override in _ABLATIONS:
        keyed = []
        for v in extras:
            base, _, tag = v.partition("+")
            if not tag.startswith(kind):
                continue
            size = int(tag[len(kind):])
            for i, r in enumerate(rows):
                m = r.get(f"{v}_ours_mean")
                if m is None:
                    continue
                one, n = _same_seeds(r, base, v)
                pv = float(r["paper"]) if r["paper"] else None
                keyed.append(((i, base, size), [
                    r["batch_size"], r["lr"], r["paper"], base, *describe(r, base, v, size),
                    _num(one, ".4f") + (f" ({n})" if n > 1 else ""), _with_n(r, v),
                    _num(m / one if one else None, ".2f"), _num(r.get(f"{v}_ratio"), ".2f"),
                    _num(one / pv if one and pv else None, ".2f")]))
        if keyed:
            body = [line for _, line in sorted(keyed, key=lambda t: t[0])]  # cell, then size
            run = (f"One search: `python -m mbt.find_lr experiment=table1 protocol={protocol} "
                   f"model.bn_init=<init> trainer.batch_size=<batch> optim.lr=<start lr> "
                   f"{override}` (on a partial copy add `data.root=<dir> "
                   "data.allow_partial=true`).")
            sections += [title, "", run, "", *md_table(
                ["batch", "start lr", "paper", "init", *columns], body), ""]
    return sections


def _same_seeds(r: dict, base: str, v: str) -> tuple[float | None, int]:
    """The plain search's mean over the seeds the ablation ran (a seed moves one cell by
    up to a third, more than most ablations), and how many seeds that is."""
    ours, plain = r.get(f"{v}_by_seed") or {}, r.get(f"{base}_by_seed") or {}
    vals = [plain[s] for s in ours if s in plain]
    return (sum(vals) / len(vals), len(vals)) if vals and len(vals) == len(ours) else (None, 0)


def _passes(r: dict, v: str) -> str:
    """How often a search's mini-batches pass over its training images (a partial copy
    or a subset is reused once ``num_batches × batch`` exceeds it; the paper's 50 000 are
    not, up to batch 2500)."""
    n, k = r.get(f"{v}_images"), r.get(f"{v}_num_batches")
    return _num(k * r["batch_size"] / n if n and k else None, ".2f")


_ABLATIONS = (
    ("slices", "## BatchNorm statistics over k slices of each mini-batch (`optim.builder."
     "bn_slices=k`, as the code's `DataParallel` on k GPUs)",
     ["k", "1 slice", "k slices (n)", "k slices / 1 slice", "k slices / paper",
      "1 slice / paper"],
     lambda r, base, v, k: [k], "optim.builder.bn_slices=<k>"),
    ("subset", "## Data reuse: the search on a random subset of the images (`data.subset=n`; "
     "passes = mini-batches × batch / images, > 1 when an image is drawn again)",
     ["images", "passes", "subset images", "subset passes", "lr, all images",
      "lr, subset (n)", "subset / all", "subset / paper", "all / paper"],
     lambda r, base, v, n: [_num(r.get(f"{base}_images"), ".0f"), _passes(r, base), n,
                            _passes(r, v)], "data.subset=<n>"),
)


def _with_n(r: dict, init: str) -> str:
    m = r.get(f"{init}_ours_mean")
    if m is None:
        return ""
    return f"{m:.4f}" + (f" ({r[f'{init}_n']})" if r[f"{init}_n"] > 1 else "")


def _num(v, spec: str) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _span(vals: list[float]) -> str:
    if not vals or min(vals) <= 0:
        return ""
    lo, hi = min(vals), max(vals)
    return f"{lo:.4f}–{hi:.4f} (×{hi / lo:.2f}, {plural(len(vals), 'lr')})"


def _stability_md(rows: list[dict], batches: list, inits: list[str]) -> list[str]:
    body = []
    for b in batches:
        cells = [r for r in rows if r["batch_size"] == b]
        line = [b, _span([float(r["paper"]) for r in cells if r["paper"]])]
        for i in inits:
            line.append(_span([r[f"{i}_ours_mean"] for r in cells
                               if r.get(f"{i}_ours_mean") is not None]))
            ratios = [r[f"{i}_ratio"] for r in cells if r.get(f"{i}_ratio") is not None]
            line.append(f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "")
        body.append(line)
    cols = ["batch", "paper: min–max (max/min)"]
    for i in inits:
        cols += [f"{i} init: min–max (max/min)", f"{i} / paper"]
    return md_table(cols, body)


def _heatmap(rows: list[dict], batches: list, lrs: list, inits: list[str], path: Path,
             protocol) -> Path:
    cell = {(r["batch_size"], r["lr"]): r for r in rows}

    def matrix(value) -> np.ndarray:
        return np.array([[value(cell.get((b, lr))) for lr in lrs] for b in batches], float)

    def ours(i):
        return lambda r: r[f"{i}_ours_mean"] if r and r.get(f"{i}_ours_mean") is not None \
            else np.nan

    mats = {"paper (Table 1)": matrix(lambda r: float(r["paper"]) if r and r["paper"] else np.nan)}
    mats.update({f"ours, {_INIT_NAME[i]}\n({protocol})": matrix(ours(i)) for i in inits})
    logs = {k: np.log10(np.where(m > 0, m, np.nan)) for k, m in mats.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in logs.values()])
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (-3.0, -1.0)
    fig = Figure(figsize=(6.5 * len(mats), 4.6), layout="constrained")
    axes = fig.subplots(1, len(mats), squeeze=False)[0]  # one panel: only ablation runs
    for ax, (name, m) in zip(axes, mats.items()):
        im = ax.imshow(logs[name], vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
        ax.set_facecolor("0.85")  # cells not run
        ax.set_title(name)
        ax.set_xticks(range(len(lrs)), lrs)
        ax.set_yticks(range(len(batches)), [str(b) for b in batches])
        ax.set_xlabel("start learning rate")
        ax.set_ylabel("batch size")
        for i in range(len(batches)):
            for j in range(len(lrs)):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.4f}", ha="center", va="center", fontsize=7,
                            color="w" if logs[name][i, j] < (vmin + vmax) / 2 else "k")
    fig.colorbar(im, ax=axes, label="log10 learning rate found")
    fig.suptitle("Table 1: learning rate found by MBT-GD (ResNet18 / CIFAR10); "
                 "grey: not run")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path

