"""The console scripts pyproject declares are installed, start, and (Hydra apps) complete
in bash: each test runs the real script from the environment's bin/ in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
BIN = Path(sys.executable).parent
TIMEOUT = 180  # seconds; each script imports torch, slow on a busy 2-core machine


def _script(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is not installed: run `pip install -e . --no-deps` after "
                    "editing [project.scripts]")
    return path


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    environ.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(args, cwd=tmp_path, env=environ, capture_output=True, text=True,
                          timeout=TIMEOUT)


def test_expected_scripts_are_declared():
    assert set(SCRIPTS) == {"mbt-train", "mbt-find-lr", "mbt-report", "mbt-toy", "mbt-bench"}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_exits_zero(name, tmp_path):
    proc = _run([str(_script(name)), "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip(), f"{name} --help printed nothing"
    assert not list(tmp_path.iterdir()), "--help must not write anything"
    if name == "mbt-toy":  # the toy's own help, not Hydra's default over the shared conf/
        assert proc.stdout.startswith("mbt.toy: ") and "__main__" not in proc.stdout
        assert "function " in proc.stdout and "mbt_nag" not in proc.stdout


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_mbt_train_bash_completion(tmp_path):
    """Hydra's ``-sc install=bash`` script, evaluated in bash, completes ``optim=ad``
    through the console script's own ``-sc query=bash`` (as a shell would on TAB)."""
    _script("mbt-train")
    driver = "\n".join([
        'eval "$(mbt-train -sc install=bash)"',
        "complete -p mbt-train",
        'COMP_LINE="mbt-train optim=ad"; COMP_POINT=${#COMP_LINE}',
        "COMP_WORDS=(mbt-train optim=ad); COMP_CWORD=1",
        "hydra_bash_completion",
        'printf "reply: %s\\n" "${COMPREPLY[@]}"',
    ])
    proc = _run(["bash", "--norc", "--noprofile", "-c", driver], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "-F hydra_bash_completion mbt-train" in proc.stdout
    replies = {line.removeprefix("reply: ") for line in proc.stdout.splitlines()
               if line.startswith("reply: ")}
    assert {"optim=adam", "optim=adagrad", "optim=adamax"} <= replies, proc.stdout
    assert all(r.startswith("optim=ad") for r in replies), replies


@pytest.mark.integration
def test_report_exit_code_reaches_the_shell(tmp_path):
    """``mbt.report.__main__:main`` returns an int; the script exits with it (1: no runs,
    2: no ledger at all)."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    proc = _run([str(_script("mbt-report")), "table1", "--ledger", str(empty),
                 "--out", str(tmp_path / "out")], tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr[-2000:])
    assert "no runs" in proc.stdout
    proc = _run([str(_script("mbt-report")), "table1", "--ledger",
                 str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "out")], tmp_path)
    assert proc.returncode == 2 and "no ledger at" in proc.stderr
