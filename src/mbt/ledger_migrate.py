"""``python -m mbt.ledger_migrate LEDGER``: re-key records written under an older key schema.

Key schema 2 (:mod:`mbt.ledger`) hashes a fingerprint of the data a run loaded. Older
records lack it, so a sweep would not recognise them and reports skip them. Migration
recomputes each old record's fingerprint from the files its ``data.root`` names (they must
still be there, or be given with ``--data-root``; generated synthetic sets are generated
again, they are deterministic), checks that the numbers of images match what the record
says it loaded, and APPENDS a copy under the new key with ``migrated_from`` naming the old
one. Nothing is rewritten: the ledger stays append-only. Running it again adds nothing.

Examples::

    python -m mbt.ledger_migrate results/ledger.jsonl --dry-run
    python -m mbt.ledger_migrate runs/ledger.jsonl --data-root /scratch/cifar
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from mbt import ledger
from mbt.data.cifar import DataError, load_cifar
from mbt.data.synthetic import write_cifar

__all__ = ["migrate"]


class _Fingerprints:
    """Fingerprints of data sets, loaded once per (dataset, root)."""

    def __init__(self, data_roots: list[Path]):
        self.data_roots = data_roots
        self.cache: dict[tuple, dict | str] = {}
        self.tmp = tempfile.TemporaryDirectory(prefix="mbt-migrate-")

    def of(self, record: dict) -> dict | str:
        """The fingerprint of the data ``record`` loaded, or why it cannot be had."""
        info = record.get("data") or {}
        if info.get("fingerprint"):
            return info["fingerprint"]
        name = info.get("dataset") or record.get("dataset")
        n_train, n_test = info.get("num_train_found", info.get("num_train")), info.get("num_test")
        if info.get("synthetic"):
            key = ("synthetic", name, n_train, n_test)
            if key not in self.cache:
                root = Path(self.tmp.name) / f"{name}-{n_train}-{n_test}"
                # mbt.run writes the fallback set with seed 0; the files are deterministic.
                write_cifar(root, name, seed=0, n_train=n_train, n_test=n_test)
                self.cache[key] = load_cifar(name, root).fingerprint
            return self.cache[key]
        roots = [Path(info["root"])] if info.get("root") else []
        for root in [*roots, *self.data_roots]:
            key = (name, str(root))
            if key not in self.cache:
                try:
                    self.cache[key] = load_cifar(name, root, allow_partial=True).fingerprint
                except DataError as err:
                    self.cache[key] = f"no {name} at {root} ({str(err)[:80]}...)"
            found = self.cache[key]
            if isinstance(found, dict) and (found["n_train"], found["n_test"]) == (n_train, n_test):
                return found
        return (f"no copy of its data with {n_train} train / {n_test} test images at "
                f"{', '.join(map(str, [*roots, *self.data_roots])) or 'an unknown root'}")


def migrate(path: str | Path, *, data_roots: list[Path] = (), dry_run: bool = False,
            notice=print) -> Counter:
    """Append schema-:data:`mbt.ledger.KEY_SCHEMA` copies of the older records of ``path``;
    returns counts (migrated, already, current, unmigratable)."""
    records = list(ledger.read(path))
    current = {r["run_key"] for r in records if r.get("key_schema") == ledger.KEY_SCHEMA}
    fingerprints = _Fingerprints(list(data_roots))
    counts: Counter = Counter()
    for r in records:
        if r.get("key_schema") == ledger.KEY_SCHEMA:
            counts["current"] += 1
            continue
        if not isinstance(r.get("config"), dict) or "run_key" not in r:
            counts["unmigratable"] += 1
            notice(f"{r.get('run_key', '?')}: no stored config; left as it is")
            continue
        fp = fingerprints.of(r)
        if isinstance(fp, str):
            counts["unmigratable"] += 1
            notice(f"{r['run_key']}: {fp}; left as it is (give --data-root)")
            continue
        key = ledger.run_key(r["config"], fp, r.get("kind", "train"))
        if key in current:
            counts["already"] += 1
            continue
        current.add(key)
        counts["migrated"] += 1
        if not dry_run:
            ledger.append(path, {**r, "run_key": key, "key_schema": ledger.KEY_SCHEMA,
                                 "migrated_from": r["run_key"],
                                 "bn_init": r["config"]["model"].get("bn_init", "torch"),
                                 "data": {**(r.get("data") or {}), "fingerprint": fp}})
    fingerprints.tmp.cleanup()
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mbt.ledger_migrate",
                                description=__doc__.splitlines()[0].split(": ", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("ledger", type=Path)
    p.add_argument("--data-root", type=Path, action="append", default=[],
                   help="where to look for a record's data when its recorded root is gone "
                        "(repeatable)")
    p.add_argument("--dry-run", action="store_true", help="count, append nothing")
    args = p.parse_args(argv)
    if not args.ledger.is_file():
        print(f"error: no ledger at {args.ledger}", file=sys.stderr)
        return 2
    counts = migrate(args.ledger, data_roots=args.data_root, dry_run=args.dry_run,
                     notice=lambda m: print(m, file=sys.stderr))
    verb = "would append" if args.dry_run else "appended"
    print(f"{args.ledger}: {verb} {counts['migrated']} re-keyed record(s); "
          f"{counts['already']} already migrated, {counts['current']} current, "
          f"{counts['unmigratable']} left as they are")
    return 1 if counts["unmigratable"] else 0


if __name__ == "__main__":
    sys.exit(main())
