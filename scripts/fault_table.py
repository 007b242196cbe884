"""The fault table of docs/reliability.md, measured: run the fault tests, count per class.

    python scripts/fault_table.py                  # runs tests/test_faults.py (+ the flock
                                                   # test of tests/test_ledger.py), fresh-process
                                                   # tests included; a few minutes on 2 cores
    python scripts/fault_table.py --junit r.xml    # the table of a run already made
                                                   # (pytest ... --junitxml r.xml)

Each test is one case: it held when the test passed (the promise was kept), failed when it
failed or errored, and was not run when it skipped (the tmpfs tests need root). Prints a
Markdown table, one row per fault class, and exits 1 if any case failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_faults.py",
         "tests/test_ledger.py::test_a_file_system_without_flock_is_one_clear_error"]

# (fault class, substrings of the test names that belong to it); first match wins.
CLASSES = (
    ("ledger writes: whole, strict JSON, never torn", ("full_ledger", "full_tmpfs",
                                                        "diverged_record")),
    ("ledger reads: bad lines, non-UTF-8, hand edits, old schema",
     ("bad_lines", "non_utf8", "hand_edited", "migration")),
    ("one cell, one record: locks, data identity", ("second_process", "two_runs",
                                                     "without_flock", "partial_copy")),
    ("reports never destroy, double-count or mislabel", ("report_", "lower_protocol",
                                                         "finite_explosion", "loss_explodes")),
    ("checkpoints: failed saves, bad files, another model",
     ("checkpoint", "stale_temp", "last_pt")),
    ("signals: Ctrl-C, SIGTERM", ("sigint",)),
    ("nonsense and unwritable places refused before any data is read",
     ("nonsense_is_one_line_before", "read_only_runs", "hydra_output")),
    ("toy CLI: nonsense, unknown keys, unwritable out=", ("toy_",)),
    ("sweeps: a bad cell is named, never a silent abort", ("invalid_cell", "does_not_compose")),
    ("outside the run: W&B offline, a CIFAR pickle with a payload", ("wandb", "pickle")),
)


def _class(name: str) -> str:
    return next((c for c, keys in CLASSES if any(k in name for k in keys)), "unclassified")


def _outcomes(junit: Path) -> list[tuple[str, str]]:
    cases = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = ("failed" if kinds & {"failure", "error"} else
                   "not run" if "skipped" in kinds else "held")
        cases.append((case.get("name", ""), outcome))
    return cases


def table(cases: list[tuple[str, str]]) -> list[str]:
    counts: dict[str, Counter] = {}
    for name, outcome in cases:
        counts.setdefault(_class(name), Counter())[outcome] += 1
    order = [c for c, _ in CLASSES] + ["unclassified"]
    lines = ["| fault class | cases | held | failed | not run (needs root) |",
             "|---|---|---|---|---|"]
    total = Counter()
    for c in (c for c in order if c in counts):
        n = counts[c]
        total.update(n)
        lines.append(f"| {c} | {sum(n.values())} | {n['held']} | {n['failed']} | "
                     f"{n['not run']} |")
    lines.append(f"| **all** | {sum(total.values())} | {total['held']} | {total['failed']} | "
                 f"{total['not run']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--junit", type=Path, help="a JUnit XML of a run already made")
    args = p.parse_args(argv)
    junit = args.junit
    if junit is None:
        junit = Path(tempfile.mkdtemp(prefix="mbt-faults-")) / "faults.xml"
        subprocess.run([sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider",
                        "-m", "integration or not integration", f"--junitxml={junit}"],
                       cwd=ROOT, env=os.environ, check=False, stdout=sys.stderr)
    cases = _outcomes(junit)
    print("\n".join(table(cases)))
    return 1 if any(outcome == "failed" for _, outcome in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
