"""LAUNCHER=status (src/hydra_plugins/mbt_status_launcher.py) in process: what it prints for
the cells mbt.launchers.finished_cells finds, fails to key, or misses. A real sweep through
it: tests/test_launchers.py::test_status_launcher_lists_the_missing_cells_and_runs_none."""

from __future__ import annotations

from types import SimpleNamespace

from omegaconf import OmegaConf

from hydra_plugins.mbt_status_launcher import StatusLauncher
from mbt import launchers


def _launch(monkeypatch, capsys, job_overrides, done_nums=(), errors=(), **kw):
    seen = {}

    def finished(config, loader, overrides, initial, kind, *, job_device=None, errors=None):
        seen["job_device"] = job_device
        errors.extend(errs)
        return {n: SimpleNamespace(return_value={"n": n}) for n in done_nums}, ["l.jsonl"]

    errs = list(errors)
    monkeypatch.setattr(launchers, "finished_cells", finished)
    monkeypatch.setattr(launchers, "task_kind", lambda fn: "train")
    launcher = StatusLauncher(**kw)
    config = OmegaConf.create({"hydra": {"runtime": {"choices": {"experiment": "table2"}}},
                               "protocol": "cpu", "paths": {"ledger": "l.jsonl"}})
    launcher.setup(hydra_context=SimpleNamespace(config_loader=None), task_function=None,
                   config=config)
    returned = launcher.launch(job_overrides, 0)
    return capsys.readouterr().out.splitlines(), returned, seen


def test_lists_the_overrides_that_tell_the_missing_cells_apart(monkeypatch, capsys):
    cells = [["optim=sgd", f"optim.lr={lr}", "seed=0"] for lr in (0.1, 0.01, 0.001)]
    out, returned, seen = _launch(monkeypatch, capsys, cells, done_nums=(1,),
                                  job_device="cuda")
    assert out == ["status: table2 cpu: 1 of 3 cells in l.jsonl; to run: 2",
                   "  optim.lr=0.1", "  optim.lr=0.001"]
    assert [r.return_value for r in returned] == [{"n": 1}]
    assert seen["job_device"] == "cuda"  # passed on: CIFAR's pipeline follows the device


def test_a_one_cell_sweep_shows_all_its_overrides_and_unkeyed_cells_say_why(monkeypatch,
                                                                          capsys):
    out, returned, _ = _launch(monkeypatch, capsys, [["optim=sgd", "optim.lr=0.1"]],
                               errors=[(0, FileNotFoundError("no CIFAR-10 at /nowhere"))])
    assert out == ["status: table2 cpu: 0 of 1 cells in l.jsonl; to run: 1",
                   "  1 of them could not be keyed, e.g. #0: FileNotFoundError: no CIFAR-10 "
                   "at /nowhere",
                   "  optim=sgd optim.lr=0.1"]
    assert returned == []


def test_long_lists_are_cut(monkeypatch, capsys):
    cells = [[f"seed={s}"] for s in range(5)]
    out, _, _ = _launch(monkeypatch, capsys, cells, show_missing=2)
    assert out[1:] == ["  seed=0", "  seed=1", "  ... and 3 more"]
