"""Each Table 2 baseline's best start lr in the ledger, for the extra seeds the ``cpu``
protocol runs there (issue 23: at least 3 seeds at each optimizer's best start lr).

``python -m mbt.report.best_lr --ledger L --protocol cpu`` prints one Hydra override line
per optimizer whose 9 start lrs are all in the ledger (``optim=sgd optim.lr=0.1``); an
optimizer with cells missing is named on stderr and skipped, so a Makefile loop runs
only the seeds whose best lr is already known.

``--target out_of_domain`` prints the tuned grids of issue 25's Fashion-MNIST and text tasks
instead, one line with its preset each (``experiment=out_of_domain_grid optim=nag
optim.lr=0.1``), the lr chosen on seed 0 (:func:`.out_of_domain.tuned_choices`); CIFAR-10's
tuned seeds are Table 2's lines.
"""

from __future__ import annotations

import argparse
import sys

from .common import accuracies, lr_key, tuned_lr
from .out_of_domain import tuned_choices
from .paper import LR_GRID
from .selection import load_ledger, select
from .targets import TABLE2_BASELINES, by_name

__all__ = ["best_lrs", "main"]



def best_lrs(records: list[dict], protocol: str, seed: int = 0
             ) -> tuple[dict[str, float], dict[str, int]]:
    """({optimizer: best start lr}, {optimizer: start lrs still missing}) over the
    ``seed`` runs of Table 2 under ``protocol``; ties go to the larger lr (listed first)."""
    sel = select(records, by_name("table2"), protocol)
    best: dict[str, float] = {}
    missing: dict[str, int] = {}
    for optim in TABLE2_BASELINES:
        acc = {lr_key(r["lr"]): accuracies(r)[0] for r in sel.records
               if r.get("optim") == optim and r.get("seed") == seed}
        absent = [lr for lr in LR_GRID if lr not in acc]
        if absent:
            missing[optim] = len(absent)
            continue
        best[optim] = tuned_lr({lr: acc[lr] for lr in LR_GRID})
    return best, missing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mbt.report.best_lr", description=__doc__)
    p.add_argument("--ledger", default="runs/ledger.jsonl")
    p.add_argument("--protocol", default="cpu")
    p.add_argument("--target", choices=("table2", "out_of_domain"), default="table2")
    args = p.parse_args(argv)
    if args.target == "out_of_domain":
        lines, skipped = tuned_choices(load_ledger(args.ledger), args.protocol)
        for why in skipped:
            print(f"best_lr: {why} in {args.ledger}; its extra seeds wait", file=sys.stderr)
        for line in lines:
            print(line)
        return 0
    best, missing = best_lrs(load_ledger(args.ledger), args.protocol)
    for optim, n in missing.items():
        print(f"best_lr: {optim}: {n} of 9 start lrs not in {args.ledger} yet; "
              f"its extra seeds wait", file=sys.stderr)
    for optim, lr in best.items():
        print(f"optim={optim} optim.lr={lr:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
