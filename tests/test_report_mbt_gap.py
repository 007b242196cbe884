"""The MBT-gap report (results/mbt_gap.md): Table 2's MBT and NAG cells beside the
controls that keep the momentum across searches or run NAG at MBT's lr, on fixtures."""

from __future__ import annotations

from mbt.report import build
from test_report import train_record


def _kept(record: dict) -> dict:
    """The record of a run with ``optim.builder.reset_momentum=false``; its run key differs."""
    record["config"] = {"optim": {"builder": {"reset_momentum": False}}}
    record["run_key"] += "-kept"
    return record


def _records() -> list[dict]:
    return [
        # Table 2's cells, recorded under its presets (the same run keys as mbt_gap's)
        train_record("table2", "mbt_nag", 0.01, accs=(30.0, 40.0), lrs=(0.014, 0.018)),
        train_record("table2", "mbt_nag", 0.01, seed=1, accs=(30.0, 44.0), lrs=(0.016, 0.016)),
        train_record("fig3", "mbt_mmt", 0.01, accs=(30.0, 36.0)),
        train_record("table2", "nag", 0.01, accs=(40.0, 53.0)),
        # the controls
        _kept(train_record("mbt_gap", "mbt_nag", 0.01, accs=(30.0, 50.0))),
        _kept(train_record("mbt_gap", "mbt_nag", 0.01, seed=1, accs=(30.0, 52.0))),
        train_record("mbt_gap", "nag", 0.016, accs=(40.0, 49.0)),
        # not a condition: another start lr, another model
        train_record("table2", "nag", 0.1, accs=(20.0, 35.0)),
        train_record("table3", "mbt_nag", 0.01, model="senet18", accs=(10.0, 90.0)),
    ]


def test_each_condition_is_its_own_row_with_table2s_cells_beside_the_controls(tmp_path):
    build("mbt_gap", _records(), tmp_path)
    md = (tmp_path / "mbt_gap.md").read_text()
    # the cleared (42.00 over 2 seeds) and kept (51.00) MBT-NAG runs are never pooled
    assert "| MBT-NAG | Table 2's cell: buffers cleared after every search (the code) | 2 | " \
        "0 1 | 42.00 ± 2.83 |" in md
    assert "| MBT-NAG, momentum kept | buffers kept across searches | 2 | 0 1 | 51.00 ± 1.41 |" \
        in md
    assert "| NAG at 0.016 | a constant lr: MBT-NAG's mean found lr | 1 | 0 | 49.00 |" in md
    assert "| MBT-MMT, momentum kept | buffers kept across searches | — |" in md
    assert "90.00" not in md and "35.00" not in md  # SENet18, NAG at 1e-1
    # kept - cleared, NAG 0.016 - NAG 1e-2, kept - NAG 0.016
    assert "MBT-NAG +9.00 points, MBT-MMT n/a (runs missing)." in md
    assert "An epoch here is 250 optimizer steps (the paper's: 250)" in md
    assert "NAG at 0.016 minus NAG at 1e-2: -4.00 points. MBT-NAG's searches found 0.0160 " \
        "on average over its epochs (2 runs; the control uses 0.016)." in md
    assert "minus NAG at the constant 0.016): +2.00 points." in md
    csv = (tmp_path / "mbt_gap.csv").read_text().splitlines()
    assert csv[0].startswith("condition,optim,lr,reset_momentum,n,seeds,best_mean,best_std")
    assert csv[2].startswith('"MBT-NAG, momentum kept",mbt_nag,1e-2,False,2,0 1,51.0,')
