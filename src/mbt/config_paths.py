"""Where the Hydra configs live: ``conf/`` at the repository root (editable install)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"
