"""The MBT-gap report (results/mbt_gap.md): Table 2's MBT and NAG cells beside the
controls that keep the momentum across searches or run NAG at MBT's lr, on fixtures; and
the controls never entering Table 2, while Table 2's cells made by mbt_gap do."""

from __future__ import annotations

from mbt.report import build
from test_report import train_record


def _kept(record: dict) -> dict:
    """The record of a run with ``optim.builder.reset_momentum=false``; its run key differs."""
    record["config"] = {"optim": {"builder": {"reset_momentum": False}}}
    record["run_key"] += "-kept"
    return record


def _records() -> list[dict]:
    legacy = train_record("mbt_gap", "mbt_nag", 0.01, seed=2, accs=(10.0, 12.5))
    legacy["config"] = {"model": {"bn_init": "legacy"}}
    return [
        # Table 2's cells, recorded under its presets (the same run keys as mbt_gap's)
        train_record("table2", "mbt_nag", 0.01, accs=(30.0, 40.0), lrs=(0.014, 0.018)),
        train_record("table2", "mbt_nag", 0.01, seed=1, accs=(30.0, 44.0), lrs=(0.016, 0.016)),
        train_record("table2", "mbt_mmt", 0.01, accs=(30.0, 36.0)),
        train_record("table2", "nag", 0.01, accs=(40.0, 53.0)),
        # the controls
        _kept(train_record("mbt_gap", "mbt_nag", 0.01, accs=(30.0, 50.0), lrs=(0.02, 0.03))),
        _kept(train_record("mbt_gap", "mbt_nag", 0.01, seed=1, accs=(30.0, 52.0),
                           lrs=(0.02, 0.03))),
        train_record("mbt_gap", "nag", 0.016, accs=(40.0, 49.0)),
        # not a condition: another start lr, another model, Figure 3's 30-epoch run, a
        # divergence cut-off (autolr's full preset), another BatchNorm init
        train_record("table2", "nag", 0.1, accs=(20.0, 35.0)),
        train_record("table3", "mbt_nag", 0.01, model="senet18", accs=(10.0, 90.0)),
        train_record("fig3", "mbt_mmt", 0.01, accs=(30.0,) * 29 + (77.0,)),
        {**train_record("autolr", "nag", 0.01, seed=3, accs=(40.0, 66.0)),
         "config": {"trainer": {"diverge_factor": 10.0}}},
        legacy,
    ]


def test_each_condition_is_its_own_row_with_table2s_cells_beside_the_controls(tmp_path):
    build("mbt_gap", _records(), tmp_path)
    md = (tmp_path / "mbt_gap.md").read_text()
    # the cleared (42.00 over 2 seeds) and kept (51.00) MBT-NAG runs are never pooled
    assert "| MBT-NAG | Table 2's cell: buffers cleared after every search (the code) | 2 | " \
        "0 1 | 42.00 ± 2.83 |" in md
    assert "| MBT-NAG, momentum kept | buffers kept across searches | 2 | 0 1 | 51.00 ± 1.41 |" \
        in md
    assert "| MBT-MMT | Table 2's cell: buffers cleared after every search (the code) | 1 | " \
        "0 | 36.00 |" in md
    assert "| NAG at 1e-2 | Table 2's NAG cell at MBT's start lr | 1 | 0 | 53.00 |" in md
    assert "| NAG at 0.016 | a constant lr: MBT-NAG's mean found lr | 1 | 0 | 49.00 |" in md
    assert "| MBT-MMT, momentum kept | buffers kept across searches | — |" in md
    for left_out in ("90.00", "35.00", "77.00", "66.00", "12.50"):
        assert left_out not in md
    assert "MBT-NAG -11.00 points (2 vs 1 seed), MBT-MMT -17.00 points (1 vs 1 seed)." in md
    assert "(kept minus cleared): MBT-NAG +9.00 points (2 vs 2 seeds), MBT-MMT n/a (runs " \
        "missing). An epoch here is 250 optimizer steps (the paper's: 250)" in md
    assert "NAG at 0.016 minus NAG at 1e-2: -4.00 points (1 vs 1 seed). Mean lr over the " \
        "epochs: MBT-NAG 0.0160, with the momentum kept 0.0250 (the control's constant: " \
        "0.016)." in md
    assert "minus NAG at the constant 0.016**: +2.00 points (2 vs 1 seed)." in md
    csv = (tmp_path / "mbt_gap.csv").read_text().splitlines()
    assert csv[0].startswith("condition,optim,lr,reset_momentum,n,seeds,best_mean,best_std")
    assert csv[2].startswith('"MBT-NAG, momentum kept",mbt_nag,1e-2,False,2,0 1,51.0,')


def test_table2_takes_its_cells_made_by_mbt_gap_and_never_the_controls(tmp_path):
    records = [
        train_record("table2", "nag", 0.01, accs=(40.0, 53.0)),
        train_record("mbt_gap", "nag", 0.01, seed=1, accs=(40.0, 51.0)),   # Table 2's cell
        train_record("mbt_gap", "mbt_nag", 0.01, accs=(30.0, 41.0)),       # Table 2's cell
        train_record("mbt_gap", "nag", 0.016, accs=(40.0, 49.0)),          # a control
        _kept(train_record("mbt_gap", "mbt_mmt", 0.01, accs=(30.0, 47.0))),  # a control
    ]
    build("table2", records, tmp_path)
    md = (tmp_path / "table2.md").read_text()
    assert "| NAG | 1e-2 | 91.74 | 52.00 ± 1.41 | 2 |" in md
    assert "| MBT-NAG | 1e-2 | 93.85 | 41.00 | 1 |" in md
    assert "49.00" not in md and "47.00" not in md and "0.016" not in md
