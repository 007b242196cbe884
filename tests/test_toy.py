"""The toy experiments (paper Sec. 3.3-3.4): functions, Examples 3.6/3.7, the CLI contract."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from mbt.toy import iterations_to_within, run_toy, settling_iterate
from mbt.toy.functions import FUNCTIONS, get_function
from mbt.toy.settle import settled_after

JSON_KEYS = {"function", "method", "iterations", "point", "lr", "f", "grad_norm", "seconds"}


def run_cli(*overrides: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbt.toy", *overrides], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# --- functions -------------------------------------------------------------------------

@pytest.mark.parametrize("name,point,value", [
    ("quartic", [1.0, -2.0], 17.0),
    ("rosenbrock", [1.0, 1.0], 0.0),
    ("rosenbrock", [0.0, 0.0], 1.0),
    ("x3sin", [0.5, 2.0], 0.125 * math.sin(2.0) + 8 * math.sin(0.5)),
    ("mexican_hat", [1.2, 0.0], 0.0),  # zero outside the unit disc
    ("mexican_hat", [0.0, 0.0], math.exp(-1.0)),  # r = 0: f = exp(-1)
])
def test_function_values(name, point, value):
    z = torch.tensor(point, dtype=torch.float64)
    assert float(get_function(name)(z)) == pytest.approx(value, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_autograd_gradient_matches_finite_differences(name):
    z = torch.tensor([0.3, -0.4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(get_function(name), (z,))


def test_unknown_function_lists_choices():
    with pytest.raises(ValueError, match="quartic"):
        get_function("sphere")


# --- the paper's examples ---------------------------------------------------------------

@pytest.mark.parametrize("method", ["backtracking", "unbounded"])
def test_example_3_6_reaches_paper_point_after_10_steps(method):
    res = run_toy("x3sin", method, [4, -5], alpha=0.5, beta=0.7, lr0=1.0, max_iters=10)
    assert res.iterations == 10
    assert res.point == pytest.approx([0.09325947, -0.09325947], abs=5e-9)


def test_example_3_7_unbounded_89_steps_and_learning_rate():
    res = run_toy("quartic", "unbounded", [0.1, 15], alpha=0.5, beta=0.7, lr0=1.0)
    assert res.stop_reason == "grad_tol"
    assert res.iterations == 89
    assert res.point == pytest.approx([0.00025327, 0.00025327], abs=5e-9)
    # Paper: 90544.63441298596 = 0.7^-32, reached by growing past lr0 (Sec. 3.4).
    assert res.lr == pytest.approx(90544.63441298596, rel=1e-12)


def test_example_3_7_backtracking_is_slow_with_lr_one():
    # Backtracking GD never exceeds lr0 = 1, so near 0 it is GD x <- x - 4x^3 and
    # x_n ~ 1/sqrt(8n): after 10^4 steps both coordinates are about 3.5e-3.
    res = run_toy("quartic", "backtracking", [0.1, 15], alpha=0.5, beta=0.7, lr0=1.0,
                  max_iters=10_000)
    assert res.stop_reason == "max_iters" and res.lr == 1.0
    assert res.point == pytest.approx([1 / math.sqrt(8e4)] * 2, rel=0.05)


def test_standard_gd_uses_the_fixed_step():
    res = run_toy("quartic", "standard", [0.5, 0.5], lr0=0.1, max_iters=1, record=True)
    # One step of z - 0.1 * 4 z^3 from 0.5: 0.5 - 0.05.
    assert res.point == pytest.approx([0.45, 0.45])
    assert res.history[0][-2] == 0.1


def test_two_way_history_is_recorded_and_lr_bounded_by_lr0():
    res = run_toy("mexican_hat", "two_way", [-0.566, -0.655], max_iters=30, record=True)
    lrs = [row[-2] for row in res.history]
    assert len(lrs) == res.iterations > 0
    assert all(0 < lr <= 1.0 for lr in lrs)


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="two_way"):
        run_toy("quartic", "newton", [1, 1])


# --- settling (Figure 2) ---------------------------------------------------------------

@pytest.mark.parametrize("lrs,k", [
    ([], 0),
    ([1.0], 0),
    ([0.5, 0.5, 0.5], 0),  # Standard GD: constant from the first iterate
    ([1.0, 0.5, 0.5, 0.5], 1),  # iterates 2..4 share one step
    ([1.0, 0.5, 1.0, 0.5, 0.5], 3),  # a return to an earlier value counts as a change
    ([1.0, 0.5, 0.7], 2),  # still changing at the last iterate: k = N - 1
    # Two-way's grid values drift in the last digits: still one learning rate.
    ([1.0, 0.08235429999999995, 0.08235429999999996, 0.08235429999999998], 1),
])
def test_settling_iterate(lrs, k):
    assert settling_iterate(lrs) == k


def test_settling_iterate_exact_comparison_and_bad_rtol():
    assert settling_iterate([0.1, 0.1 * (1 + 1e-12)], rtol=0.0) == 1
    with pytest.raises(ValueError, match="rtol"):
        settling_iterate([1.0], rtol=-1.0)


def test_one_settling_function_for_both_panels():
    # Fig. 2(a) (mbt.toy) and Fig. 2(b) (mbt.report) import the same function
    from mbt import settle, toy
    from mbt.report import figures

    assert toy.settling_iterate is settle.settling_iterate
    assert figures.settled_after is settle.settled_after


@pytest.mark.parametrize("lrs,min_tail,k", [
    ([1.0, 0.5, 0.5, 0.5], 2, 1),
    ([1.0, 0.5, 0.5, 0.5], 3, 1),    # iterates 2..4: a stretch of 3
    ([1.0, 0.5, 0.5, 0.5], 4, None),  # too short a stretch for this rule: not settled
    ([1.0, 0.5, 0.7], 2, None),      # changes at the last iterate (Fig. 2(b)'s rule)
    ([1.0, 0.5, 0.7], 1, 2),         # any stretch counts: settling_iterate itself
    ([0.3] * 25, 20, 0),             # a toy run cut at max_iters: >= 20 equal steps
    ([], 1, None),
])
def test_settled_after(lrs, min_tail, k):
    assert settled_after(lrs, min_tail=min_tail) == k


def test_settled_after_bad_min_tail():
    with pytest.raises(ValueError, match="min_tail"):
        settled_after([1.0], min_tail=0)


@pytest.mark.parametrize("values,n", [
    ([1.0, 1e-3, 1e-11, 0.0], 2),
    ([1e-12, 1e-11], 0),  # within from the start
    ([1.0, 1e-11, 1.0, 1e-11], 3),  # must stay within, not just touch
    ([1.0, 1e-3], None),  # not reached within the run
    ([], None),
    ([1.0, math.nan], None),
])
def test_iterations_to_within(values, n):
    assert iterations_to_within(values, 0.0, 1e-10) == n


def test_lr0_accepted_everywhere_settles_at_once():
    # Near 0, f = x^4 + y^4 accepts lr0 = 1 at every step (Example 3.7's slow regime), so
    # the step never changes: settling iterate 0 for two-way and plain backtracking alike.
    for method in ("two_way", "backtracking"):
        res = run_toy("quartic", method, [0.01, 0.01], alpha=0.5, beta=0.7, lr0=1.0,
                      max_iters=20, record=True)
        assert settling_iterate([row[-2] for row in res.history]) == 0


# --- progress ---------------------------------------------------------------------------

def test_progress_off_a_terminal_is_one_summary_line(capsys):
    run_toy("quartic", "unbounded", [0.1, 15], progress=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("quartic unbounded: 89 iterations in ") and "stop grad_tol" in err[0]


def test_no_progress_is_silent(capsys):
    run_toy("quartic", "unbounded", [0.1, 15])
    assert capsys.readouterr().err == ""


# --- the CLI contract -------------------------------------------------------------------

@pytest.mark.integration
def test_cli_last_line_is_the_json_contract(tmp_path):
    proc = run_cli("function=quartic", "method=unbounded", "start=[0.1,15]", "alpha=0.5",
                   "beta=0.7", "lr0=1", f"out={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert JSON_KEYS <= record.keys()
    assert record["iterations"] == 89
    assert record["lr"] == pytest.approx(90544.63441298596, rel=1e-12)
    history = (tmp_path / "quartic_unbounded.csv").read_text().splitlines()
    assert history[0].startswith("iteration,x,y,f,grad_norm,lr")
    assert len(history) == 1 + 89
    # The app writes nothing but what `out` asks for (no Hydra output dirs).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quartic_unbounded.csv"]


@pytest.mark.integration
@pytest.mark.parametrize("override,needle", [
    ("method=newton", "method"),
    ("beta=1.5", "beta"),
])
def test_cli_rejects_bad_values_with_nonzero_exit(tmp_path, override, needle):
    proc = run_cli("function=quartic", override, "max_iters=3", cwd=tmp_path)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_toy_help_lists_every_function_method_and_key():
    import dataclasses
    import re

    from omegaconf import OmegaConf

    from mbt.config_paths import CONF_DIR
    from mbt.toy import FUNCTIONS, METHODS
    from mbt.toy.__main__ import ToyConfig

    template = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "hydra" / "help" / "toy.yaml"))[
        "template"]
    keys = re.findall(r"^  (\w+) ", template, re.M)
    assert keys == [f.name for f in dataclasses.fields(ToyConfig)]
    choices = lambda key: re.search(rf"^  {key} +(.*)$", template, re.M)[1]  # noqa: E731
    assert set(re.findall(r"\w+", choices("function"))) >= set(FUNCTIONS)
    assert set(re.findall(r"\w+", choices("method"))) >= set(METHODS)
    assert "override hydra/help: toy" in (CONF_DIR / "toy.yaml").read_text()


def test_toy_targets_are_listed_once_for_the_index_and_the_script():
    from mbt.report.targets import OTHER_RESULTS, TOY_TARGETS

    assert [(t.name, t.only) for t in TOY_TARGETS] == [("toy_examples", "examples"),
                                                       ("fig2a", "fig2a")]
    assert OTHER_RESULTS == (
        ("toy_examples", "Examples 3.6-3.7", "toy examples, paper vs ours", "make reproduce-toy"),
        ("fig2a", "Fig. 2(a)", "Two-way Backtracking GD on the Mexican hat",
         "make reproduce-fig2a"))


@pytest.mark.integration
def test_fig2a_target_writes_its_files_from_cli_and_in_process_runs(tmp_path, monkeypatch):
    """Figure 2(a)'s target cut to 2 starts per family and 40 iterates (the named start's
    runs go through the CLI, as in make reproduce-fig2a)."""
    from mbt.report.targets import TOY_TARGETS
    from mbt.toy import reproduce

    monkeypatch.setattr(reproduce, "FIG2A_STARTS", 2)
    monkeypatch.setattr(reproduce, "FIG2A_ITERS", 40)
    {t.name: t for t in TOY_TARGETS}["fig2a"].build(tmp_path, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fig2a.csv", "fig2a.md", "fig2a.png", "fig2a.starts.csv"]
    md = (tmp_path / "fig2a.md").read_text()
    assert md.startswith("# Figure 2(a)") and "## Verdict" in md and "## Random starts" in md
    starts = (tmp_path / "fig2a.starts.csv").read_text().splitlines()
    assert len(starts) == 1 + 3 * (1 + 2 * 2)  # header; 3 methods x (named + 2 x 2 random)


@pytest.mark.parametrize("lrs,stretch", [
    ([1.0, 0.5, 0.5, 0.5], (2, 4)),               # the last stretch: settling iterate 1
    ([0.5, 0.25, 0.25, 0.25, 0.5, 0.25], (2, 4)),  # held, then regrowth: not settled
    ([1.0, 1.0, 0.5, 0.5], (3, 4)),                # equally long: the latest
    ([1.0, 1.0, 1.0, 0.5, 0.5, 0.5], (4, 6)),      # ... = settling_iterate 3, plus one
    ([0.5, 0.5, 0.5, 0.25, 0.5], (1, 3)),          # the longest, not the last
    ([0.3, 0.3 * (1 + 1e-12), 0.3], (1, 3)),       # grid values equal within GRID_RTOL
    ([2.0], (1, 1)),
    ([], None),
])
def test_longest_constant_stretch(lrs, stretch):
    from mbt.settle import longest_constant_stretch
    assert longest_constant_stretch(lrs) == stretch
