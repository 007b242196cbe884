"""``python -m mbt.ledger_merge FROM INTO``: append to ledger INTO the records of FROM it lacks.

A sweep on another machine (the GPU the device tool lends, a cluster node with its own
disk) writes its own copy of the ledger: ``scripts/device_sweep.sh`` starts from a copy of
``results/ledger.jsonl`` and brings that copy back. Merging appends each record of FROM
that INTO does not hold, in FROM's order, under INTO's lock (:func:`mbt.ledger.locked`; one
whole line or nothing each). Nothing in INTO is rewritten: it stays append-only.

A record is already held when INTO has the same record (the copy's own first lines), or,
for a finished or diverged run, any finished or diverged record with its ``run_key``: a
sweep here skips a cell whose key the ledger holds, so a second result for one cell would
only be one that raced the copy (both machines ran it); INTO's is kept. Running it again
appends nothing.

Examples::

    python -m mbt.ledger_merge /work/.device/.../ledger.jsonl results/ledger.jsonl --dry-run
    python -m mbt.ledger_merge node7/ledger.jsonl results/ledger.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import Counter
from pathlib import Path

from mbt import ledger

__all__ = ["merge"]


def _canonical(record: dict) -> str:
    return json.dumps(record, sort_keys=True)


def merge(source: str | Path, into: str | Path, *, dry_run: bool = False) -> Counter:
    """Append to ``into`` the records of ``source`` it lacks; returns the counts ``new``,
    ``same`` (the identical record is there) and ``key_held`` (another final record of its
    run key is there)."""
    counts: Counter = Counter(new=0, same=0, key_held=0)
    incoming = list(ledger.read(source))
    # Under the ledger's lock: a sweep here cannot append a key between our check and ours.
    with ledger.locked(into) if not dry_run else contextlib.nullcontext(None) as append:
        records = list(ledger.read(into))
        held = {_canonical(r) for r in records}
        keys = {r.get("run_key") for r in records if r.get("status") in ledger.FINAL_STATUSES}
        for record in incoming:
            text = _canonical(record)
            final = record.get("status") in ledger.FINAL_STATUSES
            if text in held:
                counts["same"] += 1
            elif final and record.get("run_key") in keys:
                counts["key_held"] += 1
            else:
                counts["new"] += 1
                if append is not None:
                    append(record)
                held.add(text)
                if final:
                    keys.add(record.get("run_key"))
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mbt.ledger_merge",
                                description=__doc__.splitlines()[0].split(": ", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("source", type=Path, help="the ledger to take records from")
    p.add_argument("into", type=Path, help="the ledger to append them to")
    p.add_argument("--dry-run", action="store_true", help="count, append nothing")
    args = p.parse_args(argv)
    if not args.source.is_file():
        print(f"error: no ledger at {args.source}", file=sys.stderr)
        return 2
    try:
        counts = merge(args.source, args.into, dry_run=args.dry_run)
    except ledger.LedgerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    verb = "would append" if args.dry_run else "appended"
    print(f"{args.into}: {verb} {counts['new']} record(s) of {args.source}; {counts['same']} "
          f"already there, {counts['key_held']} left out (their run key is already finished "
          f"there)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
