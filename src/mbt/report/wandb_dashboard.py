"""``python -m mbt.report wandb-dashboard``: the paper's views as one saved W&B Report.

Examples::

    python -m mbt.report wandb-dashboard --entity me --project mbt
    python -m mbt.report wandb-dashboard --entity me --experiment table2 --protocol smoke
    python -m mbt.report wandb-dashboard --dry-run        # the panels, printed; no W&B

:func:`build_report` is pure (it builds a ``wandb_workspaces`` Report object, no network);
:func:`save_report` uploads it and needs W&B online. The views, one section each:

- Table 1: MBT-GD's rescaled search result by batch size (bars, spread over the start
  lrs), against the start lr and the batch size, and the accepted eta per mini-batch.
- Table 2: per optimizer, best test accuracy against the start lr; the best per optimizer.
- Table 3: per dataset and MBT optimizer, best test accuracy per model and test accuracy
  per epoch.
- Figure 3: per dataset, the learning rate per epoch of MBT-MMT and MBT-NAG (ResNet18),
  grouped by optimizer (mean and range over seeds).
- Figure 2(b): Two-way Backtracking GD, full batch: the lr per iterate (one epoch is one
  iterate), the line search's evaluations per iterate and the training loss, by BatchNorm
  init.
- autolr (beyond the paper): per method, the best test accuracy, the test accuracy and
  the lr per epoch, and the time per epoch.

Every panel reads one protocol (``--protocol``, default full): a Report never mixes them.
Runs are selected by their config (experiment, protocol, model, data, optim), not by W&B
group, because one run can serve several presets: Figure 3's runs are Table 3's ResNet18
cells, and Table 2's MBT cells are Table 3's ResNet18/CIFAR10 ones (same run key), so the
run carries the preset that trained it first. The ledger stays the source of every table
(``python -m mbt.report``); this Report is a view of the same runs for the W&B UI.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mbt.config_paths import install_hint

from .common import DISPLAY, PROTOCOLS, ReportError
from .wandb_source import require_online

__all__ = ["EXPERIMENTS", "build_report", "describe", "main", "save_report"]

EXPERIMENTS = ("table1", "table2", "table3", "fig3", "fig2b", "autolr")
# The presets whose runs each view reads (see the module docstring for the overlaps).
_PRESETS = {"table1": ["table1"], "table2": ["table2", "table2_mbt"],
            "table3": ["table3", "fig3", "table2_mbt"], "fig3": ["fig3", "table3", "table2_mbt"],
            "fig2b": ["fig2b"], "autolr": ["autolr", "autolr_grid"]}
# Table 2's rows in the paper's order; Table 3's models; the datasets of Table 3 / Fig. 3.
_TABLE2_OPTIMS = ("sgd", "mmt", "nag", "adagrad", "adadelta", "rmsprop", "adam", "adamax",
                  "mbt_gd", "mbt_mmt", "mbt_nag")
_DATASETS = ("cifar10", "cifar100")
_MBT_MOMENTUM = ("mbt_mmt", "mbt_nag")


def _wr():
    try:
        import wandb_workspaces.reports.v2 as wr
        from wandb_workspaces import expr
    except ImportError as err:
        raise ReportError("wandb-dashboard needs the wandb-workspaces package: "
                          + install_hint("wandb")) from err
    return wr, expr


def _runset(wr, expr, entity: str, project: str, name: str, experiment: str, protocol: str,
            job_type: str = "train", **config: Any):
    """The runs of ``experiment``'s presets under ``protocol``, narrowed by config values
    (a list: any of them)."""
    filters = [expr.Config("experiment").isin(_PRESETS[experiment]),
               expr.Config("protocol") == protocol, expr.Metric("JobType") == job_type]
    for key, value in config.items():
        key = key.replace("__", ".")
        filters.append(expr.Config(key).isin(list(value)) if isinstance(value, (list, tuple))
                       else expr.Config(key) == value)
    return wr.Runset(entity=entity, project=project, name=name, filters=filters)


def _table1(wr, expr, entity, project, protocol) -> list:
    runs = _runset(wr, expr, entity, project, "Table 1 searches", "table1", protocol,
                   job_type="lr_search", optim__name="mbt_gd")
    runs.groupby = ["config.trainer.batch_size"]
    by_batch = wr.Config("trainer.batch_size")
    return [
        wr.H2("Table 1: MBT-GD's learning rate by batch size"),
        wr.P("One search (python -m mbt.find_lr, 20 mini-batches) per start lr and batch "
             "size; search/lr is the rescaled mean of the accepted eta, Table 1's number."),
        wr.PanelGrid(runsets=[runs], panels=[
            wr.BarPlot(title="Table 1: search/lr by batch size (mean, range over start lrs)",
                       metrics=[wr.SummaryMetric("search/lr")], groupby=by_batch,
                       groupby_aggfunc="mean", groupby_rangefunc="minmax"),
            wr.ScatterPlot(title="search/lr against batch size (grows like sqrt(b))",
                           x=by_batch, y=wr.SummaryMetric("search/lr"), log_x=True,
                           log_y=True),
            wr.ScatterPlot(title="search/lr against start lr", x=wr.Config("optim.lr"),
                           y=wr.SummaryMetric("search/lr"), log_x=True, log_y=True),
            wr.LinePlot(title="Accepted eta per mini-batch, by batch size", x="search/batch",
                        y=["search/batch_lr"], groupby=by_batch, groupby_aggfunc="mean",
                        groupby_rangefunc="minmax", log_y=True),
            wr.BarPlot(title="Search time (s) by batch size",
                       metrics=[wr.SummaryMetric("search/seconds")], groupby=by_batch,
                       groupby_aggfunc="mean", groupby_rangefunc="minmax"),
        ]),
    ]


def _table2(wr, expr, entity, project, protocol) -> list:
    blocks = [
        wr.H2("Table 2: best test accuracy against start lr, per optimizer"),
        wr.P("ResNet18 on CIFAR10, 200 epochs (full protocol), batch 200; each baseline at "
             "the 9 start lrs 1e2 ... 1e-6, the MBT optimizers at 1e-2. best_test_acc is the "
             "ledger's best epoch (a diverged run: its best finite epoch)."),
        wr.PanelGrid(runsets=[_runset(wr, expr, entity, project, "Table 2", "table2",
                                      protocol)], panels=[
            wr.BarPlot(title="Best test accuracy per optimizer (best start lr)",
                       metrics=[wr.SummaryMetric("best_test_acc")],
                       groupby=wr.Config("optim.name"), groupby_aggfunc="max"),
        ]),
    ]
    for optim in _TABLE2_OPTIMS:
        runs = _runset(wr, expr, entity, project, DISPLAY.get(optim, optim), "table2",
                       protocol, optim__name=optim)
        blocks.append(wr.PanelGrid(runsets=[runs], panels=[
            wr.ScatterPlot(title=f"{DISPLAY.get(optim, optim)}: best test accuracy (%) "
                                 f"against start lr",
                           x=wr.Config("optim.lr"), y=wr.SummaryMetric("best_test_acc"),
                           log_x=True),
            wr.LinePlot(title=f"{DISPLAY.get(optim, optim)}: test accuracy per epoch",
                        x="epoch", y=["test/acc"], groupby=wr.Config("optim.lr")),
        ]))
    return blocks


def _table3(wr, expr, entity, project, protocol) -> list:
    blocks = [
        wr.H2("Table 3: best test accuracy per model"),
        wr.P("Five models x CIFAR10/CIFAR100 x MBT-MMT/MBT-NAG, start lr 1e-2, 200 epochs "
             "(full protocol), batch 200."),
    ]
    for data in _DATASETS:
        for optim in _MBT_MOMENTUM:
            name = f"{DISPLAY.get(optim, optim)}, {DISPLAY.get(data, data)}"
            runs = _runset(wr, expr, entity, project, name, "table3", protocol,
                           data__name=data, optim__name=optim)
            runs.groupby = ["config.model.name"]
            blocks.append(wr.PanelGrid(runsets=[runs], panels=[
                wr.BarPlot(title=f"{name}: best test accuracy (%) per model",
                           metrics=[wr.SummaryMetric("best_test_acc")],
                           groupby=wr.Config("model.name"), groupby_aggfunc="mean",
                           groupby_rangefunc="minmax"),
                wr.LinePlot(title=f"{name}: test accuracy per epoch", x="epoch",
                            y=["test/acc"], groupby=wr.Config("model.name")),
            ]))
    return blocks


def _fig3(wr, expr, entity, project, protocol) -> list:
    blocks = [
        wr.H2("Figure 3: learning rate per epoch, MBT-MMT and MBT-NAG"),
        wr.P("ResNet18; the lr each epoch trained with (lr/value, the MBT search's rescaled "
             "result), grouped by optimizer: mean and range over seeds."),
    ]
    for panel, data in zip("ab", _DATASETS):
        runs = _runset(wr, expr, entity, project, f"Figure 3({panel})", "fig3", protocol,
                       model__name="resnet18", data__name=data, optim__name=_MBT_MOMENTUM)
        runs.groupby = ["config.optim.name"]
        blocks.append(wr.PanelGrid(runsets=[runs], panels=[
            wr.LinePlot(title=f"Figure 3({panel}): lr per epoch, {DISPLAY.get(data, data)}",
                        x="epoch", y=["lr/value"], groupby=wr.Config("optim.name"),
                        groupby_aggfunc="mean", groupby_rangefunc="minmax", log_y=True),
            wr.LinePlot(title=f"Test accuracy per epoch, {DISPLAY.get(data, data)}",
                        x="epoch", y=["test/acc"], groupby=wr.Config("optim.name"),
                        groupby_aggfunc="mean", groupby_rangefunc="minmax"),
        ]))
    return blocks


def _fig2b(wr, expr, entity, project, protocol) -> list:
    runs = _runset(wr, expr, entity, project, "Figure 2(b)", "fig2b", protocol,
                   optim__name="two_way_gd")
    runs.groupby = ["config.model.bn_init"]
    by_init = wr.Config("model.bn_init")
    return [
        wr.H2("Figure 2(b): Two-way Backtracking GD, learning rate per iterate"),
        wr.P("ResNet18, full batch on a 500-image CIFAR10 subset: one epoch is one iterate. "
             "The paper's curve settles after about 40 iterates; the settling iterate of each "
             "run is in results/fig2b.md (from the ledger's per-step lrs)."),
        wr.PanelGrid(runsets=[runs], panels=[
            wr.LinePlot(title="Figure 2(b): lr per iterate", x="epoch", y=["lr/value"],
                        groupby=by_init, log_y=True),
            wr.LinePlot(title="Line-search evaluations per iterate", x="epoch",
                        y=["search/step_evals"], groupby=by_init),
            wr.LinePlot(title="Training loss per iterate", x="epoch", y=["train/loss"],
                        groupby=by_init, log_y=True),
        ]),
    ]


def _autolr(wr, expr, entity, project, protocol) -> list:
    runs = _runset(wr, expr, entity, project, "autolr methods and grids", "autolr", protocol)
    runs.groupby = ["config.optim.name"]
    by_optim = wr.Config("optim.name")
    return [
        wr.H2("Beyond the paper: automatic learning rates against tuned grids"),
        wr.P("ResNet18 on CIFAR10, batch 200: automatic-lr methods once per seed, tuned "
             "baselines over their lr grid (experiment autolr_grid). What a method costs, "
             "the grid included, is counted in results/autolr.md (from the ledger)."),
        wr.PanelGrid(runsets=[runs], panels=[
            wr.BarPlot(title="Best test accuracy per method (a grid: its best lr)",
                       metrics=[wr.SummaryMetric("best_test_acc")], groupby=by_optim,
                       groupby_aggfunc="max"),
            wr.LinePlot(title="Test accuracy per epoch", x="epoch", y=["test/acc"],
                        groupby=by_optim, groupby_aggfunc="mean", groupby_rangefunc="minmax"),
            wr.LinePlot(title="lr per epoch", x="epoch", y=["lr/value"], groupby=by_optim,
                        log_y=True),
            wr.LinePlot(title="Time per epoch (s; MBT's search included)", x="epoch",
                        y=["time/epoch"], groupby=by_optim),
        ]),
    ]


_SECTIONS = {"table1": _table1, "table2": _table2, "table3": _table3, "fig3": _fig3,
             "fig2b": _fig2b, "autolr": _autolr}


def build_report(entity: str, project: str, *, protocol: str = "full",
                 experiments: tuple[str, ...] = EXPERIMENTS):
    """The Report object (``wandb_workspaces.reports.v2.Report``) with a section per
    experiment, every panel restricted to ``protocol``. Builds only: no network."""
    unknown = [e for e in experiments if e not in _SECTIONS]
    if unknown or protocol not in PROTOCOLS:
        raise ReportError(f"wandb-dashboard: unknown experiment {unknown} or protocol "
                          f"{protocol!r} (experiments {', '.join(EXPERIMENTS)}; protocols "
                          f"{', '.join(PROTOCOLS)})")
    wr, expr = _wr()
    blocks = [wr.P(f"Truong & Nguyen (2020), Part 2, Sec. 4: the runs of protocol "
                   f"'{protocol}' logged by mbt. The tables themselves come from the ledger "
                   f"(python -m mbt.report); this Report is a view of the same runs.")]
    for experiment in experiments:
        blocks += _SECTIONS[experiment](wr, expr, entity, project, protocol)
    which = (", ".join(experiments) if tuple(experiments) != EXPERIMENTS
             else "Tables 1-3, Figs. 2(b) and 3, autolr")
    return wr.Report(entity=entity, project=project,
                     title=f"mbt: the paper's views ({which}; protocol {protocol})",
                     description="Backtracking GD and the MBT learning-rate finders: "
                                 "built by python -m mbt.report wandb-dashboard",
                     blocks=blocks, width="fluid")


def describe(report) -> list[str]:
    """What ``report`` holds, one line per section, runset and panel (``--dry-run``)."""
    lines = [f"Report: {report.title} ({report.entity}/{report.project})"]
    for block in report.blocks:
        if isinstance(block, _wr()[0].H2):
            text = block.text if isinstance(block.text, list) else [block.text]
            lines.append("## " + " ".join(str(t) for t in text))
        elif hasattr(block, "panels"):
            for runset in block.runsets:
                group = f", grouped by {', '.join(runset.groupby)}" if runset.groupby else ""
                lines.append(f"  runs: {runset.name} [{runset.filters}]{group}")
            for panel in block.panels:
                lines.append(f"    {type(panel).__name__}: {panel.title}")
    return lines


def save_report(report, *, draft: bool = False) -> str:
    """Upload ``report`` (needs W&B online); its URL."""
    require_online("wandb-dashboard", "`wandb sync` the runs and build it where W&B is "
                   "reachable")
    try:
        report.save(draft=draft)
        return report.url
    except Exception as err:  # CommError, HTTPError, ValueError (unknown project) ...
        first = (str(err).strip().splitlines() or [""])[0]
        raise ReportError(f"wandb-dashboard: saving the Report failed "
                          f"({type(err).__name__}: {first})") from err


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mbt.report wandb-dashboard",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Create a saved W&B Report with the paper's views (needs W&B online).",
        epilog="\n".join(__doc__.splitlines()[2:7]))
    p.add_argument("--entity", help="W&B entity (user or team); required unless --dry-run")
    p.add_argument("--project", default="mbt", help="W&B project the runs are in "
                   "(default: %(default)s)")
    p.add_argument("--experiment", choices=EXPERIMENTS, action="append",
                   help="only this view (repeatable; default: all)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="full",
                   help="the runs' protocol (default: %(default)s)")
    p.add_argument("--draft", action="store_true", help="save as a draft")
    p.add_argument("--dry-run", action="store_true",
                   help="print the sections, run queries and panels it would build; no W&B")
    args = p.parse_args(argv)
    if not (args.entity or args.dry_run):
        print("error: wandb-dashboard: --entity is required to save the Report (--dry-run "
              "prints its panels without one)", file=sys.stderr)
        return 2
    try:
        report = build_report(args.entity or "<entity>", args.project, protocol=args.protocol,
                              experiments=tuple(args.experiment or EXPERIMENTS))
        if args.dry_run:
            print("\n".join(describe(report)))
            return 0
        print(f"wandb-dashboard: saved {save_report(report, draft=args.draft)}")
        return 0
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
