"""The W&B dashboard (``python -m mbt.report wandb-dashboard``) built offline: its sections,
panels and run queries, checked on the Report object; nothing here touches the network."""

from __future__ import annotations

import pytest

pytest.importorskip("wandb_workspaces", reason="needs the wandb extra (wandb-workspaces)")

import wandb_workspaces.reports.v2 as wr  # noqa: E402
from wandb_workspaces import expr  # noqa: E402

from mbt.report.__main__ import main as report_main  # noqa: E402
from mbt.report.common import ReportError  # noqa: E402
from mbt.report.wandb_dashboard import EXPERIMENTS, build_report  # noqa: E402
from mbt.tracking import WANDB_KEYS  # noqa: E402

# What mbt logs (mbt.tracking): history keys and the summary keys the panels read.
HISTORY = {"epoch", "search/batch", "search/batch_lr", *WANDB_KEYS.values()}
SUMMARY = {"best_test_acc", "search/lr", "search/mean_lr", "search/trials", "search/seconds"}


def grids(report) -> list:
    return [b for b in report.blocks if isinstance(b, wr.PanelGrid)]


def headings(report) -> list[str]:
    return [" ".join(str(t) for t in (b.text if isinstance(b.text, list) else [b.text]))
            for b in report.blocks if isinstance(b, wr.H2)]


def conditions(runset) -> dict:
    """The runset's filter as {(section, name): (op, value)}, in the form the Report sends
    (filterV2, all conditions joined by AND)."""
    v2 = expr.filters_tree_to_v2(expr.expr_to_filters(runset.filters))
    assert all(f.get("connector", "AND") == "AND" for f in v2["filters"])
    return {(f["key"]["section"], f["key"]["name"]): (f["op"], f["value"])
            for f in v2["filters"]}


def panels_of(grid, kind) -> list:
    return [p for p in grid.panels if isinstance(p, kind)]


@pytest.fixture(scope="module")
def report():
    return build_report("me", "mbt", protocol="full")


def test_one_section_per_view_and_every_query_pins_the_protocol(report):
    assert (report.entity, report.project) == ("me", "mbt")
    assert "protocol full" in report.title
    assert [h.split(":")[0] for h in headings(report)] == ["Table 1", "Table 2", "Table 3",
                                                           "Figure 3", "Figure 2(b)",
                                                           "Beyond the paper"]
    for grid in grids(report):
        assert grid.panels
        for runset in grid.runsets:
            assert (runset.entity, runset.project) == ("me", "mbt")
            cond = conditions(runset)
            assert cond[("config", "protocol")] == ("=", "full")
            assert ("run", "jobType") in cond
            for key in runset.groupby:
                expr.groupby_str_to_key(key)  # a key W&B can group by


def test_panels_read_only_what_mbt_logs_and_build_their_specs(report):
    for grid in grids(report):
        for panel in grid.panels:
            panel._to_model()  # a valid panel spec (runsets need the API; panels do not)
            if isinstance(panel, wr.LinePlot):
                assert {panel.x, *panel.y} <= HISTORY, panel.title
            elif isinstance(panel, wr.BarPlot):
                assert {m.name for m in panel.metrics} <= SUMMARY, panel.title
            elif isinstance(panel, wr.ScatterPlot):
                assert panel.y.name in SUMMARY, panel.title


def test_table1_search_results_by_batch_size(report):
    (grid,) = [g for g in grids(report) if g.runsets[0].name == "Table 1 searches"]
    cond = conditions(grid.runsets[0])
    assert cond[("run", "jobType")] == ("=", "lr_search")
    assert cond[("config", "experiment")] == ("IN", ["table1"])
    bars = panels_of(grid, wr.BarPlot)
    assert bars[0].metrics == [wr.SummaryMetric("search/lr")]
    assert bars[0].groupby == wr.Config("trainer.batch_size")
    (per_batch,) = panels_of(grid, wr.LinePlot)
    assert (per_batch.x, per_batch.y) == ("search/batch", ["search/batch_lr"])


def test_table2_best_accuracy_against_start_lr_per_optimizer(report):
    per_optim = {}
    for grid in grids(report):
        cond = conditions(grid.runsets[0])
        if cond[("config", "experiment")] == ("IN", ["table2", "table2_mbt"]):
            per_optim[cond.get(("config", "optim.name"), ("", None))[1]] = grid
    overall = per_optim.pop(None)
    assert panels_of(overall, wr.BarPlot)[0].groupby == wr.Config("optim.name")
    assert list(per_optim) == ["sgd", "mmt", "nag", "adagrad", "adadelta", "rmsprop", "adam",
                               "adamax", "mbt_gd", "mbt_mmt", "mbt_nag"]
    for grid in per_optim.values():
        (scatter,) = panels_of(grid, wr.ScatterPlot)
        assert scatter.x == wr.Config("optim.lr") and scatter.log_x
        assert scatter.y == wr.SummaryMetric("best_test_acc")


def test_table3_per_model_and_fig3_lr_per_epoch_by_optimizer_and_dataset(report):
    table3 = [g for g in grids(report) if conditions(g.runsets[0])[("config", "experiment")][1]
              == ["table3", "fig3", "table2_mbt"]]
    cells = {(conditions(g.runsets[0])[("config", "data.name")][1],
              conditions(g.runsets[0])[("config", "optim.name")][1]) for g in table3}
    assert cells == {(d, o) for d in ("cifar10", "cifar100") for o in ("mbt_mmt", "mbt_nag")}
    for grid in table3:
        assert panels_of(grid, wr.BarPlot)[0].groupby == wr.Config("model.name")

    fig3 = [g for g in grids(report) if g.runsets[0].name.startswith("Figure 3")]
    assert [conditions(g.runsets[0])[("config", "data.name")][1] for g in fig3] == [
        "cifar10", "cifar100"]
    for grid in fig3:
        cond = conditions(grid.runsets[0])
        assert cond[("config", "optim.name")] == ("IN", ["mbt_mmt", "mbt_nag"])
        assert cond[("config", "model.name")] == ("=", "resnet18")
        lr = panels_of(grid, wr.LinePlot)[0]
        assert (lr.x, lr.y, lr.groupby) == ("epoch", ["lr/value"], wr.Config("optim.name"))


def test_one_experiment_and_another_protocol():
    report = build_report("me", "mbt", protocol="smoke", experiments=("fig3",))
    assert headings(report)[0].startswith("Figure 3") and len(headings(report)) == 1
    assert all(conditions(rs)[("config", "protocol")] == ("=", "smoke")
               for g in grids(report) for rs in g.runsets)
    assert set(EXPERIMENTS) == {"table1", "table2", "table3", "fig3", "fig2b", "autolr"}
    with pytest.raises(ReportError):
        build_report("me", "mbt", experiments=("table9",))


def test_cli_offline_is_one_error_line_and_no_network(monkeypatch, capsys):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the dashboard command must not connect when W&B is offline")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert report_main(["wandb-dashboard", "--entity", "me", "--project", "mbt",
                        "--experiment", "table2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: wandb-dashboard needs W&B online") and "\n" not in err


def test_fig2b_lr_and_line_search_evals_per_iterate_and_autolr_per_method(report):
    (fig2b,) = [g for g in grids(report) if g.runsets[0].name == "Figure 2(b)"]
    cond = conditions(fig2b.runsets[0])
    assert cond[("config", "experiment")] == ("IN", ["fig2b"])
    assert cond[("config", "optim.name")] == ("=", "two_way_gd")
    lines = panels_of(fig2b, wr.LinePlot)
    assert [(p.x, p.y) for p in lines[:2]] == [("epoch", ["lr/value"]),
                                               ("epoch", ["search/step_evals"])]
    (autolr,) = [g for g in grids(report) if g.runsets[0].name.startswith("autolr")]
    assert conditions(autolr.runsets[0])[("config", "experiment")] == (
        "IN", ["autolr", "autolr_grid"])
    assert panels_of(autolr, wr.BarPlot)[0].groupby == wr.Config("optim.name")


def test_dry_run_prints_the_panels_without_an_entity_or_network(monkeypatch, capsys):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("--dry-run must not connect")

    monkeypatch.setattr(socket, "create_connection", no_network)
    assert report_main(["wandb-dashboard", "--dry-run", "--experiment", "fig2b"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Report: mbt: the paper's views (fig2b; protocol full)")
    assert out[1].startswith("## Figure 2(b)") and "LinePlot: Figure 2(b): lr per iterate" in (
        out[3].strip())
    assert report_main(["wandb-dashboard"]) == 2  # saving needs --entity
    assert "--entity is required" in capsys.readouterr().err


def test_report_help_lists_the_dashboard(capsys):
    with pytest.raises(SystemExit):
        report_main(["--help"])
    assert ",all,wandb-dashboard}" in capsys.readouterr().out  # a choice, not only an example
