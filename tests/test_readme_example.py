"""The README's optimizer example runs and prints exactly what its ``# prints:`` lines say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _first_python_block() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
    assert blocks, "README.md has no ```python block"
    return blocks[0]


def _expected_output(code: str) -> list[str]:
    lines = code.splitlines()
    assert "# prints:" in lines, "the example must end with a '# prints:' comment block"
    shown = lines[lines.index("# prints:") + 1:]
    assert shown and all(line.startswith("# ") for line in shown), shown
    return [line[2:] for line in shown]


@pytest.mark.integration
def test_readme_optimizer_example_prints_what_it_shows(tmp_path):
    code = _first_python_block()
    assert "from mbt.optim import" in code
    expected = _expected_output(code)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == expected
    # What the example claims: it converged by itself, and no search hit a bound.
    assert "0 bound hits" in expected[0] and "'bound_hit': False" in expected[1]
