"""Figures 2(b) and 3 rebuilt from runs: ``results/<fig>.{png,csv,md}``.

Fig. 2(b): the learning rate of Two-way Backtracking GD against the iterate, full batch
(ResNet18 on 500 CIFAR10 images). A full-batch epoch is one step, so ``history["lr"]``
is one value per iterate; where a run kept ``step_lrs`` those are concatenated instead.
Fig. 3: the learning rate MBT-MMT and MBT-NAG use in each epoch, ResNet18, (a) CIFAR10,
(b) CIFAR100. Figures use ``matplotlib.figure.Figure`` directly: no pyplot, no display.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import paper
from .common import DISPLAY, Context
from .selection import Selection
from .writers import header, md_table, write_csv, write_md

__all__ = ["fig2b", "fig3", "lr_series", "settle_point"]

log = logging.getLogger(__name__)

_RTOL = 1e-9  # lrs on the grid lr0 * beta^k are equal when the search accepts the same k


def lr_series(record: dict) -> tuple[list[float], str]:
    """(learning rates, "step" | "epoch"): per step where the run kept them, else per epoch."""
    history = record.get("history") or {}
    steps = history.get("step_lrs")
    if steps and any(steps):
        return [float(v) for epoch in steps for v in (epoch or [])], "step"
    return [float(v) for v in history.get("lr") or [] if v is not None], "epoch"


def settle_point(lrs: list[float], rtol: float = _RTOL) -> int | None:
    """The 1-based iterate from which the lr stays constant to the end, if that stretch is
    at least two iterates long; None when it does not settle."""
    if len(lrs) < 2:
        return None
    i = len(lrs) - 1
    while i > 0 and math.isclose(lrs[i - 1], lrs[-1], rel_tol=rtol):
        i -= 1
    return i + 1 if i <= len(lrs) - 2 else None


def _changes(lrs: list[float]) -> int:
    return sum(not math.isclose(a, b, rel_tol=1e-6) for a, b in zip(lrs, lrs[1:]))


def _label(r: dict, many_seeds: bool) -> str:
    name = DISPLAY.get(r.get("optim"), r.get("optim"))
    return f"{name}, seed {r.get('seed')}" if many_seeds else name


def _seed_sorted(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (str(r.get("dataset")), str(r.get("optim")),
                                          str(r.get("seed"))))


# --- Figure 2(b) --------------------------------------------------------------------------------

def fig2b(sel: Selection, ctx: Context) -> list[Path]:
    claim, paper_iter = paper.CLAIMS["fig2b"]
    runs = _seed_sorted(sel.records)
    many = len(runs) > 1
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    rows, csv_rows, notes = [], [], []
    for r in runs:
        lrs, unit = lr_series(r)
        settle = settle_point(lrs)
        steps = (r.get("history") or {}).get("steps") or []
        if unit == "epoch" and any(s and s > 1 for s in steps):
            notes.append(f"Run `{r.get('run_key')}` took {max(steps)} steps per epoch (not "
                         "full batch) and kept no per-step lrs: its points are epoch means.")
        n_train = (r.get("data") or {}).get("num_train")
        if n_train and r.get("batch_size") and r["batch_size"] < n_train:
            notes.append(f"Run `{r.get('run_key')}`: batch {r['batch_size']} < {n_train} "
                         "training images, so not full batch as in the paper.")
        line = ax.semilogy(range(1, len(lrs) + 1), lrs, lw=1.4, marker=".", ms=3,
                           label=_label(r, many))[0]
        if settle is not None:
            ax.axvline(settle, color=line.get_color(), ls=":", lw=1)
        csv_rows += [{"run_key": r.get("run_key"), "seed": r.get("seed"), "iterate": i,
                      "lr": v, "per": unit} for i, v in enumerate(lrs, 1)]
        rows.append([r.get("seed"), len(lrs), unit,
                     settle if settle is not None else f"does not settle within {len(lrs)}",
                     "" if settle is None else len(lrs) - settle + 1,
                     f"{lrs[0]:.4g}" if lrs else "", f"{lrs[-1]:.4g}" if lrs else "",
                     f"{min(lrs):.4g}–{max(lrs):.4g}" if lrs else "", _changes(lrs),
                     r.get("status")])
    ax.axvline(paper_iter, color="0.5", ls="--", lw=1, label=f"paper: settles after "
               f"{paper_iter} iterates")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iterate (full-batch step)")
    ax.set_ylabel("learning rate")
    ax.set_title("Fig. 2(b): Two-way Backtracking GD, full batch"
                 + ("" if sel.protocol == "full" else f" [{sel.protocol}]"))
    ax.legend(fontsize=8)
    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "fig2b.png", dpi=120)

    summary = [f"**Paper**: {claim}.", "**Ours**: " + "; ".join(
        f"seed {row[0]}: " + (f"the lr is constant from iterate {row[3]} to {row[1]}"
                              if isinstance(row[3], int) else f"{row[3]} iterates")
        for row in rows) + ". Settling = the first iterate after which the lr stays "
        "constant (relative tolerance 1e-9) to the end, over at least two iterates."]
    lines = header("Figure 2(b): learning rate of Two-way Backtracking GD vs iterate, full "
                   "batch", sel, ctx, [*summary, *notes])
    lines += ["![fig2b](fig2b.png)", "",
              *md_table(["seed", "iterates", "lr per", "settles at iterate", "constant for",
                         "first lr", "last lr", "lr range", "lr changes", "status"], rows), ""]
    return [write_md(out / "fig2b.md", lines), write_csv(out / "fig2b.csv",
                                                          pd.DataFrame(csv_rows)),
            out / "fig2b.png"]


# --- Figure 3 -------------------------------------------------------------------------------------

def _last_half_ratio(lrs: list[float]) -> float | None:
    tail = [v for v in lrs[len(lrs) // 2:] if v > 0]
    return max(tail) / min(tail) if tail else None


def fig3(sel: Selection, ctx: Context) -> list[Path]:
    claim, _ = paper.CLAIMS["fig3"]
    runs = _seed_sorted(sel.records)
    datasets = ["cifar10", "cifar100", *sorted({str(r.get("dataset")) for r in runs}
                                              - {"cifar10", "cifar100"})]
    many = len({r.get("seed") for r in runs}) > 1
    fig = Figure(figsize=(6 * len(datasets), 4.2), layout="constrained")
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    colors = {"mbt_mmt": "C0", "mbt_nag": "C1"}
    rows, csv_rows, ratios = [], [], {}
    for ax, letter, ds in zip(axes, "abcdefgh", datasets):
        mine = [r for r in runs if r.get("dataset") == ds]
        for r in mine:
            h = r.get("history") or {}
            lrs = [float(v) for v in h.get("lr") or []]
            epochs = h.get("epoch") or list(range(1, len(lrs) + 1))
            ax.semilogy(epochs, lrs, lw=1.3, color=colors.get(r.get("optim")),
                        label=_label(r, many))
            for i, (e, v) in enumerate(zip(epochs, lrs)):
                csv_rows.append({
                    "dataset": ds, "optim": r.get("optim"), "seed": r.get("seed"),
                    "run_key": r.get("run_key"), "epoch": e, "lr": v,
                    "search_mean_lr": _at(h.get("search_mean_lr"), i),
                    "test_acc": _at(h.get("test_acc"), i)})
            ratio = _last_half_ratio(lrs)
            ratios.setdefault((ds, r.get("optim")), []).append(ratio)
            peak = max(range(len(lrs)), key=lrs.__getitem__) if lrs else None
            rows.append([DISPLAY.get(ds, ds), DISPLAY.get(r.get("optim"), r.get("optim")),
                         r.get("seed"), len(lrs), f"{lrs[0]:.4g}" if lrs else "",
                         f"{lrs[peak]:.4g} ({epochs[peak]})" if lrs else "",
                         f"{lrs[-1]:.4g}" if lrs else "",
                         "" if ratio is None else f"{ratio:.2f}", _changes(lrs),
                         _acc(r), r.get("status")])
        ax.set_title(f"({letter}) {DISPLAY.get(ds, ds)}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        if mine:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Fig. 3: MBT-MMT and MBT-NAG learning rate per epoch, ResNet18"
                 + ("" if sel.protocol == "full" else f" [{sel.protocol}]"))
    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "fig3.png", dpi=120)

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
    notes = [f"**Paper**: \"{claim}\".",
             "**Ours**: " + ("; ".join(compare) if compare else "MBT-MMT and MBT-NAG not both "
                             "present for a data set; no comparison") + ". Per epoch, the lr "
             "is the mean lr of the epoch's steps; last-half max/min = ratio of the largest "
             "to the smallest lr over the second half of the epochs (1 = constant)."]
    lines = header("Figure 3: learning rate per epoch of MBT-MMT and MBT-NAG, ResNet18",
                   sel, ctx, notes)
    lines += ["![fig3](fig3.png)", "",
              *md_table(["data", "optimizer", "seed", "epochs", "lr epoch 1", "peak lr (epoch)",
                         "final lr", "last-half max/min", "lr changes", "best acc (epoch)",
                         "status"], rows), ""]
    return [write_md(out / "fig3.md", lines), write_csv(out / "fig3.csv", pd.DataFrame(csv_rows)),
            out / "fig3.png"]


def _at(values, i):
    return values[i] if values and i < len(values) else None


def _acc(r: dict) -> str:
    best = r.get("best_test_acc")
    return "" if best is None else f"{best:.2f} ({r.get('best_epoch')})"

