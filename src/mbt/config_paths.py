"""Where mbt's data files live: the Hydra configs and the paper's published numbers.

A wheel carries them inside the package (``mbt/conf``, ``mbt/paper_data``: setup.py copies
them at build time). A source checkout (editable install, ``PYTHONPATH=src``) has no such
copies and reads ``conf/`` and ``results/paper/`` at the repository root, where the
Makefile, docs and tests name them."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]  # the checkout; meaningless in a wheel install


def _shipped_or_checkout(shipped: str, checkout: str) -> Path:
    packaged = PACKAGE_DIR / shipped
    return packaged if packaged.is_dir() else REPO_ROOT / checkout


CONF_DIR = _shipped_or_checkout("conf", "conf")
PAPER_DIR = _shipped_or_checkout("paper_data", "results/paper")


def install_hint(extra: str) -> str:
    """The command that adds ``extra`` to this install: the editable form in a source
    checkout, the package form in a wheel install (where ``-e .`` means nothing)."""
    if PACKAGE_DIR.parent.name == "src" and (REPO_ROOT / "pyproject.toml").is_file():
        return f"pip install -e '.[{extra}]'"
    return f"pip install 'mbt[{extra}]'"
