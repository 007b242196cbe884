"""The analytic report targets: Examples 3.6-3.7 (Sec. 3.4) and Figure 2(a) (Sec. 4.1).

Unlike the ledger targets (:mod:`mbt.report`), these are computed here, from runs of
``python -m mbt.toy`` (analytic, CPU, float64, deterministic: seconds to minutes). Every
number in the outputs comes from a run whose exact CLI command is printed beside it (Examples
3.6-3.7 and Figure 2(a)'s named start run through the CLI; Figure 2(a)'s random-start
runs run in-process through the same ``mbt.toy.run_toy``, each with its CLI command in
``fig2a.starts.csv``). :func:`examples` writes ``toy_examples.md`` (+ ``.csv``),
:func:`fig2a` writes ``fig2a.md``, ``fig2a.png``, ``fig2a.csv`` (the named start's history)
and ``fig2a.starts.csv`` (one row per start and method). ``quick`` leaves out the
10^6-iteration run of Example 3.7's Backtracking GD (about 4 minutes) and draws 10 instead
of 100 random starts per family for Figure 2(a), for ``make demo``; the outputs say so.
The targets are listed in :data:`mbt.report.targets.TOY_TARGETS`;
``scripts/reproduce_toy.py`` (``make reproduce-toy``) runs them.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mbt.toy import ToyResult, iterations_to_within, run_toy, settling_iterate
from mbt.toy.settle import GRID_RTOL

__all__ = ["PAPER_TOY", "SETTLE_BY", "examples", "fig2a"]

# Figure 2(a): a start on Absil et al.'s curve theta0 (1 - r0^2) = 1 with
# sin(theta0) < 0, the case Sec. 3.3 discusses. theta0 = 4 gives r0 = sqrt(3)/2.
THETA0 = 4.0
R0 = math.sqrt(1.0 - 1.0 / THETA0)
HAT_START = [round(R0 * math.cos(THETA0), 12), round(R0 * math.sin(THETA0), 12)]


def run_cli(overrides: list[str]) -> tuple[dict, str]:
    cmd = [sys.executable, "-m", "mbt.toy", *overrides]
    shown = "python -m mbt.toy " + " ".join(shlex.quote(o) for o in overrides)
    print(f"$ {shown}", file=sys.stderr, flush=True)
    # stderr passes through: the run's progress bar (on a terminal) or its summary line,
    # and any error message.
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {shown}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), shown


def fmt_point(p) -> str:
    return "(" + ", ".join(f"{v:.8f}" for v in p) + ")"


# The paper's claims for Examples 3.6-3.7 (Sec. 3.4, l. 997-1010 of our text copy
# shared/seeds/001_f6a87e200db0a0b6.txt), as printed; pinned by tests/test_paper_numbers.py.
PAPER_TOY = {
    "3.6": "after 10 steps: (0.09325947, -0.09325947)",
    "3.7 backtracking": "after 10^6 steps: (0.00111797, 0.00111802), lr 1",
    "3.7 unbounded": "after 89 steps: (0.00025327, 0.00025327), lr 90544.63441298596",
}


def examples(out: Path, quick: bool = False) -> None:
    """Examples 3.6-3.7 through the CLI: ``toy_examples.md`` and ``.csv`` in ``out``."""
    start36, start37 = "start=[4,-5]", "start=[0.1,15]"
    common = ["alpha=0.5", "beta=0.7", "lr0=1"]
    rows = [
        # (example, paper claim, overrides)
        ("3.6 Backtracking GD", PAPER_TOY["3.6"],
         ["function=x3sin", "method=backtracking", start36, *common]),
        ("3.6 Unbounded Backtracking GD", PAPER_TOY["3.6"],
         ["function=x3sin", "method=unbounded", start36, *common]),
        ("3.7 Backtracking GD, 10^5 steps", PAPER_TOY["3.7 backtracking"],
         ["function=quartic", "method=backtracking", start37, *common, "max_iters=100000"]),
    ]
    if not quick:
        rows.append(("3.7 Backtracking GD, 10^6 steps", PAPER_TOY["3.7 backtracking"],
                     ["function=quartic", "method=backtracking", start37, *common,
                      "max_iters=1000000"]))
    rows += [
        ("3.7 Unbounded Backtracking GD", PAPER_TOY["3.7 unbounded"],
         ["function=quartic", "method=unbounded", start37, *common]),
    ]
    records = []
    for name, paper, overrides in rows:
        res, shown = run_cli(overrides)
        records.append(dict(example=name, paper=paper, iterations=res["iterations"],
                            point=fmt_point(res["point"]), lr=res["lr"], f=res["f"],
                            grad_norm=res["grad_norm"], stop=res["stop_reason"],
                            seconds=res["seconds"], command=shown))
    df = pd.DataFrame(records)
    df.to_csv(out / "toy_examples.csv", index=False)
    lines = [
        "# Examples 3.6 and 3.7 (paper Sec. 3.4)",
        "",
        "Protocol: `full` (the paper's settings: alpha 0.5, beta 0.7, lr0 1, stop at "
        "10^6 iterations or ||grad f|| <= 1e-10)" + (
            "; **quick run: the 10^6-step run of Example 3.7 is left out**"
            if quick else "") + ". Device: CPU, float64. Deterministic (no seed).",
        "Regenerate: `make reproduce-toy` (runs the commands below).",
        "",
        "| example | paper | ours: iterations | ours: point | ours: last lr | stop | "
        "seconds | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(f"| {r['example']} | {r['paper']} | {r['iterations']} | {r['point']} | "
                     f"{r['lr']:.12g} | {r['stop']} | {r['seconds']:.2f} | `{r['command']}` |")
    lines += ["", NOTES_37]
    (out / "toy_examples.md").write_text("\n".join(lines) + "\n")


NOTES_37 = """\
Notes.
- Iterations count steps that moved the point. In Example 3.6 both methods reach
  (0.09325947, -0.09325947) after 10 steps, as the paper says; at step 11 no step on
  the grid lr0 beta^k passes Armijo's test in float64 (||grad f|| is 7.6e-10 there,
  above the 1e-10 tolerance), so the run stops as `stalled` instead of spinning to 10^6.
- Example 3.7, Unbounded: 89 steps, the same point and the learning rate 0.7^-32 =
  90544.634412986, equal to the paper's value to 13 significant digits.
- Example 3.7, Backtracking GD: the paper's point (0.00111797, 0.00111802) comes out
  exactly after 10^5 steps, not after the 10^6 the text states. Backtracking GD never
  exceeds lr0 = 1, so near 0 it is GD x <- x - 4x^3 and x_n is about 1/sqrt(8n):
  0.001118 is n = 10^5, and our 10^6-step point is about 3.5e-4, as that formula
  predicts. We did not change anything to force the paper's number; the paper's
  figure most likely came from a 10^5-iteration run."""


# --- Figure 2(a) ----------------------------------------------------------------------
# The paper gives no start, no alpha/beta/delta0 and no run length for Fig. 2(a). We use
# Sec. 3.4's settings (alpha 0.5, beta 0.7, delta0 1; the only ones the paper states for
# its analytic examples) and, besides one named start on Absil et al.'s curve, 100
# seeded random starts from each of two families with sin(theta0) < 0 (the text's
# condition, Example 3.3).
FIG2A_METHODS = {"two_way": "Two-way Backtracking GD", "backtracking": "Backtracking GD",
                 "standard": "Standard GD (fixed lr0 = 1)"}
FIG2A_PARAMS = ["alpha=0.5", "beta=0.7", "lr0=1"]
FIG2A_ITERS = 500        # iterates per run (the named start's figure shows the first 100)
FIG2A_PLOT_ITERS = 100
FIG2A_STARTS = 100       # random starts per family (--quick: 10)
FIG2A_SEED = 0
FAMILIES = {
    "disc": "uniform on the lower half of the unit disc: r0 = sqrt(U(0,1)), "
            "theta0 ~ U(pi, 2 pi)",
    "curve": "on Absil et al.'s curve theta0 (1 - r0^2) = 1: theta0 ~ U(pi, 2 pi), "
             "r0 = sqrt(1 - 1/theta0)",
}
SETTLE_BY = 6            # the paper: "stabilises to Standard GD in only 6 iterates"
MIN_TAIL = 20            # a run cut by max_iters counts as settled only after 20 equal steps
F_LIMIT, F_TOL = 0.0, 1e-10  # f's limit: its minimum value 0 (f > 0 for r < 1, 0 for r >= 1)


def draw_starts(family: str, n: int, seed: int) -> list[tuple[float, float, list[float]]]:
    """n seeded starts (r0, theta0, [x0, y0]) with sin(theta0) < 0; see FAMILIES."""
    rng = np.random.default_rng([seed, list(FAMILIES).index(family)])
    starts = []
    for _ in range(n):
        theta0 = rng.uniform(math.pi, 2 * math.pi)
        if family == "disc":
            r0 = math.sqrt(rng.uniform(0.0, 1.0))  # area-uniform in the half disc
        else:
            r0 = math.sqrt(1.0 - 1.0 / theta0)
        # Rounded so that the printed command reruns exactly this start.
        xy = [round(r0 * math.cos(theta0), 12), round(r0 * math.sin(theta0), 12)]
        starts.append((r0, theta0, xy))
    return starts


def toy_command(method: str, xy: list[float], iters: int) -> str:
    return (f"python -m mbt.toy function=mexican_hat method={method} "
            f"'start=[{xy[0]!r},{xy[1]!r}]' {' '.join(FIG2A_PARAMS)} max_iters={iters}")


def run_metrics(res: ToyResult) -> dict:
    """Settling iterate, iterations/evaluations to f <= F_TOL and the run's outcome."""
    rows = res.history
    lrs = [row[5] for row in rows]
    if lrs and lrs[-1] == 0.0:
        # A last "step" at a point with zero gradient (outside the unit disc, f = 0):
        # the search has nothing to test and returns 0; the point did not move.
        lrs = lrs[:-1]
    k = settling_iterate(lrs)
    tail = len(lrs) - k
    if res.stop_reason == "max_iters" and tail < MIN_TAIL:
        status = "not settled"
    elif k > SETTLE_BY:
        status = "settled later"
    elif res.stop_reason == "max_iters" or len(lrs) > SETTLE_BY:
        # The run goes on past iterate 6 with one step size from iterate k on.
        status = "never changed" if k == 0 else "settled by 6"
    else:
        status = "over by 6"  # converged (or left the disc) within 6 iterates
    # f(z_0), ..., f(z_N): a history row holds f where its step started.
    f_seq = [row[3] for row in rows] + [res.f]
    n_tol = iterations_to_within(f_seq, F_LIMIT, F_TOL)
    evals_tol = None if n_tol is None else int(sum(row[6] for row in rows[:n_tol]))
    x, y = res.point
    return dict(iterations=res.iterations, stop=res.stop_reason, settle_k=k,
                steps=tuple(lrs),
                settle_status=status, settled_lr=lrs[k] if lrs else math.nan, tail=tail,
                iters_to_tol=n_tol, evals_to_tol=evals_tol, func_evals=res.func_evals,
                f_end=res.f, r_end=math.hypot(x, y))


def _mark_same_steps(rows: list[dict]) -> list[dict]:
    """Two-way rows get ``same_steps``: True when Backtracking GD took the same steps."""
    steps = {(r["family"], r["start"], r["method"]): r.pop("steps") for r in rows}
    for r in rows:
        if r["method"] == "two_way":
            other = steps[(r["family"], r["start"], "backtracking")]
            mine = steps[(r["family"], r["start"], "two_way")]
            r["same_steps"] = len(mine) == len(other) and all(
                math.isclose(a, b, rel_tol=GRID_RTOL) for a, b in zip(mine, other))
    return rows


def fig2a_named(tmp: str) -> tuple[pd.DataFrame, list[dict]]:
    """The named start, through the CLI (commands shown in the md)."""
    frames, rows = [], []
    start = "start=[{},{}]".format(*HAT_START)
    for method in FIG2A_METHODS:
        res, shown = run_cli(["function=mexican_hat", f"method={method}", start,
                              *FIG2A_PARAMS, f"max_iters={FIG2A_ITERS}", f"out={tmp}"])
        frame = pd.read_csv(res["history_csv"])
        frame.insert(0, "method", method)
        frames.append(frame)
        # The same run in-process gives the table's metrics; it must agree with the CLI.
        inproc = run_toy("mexican_hat", method, HAT_START, alpha=0.5, beta=0.7, lr0=1.0,
                         max_iters=FIG2A_ITERS, record=True)
        if inproc.point != res["point"] or inproc.func_evals != res["func_evals"]:
            sys.exit(f"in-process run differs from the CLI: {shown}")
        rows.append(dict(family="named", start=0, r0=R0, theta0=THETA0, x0=HAT_START[0],
                         y0=HAT_START[1], method=method, **run_metrics(inproc),
                         command=shown.replace(f" out={tmp}", "")))
    return pd.concat(frames, ignore_index=True), _mark_same_steps(rows)


def fig2a_random(n_starts: int) -> list[dict]:
    rows = []
    for family in FAMILIES:
        for i, (r0, theta0, xy) in enumerate(draw_starts(family, n_starts, FIG2A_SEED)):
            for method in FIG2A_METHODS:
                res = run_toy("mexican_hat", method, xy, alpha=0.5, beta=0.7, lr0=1.0,
                              max_iters=FIG2A_ITERS, record=True)
                rows.append(dict(family=family, start=i, r0=r0, theta0=theta0, x0=xy[0],
                                 y0=xy[1], method=method, **run_metrics(res),
                                 command=toy_command(method, xy, FIG2A_ITERS)))
            print(f"fig2a: {family} start {i + 1}/{n_starts}", file=sys.stderr, flush=True)
    return _mark_same_steps(rows)


K_BINS = ["0", "1", "2", "3", "4", "5", "6", "7-10", "11-20", "21-100", ">100", "not\nsettled"]
N_BINS = ["<=5", "6-10", "11-20", "21-50", "51-100", "101-500", "not\nreached"]


def _k_bin(row) -> str:
    if row.settle_status == "not settled":
        return K_BINS[-1]
    k = row.settle_k
    return str(k) if k <= 6 else "7-10" if k <= 10 else "11-20" if k <= 20 else (
        "21-100" if k <= 100 else ">100")


def _n_bin(n) -> str:
    if n is None or pd.isna(n):
        return N_BINS[-1]
    return next(b for b, top in zip(N_BINS, (5, 10, 20, 50, 100, 500)) if n <= top)


def fig2a_plot(out: Path, hist: pd.DataFrame, table: pd.DataFrame, n_starts: int) -> None:
    """``fig2a.png``: (a)-(b) the named start's lr and f, (c)-(d) the random starts'
    settling iterates and iterations to f <= 1e-10. Longer than 60 lines for a reason: one
    figure of four panels, drawn top to bottom; helpers would only pass the axes around."""
    fig = Figure(figsize=(12, 8))  # no pyplot: nothing global, no display
    axes = fig.subplots(2, 2)
    (ax_lr, ax_f), (ax_k, ax_n) = axes
    colors = {"two_way": "C0", "backtracking": "C1", "standard": "C2"}
    lr_of = {m: hist[hist.method == m].lr.to_numpy() for m in FIG2A_METHODS}
    same = len(lr_of["two_way"]) == len(lr_of["backtracking"]) and np.allclose(
        lr_of["two_way"], lr_of["backtracking"], rtol=GRID_RTOL, atol=0.0)
    for method, label in FIG2A_METHODS.items():
        part = hist[(hist.method == method) & (hist.iteration <= FIG2A_PLOT_ITERS)]
        if same and method == "backtracking":
            continue  # drawn once, labelled as both
        if same and method == "two_way":
            label = "Two-way and Backtracking GD (identical steps: one curve)"
        style = dict(marker=".", ms=3, lw=1, color=colors[method], label=label)
        ax_lr.plot(part.iteration, part.lr, **style)
        # A history row holds f where its step started: row n gives f(z_{n-1}).
        ax_f.semilogy(part.iteration - 1, part.f.clip(lower=1e-300), **style)
    ax_lr.set(xlabel="iterate n", ylabel="learning rate of step n", yscale="log",
              title=f"(a) named start (r0, theta0) = (sqrt(3)/2, 4): learning rate, "
                    f"first {FIG2A_PLOT_ITERS} iterates")
    ax_f.set(xlabel="iterate n", ylabel="f(z_n)",
             title=f"(b) named start: function value, first {FIG2A_PLOT_ITERS} iterates")
    ax_lr.legend(fontsize=8, loc="lower right")
    ax_f.legend(fontsize=8)

    rand = table[table.family != "named"]
    width = 0.4
    for j, family in enumerate(FAMILIES):
        part = rand[(rand.family == family) & (rand.method == "two_way")]
        bins = part.apply(_k_bin, axis=1)
        over = part.settle_status == "over by 6"
        counts = [int((bins[~over] == b).sum()) for b in K_BINS]
        over_counts = [int((bins[over] == b).sum()) for b in K_BINS]
        x = np.arange(len(K_BINS)) + (j - 0.5) * width
        ax_k.bar(x, counts, width, color=f"C{j + 3}", label=f"{family} starts")
        ax_k.bar(x, over_counts, width, bottom=counts, color=f"C{j + 3}", alpha=0.35,
                 hatch="//", label=f"{family}: run ended by iterate 6 (claim empty)")
    ax_k.set_ylim(0, ax_k.get_ylim()[1] * 1.35)  # room for the legend
    ax_k.axvline(K_BINS.index("6") + 0.5, color="k", ls=":", lw=1,
                 label="paper: settles after 6 iterates")
    ax_k.set_xticks(range(len(K_BINS)), ["0\n(never\nchanged)", *K_BINS[1:]], fontsize=8)
    ax_k.set(xlabel="settling iterate k of Two-way (lr constant after iterate k)",
             ylabel=f"starts (of {n_starts} per family)",
             title=f"(c) Two-way: settling iterate, {FIG2A_ITERS}-iterate runs")
    ax_k.legend(fontsize=7, loc="upper left")

    width = 0.27
    tol_of = {m: rand[rand.method == m].iters_to_tol.fillna(-1).to_numpy() for m in FIG2A_METHODS}
    alike = np.array_equal(tol_of["two_way"], tol_of["backtracking"])
    for j, method in enumerate(FIG2A_METHODS):
        part = rand[rand.method == method]
        bins = part.iters_to_tol.map(_n_bin)
        counts = [int((bins == b).sum()) for b in N_BINS]
        ax_n.bar(np.arange(len(N_BINS)) + (j - 1) * width, counts, width,
                 color=colors[method], label=FIG2A_METHODS[method])
    ax_n.set_xticks(range(len(N_BINS)), N_BINS, fontsize=8)
    ax_n.set(xlabel=f"iterations until f stays within {F_TOL:g} of its limit 0",
             ylabel=f"starts (both families, {2 * n_starts})",
             title="(d) iterations to f <= 1e-10, all random starts"
                   + ("\n(Two-way and Backtracking equal at every start)" if alike else ""))
    ax_n.legend(fontsize=7)
    fig.suptitle("Fig. 2(a), Mexican hat (Example 3.3): alpha 0.5, beta 0.7, lr0 1 "
                 "(Sec. 3.4's settings; none given for Fig. 2(a)); protocol full, CPU "
                 "float64", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "fig2a.png", dpi=120)


def _frac(n: int, total: int) -> str:
    return f"{n}/{total} ({100 * n / total:.0f} %)" if total else "0/0"


def _median(values) -> str:
    values = [v for v in values if v is not None and not pd.isna(v)]
    return f"{np.median(values):g}" if values else "-"


def fig2a_summary(table: pd.DataFrame) -> list[str]:
    lines = [f"| starts | method | settled at iterate 1-{SETTLE_BY} (run goes on) | never "
             f"changed (k = 0) | over by iterate {SETTLE_BY} | settled later | not settled "
             f"in {FIG2A_ITERS} | "
             f"median k (settled) | same steps as Backtracking GD | f within {F_TOL:g} of 0 "
             "| median iterations to it | median evaluations to it | median evaluations "
             "per run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for family in FAMILIES:
        for method, label in FIG2A_METHODS.items():
            part = table[(table.family == family) & (table.method == method)]
            n = len(part)
            count = part.settle_status.value_counts()
            settled = part[part.settle_status != "not settled"]
            reached = part[part.iters_to_tol.notna()]
            if method == "standard":
                settle = "fixed step (k = 0) | | | | | 0"
            else:
                settle = (f"{_frac(count.get('settled by 6', 0), n)} | "
                          f"{_frac(count.get('never changed', 0), n)} | "
                          f"{_frac(count.get('over by 6', 0), n)} | "
                          f"{_frac(count.get('settled later', 0), n)} | "
                          f"{_frac(count.get('not settled', 0), n)} | "
                          f"{_median(settled.settle_k)}")
            same = (_frac(int(part.same_steps.astype(bool).sum()), n)
                    if method == "two_way" else "")
            lines.append(
                f"| {family} | {label} | {settle} | {same} | {_frac(len(reached), n)} | "
                f"{_median(reached.iters_to_tol)} | {_median(reached.evals_to_tol)} | "
                f"{_median(part.func_evals)} |")
    return lines


def _verdict(share: float) -> str:
    return ("absent" if share == 0 else "rare" if share < 0.1 else
            "a minority, not typical" if share < 0.5 else "typical")


def fig2a(out: Path, quick: bool = False) -> None:
    """Figure 2(a): the named start through the CLI, the random starts in-process; writes
    ``fig2a.csv``, ``fig2a.starts.csv``, ``fig2a.png`` and ``fig2a.md`` in ``out``."""
    n_starts = 10 if quick else FIG2A_STARTS
    with tempfile.TemporaryDirectory() as tmp:
        hist, named_rows = fig2a_named(tmp)
    hist.to_csv(out / "fig2a.csv", index=False)
    table = pd.DataFrame(named_rows + fig2a_random(n_starts))
    table.to_csv(out / "fig2a.starts.csv", index=False)
    fig2a_plot(out, hist, table, n_starts)
    lines = _fig2a_md(table, named_rows, n_starts, quick)
    (out / "fig2a.md").write_text("\n".join(lines) + "\n")


def _fig2a_md(table: pd.DataFrame, named_rows: list[dict], n_starts: int,
              quick: bool) -> list[str]:
    """The lines of ``fig2a.md``. Longer than 60 lines for a reason: it is one document
    (settings, definitions, starts, verdict, two tables) whose text reads top to bottom as
    written; cut into helpers, its sentences would be scattered across them."""
    two_way = table[table.method == "two_way"]
    rand_tw = two_way[two_way.family != "named"]
    count = {fam: rand_tw[rand_tw.family == fam].settle_status.value_counts()
             for fam in FAMILIES}
    total = {fam: int((rand_tw.family == fam).sum()) for fam in FAMILIES}
    at_six = {fam: int(((rand_tw.family == fam) & (rand_tw.settle_k == SETTLE_BY)
                        & (rand_tw.settle_status == "settled by 6")).sum()) for fam in FAMILIES}
    def steps_of(*statuses: str) -> list[float]:
        return sorted({round(v, 9) for v in
                       rand_tw[rand_tw.settle_status.isin(statuses)].settled_lr})

    early, later = steps_of("settled by 6", "never changed"), steps_of("settled later")
    bt = table[(table.method == "backtracking") & (table.family != "named")]

    def per_family(status: str) -> str:
        return " and ".join(_frac(int(count[f].get(status, 0)), total[f]) for f in FAMILIES)

    def share(fam: str, *statuses: str) -> float:
        return sum(int(count[fam].get(s, 0)) for s in statuses) / max(total[fam], 1)

    named = {r["method"]: r for r in named_rows}
    nt = named["two_way"]
    quick_note = " (**quick: 10 starts per family, not the committed 100**)" if quick else ""
    lines = [
        "# Figure 2(a): Two-way Backtracking GD on the Mexican hat (Example 3.3)", "",
        f"Protocol `full`{quick_note}, CPU, float64, deterministic (random starts seeded). "
        "Regenerate everything below: "
        "`make reproduce-fig2a` (= `python scripts/reproduce_toy.py --out results --only "
        "fig2a`); every single run: the command in its row (here or in "
        "[`fig2a.starts.csv`](fig2a.starts.csv)).", "",
        "**Settings.** The paper gives no alpha, beta, delta0, start or run length for "
        "Figure 2(a). alpha = 0.5, beta = 0.7, delta0 = lr0 = 1 are borrowed from Sec. 3.4's "
        "examples (3.6-3.7), the only settings the paper states for its analytic functions. "
        "Two-way grows back at most to delta0 = 1 (the text's cap, Sec. 3.3; the talk "
        "slides say \"an upper limit (say 100)\"). Standard GD uses the fixed step lr0 = 1. "
        f"Every run has {FIG2A_ITERS} iterates at most (or stops earlier by the toy "
        "runner's rule: ||grad f|| <= 1e-10, or no Armijo step left).", "",
        "**The function.** f > 0 everywhere inside the unit disc (the bracket is at least "
        "1 - 4r^4/(4r^4 + (1 - r^2)^4) > 0) and f = 0 for r >= 1, so the set of minima is "
        "the region r >= 1 and inf f = 0. The curve theta (1 - r^2) = 1 is not a set of "
        "minima: it is where Absil et al.'s gradient flow, started on it, stays without "
        "converging.", "",
        "**Definitions.**",
        "- *Settling iterate* k (`mbt.toy.settling_iterate`): the first iterate after which "
        "the learning rate never changes within the run: steps k+1, ..., N all have one "
        "step size (equal within 1e-9 relative: two-way's grid values drift in the last "
        "digits). k = 0 for Standard GD, trivially. A last no-op step at a point with zero "
        "gradient (outside the disc) is not counted. A run cut at "
        f"{FIG2A_ITERS} iterates counts as settled only if its last {MIN_TAIL} or more "
        "steps share the step size; otherwise *not settled*. *Never changed*: k = 0 in a "
        "run that goes on past iterate 6. *Over by 6*: the run ended "
        f"(converged, or left the disc where f = 0) within {SETTLE_BY} iterates, so its "
        "step size had nothing left to change - the claim is empty there.",
        f"- *Limit of f*: 0, its minimum value (not the value at the end of a long run: "
        f"many runs are still creeping along the spiral valley at f ~ 1e-4 after "
        f"{FIG2A_ITERS} iterates). *Iterations to f within {F_TOL:g}*: the first n with "
        f"f(z_m) <= {F_TOL:g} for every later m of the run (f(z_0) is the start); "
        "*evaluations to it*: the function evaluations the method spent on those n steps "
        "(every trial of a line search; 1 per step for Standard GD).", "",
        "**Starts.** One named start and "
        f"{n_starts} seeded random starts (seed {FIG2A_SEED}) from each of two families, all "
        "with sin(theta0) < 0 (the condition of Example 3.3's comparison):",
        "- *named*: (r0, theta0) = (sqrt(3)/2, 4) = "
        f"{fmt_point(HAT_START)}, on Absil et al.'s curve theta0 (1 - r0^2) = 1.",
        f"- *disc*: {FAMILIES['disc']}. The text says \"random choices of initial values\" "
        "and sin(theta0) < 0; outside the disc f = 0 and grad f = 0, so nothing would run.",
        f"- *curve*: {FAMILIES['curve']} - the starts of Absil et al.'s example that the "
        "text discusses (the first turn of the curve with sin(theta0) < 0).", "",
        "## Verdict", "",
        "Paper: two-way \"stabilises to Standard GD in only 6 iterates\" (Sec. 4.1; start "
        f"not given). Ours, over {FIG2A_ITERS}-iterate runs of Two-way Backtracking GD "
        f"(disc and curve starts, {n_starts} each): a step size that changes and then stays "
        f"constant from iterate {SETTLE_BY} or earlier on, with the run still going on (the "
        f"paper's picture), from {per_family('settled by 6')} of the starts (exactly at "
        f"iterate {SETTLE_BY}: {at_six['disc']} and {at_six['curve']}). A further "
        f"{per_family('never changed')} never change their step at all; "
        f"{per_family('over by 6')} end within {SETTLE_BY} iterates (they leave the disc or "
        f"stop, so the claim is empty); {per_family('settled later')} settle later; "
        f"{per_family('not settled')} do not settle within {FIG2A_ITERS} iterates. The runs "
        f"settled by iterate {SETTLE_BY} keep the step " + ", ".join(f"{v:g}" for v in early)
        + (" (= delta0: two-way has become Standard GD with lr0 itself, not with a smaller "
           "step)" if early == [1.0] else "")
        + ("; the later ones " + ", ".join(f"{v:g}" for v in later) if later else "")
        + ". So "
        "stabilising within 6 iterates is "
        f"**{_verdict(share('disc', 'settled by 6'))}** from random starts in the disc and "
        f"**{_verdict(share('curve', 'settled by 6'))}** from starts on Absil's curve "
        f"({100 * share('disc', 'settled by 6', 'never changed'):.0f} % and "
        f"{100 * share('curve', 'settled by 6', 'never changed'):.0f} % if runs whose step "
        "never changes count too); it is typical in neither. The named start: "
        + (f"k = {nt['settle_k']} ({nt['settle_status']})." if nt["settle_status"] !=
           "not settled" else f"not settled within {FIG2A_ITERS} iterates.")
        + f" Two-way and Backtracking GD take the same steps from "
        f"{int(rand_tw.same_steps.astype(bool).sum())} of the {len(rand_tw)} random starts "
        "(with delta0 as the cap both return the largest grid step up to delta0 that passes "
        "Armijo's test whenever the passing steps form an interval (0, s]); two-way spends "
        f"{int(rand_tw.func_evals.sum())} function evaluations in all against "
        f"{int(bt.func_evals.sum())} for Backtracking GD. Panels (c)-(d) of `fig2a.png` "
        "and the tables below give the rest.", "",
        "## Named start", "",
        f"| method | iterations (stop) | settling iterate k | step after k | f within "
        f"{F_TOL:g} of 0 after | evaluations to it | evaluations | f at the end | r at "
        "the end | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, label in FIG2A_METHODS.items():
        r = named[method]
        if r["settle_status"] == "not settled":
            k, step = "not settled", "-"
        else:
            k, step = str(r["settle_k"]), f"{r['settled_lr']:.4g}"
        lines.append(
            f"| {label} | {r['iterations']} ({r['stop']}) | {k} | {step} | "
            f"{'not reached' if r['iters_to_tol'] is None else r['iters_to_tol']} | "
            f"{'-' if r['evals_to_tol'] is None else r['evals_to_tol']} | "
            f"{r['func_evals']} | {r['f_end']:.3e} | {r['r_end']:.4f} | `{r['command']}` |")
    nb, ns = named["backtracking"], named["standard"]
    lines += ["", (
        "From this start Backtracking GD takes "
        + ("the same steps as two-way" if nt["same_steps"] else "different steps from two-way")
        + f" ({nt['func_evals']} evaluations for two-way, {nb['func_evals']} for "
        "Backtracking GD: two-way grows back to lr0 after each shrink, Backtracking starts "
        f"there). Both creep along the nearly flat spiral valley at f = {nt['f_end']:.1e}, "
        f"r = {nt['r_end']:.3f} after {FIG2A_ITERS} iterates, the step still switching "
        "between a few grid values. Standard GD with the fixed step lr0 = 1 stops after "
        f"{ns['iterations']} iterations ({ns['stop']}) at r = {ns['r_end']:.4f}, next to the "
        f"unit circle (the minimum set is r >= 1), where f = {ns['f_end']:.1e}.")]
    lines += ["", "## Random starts", "",
              f"Counts over the {n_starts} starts of each family (`fig2a.starts.csv` has "
              "every run and its command).", "", *fig2a_summary(table), ""]
    return lines
