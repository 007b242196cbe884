"""``python -m mbt.report <target>``: rebuild a table or figure of the paper from the ledger.

Examples::

    python -m mbt.report table2                        # most complete protocol in the ledger
    python -m mbt.report all --protocol quick          # every target + results/README.md
    python -m mbt.report fig3 --source wandb --project mbt
    python -m mbt.report autolr --protocol quick       # beyond the paper: tuning cost counted
    python -m mbt.report out_of_domain --protocol cpu  # beyond: Fashion-MNIST, text, CIFAR-10
    python -m mbt.report mbt_gap --protocol cpu        # beyond: why MBT trails NAG (Table 2)
    python -m mbt.report wandb-dashboard --entity E --project mbt   # the views as a W&B Report
    python -m mbt.report wandb-dashboard --dry-run   # the panels it would build; no W&B

Exit status: 0 when something was written (``all``: always, unless an error), 1 when a
single target has no runs (one line names the ``make`` target that produces them), 2 on
errors (unknown W&B project, offline, missing paper CSVs).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mbt.writable import why_unwritable

from . import (
    Context,
    ReportError,
    build,
    load_ledger,
    load_wandb,
    missing_message,
    names,
    write_index,
)
from .common import PROTOCOLS, plural

DEFAULT_LEDGER = "runs/ledger.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m mbt.report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Rebuild a table or figure of the paper from the run ledger (never trains).",
        epilog="\n".join(__doc__.splitlines()[2:]))
    # wandb-dashboard is dispatched before this parser (its own options: wandb-dashboard
    # --help); listed here so that --help names it.
    p.add_argument("target", choices=[*names(), "all", "wandb-dashboard"],
                   help="a table or figure, all of them (+ results/README.md), or "
                        "wandb-dashboard: the views as a saved W&B Report (--dry-run: "
                        "print its panels)")
    p.add_argument("--ledger", default=DEFAULT_LEDGER,
                   help="JSONL run ledger (default: %(default)s)")
    p.add_argument("--out", default="results", help="output directory (default: %(default)s)")
    p.add_argument("--protocol", choices=PROTOCOLS,
                   help="default: the protocol covering the most cells "
                        "(full > quick > cpu > smoke)")
    p.add_argument("--source", choices=["ledger", "wandb"], default="ledger",
                   help="wandb: the W&B public API (needs credentials and network)")
    p.add_argument("--project", default="mbt", help="W&B project for --source wandb")
    p.add_argument("--entity", default=None, help="W&B entity for --source wandb")
    p.add_argument("--paper-dir", default=None,
                   help="paper CSVs (default: the copy shipped with mbt; results/paper in a "
                        "source checkout)")
    p.add_argument("--force", action="store_true",
                   help="replace committed outputs even with a lower protocol or fewer runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["wandb-dashboard"]:  # a saved W&B Report, not a ledger target
        from .wandb_dashboard import main as dashboard_main

        return dashboard_main(argv[1:])
    args = parse_args(argv)
    unwritable = why_unwritable(args.out)
    if unwritable:  # before the ledger is read: found at the first file written otherwise
        print(f"error: cannot write --out {args.out} ({unwritable})", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    extra = "" if args.ledger == DEFAULT_LEDGER else f" --ledger {args.ledger}"
    if args.source == "wandb":
        source = f"W&B {args.entity + '/' if args.entity else ''}{args.project}"
        extra = f" --source wandb --project {args.project}"
    else:
        source = args.ledger
    ctx = Context(out=Path(args.out), paper_dir=Path(args.paper_dir) if args.paper_dir else None,
                  source=source, report_args=extra, force=args.force)
    try:
        if args.source == "wandb":
            records = load_wandb(args.project, args.entity, experiments=names(),
                                 protocol=args.protocol)
        else:
            records = load_ledger(args.ledger)
        targets = names() if args.target == "all" else (args.target,)
        missing = 0
        for target in targets:
            result = build(target, records, protocol=args.protocol, ctx=ctx)
            if result.ok:
                print(f"{target}: wrote {', '.join(str(p) for p in result.written)} "
                      f"({result.selection.protocol}, "
                      f"{plural(len(result.selection.records), 'run')})")
            else:
                missing += 1
                print(missing_message(result.selection))
        if args.target == "all":
            print(f"index: wrote {write_index(args.out, records, protocol=args.protocol, ctx=ctx)}")
            return 0
        return 1 if missing else 0
    except (ReportError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
