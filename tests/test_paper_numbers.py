"""The paper's numbers as we transcribed them are pinned, so that they cannot drift unnoticed.

``results/paper/*.csv`` (Tables 1-3, see ``results/paper/README.md``) are compared by
shape and by a sha256 of their bytes; the claims kept in code (the toy examples in
``scripts/reproduce_toy.py``, the figure claims in ``mbt.report.paper.CLAIMS``) by value,
and against our plain-text copy of the paper where the checkout has it. A deliberate
correction of a transcription must update the pin here in the same commit, and say why.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import pytest

from mbt.report.paper import CLAIMS, TABLES, paper_dir

ROOT = Path(__file__).resolve().parents[1]
PAPER_TEXT = ROOT.parent / "shared" / "seeds" / "001_f6a87e200db0a0b6.txt"

# file -> (header, data rows, sha256 of the bytes)
PINNED = {
    "table1.csv": (["batch_size", "lr", "search_lr"], 63,
                   "cdae7d63ad65ddb55da280ffac4477ef40a49397f91f32b3572f44985ea25c13"),
    "table2.csv": (["optim", "lr", "best_test_acc"], 75,
                   "afc9c6082535f7979574606d46e766e58e69c52462c618cdbfd34b573df9990f"),
    "table3.csv": (["model", "dataset", "optim", "best_test_acc"], 20,
                   "b999d0555c2dec1dae8ca5a4ca68cf082788a301b7f1af44085ea6abddf53806"),
}

PAPER_TOY = {
    "3.6": "after 10 steps: (0.09325947, -0.09325947)",
    "3.7 backtracking": "after 10^6 steps: (0.00111797, 0.00111802), lr 1",
    "3.7 unbounded": "after 89 steps: (0.00025327, 0.00025327), lr 90544.63441298596",
}


def _paper_text() -> str:
    """The paper's text with whitespace collapsed and Unicode minus signs as '-'."""
    if not PAPER_TEXT.is_file():
        pytest.skip(f"paper text not found at {PAPER_TEXT}")
    return " ".join(PAPER_TEXT.read_text(encoding="utf-8").replace("\u2212", "-").split())


def _reproduce_toy():
    from mbt.toy import reproduce  # the toy targets' code (scripts/reproduce_toy.py runs it)

    return reproduce


def test_every_paper_table_is_pinned():
    assert sorted(p.name for p in paper_dir().glob("*.csv")) == sorted(PINNED)
    assert sorted(f"{t}.csv" for t in TABLES) == sorted(PINNED)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_paper_csv_shape_and_checksum(name):
    header, n_rows, digest = PINNED[name]
    path = paper_dir() / name
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == header
    assert len(rows) - 1 == n_rows
    assert all(len(r) == len(header) for r in rows[1:])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, (
        f"{name} changed: if the transcription was corrected on purpose, update PINNED "
        "and results/paper/README.md in the same commit")


def test_toy_claims_in_the_toy_targets_are_pinned():
    assert _reproduce_toy().PAPER_TOY == PAPER_TOY


def test_toy_claims_match_the_paper_text():
    text = _paper_text()
    for claim in PAPER_TOY.values():
        for number in re.findall(r"\d+\.\d+", claim):
            assert number in text, number
    assert "After 10 steps" in text and "only after 89 steps" in text
    assert "(0.09325947,-0.09325947)" in text.replace(" ", "")


def test_figure_claims_are_pinned_and_quoted():
    assert CLAIMS["fig2b"][1] == 40
    assert _reproduce_toy().SETTLE_BY == 6
    text = _paper_text()
    assert "stablises to Standard GD in only 6 iterates" in text  # Fig. 2(a), sic
    assert "for CIFAR10 stabilising appears after 40 iterates" in text  # Fig. 2(b)
    quote = CLAIMS["fig2b"][0].split(" (Sec.")[0]
    assert quote in text
    for part in CLAIMS["fig3"][0].split(" (Sec.")[0].split(" [...] "):
        assert part in text, part
