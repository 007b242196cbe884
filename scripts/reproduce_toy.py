"""Reproduce Examples 3.6-3.7 and Figure 2(a) with ``python -m mbt.toy``.

A thin entry point: the targets are :data:`mbt.report.targets.TOY_TARGETS`, their code
:mod:`mbt.toy.reproduce`. Writes results/toy_examples.md (+ .csv), results/fig2a.md,
results/fig2a.png, results/fig2a.csv (the named start's history) and
results/fig2a.starts.csv (one row per start and method).

Usage: python scripts/reproduce_toy.py [--out results] [--quick] [--only examples|fig2a]
  --quick leaves out the 10^6-iteration run of Example 3.7's Backtracking GD (about
  4 minutes) and draws 10 instead of 100 random starts per family for Figure 2(a), for
  `make demo`; the outputs then say so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mbt.report.targets import TOY_TARGETS

# Figure 2(a) first, as this script always ran them (the outputs do not depend on it).
ORDER = ("fig2a", "examples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=list(ORDER), default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    by_only = {t.only: t for t in TOY_TARGETS}
    for only in ORDER:
        if args.only in (None, only):
            by_only[only].build(args.out, args.quick)


if __name__ == "__main__":
    main()
